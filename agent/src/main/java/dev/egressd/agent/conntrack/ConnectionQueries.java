package dev.egressd.agent.conntrack;

import dev.egressd.core.ledger.DestinationUsage;

import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * What the API asks of the live connections: one machine's connections in detail, and the summary the machine
 * view shows. The composition root hands the API this interface, so the API never holds the monitor (nor reaches it
 * through the control loop).
 */
public interface ConnectionQueries
{
    /**
     * One machine's connections as {@code GET /v1/machines/{id}/connections} shows them.
     *
     * @param machine      the machine id.
     * @param cap          the destination cap.
     * @param total        live connections of the machine.
     * @param busiest      the busiest destination, or null when none.
     * @param destinations the busiest destinations, count descending.
     * @param violations   connections of this machine whose translated port lay outside its block.
     */
    record Connections(String machine, int cap, int total, DestinationUsage busiest,
        List<DestinationUsage> destinations, long violations)
    {
    }

    /**
     * One machine's summary for the machine view and metrics.
     *
     * @param total   live connections.
     * @param busiest the busiest destination's connections.
     */
    record MachineSummary(int total, int busiest)
    {
    }

    /**
     * One machine's connections, read from the ledger on the thread that owns it.
     *
     * @param machineId the machine.
     * @param top       the most destinations to list.
     * @return the answer, null for a machine conntrack does not know; failed once the monitor has stopped.
     */
    CompletableFuture<Connections> connections(String machineId, int top);

    /**
     * One machine's summary from the figures published at most about a second ago; never waits.
     *
     * @param machineId the machine.
     * @return the summary, or null for a machine not in them.
     */
    MachineSummary summary(String machineId);

    /**
     * The destination cap the figures are measured against.
     *
     * @return the cap.
     */
    int destinationCap();

    /**
     * The kernel's conntrack table as last read, at most about a second old.
     *
     * @return the fill, or null when unknown (not read, or conntrack not loaded).
     */
    default ConntrackTable.Fill table()
    {
        return null;
    }

    /**
     * The use of the cap: connections / cap, rounded to three decimals.
     *
     * @param connections the connections.
     * @param cap         the cap.
     * @return the ratio.
     */
    static double use(final int connections, final int cap)
    {
        return Math.round(connections * 1000.0 / cap) / 1000.0;
    }
}
