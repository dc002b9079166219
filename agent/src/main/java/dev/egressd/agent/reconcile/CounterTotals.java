package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.KernelException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Totals of the table's named counters, for the metrics and the refusal log. The kernel's own counters restart
 * from 0 when the table is recreated; a total never goes backwards, it carries on from where it was. Read on the
 * loop thread after each reconcile (the one read of them: the kernel is single-threaded); {@link #totals()} from
 * any thread.
 */
final class CounterTotals
{
    private static final Logger LOG = LoggerFactory.getLogger(CounterTotals.class);

    /** Per counter: {last raw value, total}. Loop thread only. */
    private final Map<String, long[]> totals = new LinkedHashMap<>();
    private volatile Map<String, Long> published = Map.of();
    private boolean failing;

    /**
     * Reads the kernel's counters and adds what they moved by. A failure keeps the last totals and is logged once
     * until a read succeeds again: the metrics must not fail a reconcile.
     *
     * @param kernel the kernel.
     */
    void read(final Kernel kernel)
    {
        final Map<String, Long> raw;
        try
        {
            raw = kernel.counters();
        }
        catch (final KernelException | RuntimeException e)
        {
            if (!failing)
            {
                LOG.warn("cannot read the table's counters, metrics keep the last values: {}", e.getMessage());
                failing = true;
            }
            return;
        }
        failing = false;
        add(raw);
    }

    /**
     * Adds one reading: a value below the last one means the counter restarted, so all of it is new.
     *
     * @param raw counter name to the kernel's value (null counts as 0).
     */
    void add(final Map<String, Long> raw)
    {
        boolean changed = false;
        for (final Map.Entry<String, Long> e : raw.entrySet())
        {
            final long value = e.getValue() == null ? 0 : e.getValue();
            final long[] t = totals.computeIfAbsent(e.getKey(), k -> new long[2]);
            final long delta = value >= t[0] ? value - t[0] : value;
            t[0] = value;
            if (delta != 0)
            {
                t[1] += delta;
                changed = true;
            }
        }
        if (changed || published.size() != totals.size())
        {
            final Map<String, Long> next = new LinkedHashMap<>();
            totals.forEach((k, t) -> next.put(k, t[1]));
            published = Collections.unmodifiableMap(next);
        }
    }

    /**
     * The totals, for any thread: an immutable map replaced when a total moves.
     *
     * @return counter name to packets since this process first read it; empty until the first read.
     */
    Map<String, Long> totals()
    {
        return published;
    }
}
