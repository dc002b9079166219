package dev.egressd.agent.reconcile;

import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.LongSupplier;

/**
 * Released uplink addresses kept on the uplink until their drain time ends, so established connections through them
 * can finish (docs/design.md, "Draining addresses"). Each deadline is kept on the loop's monotonic clock, and on the
 * wall clock, which the state file keeps so that a restart can convert it back.
 *
 * <p>Loop thread only, except {@link #drainSeconds(int)} (SIGHUP), which affects addresses released from then on.
 */
final class DrainingAddresses
{
    private static final Logger LOG = LoggerFactory.getLogger(DrainingAddresses.class);
    private static final long SECOND = 1_000_000_000L;
    private static final long MILLI = 1_000_000L;

    /**
     * When a draining address goes.
     *
     * @param nanos      the deadline on the loop's clock.
     * @param wallMillis the same deadline in milliseconds since the epoch.
     */
    record Deadline(long nanos, long wallMillis)
    {
    }

    private final LongSupplier nanoTime;
    private final LongSupplier wallMillis;
    private volatile long drainNanos;
    private final Map<PlanElement, Deadline> draining = new LinkedHashMap<>();
    /** Restored from the state file and not yet checked against the kernel: kept only if the kernel holds them. */
    private final Set<PlanElement> restored = new HashSet<>();

    /**
     * None draining yet.
     *
     * @param nanoTime     the loop's clock.
     * @param wallMillis   the wall clock, milliseconds since the epoch.
     * @param drainSeconds how long a released address stays on the uplink.
     */
    DrainingAddresses(final LongSupplier nanoTime, final LongSupplier wallMillis, final int drainSeconds)
    {
        this.nanoTime = nanoTime;
        this.wallMillis = wallMillis;
        this.drainNanos = drainSeconds * SECOND;
    }

    /**
     * Changes how long addresses released from now on stay on the uplink.
     *
     * @param seconds the new drain time.
     */
    void drainSeconds(final int seconds)
    {
        drainNanos = seconds * SECOND;
    }

    /**
     * The drain time.
     *
     * @return nanoseconds.
     */
    long drainNanos()
    {
        return drainNanos;
    }

    /**
     * The addresses draining now.
     *
     * @return an unmodifiable view, in the order they started draining.
     */
    Set<PlanElement> addresses()
    {
        return Collections.unmodifiableSet(draining.keySet());
    }

    /**
     * The deadline of a draining address.
     *
     * @param address the uplink element.
     * @return its deadline, or null if it is not draining.
     */
    Deadline deadline(final PlanElement address)
    {
        return draining.get(address);
    }

    /**
     * Puts back the released addresses that were draining when the state was written, converting each wall-clock
     * deadline to the loop's clock. One whose deadline passed while egressd was down is dropped (the first sync
     * then removes it); a deadline further away than the drain time (the wall clock moved back) is cut to it.
     *
     * @param entries the state file's {@code draining}.
     */
    void restore(final List<DesiredState.Draining> entries)
    {
        final long nowNanos = nanoTime.getAsLong();
        final long nowWall = wallMillis.getAsLong();
        for (final DesiredState.Draining entry : entries)
        {
            final PlanElement element;
            try
            {
                element = entry.element() == null ? null : StateMapper.fromData(entry.element());
            }
            catch (final IllegalArgumentException e)
            {
                LOG.warn("state: skipping draining element {}: {}", entry, e.getMessage());
                continue;
            }
            if (!isUplink(element))
            {
                LOG.warn("state: skipping draining element {}: not an uplink address", entry);
                continue;
            }
            final long left = entry.untilEpochMillis() - nowWall;
            if (left <= 0)
            {
                LOG.info("state: the drain time of released {} ended while egressd was down", element);
                continue;
            }
            final long leftNanos = Math.min(left, drainNanos / MILLI) * MILLI;
            draining.put(element, new Deadline(nowNanos + leftNanos, nowWall + leftNanos / MILLI));
            restored.add(element);
            LOG.info("state: released {} keeps draining for {} s more", element, leftNanos / SECOND);
        }
    }

    /**
     * Whether addresses restored from the state file still wait for {@link #keepOnlyHeld(KernelPlan)}.
     *
     * @return true until the first sync checked them.
     */
    boolean awaitingKernelCheck()
    {
        return !restored.isEmpty();
    }

    /**
     * The first sync after a restart: drops the restored addresses the kernel no longer holds. A draining address
     * keeps the kernel from removing it; it never makes the kernel add one back (after a reboot, say: the address
     * may be in use elsewhere by now).
     *
     * @param held what the kernel holds.
     */
    void keepOnlyHeld(final KernelPlan held)
    {
        draining.keySet().removeIf(e -> restored.contains(e) && !held.contains(e));
        restored.clear();
    }

    /**
     * A mutation was applied to the allocator: every uplink address the kernel holds that the desired plan no
     * longer has starts draining, with a deadline the drain time from now. Nothing drains when the drain time is 0.
     *
     * @param held    what the kernel holds (or held after the last apply).
     * @param desired the desired plan, draining addresses included.
     * @return true if any address started draining (the desired plan then has to be computed again).
     */
    boolean startDraining(final KernelPlan held, final KernelPlan desired)
    {
        final long drain = drainNanos;
        if (drain <= 0)
        {
            return false;
        }
        final Deadline until = new Deadline(nanoTime.getAsLong() + drain, wallMillis.getAsLong() + drain / MILLI);
        boolean added = false;
        for (final String kind : List.of("uplink4", "uplink6"))
        {
            for (final PlanElement address : held.elements(kind).values())
            {
                if (!desired.contains(address) && !draining.containsKey(address))
                {
                    draining.put(address, until);
                    added = true;
                }
            }
        }
        return added;
    }

    /**
     * {@link #startDraining(KernelPlan, KernelPlan)} when the kernel holds the desired plan of the last mark: the
     * uplink addresses it holds that the plan no longer has are exactly the removals among the changes since.
     *
     * @param changes the desired plan's changes since the plan the kernel holds.
     * @return true if any address started draining (the changes then have to be taken again).
     */
    boolean startDraining(final List<PlanChange> changes)
    {
        final long drain = drainNanos;
        if (drain <= 0)
        {
            return false;
        }
        Deadline until = null;
        boolean added = false;
        for (final PlanChange change : changes)
        {
            final PlanElement address = change.element();
            if (change.op() == PlanChange.Op.REMOVE && isUplink(address) && !draining.containsKey(address))
            {
                if (until == null)
                {
                    until = new Deadline(nanoTime.getAsLong() + drain, wallMillis.getAsLong() + drain / MILLI);
                }
                draining.put(address, until);
                added = true;
            }
        }
        return added;
    }

    /**
     * Takes out the addresses whose deadline has come.
     *
     * @param now the loop's clock.
     * @return them with their deadlines, for {@link #putBack(Map)} if the kernel cannot remove them now.
     */
    Map<PlanElement, Deadline> expire(final long now)
    {
        final Map<PlanElement, Deadline> expired = new LinkedHashMap<>();
        draining.entrySet().removeIf(e ->
        {
            if (now - e.getValue().nanos() >= 0)
            {
                expired.put(e.getKey(), e.getValue());
                return true;
            }
            return false;
        });
        return expired;
    }

    /**
     * Puts back expired addresses the kernel could not remove: already due, the next successful reconcile removes
     * them.
     *
     * @param expired what {@link #expire(long)} took out.
     */
    void putBack(final Map<PlanElement, Deadline> expired)
    {
        draining.putAll(expired);
    }

    /**
     * The state file's {@code draining}: each address with its wall-clock deadline.
     *
     * @return the entries, empty when none drains.
     */
    List<DesiredState.Draining> export()
    {
        final List<DesiredState.Draining> entries = new ArrayList<>();
        draining.forEach((element, deadline) ->
            entries.add(new DesiredState.Draining(StateMapper.toData(element), deadline.wallMillis())));
        return entries;
    }

    private static boolean isUplink(final PlanElement element)
    {
        return element instanceof PlanElement.Uplink4 || element instanceof PlanElement.Uplink6;
    }
}
