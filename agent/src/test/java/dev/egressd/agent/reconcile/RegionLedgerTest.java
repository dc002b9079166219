package dev.egressd.agent.reconcile;

import dev.egressd.agent.region.MemoryRegionStore;
import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.testing.RegionHost;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Scope;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The region ledger's rules on the in-memory region store (the same contract as etcd's, with switches for the
 * failures etcd cannot be made to show on demand): outcomes lost in flight, outages, rollbacks, conflicts.
 */
class RegionLedgerTest
{
    private static final HostSettings SETTINGS = new HostSettings("ord", new BlockLayout(4, 1024), 1024);
    private static final Duration SOON = Duration.ofSeconds(10);

    @TempDir
    Path dir;

    private final MemoryRegionStore.Backend backend = new MemoryRegionStore.Backend();
    private final List<RegionHost> hosts = new ArrayList<>();

    @AfterEach
    void stop()
    {
        hosts.forEach(RegionHost::close);
        backend.close();
    }

    private RegionHost host(final String id) throws Exception
    {
        final RegionHost h = new RegionHost(id, SETTINGS, dir.resolve(id),
            () -> new MemoryRegionStore(backend, SETTINGS.region(), Duration.ofSeconds(10)), 120);
        hosts.add(h);
        assertThat(h.awaitAvailable(SOON)).isTrue();
        return h;
    }

    private Map<String, String> slots() throws Exception
    {
        try (RegionStore s = new MemoryRegionStore(backend, SETTINGS.region(), Duration.ofSeconds(10)))
        {
            final Map<String, String> slots = new HashMap<>();
            for (final RegionStore.SlotRecord r : s.read().slots().values())
            {
                slots.put(r.id().pair() + "#" + r.id().block(), r.host() + "/" + r.machine());
            }
            return slots;
        }
    }

    private static void ok(final MutationResult result)
    {
        assertThat(result).isInstanceOf(MutationResult.Ok.class);
    }

    private static Egress await(final RegionHost h, final String machine, final Scope scope) throws Exception
    {
        return h.await(machine, scope, SOON);
    }

    private void fill(final RegionHost h) throws Exception
    {
        ok(h.addPair("shop", "203.0.113.10", "2001:db8::10"));
        for (int i = 0; i < 4; i++)
        {
            ok(h.putMachine("m" + i, "shop", "10.77.0." + (2 + i), null));
        }
    }

    @Test
    void aSlotFreedAndGivenToAWaitingMachineInOneChangePassesWithoutLookingTaken() throws Exception
    {
        final RegionHost h1 = host("h1");
        fill(h1);
        ok(h1.putMachine("late", "shop", "10.77.0.9", null));
        assertThat(h1.egress("late").scope()).isEqualTo(Scope.PENDING);
        final int block = h1.egress("m0").block();
        ok(h1.deleteMachine("m0", false));
        final Egress late = h1.egress("late");
        assertThat(late.scope()).as("placed in the same change").isEqualTo(Scope.APP);
        assertThat(late.block()).isEqualTo(block);
        assertThat(slots()).containsEntry("203.0.113.10#" + block, "h1/late").hasSize(4);
        assertThat(h1.pairs().get(0).slots()).extracting(EgressAllocator.SlotHolder::host).containsOnlyNulls();
    }

    @Test
    void aMachineHandedBackToAHostWhereAMachineOfItsAppWaitsGetsItsBlockNotTheWaitingOne() throws Exception
    {
        final RegionHost h1 = host("h1");
        final RegionHost h2 = host("h2");
        fill(h1);
        ok(h1.putMachine("late", "shop", "10.77.0.9", null));
        assertThat(h1.egress("late").scope()).isEqualTo(Scope.PENDING);
        final int block = h1.egress("m0").block();
        ok(h1.deleteMachine("m0", true));
        ok(h2.putMachine("m0", "shop", "10.77.0.2", "h1"));
        assertThat(await(h2, "m0", Scope.APP).block()).isEqualTo(block);
        awaitSlot("203.0.113.10#" + block, "h2/m0");
        // back again: on h1 the block passes from h2's hold to m0 in one step, never to the waiting machine
        ok(h2.deleteMachine("m0", true));
        ok(h1.putMachine("m0", "shop", "10.77.0.2", "h2"));
        assertThat(h1.egress("m0").scope()).isEqualTo(Scope.APP);
        assertThat(h1.egress("m0").block()).isEqualTo(block);
        assertThat(h1.egress("late").scope()).as("still waiting: the pair is full").isEqualTo(Scope.PENDING);
        assertThat(slots()).containsEntry("203.0.113.10#" + block, "h1/m0").hasSize(4);
    }

    @Test
    void aClaimWhoseAnswerIsLostIsReadAgainBeforeItIsRetriedAndNeverLeavesTwoOwners() throws Exception
    {
        final RegionHost h1 = host("h1");
        ok(h1.addPair("shop", "203.0.113.10", "2001:db8::10"));
        backend.failNextWriteAfterApplying();
        ok(h1.putMachine("m1", "shop", "10.77.0.2", null));
        // the claim was applied in the store but its answer lost: the machine waits, the ledger reads again
        final Egress placed = await(h1, "m1", Scope.APP);
        final Map<String, String> slots = slots();
        assertThat(slots).as("one slot for m1, the one it uses").hasSize(1)
            .containsEntry("203.0.113.10#" + placed.block(), "h1/m1");
    }

    @Test
    void whileTheStoreIsDownNewMachinesWaitRegionChangesAreRefusedAndAllIsPlacedWhenItIsBack() throws Exception
    {
        final RegionHost h1 = host("h1");
        ok(h1.addPair("shop", "203.0.113.10", "2001:db8::10"));
        ok(h1.putMachine("m1", "shop", "10.77.0.2", null));
        backend.setAvailable(false);
        ok(h1.putMachine("m2", "shop", "10.77.0.3", null));
        assertThat(h1.egress("m2").scope()).isEqualTo(Scope.PENDING);
        assertThat(h1.egress("m2").reason()).startsWith("region ledger unavailable");
        assertThat(h1.egress("m1").scope()).isEqualTo(Scope.APP);
        assertThat(h1.addPair("shop", "203.0.113.11", "2001:db8::11")).isInstanceOf(MutationResult.RegionUnavailable.class);
        assertThat(h1.pairs()).as("nothing changed").hasSize(1);
        ok(h1.deleteMachine("m1", false));
        backend.setAvailable(true);
        await(h1, "m2", Scope.APP);
        // m1's release waited for the store, then went: only m2's slot is left
        final long end = System.nanoTime() + SOON.toNanos();
        while (slots().size() != 1 && System.nanoTime() < end)
        {
            Thread.sleep(20);
        }
        assertThat(slots()).hasSize(1).containsValue("h1/m2");
    }

    @Test
    void aChangeTheKernelRefusesReleasesTheSlotsItClaimed() throws Exception
    {
        final RegionHost h1 = host("h1");
        ok(h1.addPair("shop", "203.0.113.10", "2001:db8::10"));
        h1.kernel().failing(true);
        assertThat(h1.putMachine("m1", "shop", "10.77.0.2", null)).isInstanceOf(MutationResult.Unavailable.class);
        assertThat(h1.egress("m1")).isNull();
        assertThat(slots()).as("the claim was undone").isEmpty();
        h1.kernel().failing(false);
        ok(h1.putMachine("m1", "shop", "10.77.0.2", null));
        assertThat(slots()).hasSize(1);
    }

    @Test
    void aSlotThisHostHoldsThatEtcdLostIsClaimedAgainLiveAndAfterAnOutage() throws Exception
    {
        final RegionHost h1 = host("h1");
        ok(h1.addPair("shop", "203.0.113.10", "2001:db8::10"));
        ok(h1.putMachine("m1", "shop", "10.77.0.2", null));
        ok(h1.putMachine("m2", "shop", "10.77.0.3", null));
        final int b1 = h1.egress("m1").block();
        final int b2 = h1.egress("m2").block();
        final String s1 = "203.0.113.10#" + b1;
        final String s2 = "203.0.113.10#" + b2;
        try (RegionStore other = new MemoryRegionStore(backend, SETTINGS.region(), Duration.ofSeconds(10)))
        {
            // deleted behind h1's back while it watches: claimed again at once
            assertThat(other.release(new RegionStore.SlotId(Ipv4Address.parse("203.0.113.10"), b1),
                "h1", "m1")).isTrue();
        }
        awaitSlot(s1, "h1/m1");
        // lost while h1 was down: the full read at its start finds the slot missing and claims it again
        h1.kill();
        try (RegionStore other = new MemoryRegionStore(backend, SETTINGS.region(), Duration.ofSeconds(10)))
        {
            assertThat(other.release(new RegionStore.SlotId(Ipv4Address.parse("203.0.113.10"), b2), "h1", "m2"))
                .isTrue();
        }
        h1.start();
        assertThat(h1.awaitAvailable(SOON)).isTrue();
        awaitSlot(s2, "h1/m2");
        assertThat(h1.ledger().slotConflicts()).isZero();
    }

    private void awaitSlot(final String slot, final String holder) throws Exception
    {
        final long end = System.nanoTime() + SOON.toNanos();
        while (!holder.equals(slots().get(slot)) && System.nanoTime() < end)
        {
            Thread.sleep(20);
        }
        assertThat(slots()).containsEntry(slot, holder);
    }

    @Test
    void whenEtcdGivesThisHostsSlotToAnotherHostEtcdWinsLoudly() throws Exception
    {
        final RegionHost h1 = host("h1");
        ok(h1.addPair("shop", "203.0.113.10", "2001:db8::10"));
        ok(h1.putMachine("m1", "shop", "10.77.0.2", null));
        final Egress before = h1.egress("m1");
        // an operator deletes h1 from another host although h1 still runs (it was not fenced): etcd quarantines
        // h1's slot, and h1, which still holds it, must give it up
        try (RegionStore other = new MemoryRegionStore(backend, SETTINGS.region(), Duration.ofSeconds(10)))
        {
            assertThat(other.quarantineHost("h1", System.currentTimeMillis() + 60_000)).hasSize(1);
        }
        final long end = System.nanoTime() + SOON.toNanos();
        while (h1.ledger().slotConflicts() == 0 && System.nanoTime() < end)
        {
            Thread.sleep(20);
        }
        assertThat(h1.ledger().slotConflicts()).isEqualTo(1);
        final Egress after = await(h1, "m1", Scope.APP);
        assertThat(after.block()).as("moved off the slot etcd gave away").isNotEqualTo(before.block());
        assertThat(slots()).containsEntry("203.0.113.10#" + before.block(), "null/null")
            .containsEntry("203.0.113.10#" + after.block(), "h1/m1");
    }
}
