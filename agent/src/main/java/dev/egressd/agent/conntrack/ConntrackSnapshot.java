package dev.egressd.agent.conntrack;

import java.util.Map;

/**
 * What the monitor has seen, published by its thread at least every second: an immutable value, so readers on
 * other threads (metrics, the machine view, tests) never see a torn or racy read of the ledger.
 *
 * @param cap                the destination cap.
 * @param newEvents          NEW events read.
 * @param updateEvents       UPDATE events read.
 * @param destroyEvents      DESTROY events read.
 * @param existingEvents     entries read by dumps (at start and at every resync).
 * @param guestEvents        events of guest flows (the ones that fed the ledger).
 * @param overruns           times the kernel dropped events (ENOBUFS).
 * @param resyncs            full dumps into the ledger, the one at start included.
 * @param errors             socket errors and failed flow deletions.
 * @param flowsDeleted       conntrack entries deleted by hygiene.
 * @param liveConnections    live guest connections in the ledger.
 * @param machinesAtWarning  machines whose busiest destination is at >= 80% of the cap.
 * @param machinesAtCritical machines at >= 95%.
 * @param machinesOverCap    machines over the cap.
 * @param violations         connections whose translated port lay outside the machine's block.
 * @param machines           per machine id.
 */
public record ConntrackSnapshot(int cap, long newEvents, long updateEvents, long destroyEvents, long existingEvents,
    long guestEvents, long overruns, long resyncs, long errors, long flowsDeleted, int liveConnections,
    int machinesAtWarning, int machinesAtCritical, int machinesOverCap, long violations,
    Map<String, ConnectionQueries.MachineSummary> machines)
{
    /**
     * The busiest destination's use of the cap for a machine.
     *
     * @param id the machine id.
     * @return 0..1 (more when over the cap), 0 when unknown.
     */
    public double busiestUse(final String id)
    {
        final ConnectionQueries.MachineSummary s = machines.get(id);
        return s == null ? 0 : ConnectionQueries.use(s.busiest(), cap);
    }
}
