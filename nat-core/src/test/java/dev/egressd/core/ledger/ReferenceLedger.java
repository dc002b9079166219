package dev.egressd.core.ledger;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * The obviously-correct ledger: a map of live connections plus a {@code TreeSet} of connection ids per
 * (machine, destination), with every derived figure (busiest, saturation) recomputed by a scan when asked.
 * It is the model the property test checks {@link DestinationLedger} against, and the benchmark's baseline.
 */
public final class ReferenceLedger implements ConnectionLedger
{
    private record Destination(long high, long low)
    {
    }

    private record Range(int firstPort, int lastPort)
    {
    }

    private record Connection(int machine, Destination destination, int port)
    {
    }

    private final int destinationCap;
    private final Map<Integer, Range> machines = new HashMap<>();
    private final Map<Long, Connection> connections = new HashMap<>();
    private final Map<Long, Integer> marks = new HashMap<>();
    private final Map<Integer, Map<Destination, TreeSet<Long>>> byMachine = new HashMap<>();
    private final Deque<Violation> recent = new ArrayDeque<>();
    private int generation;
    private boolean resyncing;

    private long opens;
    private long closes;
    private long duplicateOpens;
    private long replacedOpens;
    private long unknownCloses;
    private long violations;
    private long overCapOpens;
    private long unknownMachineOpens;
    private long sweptConnections;

    /**
     * A reference ledger.
     *
     * @param destinationCap the cap.
     */
    public ReferenceLedger(final int destinationCap)
    {
        this.destinationCap = destinationCap;
    }

    @Override
    public int destinationCap()
    {
        return destinationCap;
    }

    @Override
    public boolean registerMachine(final int machine, final int firstPort, final int lastPort)
    {
        if (machine < 0 || machine > DestinationLedger.MAX_MACHINE)
        {
            throw new IllegalArgumentException("machine " + machine);
        }
        if (firstPort < 1 || lastPort > 65535 || firstPort > lastPort)
        {
            throw new IllegalArgumentException("range " + firstPort + ".." + lastPort);
        }
        return machines.put(machine, new Range(firstPort, lastPort)) == null;
    }

    @Override
    public int unregisterMachine(final int machine)
    {
        if (machines.remove(machine) == null)
        {
            return 0;
        }
        final List<Long> ids = new ArrayList<>();
        connections.forEach((id, c) ->
        {
            if (c.machine() == machine)
            {
                ids.add(id);
            }
        });
        ids.forEach(this::remove);
        return ids.size();
    }

    @Override
    public boolean isRegistered(final int machine)
    {
        return machines.containsKey(machine);
    }

    @Override
    public int open(final long connId, final int machine, final int destination, final int translatedPort)
    {
        return open(connId, machine, LedgerKeys.IPV4_HIGH, LedgerKeys.ipv4Low(destination), translatedPort);
    }

    @Override
    public int open(
        final long connId, final int machine, final long destinationHigh, final long destinationLow,
        final int translatedPort)
    {
        final Range range = machines.get(machine);
        if (range == null)
        {
            unknownMachineOpens++;
            return UNKNOWN_MACHINE;
        }
        final Connection connection = new Connection(
            machine, new Destination(destinationHigh, destinationLow), translatedPort);
        int status = OPENED;
        final Connection existing = connections.get(connId);
        if (connection.equals(existing))
        {
            marks.put(connId, generation);
            duplicateOpens++;
            return DUPLICATE;
        }
        if (existing != null)
        {
            remove(connId);
            replacedOpens++;
            status |= REPLACED;
        }
        connections.put(connId, connection);
        marks.put(connId, generation);
        final TreeSet<Long> ids = byMachine.computeIfAbsent(machine, m -> new HashMap<>())
            .computeIfAbsent(connection.destination(), d -> new TreeSet<>());
        ids.add(connId);
        opens++;
        if (translatedPort < range.firstPort() || translatedPort > range.lastPort())
        {
            status |= VIOLATION;
            violations++;
            recent.addLast(new Violation(
                connId, machine, destinationHigh, destinationLow, translatedPort, range.firstPort(), range.lastPort()));
            if (recent.size() > RECENT_VIOLATIONS)
            {
                recent.removeFirst();
            }
        }
        if (ids.size() > destinationCap)
        {
            status |= OVER_CAP;
            overCapOpens++;
        }
        status |= reached(machine, ids.size(), warningThreshold(), REACHED_WARNING);
        status |= reached(machine, ids.size(), criticalThreshold(), REACHED_CRITICAL);
        status |= reached(machine, ids.size(), destinationCap + 1, REACHED_OVER_CAP);
        return status;
    }

    /** The bit if the destination just reached the threshold and no other destination of the machine is there. */
    private int reached(final int machine, final int count, final int threshold, final int bit)
    {
        if (count != threshold)
        {
            return 0; // the usual case, and no scan: a fair baseline does no needless work
        }
        final long atOrAbove = byMachine.get(machine).values().stream().filter(ids -> ids.size() >= threshold).count();
        return atOrAbove == 1 ? bit : 0;
    }

    @Override
    public int close(final long connId)
    {
        if (!connections.containsKey(connId))
        {
            unknownCloses++;
            return NOT_FOUND;
        }
        remove(connId);
        closes++;
        return CLOSED;
    }

    private void remove(final long connId)
    {
        final Connection connection = connections.remove(connId);
        marks.remove(connId);
        final Map<Destination, TreeSet<Long>> destinations = byMachine.get(connection.machine());
        final TreeSet<Long> ids = destinations.get(connection.destination());
        ids.remove(connId);
        if (ids.isEmpty())
        {
            destinations.remove(connection.destination());
        }
    }

    @Override
    public void clear()
    {
        connections.clear();
        marks.clear();
        byMachine.clear();
    }

    @Override
    public void beginResync()
    {
        generation++;
        resyncing = true;
    }

    @Override
    public int endResync()
    {
        if (!resyncing)
        {
            return 0;
        }
        resyncing = false;
        final List<Long> stale = new ArrayList<>();
        marks.forEach((id, mark) ->
        {
            if (mark != generation)
            {
                stale.add(id);
            }
        });
        stale.forEach(this::remove);
        sweptConnections += stale.size();
        return stale.size();
    }

    @Override
    public int count(final int machine, final int destination)
    {
        return count(machine, LedgerKeys.IPV4_HIGH, LedgerKeys.ipv4Low(destination));
    }

    @Override
    public int count(final int machine, final long destinationHigh, final long destinationLow)
    {
        final TreeSet<Long> ids = byMachine.getOrDefault(machine, Map.of())
            .get(new Destination(destinationHigh, destinationLow));
        return ids == null ? 0 : ids.size();
    }

    @Override
    public int busiestCount(final int machine)
    {
        return byMachine.getOrDefault(machine, Map.of()).values().stream().mapToInt(TreeSet::size).max().orElse(0);
    }

    @Override
    public void busiestCounts(final int[] byMachine)
    {
        for (int machine = 0; machine < byMachine.length; machine++)
        {
            byMachine[machine] = busiestCount(machine);
        }
    }

    private int machinesAtOrAbove(final int threshold)
    {
        return (int)machines.keySet().stream().filter(m -> busiestCount(m) >= threshold).count();
    }

    @Override
    public int machinesAtWarning()
    {
        return machinesAtOrAbove(warningThreshold());
    }

    @Override
    public int machinesAtCritical()
    {
        return machinesAtOrAbove(criticalThreshold());
    }

    @Override
    public int machinesOverCap()
    {
        return machinesAtOrAbove(destinationCap + 1);
    }

    @Override
    public List<DestinationUsage> topDestinations(final int machine, final int limit)
    {
        final List<DestinationUsage> all = new ArrayList<>();
        byMachine.getOrDefault(machine, Map.of()).forEach((destination, ids) -> all.add(new DestinationUsage(
            destination.high(), destination.low(), ids.size(),
            (int)ids.stream().mapToInt(id -> connections.get(id).port()).distinct().count())));
        all.sort(Comparator.comparingInt(DestinationUsage::count).reversed()
            .thenComparing(DestinationUsage::high, Long::compareUnsigned)
            .thenComparing(DestinationUsage::low, Long::compareUnsigned));
        return new ArrayList<>(all.subList(0, Math.max(0, Math.min(limit, all.size()))));
    }

    @Override
    public List<Violation> recentViolations()
    {
        return new ArrayList<>(recent);
    }

    @Override
    public int liveConnections()
    {
        return connections.size();
    }

    @Override
    public int liveDestinations()
    {
        return byMachine.values().stream().mapToInt(Map::size).sum();
    }

    @Override
    public int machineConnections(final int machine)
    {
        return byMachine.getOrDefault(machine, Map.of()).values().stream().mapToInt(TreeSet::size).sum();
    }

    @Override
    public long opens()
    {
        return opens;
    }

    @Override
    public long closes()
    {
        return closes;
    }

    @Override
    public long duplicateOpens()
    {
        return duplicateOpens;
    }

    @Override
    public long replacedOpens()
    {
        return replacedOpens;
    }

    @Override
    public long unknownCloses()
    {
        return unknownCloses;
    }

    @Override
    public long violations()
    {
        return violations;
    }

    @Override
    public long overCapOpens()
    {
        return overCapOpens;
    }

    @Override
    public long unknownMachineOpens()
    {
        return unknownMachineOpens;
    }

    @Override
    public long sweptConnections()
    {
        return sweptConnections;
    }
}
