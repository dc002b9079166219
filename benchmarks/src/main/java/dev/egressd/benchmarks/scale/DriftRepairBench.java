package dev.egressd.benchmarks.scale;

import ch.qos.logback.classic.Level;
import dev.egressd.agent.kernel.NftKernel;
import dev.egressd.agent.reconcile.MutationResult;
import dev.egressd.agent.reconcile.Operation;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.kernel.nft.NftDataplane;
import dev.egressd.agent.kernel.nft.Ruleset;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import org.slf4j.LoggerFactory;

/**
 * How long drift takes to be repaired on a host of N machines: the real {@link ControlLoop} over the real kernel
 * ({@link NftKernel}, deep checks paced as the daemon paces them), reconciling once a second after the previous
 * reconcile ended, as the daemon schedules it. Each round waits a random 0-1 s, then changes the kernel by hand
 * ({@code nft}, as an operator would) and times until the loop has repaired it (its health counts the repair):
 * an element deleted ({@code snat4}), seen by every read; and the IPv6 SNAT chain {@code nat6} flushed, seen by the
 * deep checks of the fixed chains only; and the whole table deleted, seen by every check. Run by {@code scripts/bench-drift}, inside a namespace it creates; prints one line per N
 * ({@code -Dtrace=true} also prints each reconcile that read the kernel with its duration, and each deep read and
 * deep check with its cost: {@link NftDataplane} logs them at DEBUG).
 */
public final class DriftRepairBench
{
    private static final int ROUNDS = 8;
    private static final boolean TRACE = Boolean.getBoolean("trace");

    private DriftRepairBench()
    {
    }

    /**
     * Runs the measurement.
     *
     * @param args the namespace name, the uplink name inside it, then one or more machine counts.
     * @throws Exception if the kernel refuses.
     */
    public static void main(final String[] args) throws Exception
    {
        if (args.length < 3)
        {
            System.err.println("usage: DriftRepairBench NAMESPACE UPLINK MACHINES...");
            System.exit(2);
        }
        if (TRACE)
        {
            ((ch.qos.logback.classic.Logger)LoggerFactory.getLogger(NftDataplane.class)).setLevel(Level.DEBUG);
        }
        try (NetNamespace ns = NetNamespace.enter(args[0]))
        {
            for (int a = 2; a < args.length; a++)
            {
                System.out.println(measure(ns, args[1], Integer.parseInt(args[a])));
            }
        }
    }

    private static String measure(final NetNamespace ns, final String uplink, final int n) throws Exception
    {
        final Path dir = Files.createTempDirectory("drift-bench");
        final HostSettings settings = HostSettings.of("ord");
        final NftKernel kernel = new NftKernel(DataplaneConfig.defaults(uplink));
        final StateStore store = new StateStore(dir);
        // The loop's thread is the namespace's: the nft context and rtnetlink socket are opened on it.
        final ControlLoop loop = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)), kernel,
            store, task -> call(ns, () ->
            {
                task.run();
                return null;
            }), System::nanoTime, 0);
        call(ns, () ->
        {
            loop.initialSync();
            return null;
        });
        final long t0 = System.nanoTime();
        final MutationResult put = loop.mutate(Operation.OTHER, "populate", l ->
        {
            for (int p = 0; p < (n + 62) / 63; p++)
            {
                l.allocator().addPair("app", new EgressPair(new Ipv4Address(0xCB007100 + p),
                    new Ipv6Address(0x20010db800100000L, p + 1), l.settings().region()));
            }
            Outcome last = null;
            for (int i = 0; i < n; i++)
            {
                last = l.putMachine(machine(i));
            }
            return last;
        }).get();
        if (!(put instanceof MutationResult.Ok))
        {
            throw new IllegalStateException("populating " + n + " machines failed: " + put);
        }
        final long populateMs = (System.nanoTime() - t0) / 1_000_000;

        final AtomicBoolean running = new AtomicBoolean(true);
        final Thread reconciler = new Thread(() ->
        {
            while (running.get())
            {
                try
                {
                    final long runs = loop.reconcileRuns();
                    final long start = System.nanoTime();
                    call(ns, () ->
                    {
                        loop.reconcile();
                        return null;
                    });
                    if (TRACE && loop.reconcileRuns() != runs)
                    {
                        System.err.printf("reconcile at %d ms: %d ms%n", start / 1_000_000 % 1_000_000,
                            (System.nanoTime() - start) / 1_000_000);
                    }
                    Thread.sleep(1000);
                }
                catch (final InterruptedException e)
                {
                    return;
                }
            }
        }, "reconciler");
        reconciler.start();
        final Random random = new Random(7);
        final List<Long> elementMs = new ArrayList<>();
        final List<Long> chainMs = new ArrayList<>();
        final List<Long> tableMs = new ArrayList<>();
        try
        {
            // Two phases, so the element deletions do not follow the chain repairs (which come with deep reads).
            for (int round = 0; round < ROUNDS; round++)
            {
                Thread.sleep(random.nextInt(1000));
                elementMs.add(repairMs(loop, ns, "delete element inet egressd snat4 { " + machine(random.nextInt(n))
                    .ipv4() + " }"));
            }
            for (int round = 0; round < ROUNDS; round++)
            {
                Thread.sleep(random.nextInt(1000));
                chainMs.add(repairMs(loop, ns, "flush chain inet egressd " + Ruleset.NAT6_CHAIN));
            }
            for (int round = 0; round < ROUNDS / 2; round++)
            {
                Thread.sleep(random.nextInt(1000));
                tableMs.add(repairMs(loop, ns, "delete table inet egressd"));
            }
        }
        finally
        {
            running.set(false);
            reconciler.join();
            call(ns, () ->
            {
                try (NftKernel teardown = NftKernel.open(DataplaneConfig.defaults(uplink)))
                {
                    teardown.teardown();
                }
                return null;
            });
        }
        return String.format("machines %5d: populated in %d ms (one transaction); drift repaired (reconcile every 1 s"
            + " after the last, deletion at a random point): an element deleted by hand %s; the IPv6 SNAT chain"
            + " (nat6) flushed by hand %s; the whole table deleted by hand %s; %d reconciles", n, populateMs,
            stats(elementMs), stats(chainMs), stats(tableMs), loop.reconcileRuns());
    }

    /** Changes the kernel by hand and times until the loop's health counts one more repair. */
    private static long repairMs(final ControlLoop loop, final NetNamespace ns, final String command)
        throws IOException, InterruptedException
    {
        final long repairs = loop.health().repairs();
        final Process nft = new ProcessBuilder("ip", "netns", "exec", ns.name(), "nft", command).inheritIO().start();
        if (nft.waitFor() != 0)
        {
            throw new IOException("nft " + command + " failed");
        }
        final long t0 = System.nanoTime();
        while (loop.health().repairs() == repairs)
        {
            if (System.nanoTime() - t0 > TimeUnit.SECONDS.toNanos(60))
            {
                throw new IllegalStateException("not repaired within 60 s: " + command);
            }
            Thread.sleep(1);
        }
        if (TRACE)
        {
            System.err.printf("%s at %d ms: repaired after %d ms%n", command, t0 / 1_000_000 % 1_000_000,
                (System.nanoTime() - t0) / 1_000_000);
        }
        return (System.nanoTime() - t0) / 1_000_000;
    }

    private static Machine machine(final int i)
    {
        return new Machine("m" + i, "app", "tap-m" + i, new Ipv4Address(0x0A4D0002 + i),
            new Ipv6Address(0xfd77000000000000L, 2 + i), null);
    }

    private static <T> T call(final NetNamespace ns, final Callable<T> task)
    {
        try
        {
            return ns.call(task);
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }

    private static String stats(final List<Long> ms)
    {
        final List<Long> sorted = ms.stream().sorted().toList();
        return "median " + sorted.get(sorted.size() / 2) + " ms, max " + sorted.get(sorted.size() - 1) + " ms";
    }
}
