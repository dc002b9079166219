package dev.egressd.agent.conntrack;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;

/**
 * The monitor's figures as other threads read them: the last {@link ConntrackSnapshot} its thread published, and
 * the {@link ConntrackStats} the metrics binder reads, answered from that snapshot, never from the ledger the monitor
 * thread writes. Each read takes the snapshot once, so one answer never mixes two snapshots.
 */
final class PublishedStats implements ConntrackStats
{
    private volatile ConntrackSnapshot snapshot;
    private volatile ConntrackTable.Fill table;

    /**
     * Figures starting from a first snapshot.
     *
     * @param first the figures before the monitor has run.
     */
    PublishedStats(final ConntrackSnapshot first)
    {
        this.snapshot = first;
    }

    /**
     * Publishes new figures; monitor thread.
     *
     * @param next the figures.
     */
    void publish(final ConntrackSnapshot next)
    {
        snapshot = next;
    }

    /**
     * Publishes a new reading of the kernel's table; monitor thread.
     *
     * @param fill the fill, or null when unknown.
     */
    void publishTable(final ConntrackTable.Fill fill)
    {
        table = fill;
    }

    @Override
    public ConntrackTable.Fill table()
    {
        return table;
    }

    /**
     * The last published figures.
     *
     * @return the snapshot, at most about a second old.
     */
    ConntrackSnapshot snapshot()
    {
        return snapshot;
    }

    /**
     * One machine's summary.
     *
     * @param machine the machine id.
     * @return the summary, or null when the machine is not in the snapshot.
     */
    ConnectionQueries.MachineSummary summary(final String machine)
    {
        return snapshot.machines().get(machine);
    }

    @Override
    public int destinationCap()
    {
        return snapshot.cap();
    }

    @Override
    public int busiestCount(final String machine)
    {
        final ConnectionQueries.MachineSummary summary = summary(machine);
        return summary == null ? 0 : summary.busiest();
    }

    @Override
    public int machinesAtWarning()
    {
        return snapshot.machinesAtWarning();
    }

    @Override
    public int machinesAtCritical()
    {
        return snapshot.machinesAtCritical();
    }

    @Override
    public int liveConnections()
    {
        return snapshot.liveConnections();
    }

    @Override
    public long violations()
    {
        return snapshot.violations();
    }

    @Override
    public long events(final ConntrackEvent.Type type)
    {
        final ConntrackSnapshot s = snapshot;
        return switch (type)
        {
            case NEW -> s.newEvents();
            case UPDATE -> s.updateEvents();
            case DESTROY -> s.destroyEvents();
            case EXISTING -> s.existingEvents();
        };
    }

    @Override
    public long resyncs()
    {
        // The snapshot counts the dump at start too; the metric counts only the dumps that repaired lost events.
        return Math.max(0, snapshot.resyncs() - 1);
    }
}
