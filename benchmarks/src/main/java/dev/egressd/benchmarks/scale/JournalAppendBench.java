package dev.egressd.benchmarks.scale;

import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateStore;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * One journal append (a change's record, written and forced to disk) with and without the journal's preallocation
 * ({@link StateStore#preallocated()}), in slices that take turns on the same disk, so a shared machine's I/O falls on
 * both alike (benchmarks/README.md, "One change's wall time, piece by piece"). Per variant: the append's p50 / p90 /
 * p99 and the block device's completed writes per append ({@code /sys/block/DEV/stat}, when DEV is given; other
 * processes' writes count too, alike for both).
 *
 * <pre>java -cp benchmarks.jar dev.egressd.benchmarks.scale.JournalAppendBench DIR [ROUNDS=20] [PER_ROUND=50] [DEV]</pre>
 */
public final class JournalAppendBench
{
    private JournalAppendBench()
    {
    }

    /**
     * Runs it.
     *
     * @param args the directory (on the disk to measure), rounds, appends per round, the block device's name.
     * @throws Exception if the disk fails.
     */
    public static void main(final String[] args) throws Exception
    {
        final Path root = Path.of(args[0]);
        final int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 20;
        final int perRound = args.length > 2 ? Integer.parseInt(args[2]) : 50;
        final String dev = args.length > 3 ? args[3] : null;
        final String[] names = {"plain", "preallocated"};
        final StateStore[] stores = new StateStore[2];
        final DesiredState[] states = new DesiredState[2];
        final List<List<Long>> nanos = List.of(new ArrayList<>(), new ArrayList<>());
        final long[] deviceWrites = new long[2];
        for (int v = 0; v < 2; v++)
        {
            final Path dir = Files.createDirectories(root.resolve(names[v]));
            stores[v] = new StateStore(dir);
            if (v == 1)
            {
                stores[v].preallocated();
            }
            stores[v].load();
            states[v] = host(100);
            stores[v].write(states[v]);
        }
        int next = 0;
        for (int r = 0; r < rounds; r++)
        {
            for (int v = 0; v < 2; v++)
            {
                final long before = writes(dev);
                for (int i = 0; i < perRound; i++)
                {
                    // a machine added, then removed: a record of about 100 bytes each, as the API's changes
                    states[v] = i % 2 == 0 ? with(states[v], "x" + next++) : without(states[v]);
                    final long t = System.nanoTime();
                    stores[v].write(states[v]);
                    nanos.get(v).add(System.nanoTime() - t);
                }
                deviceWrites[v] += writes(dev) - before;
            }
        }
        for (int v = 0; v < 2; v++)
        {
            final long[] sorted = nanos.get(v).stream().mapToLong(Long::longValue).sorted().toArray();
            System.out.printf("journal-append %s: %d appends in %d slices, p50 %.3f ms, p90 %.3f ms, p99 %.3f ms%s,"
                    + " snapshots %d, load %s%n", names[v], sorted.length, rounds, q(sorted, 0.5), q(sorted, 0.9),
                q(sorted, 0.99), dev == null ? "" : String.format(", %.2f device writes per append",
                    deviceWrites[v] / (double)sorted.length), stores[v].snapshots(),
                Files.readString(Path.of("/proc/loadavg")).trim());
        }
    }

    private static double q(final long[] sorted, final double p)
    {
        return sorted[Math.min(sorted.length - 1, (int)(p * sorted.length))] / 1e6;
    }

    private static long writes(final String dev) throws java.io.IOException
    {
        if (dev == null)
        {
            return 0;
        }
        final String[] f = Files.readString(Path.of("/sys/block", dev, "stat")).trim().split("\\s+");
        return Long.parseLong(f[4]);
    }

    private static DesiredState host(final int machines)
    {
        final List<DesiredState.MachineEntry> list = new ArrayList<>();
        for (int m = 0; m < machines; m++)
        {
            list.add(machine("m" + (1000 + m), m));
        }
        return new DesiredState(DesiredState.VERSION, new DesiredState.Host("ord", 64, 1024, 1024),
            List.of(new DesiredState.App("a1", false,
                List.of(new DesiredState.Pair("203.0.113.10", "2001:db8::10", false)), List.of(), null)),
            list, List.of(), List.of());
    }

    private static DesiredState.MachineEntry machine(final String id, final int block)
    {
        return new DesiredState.MachineEntry(id, "a1", "tap-" + id, "10.77." + (block / 250) + "." + (block % 250 + 1),
            null, null, new DesiredState.Slot("203.0.113.10", block % 64), null, null);
    }

    private static DesiredState with(final DesiredState state, final String id)
    {
        final List<DesiredState.MachineEntry> machines = new ArrayList<>(state.machines());
        machines.add(machine(id, 63));
        machines.sort(java.util.Comparator.comparing(DesiredState.MachineEntry::id));
        return new DesiredState(state.version(), state.host(), state.apps(), machines, state.recovered(),
            state.draining());
    }

    private static DesiredState without(final DesiredState state)
    {
        final List<DesiredState.MachineEntry> machines = new ArrayList<>(state.machines());
        machines.removeIf(m -> m.id().startsWith("x"));
        return new DesiredState(state.version(), state.host(), state.apps(), machines, state.recovered(),
            state.draining());
    }
}
