package dev.egressd.agent.reconcile;

import dev.egressd.agent.region.EtcdRegionStore;
import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.testing.EtcdServer;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.RegionHost;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Scope;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Region mode against a real etcd (Debian's etcd-server, started by the test on a free loopback port): several
 * in-process hosts (dry-run daemons: in-memory kernels that outlive restarts) share one region's pairs.
 */
@Privileged
class RegionModeTest
{
    private static final HostSettings SETTINGS = new HostSettings("ord", new BlockLayout(64, 1024),
        HostSettings.DEFAULT_DESTINATION_CAP);
    private static final Duration SOON = Duration.ofSeconds(10);

    @TempDir
    Path dir;

    private EtcdServer etcd;
    private final List<RegionHost> hosts = new ArrayList<>();
    private int prefixes;
    private String prefix;

    @BeforeEach
    void startEtcd()
    {
        etcd = EtcdServer.create();
        prefix = "/egressd-test" + prefixes++;
    }

    @AfterEach
    void stopAll()
    {
        for (final RegionHost h : hosts)
        {
            try
            {
                h.close();
            }
            catch (final RuntimeException e)
            {
                // already killed
            }
        }
        hosts.clear();
        etcd.close();
    }

    private RegionStore store()
    {
        return new EtcdRegionStore(List.of(etcd.endpoint()), prefix, SETTINGS.region(), Duration.ofSeconds(2), null,
            EtcdRegionStore.DEFAULT_LEASE_TTL);
    }

    private RegionHost host(final String id) throws Exception
    {
        return host(id, 120);
    }

    private RegionHost host(final String id, final int quarantineSeconds) throws Exception
    {
        final RegionHost h = new RegionHost(id, SETTINGS, dir.resolve(prefix.substring(1) + "-" + id), this::store,
            quarantineSeconds);
        hosts.add(h);
        assertThat(h.awaitAvailable(SOON)).as("%s read the region", id).isTrue();
        return h;
    }

    private static void ok(final MutationResult result)
    {
        assertThat(result).as("the change was done").isInstanceOf(MutationResult.Ok.class);
    }

    private static Egress awaitScope(final RegionHost h, final String machine, final Scope scope) throws Exception
    {
        return h.await(machine, scope, SOON);
    }

    private static void awaitPair(final RegionHost h, final String ipv4) throws Exception
    {
        final long end = System.nanoTime() + SOON.toNanos();
        while (System.nanoTime() < end)
        {
            if (h.pairs().stream().anyMatch(p -> p.pair().ipv4().toString().equals(ipv4)))
            {
                return;
            }
            Thread.sleep(20);
        }
        throw new AssertionError(h.id() + " never saw pair " + ipv4);
    }

    /** Every slot key of the region: (pair, block) to "host/machine". */
    private Map<String, String> slots() throws Exception
    {
        try (RegionStore s = store())
        {
            final Map<String, String> slots = new HashMap<>();
            for (final RegionStore.SlotRecord r : s.read().slots().values())
            {
                slots.put(r.id().pair() + "#" + r.id().block(), r.quarantined() ? "(quarantine)" : r.host() + "/" + r.machine());
            }
            return slots;
        }
    }

    @Test
    void machinesOfOneAppOnThreeHostsShareOnePairWithDistinctBlocks() throws Exception
    {
        final RegionHost h1 = host("h1");
        final RegionHost h2 = host("h2");
        final RegionHost h3 = host("h3");
        ok(h1.addPair("shop", "203.0.113.10", "2001:db8::10"));
        awaitPair(h2, "203.0.113.10");
        awaitPair(h3, "203.0.113.10");
        ok(h1.putMachine("m1", "shop", "10.77.0.2", null));
        ok(h2.putMachine("m2", "shop", "10.77.0.2", null));
        ok(h3.putMachine("m3", "shop", "10.77.0.2", null));
        final Set<Integer> blocks = new HashSet<>();
        for (final RegionHost h : List.of(h1, h2, h3))
        {
            final Egress e = h.egress("m" + h.id().substring(1));
            assertThat(e.scope()).isEqualTo(Scope.APP);
            assertThat(e.pair().ipv4().toString()).isEqualTo("203.0.113.10");
            assertThat(e.reason()).startsWith("slot " + e.block() + " of app pair 203.0.113.10, region ord");
            blocks.add(e.block());
        }
        assertThat(blocks).as("distinct blocks").hasSize(3);
        assertThat(slots()).containsValues("h1/m1", "h2/m2", "h3/m3").hasSize(3);
        // every host sees the others' holders, with their host
        final long end = System.nanoTime() + SOON.toNanos();
        List<EgressAllocator.SlotHolder> seen = List.of();
        while (System.nanoTime() < end)
        {
            seen = h2.pairs().get(0).slots();
            if (seen.size() == 3)
            {
                break;
            }
            Thread.sleep(20);
        }
        assertThat(seen).extracting(EgressAllocator.SlotHolder::machine).containsExactlyInAnyOrder("m1", "m2", "m3");
        assertThat(seen).filteredOn(s -> s.machine().equals("m1")).extracting(EgressAllocator.SlotHolder::host)
            .containsExactly("h1");
    }

    @Test
    void sixtyFourMachinesOverThreeHostsFillThePairAndThe65thWaitsUntilASlotFreesElsewhere() throws Exception
    {
        final RegionHost h1 = host("h1");
        final RegionHost h2 = host("h2");
        final RegionHost h3 = host("h3");
        ok(h1.addPair("shop", "203.0.113.10", "2001:db8::10"));
        for (final RegionHost h : List.of(h2, h3))
        {
            awaitPair(h, "203.0.113.10");
        }
        final List<RegionHost> all = List.of(h1, h2, h3);
        for (int i = 0; i < 64; i++)
        {
            final RegionHost h = all.get(i % 3);
            ok(h.putMachine("m" + i, "shop", "10.77." + (i / 200) + "." + (2 + i % 200), null));
            assertThat(h.egress("m" + i).scope()).as("m%d", i).isEqualTo(Scope.APP);
        }
        assertThat(slots()).hasSize(64);
        assertThat(new HashSet<>(slots().values())).hasSize(64);
        ok(h3.putMachine("m64", "shop", "10.77.9.9", null));
        awaitScope(h3, "m64", Scope.PENDING);
        // m0 lives on h1: when it goes, h3's waiting machine gets a slot
        ok(h1.deleteMachine("m0", false));
        final Egress placed = awaitScope(h3, "m64", Scope.APP);
        assertThat(slots()).containsEntry("203.0.113.10#" + placed.block(), "h3/m64").hasSize(64);
    }

    @Test
    void twoHostsRacingForOnePairEndWithExactly64PlacedAndNoDoubleOwner() throws Exception
    {
        for (int round = 0; round < 5; round++)
        {
            prefix = "/egressd-race" + round;
            final RegionHost a = host("a" + round);
            final RegionHost b = host("b" + round);
            ok(a.addPair("shop", "203.0.113.10", "2001:db8::10"));
            awaitPair(b, "203.0.113.10");
            final ExecutorService pool = Executors.newFixedThreadPool(2);
            try
            {
                final List<Future<Integer>> done = new ArrayList<>();
                for (final RegionHost h : List.of(a, b))
                {
                    done.add(pool.submit((Callable<Integer>)() ->
                    {
                        for (int i = 0; i < 64; i++)
                        {
                            ok(h.putMachine(h.id() + "-" + i, "shop", "10.77." + (i / 200) + "." + (2 + i % 200), null));
                        }
                        return 64;
                    }));
                }
                for (final Future<Integer> f : done)
                {
                    f.get();
                }
            }
            finally
            {
                pool.shutdownNow();
            }
            final Map<String, String> slots = slots();
            assertThat(slots).as("round %d: one slot per block", round).hasSize(64);
            assertThat(new HashSet<>(slots.values())).as("round %d: no machine twice", round).hasSize(64);
            int placed = 0;
            for (final RegionHost h : List.of(a, b))
            {
                for (int i = 0; i < 64; i++)
                {
                    final Egress e = h.egress(h.id() + "-" + i);
                    if (e.scope() == Scope.APP)
                    {
                        placed++;
                        assertThat(slots).as("round %d: %s's slot is its own in etcd", round, h.id() + "-" + i)
                            .containsEntry("203.0.113.10#" + e.block(), h.id() + "/" + h.id() + "-" + i);
                    }
                    else
                    {
                        assertThat(e.scope()).isEqualTo(Scope.PENDING);
                    }
                }
            }
            assertThat(placed).as("round %d: placed", round).isEqualTo(64);
            a.close();
            b.close();
            hosts.clear();
        }
    }

    @Test
    void etcdDownKeepsPlacedMachinesAndNewOnesWaitThenArePlacedWhenItIsBack() throws Exception
    {
        final RegionHost h1 = host("h1");
        ok(h1.addPair("shop", "203.0.113.10", "2001:db8::10"));
        ok(h1.putMachine("m1", "shop", "10.77.0.2", null));
        final Egress before = h1.egress("m1");
        final long kernelBefore = h1.kernel().applied();
        etcd.kill();
        final long t0 = System.nanoTime();
        final MutationResult result = h1.putMachine("m2", "shop", "10.77.0.3", null);
        final double seconds = (System.nanoTime() - t0) / 1e9;
        ok(result);
        assertThat(seconds).as("answered within the deadline and a margin").isLessThan(4.5);
        final Egress waiting = h1.egress("m2");
        assertThat(waiting.scope()).isEqualTo(Scope.PENDING);
        assertThat(waiting.reason()).startsWith("region ledger unavailable");
        assertThat(h1.egress("m1")).as("placed machine unchanged").isEqualTo(before);
        // region objects cannot change meanwhile, and the answer is quick now that etcd is known to be down
        final long t1 = System.nanoTime();
        assertThat(h1.addPair("shop", "203.0.113.11", "2001:db8::11"))
            .isInstanceOf(MutationResult.RegionUnavailable.class);
        assertThat((System.nanoTime() - t1) / 1e9).isLessThan(1.0);
        assertThat(h1.kernel().applied() - kernelBefore).as("only m2's fail-closed element changed the kernel")
            .isLessThanOrEqualTo(2);
        etcd.start();
        awaitScope(h1, "m2", Scope.APP);
        assertThat(slots()).containsValues("h1/m1", "h1/m2");
    }

    @Test
    void killAndRestartFreesNoSlotAndChangesNothingInTheKernel() throws Exception
    {
        final RegionHost h1 = host("h1");
        ok(h1.addPair("shop", "203.0.113.10", "2001:db8::10"));
        for (int i = 0; i < 5; i++)
        {
            ok(h1.putMachine("m" + i, "shop", "10.77.0." + (2 + i), null));
        }
        final Map<String, String> before = slots();
        final long applied = h1.kernel().applied();
        h1.kill();
        assertThat(slots()).as("no slot freed by the kill").isEqualTo(before);
        h1.start();
        assertThat(h1.awaitAvailable(SOON)).isTrue();
        assertThat(h1.kernel().applied()).as("no kernel change at restart").isEqualTo(applied);
        assertThat(slots()).isEqualTo(before);
        for (int i = 0; i < 5; i++)
        {
            assertThat(h1.egress("m" + i).scope()).isEqualTo(Scope.APP);
        }
    }

    @Test
    void aHandoverKeepsAddressAndBlockAndNeedsTheOldHostToLetGoFirst() throws Exception
    {
        final RegionHost h1 = host("h1");
        final RegionHost h2 = host("h2");
        ok(h1.addPair("shop", "203.0.113.10", "2001:db8::10"));
        awaitPair(h2, "203.0.113.10");
        ok(h1.putMachine("m1", "shop", "10.77.0.2", null));
        final Egress old = h1.egress("m1");
        final MutationResult early = h2.putMachine("m1", "shop", "10.77.0.2", "h1");
        assertThat(early).isInstanceOf(MutationResult.Refused.class);
        assertThat(((MutationResult.Refused)early).refusal().field()).isEqualTo("from_host");
        final long seen = System.nanoTime() + SOON.toNanos();
        while (h2.regionView().slotsByHost().getOrDefault("h1", 0) != 1 && System.nanoTime() < seen)
        {
            Thread.sleep(20); // h2's cache learns of m1's slot through its watch
        }
        final MutationResult plain = h2.putMachine("m1", "shop", "10.77.0.2", null);
        assertThat(plain).as("a machine of another host is not placed here anew").isInstanceOf(MutationResult.Refused.class);
        assertThat(((MutationResult.Refused)plain).refusal().message()).contains("holds slot", "on host h1");
        ok(h1.deleteMachine("m1", true));
        assertThat(h1.egress("m1")).isNull();
        ok(h2.putMachine("m1", "shop", "10.77.0.2", "h1"));
        final Egress moved = h2.egress("m1");
        assertThat(moved.scope()).isEqualTo(Scope.APP);
        assertThat(moved.pair()).isEqualTo(old.pair());
        assertThat(moved.block()).isEqualTo(old.block());
        assertThat(slots()).containsEntry("203.0.113.10#" + old.block(), "h2/m1").hasSize(1);
    }

    @Test
    void aDeletedHostsSlotsAreFreeOnlyAfterTheQuarantine() throws Exception
    {
        final RegionHost h1 = host("h1", 3);
        final RegionHost h3 = host("h3", 3);
        ok(h1.addPair("shop", "203.0.113.10", "2001:db8::10"));
        awaitPair(h3, "203.0.113.10");
        for (int i = 0; i < 64; i++)
        {
            ok(h3.putMachine("m" + i, "shop", "10.77." + (i / 200) + "." + (2 + i % 200), null));
        }
        ok(h1.putMachine("late", "shop", "10.78.0.2", null));
        awaitScope(h1, "late", Scope.PENDING);
        h3.kill();
        assertThat(h1.deleteHost("h1")).as("a host cannot delete itself").isInstanceOf(MutationResult.Refused.class);
        final long t0 = System.nanoTime();
        ok(h1.deleteHost("h3"));
        assertThat(slots().values()).containsOnly("(quarantine)").hasSize(64);
        assertThat(h1.pairs().get(0).slots()).as("h1 holds them as quarantined")
            .extracting(EgressAllocator.SlotHolder::host).containsOnly(EgressAllocator.QUARANTINE).hasSize(64);
        Thread.sleep(1000);
        assertThat(h1.egress("late").scope()).as("still quarantined after 1 s").isEqualTo(Scope.PENDING);
        awaitScope(h1, "late", Scope.APP);
        assertThat((System.nanoTime() - t0) / 1e9).as("placed only after the 3 s quarantine").isGreaterThanOrEqualTo(3.0);
    }
}
