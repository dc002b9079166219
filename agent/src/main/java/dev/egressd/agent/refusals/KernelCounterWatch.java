package dev.egressd.agent.refusals;

import dev.egressd.agent.kernel.nft.Ruleset;

import java.util.HashMap;
import java.util.Map;

/**
 * Turns the kernel's refusal counters into refusal-log lines: every few seconds the daemon hands it the control
 * loop's totals of the nft named counters ({@code ControlLoop.kernelCounters()}, read from the kernel once a second
 * and kept monotonic across a table rebuild, which resets the kernel's own) and each one that moved since the last
 * call becomes one line with the delta (the kernel refuses per packet, so the log carries counts, not tuples: the
 * kernel does not say which guest it was).
 *
 * <p>Not thread-safe: the control loop thread calls {@link #observe}.
 */
public final class KernelCounterWatch
{
    private static final Map<String, String[]> REASONS = Map.of(
        Ruleset.COUNTER_CAP4, new String[] {"cap_refused", "IPv4 new connections reset over the destination cap"},
        Ruleset.COUNTER_CAP6, new String[] {"cap_refused", "IPv6 new connections reset over the destination cap"},
        Ruleset.COUNTER_SPOOF4, new String[] {"spoof_dropped", "IPv4 packets dropped: source not the guest's own"},
        Ruleset.COUNTER_SPOOF6, new String[] {"spoof_dropped", "IPv6 packets dropped: source not the guest's own"},
        Ruleset.COUNTER_UNMAPPED4, new String[] {"fail_closed_refused",
            "IPv4 new connections refused: a static guest without a mapping (pending or fail-closed)"},
        Ruleset.COUNTER_UNMAPPED6, new String[] {"fail_closed_refused",
            "IPv6 new connections refused: a static guest without a mapping (pending or fail-closed)"},
        Ruleset.COUNTER_BACKSTOP4, new String[] {"backstop_dropped",
            "IPv4 packets of a static guest dropped at NAT (never masqueraded)"},
        Ruleset.COUNTER_BACKSTOP6, new String[] {"backstop_dropped",
            "IPv6 packets of a static guest dropped at NAT (never masqueraded)"});

    private final RefusalLog log;
    private final Map<String, Long> last = new HashMap<>();

    /**
     * A watch writing to a refusal log.
     *
     * @param log the refusal log.
     */
    public KernelCounterWatch(final RefusalLog log)
    {
        this.log = log;
    }

    /**
     * Compares with the previous call and logs what moved. The first call only sets the baseline. Feed it totals
     * that never go down: a value below the previous one (raw kernel counters after a table rebuild) can only be
     * taken as a new baseline, and whatever was counted since the rebuild would never be logged.
     *
     * @param counters the named counters' totals, in packets.
     * @return how many counters moved.
     */
    public int observe(final Map<String, Long> counters)
    {
        int moved = 0;
        for (final Map.Entry<String, Long> e : counters.entrySet())
        {
            final String[] reason = REASONS.get(e.getKey());
            final Long before = last.put(e.getKey(), e.getValue());
            if (reason == null || before == null || e.getValue() <= before)
            {
                continue;
            }
            final long delta = e.getValue() - before;
            log.refusal(reason[0], null, null, null, delta, delta + " " + reason[1] + " (counter " + e.getKey() + ")");
            moved++;
        }
        return moved;
    }
}
