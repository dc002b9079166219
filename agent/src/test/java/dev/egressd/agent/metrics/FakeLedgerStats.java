package dev.egressd.agent.metrics;

import dev.egressd.agent.conntrack.ConntrackStats;
import dev.egressd.agent.conntrack.ConntrackTable;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;

import java.util.EnumMap;
import java.util.HashMap;
import java.util.Map;

/** Ledger figures set by hand. */
final class FakeLedgerStats implements ConntrackStats
{
    int cap = 10;
    final Map<String, Integer> busiest = new HashMap<>();
    int warning;
    int critical;
    int live;
    long violations;
    final Map<ConntrackEvent.Type, Long> events = new EnumMap<>(ConntrackEvent.Type.class);
    long resyncs;
    ConntrackTable.Fill table;

    @Override
    public ConntrackTable.Fill table()
    {
        return table;
    }

    @Override
    public int destinationCap()
    {
        return cap;
    }

    @Override
    public int busiestCount(final String machine)
    {
        return busiest.getOrDefault(machine, 0);
    }

    @Override
    public int machinesAtWarning()
    {
        return warning;
    }

    @Override
    public int machinesAtCritical()
    {
        return critical;
    }

    @Override
    public int liveConnections()
    {
        return live;
    }

    @Override
    public long violations()
    {
        return violations;
    }

    @Override
    public long events(final ConntrackEvent.Type type)
    {
        return events.getOrDefault(type, 0L);
    }

    @Override
    public long resyncs()
    {
        return resyncs;
    }
}
