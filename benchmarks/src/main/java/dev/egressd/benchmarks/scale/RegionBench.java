package dev.egressd.benchmarks.scale;

import ch.qos.logback.classic.Level;
import dev.egressd.agent.kernel.MemoryKernel;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.reconcile.MutationResult;
import dev.egressd.agent.reconcile.Operation;
import dev.egressd.agent.reconcile.RegionFeed;
import dev.egressd.agent.reconcile.RegionLedger;
import dev.egressd.agent.region.EtcdRegionStore;
import dev.egressd.agent.region.ForwardingRegionStore;
import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.region.RegionUnavailableException;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import org.slf4j.LoggerFactory;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A region against one etcd: H in-process hosts (each the daemon's own loop, region ledger and feed over an
 * in-memory kernel, as {@code --dry-run} daemons are), P app pairs, M machines placed through the hosts' loops by a
 * few concurrent clients, then churn (a machine removed on one host, a new one of the same app added on another).
 * Prints claim latency (each etcd claim transaction), placements per second, etcd requests per placement, the
 * watch lag, and checks etcd and every host's view: no slot with two owners, no machine on two slots, every host's
 * slots its own in etcd. Run by {@code scripts/bench-region}, which starts a throw-away etcd.
 *
 * <p>The hosts share one etcd client connection (a hundred gRPC channels would measure the JVM, not etcd); each has
 * its own watch and makes its own requests, so etcd sees the same transactions as from a hundred daemons.
 */
public final class RegionBench
{
    private RegionBench()
    {
    }

    /** Times every claim; shares one client among the hosts (close is the bench's, not a host's). */
    private static final class TimedStore extends ForwardingRegionStore
    {
        private final ConcurrentLinkedQueue<Long> claimNanos = new ConcurrentLinkedQueue<>();

        TimedStore(final RegionStore store)
        {
            super(store);
        }

        @Override
        public ClaimAnswer claim(final SlotId slot, final String host, final String machine)
            throws RegionUnavailableException
        {
            final long t0 = System.nanoTime();
            try
            {
                return super.claim(slot, host, machine);
            }
            finally
            {
                claimNanos.add(System.nanoTime() - t0);
            }
        }

        @Override
        public HostRecord registerHost(final HostRecord host)
        {
            // one client, one lease: liveness (and so the marks, which ride on registration) is not what this
            // bench measures; the host goes on without a mark
            return host;
        }

        @Override
        public void close()
        {
        }
    }

    private record Host(String id, ControlLoop loop, RegionLedger ledger, RegionFeed feed,
        ScheduledExecutorService executor)
    {
    }

    /**
     * Runs the bench.
     *
     * @param args etcd endpoint, then optionally hosts, pairs, machines, churn operations, clients.
     * @throws Exception on failure.
     */
    public static void main(final String[] args) throws Exception
    {
        if (args.length < 1)
        {
            System.err.println("usage: RegionBench ENDPOINT [HOSTS=100] [PAIRS=100] [MACHINES=6400] [CHURN=1000] [CLIENTS=8]");
            System.exit(2);
        }
        ((ch.qos.logback.classic.Logger)LoggerFactory.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME)).setLevel(Level.WARN);
        final String endpoint = args[0];
        final int hostCount = args.length > 1 ? Integer.parseInt(args[1]) : 100;
        final int pairCount = args.length > 2 ? Integer.parseInt(args[2]) : 100;
        final int machineCount = args.length > 3 ? Integer.parseInt(args[3]) : 6400;
        final int churn = args.length > 4 ? Integer.parseInt(args[4]) : 1000;
        final int clients = args.length > 5 ? Integer.parseInt(args[5]) : 8;
        final HostSettings settings = new HostSettings("ord", new BlockLayout(64, 1024),
            HostSettings.DEFAULT_DESTINATION_CAP);
        final String prefix = "/egressd-bench-" + System.nanoTime();
        final EtcdRegionStore etcd = new EtcdRegionStore(List.of(endpoint), prefix, settings.region(),
            Duration.ofSeconds(2), null, EtcdRegionStore.DEFAULT_LEASE_TTL);
        final TimedStore store = new TimedStore(etcd);
        final Path dir = Files.createTempDirectory("egressd-region-bench");
        final List<Host> hosts = new ArrayList<>();
        for (int h = 0; h < hostCount; h++)
        {
            hosts.add(host("h" + h, settings, dir.resolve("h" + h), store));
        }
        for (final Host h : hosts)
        {
            await(() -> h.ledger().available(), "host " + h.id() + " read the region");
        }
        // the pairs, created through host 0 as the API would
        final Host first = hosts.get(0);
        for (int p = 0; p < pairCount; p++)
        {
            final EgressPair pair = new EgressPair(Ipv4Address.parse("203.0.113." + (p + 1)),
                Ipv6Address.parse("2001:db8::" + Integer.toHexString(p + 1)), settings.region());
            final String app = "app" + p;
            ok(first.loop().mutate(Operation.ADD_PAIR, "add pair", l -> l.ledger().addPair(l.allocator(), app, pair))
                .get());
        }
        for (final Host h : hosts)
        {
            await(() -> h.loop().query(l -> l.allocator().pairs().size()).get() == pairCount,
                "host " + h.id() + " sees the pairs");
        }
        System.out.printf(Locale.ROOT, "region bench: %d hosts, %d pairs, %d machines, %d churn, %d clients, one etcd "
            + "(%s)%n", hostCount, pairCount, machineCount, churn, clients, endpoint);

        // placement
        final Random random = new Random(42);
        final List<String> machineHost = new ArrayList<>(Collections.nCopies(machineCount, (String)null));
        final List<Integer> order = new ArrayList<>();
        final List<Integer> machineApp = new ArrayList<>();
        for (int m = 0; m < machineCount; m++)
        {
            order.add(m);
            machineApp.add(m % pairCount);
            machineHost.set(m, "h" + random.nextInt(hostCount));
        }
        final Map<String, Host> byId = new HashMap<>();
        hosts.forEach(h -> byId.put(h.id(), h));
        store.claimNanos.clear();
        final long requests0 = store.stats().requests();
        final long t0 = System.nanoTime();
        final AtomicInteger next = new AtomicInteger();
        final ExecutorService pool = Executors.newFixedThreadPool(clients);
        final List<Future<?>> running = new ArrayList<>();
        for (int c = 0; c < clients; c++)
        {
            running.add(pool.submit(() ->
            {
                for (int i = next.getAndIncrement(); i < machineCount; i = next.getAndIncrement())
                {
                    final int m = order.get(i);
                    final Host h = byId.get(machineHost.get(m));
                    ok(h.loop().mutate(Operation.PUT_MACHINE, "put", l -> l.putMachine(machine(m, pairCount)))
                        .get());
                }
                return null;
            }));
        }
        for (final Future<?> f : running)
        {
            f.get();
        }
        final double placeSeconds = (System.nanoTime() - t0) / 1e9;
        final long placementRequests = store.stats().requests() - requests0;
        final List<Long> claims = new ArrayList<>(store.claimNanos);
        int placed = 0;
        for (int m = 0; m < machineCount; m++)
        {
            final Egress e = egress(byId.get(machineHost.get(m)), "m" + m);
            placed += e != null && e.scope() == Scope.APP ? 1 : 0;
        }
        System.out.printf(Locale.ROOT, "placement: %d of %d placed in %.1f s = %.0f placements/s; %.2f etcd requests per "
            + "placement; claim latency p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d claims, %d lost races)%n", placed,
            machineCount, placeSeconds, placed / placeSeconds, placementRequests / (double)machineCount,
            pct(claims, 50), pct(claims, 99), pct(claims, 100), claims.size(), etcd.stats().conflicts());

        // churn: a machine goes on one host, a new one of the same app comes on another
        store.claimNanos.clear();
        final long requests1 = store.stats().requests();
        final List<Double> lags = new ArrayList<>();
        final long t1 = System.nanoTime();
        int nextId = machineCount;
        final List<Integer> live = new ArrayList<>(order);
        for (int c = 0; c < churn; c++)
        {
            final int victim = live.remove(random.nextInt(live.size()));
            ok(byId.get(machineHost.get(victim)).loop().mutate(Operation.DELETE_MACHINE, "delete",
                l -> l.allocator().removeMachine("m" + victim)).get());
            final int fresh = nextId++;
            machineHost.add("h" + random.nextInt(hostCount));
            final int app = machineApp.get(victim); // the freed slot is on this app's pair
            machineApp.add(app);
            final Host h = byId.get(machineHost.get(fresh));
            ok(h.loop().mutate(Operation.PUT_MACHINE, "put", l -> l.putMachine(machine(fresh, app, pairCount))).get());
            live.add(fresh);
        }
        // every new machine is placed once the freed slot's release reached its host (the watch)
        for (final int m : live)
        {
            final Host h = byId.get(machineHost.get(m));
            await(() -> egress(h, "m" + m).scope() == Scope.APP, "m" + m + " placed after churn");
        }
        final double churnSeconds = (System.nanoTime() - t1) / 1e9;
        for (final Host h : hosts)
        {
            lags.add(h.ledger().lastApplyNanos() / 1e6);
        }
        Collections.sort(lags);
        final List<Long> churnClaims = new ArrayList<>(store.claimNanos);
        System.out.printf(Locale.ROOT, "churn: %d remove+add in %.1f s (%.0f ops/s), all placed; %.2f etcd requests per "
            + "op; claim p50 %.2f ms, p99 %.2f ms; watch lag (last batch per host) median %.2f ms, max %.2f ms%n",
            churn, churnSeconds, churn / churnSeconds, (store.stats().requests() - requests1) / (double)churn,
            pct(churnClaims, 50), pct(churnClaims, 99), lags.get(lags.size() / 2), lags.get(lags.size() - 1));

        // the checks: etcd and every host agree, no double owner
        final RegionStore.RegionSnapshot snapshot = etcd.read();
        final Set<String> machinesSeen = new HashSet<>();
        int doubleMachines = 0;
        for (final RegionStore.SlotRecord s : snapshot.slots().values())
        {
            doubleMachines += machinesSeen.add(s.machine()) ? 0 : 1;
        }
        int mismatches = 0;
        for (final Host h : hosts)
        {
            mismatches += h.loop().query(l ->
            {
                int bad = 0;
                for (final var pair : l.allocator().pairs())
                {
                    for (final var holder : pair.slots())
                    {
                        final var s = snapshot.slots().get(new RegionStore.SlotId(pair.pair().ipv4(), holder.block()));
                        if (holder.host() == null && (s == null || !h.id().equals(s.host())
                            || !holder.machine().equals(s.machine())))
                        {
                            bad++;
                        }
                    }
                }
                return bad;
            }).get();
        }
        System.out.printf(Locale.ROOT, "checks: %d slots in etcd for %d machines, %d machines on two slots, %d host slots "
            + "not their own in etcd (double owners: %d)%n", snapshot.slots().size(), live.size(), doubleMachines,
            mismatches, doubleMachines + mismatches);
        pool.shutdownNow();
        for (final Host h : hosts)
        {
            h.feed().close();
            h.executor().shutdownNow();
        }
        etcd.close();
        if (doubleMachines + mismatches != 0 || snapshot.slots().size() != live.size())
        {
            System.exit(1);
        }
        System.exit(0);
    }

    private static Machine machine(final int m, final int pairs)
    {
        return machine(m, m % pairs, pairs);
    }

    private static Machine machine(final int m, final int app, final int pairs)
    {
        // guest addresses only need to be unique per host: derive them from the machine number
        return new Machine("m" + m, "app" + app, "tap-" + m,
            Ipv4Address.parse("10." + (m >> 16 & 255) + "." + (m >> 8 & 255) + "." + (m & 255)), null, null);
    }

    private static Host host(final String id, final HostSettings settings, final Path dir, final RegionStore store)
        throws Exception
    {
        Files.createDirectories(dir);
        final StateStore stateStore = new StateStore(dir);
        final ScheduledExecutorService executor = Executors.newSingleThreadScheduledExecutor(r ->
        {
            final Thread t = new Thread(r, "loop-" + id);
            t.setDaemon(true);
            return t;
        });
        final RegionLedger ledger = new RegionLedger(store, id, settings.region(), 120, System::currentTimeMillis);
        final ControlLoop loop = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)),
            new MemoryKernel(), stateStore, executor, System::nanoTime, System::currentTimeMillis, 0, ledger);
        executor.submit(() ->
        {
            loop.initialSync();
            return null;
        }).get();
        final RegionFeed feed = new RegionFeed(store, ledger, loop, new RegionStore.HostRecord(id, List.of(), true),
            System::nanoTime);
        feed.start();
        executor.scheduleWithFixedDelay(loop::regionTick, 1, 1, TimeUnit.SECONDS);
        return new Host(id, loop, ledger, feed, executor);
    }

    private static Egress egress(final Host h, final String machine) throws Exception
    {
        return h.loop().query(l -> l.allocator().egress(machine).orElse(null)).get();
    }

    private static void ok(final MutationResult result)
    {
        if (!(result instanceof MutationResult.Ok))
        {
            throw new IllegalStateException("change failed: " + result);
        }
    }

    @FunctionalInterface
    private interface Condition
    {
        boolean holds() throws Exception;
    }

    private static void await(final Condition condition, final String what) throws Exception
    {
        final long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!condition.holds())
        {
            if (System.nanoTime() > end)
            {
                throw new IllegalStateException("timed out: " + what);
            }
            Thread.sleep(10);
        }
    }

    private static double pct(final List<Long> nanos, final int p)
    {
        if (nanos.isEmpty())
        {
            return Double.NaN;
        }
        final List<Long> sorted = new ArrayList<>(nanos);
        Collections.sort(sorted);
        final int i = Math.min(sorted.size() - 1, (int)Math.ceil(p / 100.0 * sorted.size()) - 1);
        return sorted.get(Math.max(0, i)) / 1e6;
    }
}
