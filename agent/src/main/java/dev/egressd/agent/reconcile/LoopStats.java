package dev.egressd.agent.reconcile;

import dev.egressd.core.alloc.EgressAllocator;

import java.util.Map;

/**
 * What the control loop publishes for readers on other threads, the metrics binder first: as a Micrometer binder
 * reads an MXBean, it reads these and nothing else of the loop. Every method returns an immutable value or a
 * cumulative count the loop thread replaces; none touches the live allocator or the kernel.
 */
public interface LoopStats
{
    /**
     * The allocator's state as of the last mutation: an immutable value replaced (never changed) after a mutation
     * changed the allocator, built on the loop thread when first asked for (or by the next reconcile), not per
     * mutation: it walks every machine and pair.
     *
     * @return the snapshot.
     */
    EgressAllocator.Snapshot published();

    /**
     * The table's named counters as of the last reconcile. Each value never goes backwards: when the table is
     * recreated and the kernel's counters restart from 0, the total carries on from where it was.
     *
     * @return counter name to packets since this process first read it; empty until the first reconcile.
     */
    Map<String, Long> kernelCounters();

    /**
     * Reconcile passes run so far (passes skipped while backing off are not counted).
     *
     * @return the cumulative count.
     */
    long reconcileRuns();

    /**
     * Reconcile passes that failed (the kernel could not be read or programmed).
     *
     * @return the cumulative count.
     */
    long reconcileFailures();

    /**
     * Kernel reads abandoned by the read watchdog: out past their deadline, the kernel reported unavailable, the
     * next read on a fresh reader handle (docs/reliability.md, "A read that never returns").
     *
     * @return the cumulative count.
     */
    long stuckReads();

    /**
     * When the last successful reconcile pass ended (as kube-proxy's last sync timestamp).
     *
     * @return milliseconds since the epoch; 0 before the first.
     */
    long lastReconcileSuccessMillis();

    /**
     * Sets who is told the duration of every reconcile pass run.
     *
     * @param observer the observer, or null for none.
     */
    void observeReconciles(ReconcileObserver observer);

    /**
     * The health as of the last reconcile or mutation.
     *
     * @return the health.
     */
    Health health();

    /**
     * The host's per-destination connection cap from the settings.
     *
     * @return the cap.
     */
    int destinationCap();

    /**
     * Sets who is told about every answered mutation.
     *
     * @param observer the observer, or null for none.
     */
    void observeChanges(ChangeObserver observer);

    /**
     * Why the state file cannot be written, as of the last write (a change, the start-up or the reconcile
     * loop's retry), or null when it can.
     *
     * @return {@code "<path>: <reason>"}, or null.
     */
    default String stateProblem()
    {
        return null;
    }

    /**
     * Writes of the state file that failed (each refused a change, or left the start-up's state unwritten).
     *
     * @return the cumulative count.
     */
    default long stateWriteFailures()
    {
        return 0;
    }

    /**
     * Checks of the incrementally kept desired plan against a whole build that found them different (each a change
     * the incremental plan missed, repaired by taking the whole build).
     *
     * @return the cumulative count.
     */
    default long desiredPlanMismatches()
    {
        return 0;
    }

    /**
     * Reconcile reads that read egressd's table whole (its elements and fixed part): the ruleset's generation was
     * not the one the kernel was last proven to hold the plan at. The others read only the uplink addresses.
     *
     * @return the cumulative count.
     */
    default long reconcileTableReads()
    {
        return 0;
    }

    /**
     * Batches the control loop ran: the changes that queued together, each batch one kernel transaction and one
     * journal write with its fdatasync (group commit).
     *
     * @return the cumulative count.
     */
    default long changeBatches()
    {
        return 0;
    }
}
