package dev.egressd.agent.conntrack;

import java.util.concurrent.CompletableFuture;

/**
 * The {@link ConnectionQueries} a monitor answers: a detailed read runs on the monitor thread, which owns the ledger
 * (queued between two polls, failed rather than lost once the monitor stops); a summary reads the figures the thread
 * last published, without waiting.
 */
final class MonitorQueries implements ConnectionQueries
{
    private final ConntrackMonitor monitor;
    private final LedgerFeed feed;
    private final PublishedStats published;

    MonitorQueries(final ConntrackMonitor monitor, final LedgerFeed feed, final PublishedStats published)
    {
        this.monitor = monitor;
        this.feed = feed;
        this.published = published;
    }

    @Override
    public CompletableFuture<Connections> connections(final String machineId, final int top)
    {
        return monitor.query(ledger -> feed.connections(machineId, top));
    }

    @Override
    public MachineSummary summary(final String machineId)
    {
        return published.summary(machineId);
    }

    @Override
    public int destinationCap()
    {
        return published.destinationCap();
    }

    @Override
    public ConntrackTable.Fill table()
    {
        return published.table();
    }
}
