package dev.egressd.agent.conntrack;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;

/**
 * What the metrics binder reads from the live conntrack feed and its destination ledger. {@link PublishedStats}
 * implements it from the figures the monitor thread publishes ({@link ConntrackMonitor#published()}); until one is
 * wired, {@link #NONE} makes every meter report 0.
 *
 * <p>Threading: the ledger has a single writer, but these methods are called from the scrape thread. Each must be
 * O(1), allocate nothing and be safe to call concurrently with the writer: a slightly stale value is fine, an
 * exception or a torn value is not. Plain {@code int} fields and {@code long} fields on a 64-bit JVM, read once,
 * qualify ({@link dev.egressd.core.ledger.DestinationLedger}'s counters are such fields).
 */
public interface ConntrackStats
{
    /** No conntrack feed: every figure is 0. */
    ConntrackStats NONE = new ConntrackStats()
    {
    };

    /**
     * The most concurrent connections one machine may hold to one destination IP.
     *
     * @return the cap, or 0 when unknown (the per-machine ratio then reads 0).
     */
    default int destinationCap()
    {
        return 0;
    }

    /**
     * Live connections of a machine to its busiest destination IP.
     *
     * @param machine the machine id.
     * @return the count, 0 if the machine is unknown or has no connection.
     */
    default int busiestCount(final String machine)
    {
        return 0;
    }

    /**
     * Machines whose busiest destination holds at least 80% of the cap
     * ({@link dev.egressd.core.ledger.ConnectionLedger#machinesAtWarning()}).
     *
     * @return the number of machines.
     */
    default int machinesAtWarning()
    {
        return 0;
    }

    /**
     * Machines whose busiest destination holds at least 95% of the cap
     * ({@link dev.egressd.core.ledger.ConnectionLedger#machinesAtCritical()}).
     *
     * @return the number of machines.
     */
    default int machinesAtCritical()
    {
        return 0;
    }

    /**
     * Live connections from guests, all machines ({@link dev.egressd.core.ledger.ConnectionLedger#liveConnections()}).
     *
     * @return the gauge value.
     */
    default int liveConnections()
    {
        return 0;
    }

    /**
     * Connections whose translated source port lay outside the machine's block
     * ({@link dev.egressd.core.ledger.ConnectionLedger#violations()}).
     *
     * @return the cumulative count; never goes backwards.
     */
    default long violations()
    {
        return 0;
    }

    /**
     * Conntrack messages received from the kernel, by type; {@link ConntrackEvent.Type#EXISTING} counts the
     * entries of dumps (the one at start and every resync).
     *
     * @param type the message type.
     * @return the cumulative count; never goes backwards.
     */
    default long events(final ConntrackEvent.Type type)
    {
        return 0;
    }

    /**
     * Resynchronisations of the ledger from a full conntrack dump after events were lost (ENOBUFS); the dump at
     * start is not counted.
     *
     * @return the cumulative count; never goes backwards.
     */
    default long resyncs()
    {
        return 0;
    }

    /**
     * The kernel's conntrack table as last read ({@link ConntrackTable}), at most about a second old.
     *
     * @return the fill, or null when unknown (not read yet, or conntrack not loaded).
     */
    default ConntrackTable.Fill table()
    {
        return null;
    }
}
