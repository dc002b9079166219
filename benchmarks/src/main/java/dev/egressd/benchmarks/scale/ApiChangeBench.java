package dev.egressd.benchmarks.scale;

import ch.qos.logback.classic.Level;
import dev.egressd.agent.kernel.KernelException;
import dev.egressd.agent.kernel.MemoryKernel;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.reconcile.MutationResult;
import dev.egressd.agent.reconcile.Operation;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.KernelPlan;
import org.slf4j.LoggerFactory;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What one change through the control loop costs with the state on a real disk: the real {@link ControlLoop} and
 * {@link StateStore} over a {@link MemoryKernel} (so the figures are the loop's and the disk's, not nft's), the loop
 * on its own thread as in the daemon. For each machine count: registering the machines from one client; sequential
 * changes (delete + put of one machine, each waited for) with p50/p99; 8 concurrent clients doing the same for a
 * few seconds (changes/s); and bytes written per change ({@code wchar} of {@code /proc/self/io}: everything the
 * process passed to write(), the state directory's files being nearly all of it).
 *
 * <p>Uses only the API the loop and the store had before the journal, so {@code scripts/bench-api} runs the same
 * class against the build before it and after it, in one run; what came later (the snapshot on its own thread,
 * the reconcile's reads on a reader thread) is switched on through reflection where the build has it, as the
 * daemon does.
 *
 * <p>The reconcile runs on the loop thread once a second, as in the daemon. With {@code -Dbench.slowReadMs=N} the
 * kernel's read sleeps N ms (a stand-in for the deep read of a large nft table, 0.55 s at 4,000 machines): where
 * the read runs on the loop thread, the changes queued behind it wait for it. {@code -Dbench.sequential=N} sets how
 * many sequential changes are timed (default 400).
 */
public final class ApiChangeBench
{
    private static final int SEQUENTIAL = Integer.getInteger("bench.sequential", 400);
    private static final long SLOW_READ_MS = Long.getLong("bench.slowReadMs", 0L);
    private static final int CLIENTS = 8;
    private static final long CONCURRENT_NANOS = 4_000_000_000L;
    private static final int PER_PAIR = 63;

    private ApiChangeBench()
    {
    }

    /**
     * Runs the measurement.
     *
     * @param args a label (printed), a state directory (wiped), then machine counts.
     * @throws Exception if the loop fails.
     */
    public static void main(final String[] args) throws Exception
    {
        if (args.length < 3)
        {
            System.err.println("usage: ApiChangeBench LABEL STATE_DIR MACHINES...");
            System.exit(2);
        }
        ((ch.qos.logback.classic.Logger)LoggerFactory.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME))
            .setLevel(Level.WARN);
        for (int a = 2; a < args.length; a++)
        {
            System.out.println(args[0] + " " + measure(Path.of(args[1]), Integer.parseInt(args[a])));
        }
        System.exit(0);
    }

    private static String measure(final Path dir, final int machines) throws Exception
    {
        wipe(dir);
        final HostSettings settings = new HostSettings("ord", new BlockLayout(64, 1024), 1024);
        final StateStore store = new StateStore(dir);
        final boolean background = call(store, "snapshotsInBackground", null, null);
        store.lock();
        store.load();
        // the loop thread's own CPU per change: on a shared machine steadier than the wall times
        final Thread[] loopThread = new Thread[1];
        final java.util.concurrent.ScheduledExecutorService thread = Executors.newSingleThreadScheduledExecutor(
            r -> loopThread[0] = new Thread(r, "control-loop"));
        final MemoryKernel kernel = SLOW_READ_MS == 0 ? new MemoryKernel() : new MemoryKernel()
        {
            @Override
            public KernelPlan read() throws KernelException
            {
                try
                {
                    Thread.sleep(SLOW_READ_MS);
                }
                catch (final InterruptedException e)
                {
                    Thread.currentThread().interrupt();
                }
                return super.read();
            }
        };
        final ControlLoop loop = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)),
            kernel, store, thread, System::nanoTime, 0);
        final ExecutorService reader = Executors.newSingleThreadExecutor(r -> new Thread(r, "reader"));
        final boolean offWriter = call(loop, "readsOn", ExecutorService.class, reader);
        thread.submit(() ->
        {
            loop.initialSync();
            return null;
        }).get();
        final int pairs = machines / PER_PAIR + 2;
        ok(loop.mutate(Operation.PUT_APP, "app", l -> l.allocator().upsertApp("a1", false)));
        for (int p = 0; p < pairs; p++)
        {
            final EgressPair pair = new EgressPair(Ipv4Address.parse("203.0.113." + (p + 1)),
                Ipv6Address.parse("2001:db8::" + Integer.toHexString(p + 1)), "ord");
            ok(loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair)));
        }
        final long r0 = System.nanoTime();
        long cpu0 = cpu(loopThread[0]);
        for (int i = 0; i < machines; i++)
        {
            final Machine m = machine(i);
            ok(loop.mutate(Operation.PUT_MACHINE, "put", l -> l.putMachine(m)));
        }
        final double registerSeconds = (System.nanoTime() - r0) / 1e9;
        final double registerCpu = (cpu(loopThread[0]) - cpu0) / 1e6 / machines;
        thread.scheduleWithFixedDelay(loop::reconcile, 0, 1, java.util.concurrent.TimeUnit.SECONDS);
        final long reconciles0 = loop.reconcileRuns();

        // sequential: one client, each change waited for
        final long[] lat = new long[SEQUENTIAL];
        final long w0 = writtenBytes();
        cpu0 = cpu(loopThread[0]);
        for (int i = 0; i < SEQUENTIAL; i++)
        {
            final int id = i % machines;
            final long t = System.nanoTime();
            if (i % 2 == 0)
            {
                ok(loop.mutate(Operation.DELETE_MACHINE, "delete", l -> l.allocator().removeMachine("m" + id)));
            }
            else
            {
                final Machine m = machine((i - 1) % machines); // put back the one just deleted
                ok(loop.mutate(Operation.PUT_MACHINE, "put", l -> l.putMachine(m)));
            }
            lat[i] = System.nanoTime() - t;
        }
        final double bytesPerChange = (writtenBytes() - w0) / (double)SEQUENTIAL;
        final double sequentialCpu = (cpu(loopThread[0]) - cpu0) / 1e6 / SEQUENTIAL;
        Arrays.sort(lat);

        // concurrent: 8 clients, each on its own machines, delete + put, each waiting for its answer
        final AtomicLong done = new AtomicLong();
        final List<Thread> clients = new ArrayList<>();
        cpu0 = cpu(loopThread[0]);
        final long c0 = System.nanoTime();
        for (int c = 0; c < CLIENTS; c++)
        {
            final int client = c;
            final Thread t = new Thread(() ->
            {
                int k = 0;
                try
                {
                    while (System.nanoTime() - c0 < CONCURRENT_NANOS)
                    {
                        final int id = client + CLIENTS * (k / 2 % Math.max(1, machines / CLIENTS));
                        if (k % 2 == 0)
                        {
                            ok(loop.mutate(Operation.DELETE_MACHINE, "delete",
                                l -> l.allocator().removeMachine("m" + id)));
                        }
                        else
                        {
                            final Machine m = machine(id);
                            ok(loop.mutate(Operation.PUT_MACHINE, "put", l -> l.putMachine(m)));
                        }
                        done.incrementAndGet();
                        k++;
                    }
                }
                catch (final Exception e)
                {
                    throw new IllegalStateException(e);
                }
            });
            clients.add(t);
            t.start();
        }
        for (final Thread t : clients)
        {
            t.join();
        }
        final double perSecond = done.get() / ((System.nanoTime() - c0) / 1e9);
        final double concurrentCpu = (cpu(loopThread[0]) - cpu0) / 1e6 / Math.max(1, done.get());
        final String pieces = loop.query(ApiChangeBench::pieces).get();
        final long reconciles = loop.reconcileRuns() - reconciles0;
        thread.shutdownNow();
        reader.shutdownNow();
        store.unlock();
        return String.format("machines=%d register=%.1fs (%.0f/s) sequential(%d) p50=%.2fms p99=%.2fms max=%.1fms "
            + "bytes/change=%.0f concurrent(%d clients)=%.0f changes/s state.json=%d B; snapshot %s, reads %s, "
            + "read sleeps %d ms, %d reconciles; the loop thread's CPU per change (reconciles included): register "
            + "%.3f ms, sequential %.3f ms, concurrent %.3f ms; per change on the loop thread, median of 21: %s",
            machines,
            registerSeconds, machines / registerSeconds, SEQUENTIAL, lat[lat.length / 2] / 1e6,
            lat[lat.length * 99 / 100] / 1e6, lat[lat.length - 1] / 1e6, bytesPerChange, CLIENTS, perSecond,
            Files.size(dir.resolve("state.json")), background ? "in the background" : "on the loop thread",
            offWriter ? "off the loop thread" : "on the loop thread", SLOW_READ_MS, reconciles, registerCpu,
            sequentialCpu, concurrentCpu, pieces);
    }

    /** A thread's CPU time so far, in ns. */
    private static long cpu(final Thread t)
    {
        return java.lang.management.ManagementFactory.getThreadMXBean().getThreadCpuTime(t.getId());
    }

    /**
     * The work every change does whatever the disk, timed alone on the loop thread: the state export and its
     * comparison with the last one, the desired plan (the reconciler diffs it with the kernel's), the published
     * allocator snapshot.
     */
    private static String pieces(final ControlLoop l)
    {
        final long[] export = new long[21];
        final long[] equals = new long[21];
        final long[] plan = new long[21];
        final long[] snapshot = new long[21];
        for (int i = 0; i < 21; i++)
        {
            long t = System.nanoTime();
            final DesiredState a = StateMapper.export(l.allocator(), l.recovered());
            export[i] = System.nanoTime() - t;
            final DesiredState b = StateMapper.export(l.allocator(), l.recovered());
            t = System.nanoTime();
            if (!a.equals(b))
            {
                throw new IllegalStateException("two exports differ");
            }
            equals[i] = System.nanoTime() - t;
            t = System.nanoTime();
            l.desiredPlan();
            plan[i] = System.nanoTime() - t;
            t = System.nanoTime();
            l.allocator().snapshot();
            snapshot[i] = System.nanoTime() - t;
        }
        return String.format("export %.2f ms, equals %.2f ms, desired plan %.2f ms, allocator snapshot %.2f ms",
            median(export), median(equals), median(plan), median(snapshot));
    }

    /** Calls a method that later builds have, if this one has it; true if it did. */
    private static boolean call(final Object target, final String method, final Class<?> type, final Object arg)
        throws Exception
    {
        final java.lang.reflect.Method m;
        try
        {
            m = type == null ? target.getClass().getMethod(method) : target.getClass().getMethod(method, type);
        }
        catch (final NoSuchMethodException e)
        {
            return false;
        }
        if (type == null)
        {
            m.invoke(target);
        }
        else
        {
            m.invoke(target, arg);
        }
        return true;
    }

    private static double median(final long[] nanos)
    {
        Arrays.sort(nanos);
        return nanos[nanos.length / 2] / 1e6;
    }

    private static Machine machine(final int i)
    {
        return new Machine("m" + i, "a1", "tap-" + i, Ipv4Address.parse("10." + (64 + i / 65536) + "."
            + (i / 256 % 256) + "." + (i % 256)), Ipv6Address.parse("fd00::" + Integer.toHexString(i + 1)), null);
    }

    private static void ok(final CompletableFuture<MutationResult> answer) throws Exception
    {
        final MutationResult result = answer.get();
        if (!(result instanceof MutationResult.Ok))
        {
            throw new IllegalStateException("change not done: " + result);
        }
    }

    private static long writtenBytes() throws Exception
    {
        for (final String line : Files.readAllLines(Path.of("/proc/self/io")))
        {
            if (line.startsWith("wchar:"))
            {
                return Long.parseLong(line.substring(6).trim());
            }
        }
        throw new IllegalStateException("no wchar in /proc/self/io");
    }

    private static void wipe(final Path dir) throws Exception
    {
        if (Files.exists(dir))
        {
            try (var files = Files.list(dir))
            {
                for (final Path f : (Iterable<Path>)files::iterator)
                {
                    Files.delete(f);
                }
            }
        }
        Files.createDirectories(dir);
    }
}
