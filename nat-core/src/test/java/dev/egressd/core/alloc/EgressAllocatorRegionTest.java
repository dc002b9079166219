package dev.egressd.core.alloc;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.core.alloc.EgressAllocator.PairView;
import dev.egressd.core.alloc.EgressAllocator.SlotHolder;
import dev.egressd.core.alloc.EgressAllocator.Snapshot;
import dev.egressd.core.alloc.Outcome.Done;
import dev.egressd.core.alloc.Outcome.Reason;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;

import java.util.List;
import java.util.function.Supplier;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Region mode: claims before a slot is taken, releases after one is given up, and slots other hosts hold. */
class EgressAllocatorRegionTest
{
    private static final HostSettings HOST = new HostSettings("ord", new BlockLayout(4, 16), 1024);
    private static final HostSettings WIDE = new HostSettings("ord", new BlockLayout(16, 16), 1024);
    private static final String P1 = "203.0.113.1";
    private static final String P2 = "203.0.113.2";

    private ScriptedLedger ledger;
    private EgressAllocator alloc;

    @BeforeEach
    void setUp()
    {
        ledger = new ScriptedLedger();
        alloc = new EgressAllocator(HOST, 42, ledger);
    }

    // ------------------------------------------------------------------------------------------- helpers

    private static Ipv4Address v4(final String text)
    {
        return Ipv4Address.parse(text);
    }

    private static Machine machine(final String id, final String app)
    {
        return machine(id, app, null);
    }

    private static Machine machine(final String id, final String app, final String pin)
    {
        final int n = Integer.parseInt(id.replaceAll("\\D", ""));
        return new Machine(id, app, "tap-" + id, new Ipv4Address(0x0A000000 | n + 2),
            new Ipv6Address(0xFD00000000000000L, n + 2), pin == null ? null : v4(pin));
    }

    private static EgressPair pair(final String ipv4)
    {
        final int last = v4(ipv4).bits() & 0xFF;
        return new EgressPair(v4(ipv4), Ipv6Address.parse("2001:db8::" + Integer.toHexString(last)), "ord");
    }

    private void addPair(final String app, final String ipv4)
    {
        assertThat(alloc.addPair(app, pair(ipv4)).ok()).isTrue();
    }

    private void upsert(final Machine m)
    {
        assertThat(alloc.upsertMachine(m).ok()).as("upsert %s", m).isTrue();
    }

    private Egress egress(final String id)
    {
        return alloc.egress(id).orElseThrow();
    }

    private PairView pairView(final String ipv4)
    {
        return alloc.pairs().stream().filter(p -> p.pair().ipv4().equals(v4(ipv4))).findFirst().orElseThrow();
    }

    private void assertRefused(final Supplier<Outcome> operation, final Reason code, final String field)
    {
        final Snapshot before = alloc.snapshot();
        final Outcome outcome = operation.get();
        assertThat(outcome).isInstanceOf(Outcome.Refusal.class);
        final Outcome.Refusal refusal = (Outcome.Refusal)outcome;
        assertThat(refusal.code()).as(refusal.message()).isEqualTo(code);
        assertThat(refusal.field()).as(refusal.message()).isEqualTo(field);
        assertThat(refusal.message()).contains(field);
        assertThat(alloc.snapshot()).as("a refusal changes nothing").isEqualTo(before);
    }

    // -------------------------------------------------------------------------------------------- claims

    @Test
    void theLocalLedgerIsTheDefaultAndRetryingChangesNothing()
    {
        final EgressAllocator local = new EgressAllocator(HOST, 42);
        assertThat(local.ledger()).isSameAs(SlotLedger.LOCAL);
        local.addPair("a", pair(P1));
        for (int i = 1; i <= 5; i++)
        {
            local.upsertMachine(machine("m" + i, "a"));
        }
        final Snapshot before = local.snapshot();
        assertThat(local.retryWaiting()).isEqualTo(Done.NOTHING);
        assertThat(local.snapshot()).isEqualTo(before);
        assertThat(local.machine("m5").orElseThrow().egress().scope()).isEqualTo(Scope.PENDING);
    }

    @Test
    void everyNewSlotIsClaimedBeforeItIsTaken()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        upsert(machine("m2", "a", P1));
        assertThat(ledger.claims).containsExactly(P1 + "/1 m1", P1 + "/2 m2");
        assertThat(egress("m1").block()).isEqualTo(1);
        assertThat(egress("m2").block()).isEqualTo(2);
        assertThat(ledger.releases).isEmpty();
    }

    @Test
    void aTakenSlotIsMarkedAsAnotherHostsAndTheNextCandidateIsClaimed()
    {
        ledger.taken.add(ScriptedLedger.slot(P1, 1));
        addPair("a", P1);
        upsert(machine("m1", "a"));
        assertThat(ledger.claims).containsExactly(P1 + "/1 m1", P1 + "/2 m1");
        assertThat(egress("m1").block()).isEqualTo(2);
        final PairView view = pairView(P1);
        assertThat(view.slots()).containsExactly(new SlotHolder(1, SlotHolder.UNKNOWN, SlotHolder.UNKNOWN),
            new SlotHolder(2, "m1", null));
        assertThat(view.used()).isEqualTo(2);
        assertThat(view.free()).isEqualTo(2);
        assertThat(alloc.apps().get(0).freeSlots()).isEqualTo(2);
    }

    @Test
    void aTakenSlotOfThePinnedPairLeadsToAnotherBlockOfThatPair()
    {
        addPair("a", P1);
        addPair("a", P2);
        ledger.taken.add(ScriptedLedger.slot(P1, 1));
        upsert(machine("m1", "a", P1));
        assertThat(egress("m1").pair().ipv4()).isEqualTo(v4(P1));
        assertThat(egress("m1").block()).isEqualTo(2);
        assertThat(egress("m1").reason()).isEqualTo("slot 2 on app pair " + P1 + " (pinned)");
    }

    @Test
    void aPinnedMachineWhoseClaimsAllLoseWaitsForItsPinAndIsPlacedThereWhenASlotFrees()
    {
        addPair("a", P1);
        addPair("a", P2);
        for (int b = 0; b < 4; b++)
        {
            ledger.taken.add(ScriptedLedger.slot(P1, b));
        }
        upsert(machine("m1", "a", P1));
        assertThat(egress("m1").scope()).isEqualTo(Scope.PENDING);
        assertThat(egress("m1").reason()).startsWith("pin " + P1 + " is full across the region: pending");
        assertThat(alloc.apps().get(0).waiting()).containsExactly("m1");
        // The unpinned machine behind it is not held up by the pin.
        upsert(machine("m2", "a"));
        assertThat(egress("m2").pair().ipv4()).isEqualTo(v4(P2));

        ledger.taken.remove(ScriptedLedger.slot(P1, 3));
        final Outcome freed = alloc.releaseForeign(v4(P1), 3);
        assertThat(freed).isEqualTo(new Done(List.of("m1")));
        assertThat(egress("m1").pair().ipv4()).isEqualTo(v4(P1));
        assertThat(egress("m1").block()).isEqualTo(3);
    }

    @Test
    void aWaitingPinnedMachineKeepsItsPlaceWhenReSentAndTakesAnySlotOnceItsPinIsDropped()
    {
        addPair("a", P1);
        addPair("a", P2);
        for (int b = 0; b < 4; b++)
        {
            ledger.taken.add(ScriptedLedger.slot(P1, b));
        }
        upsert(machine("m1", "a", P1));
        assertThat(egress("m1").scope()).isEqualTo(Scope.PENDING);
        final int claims = ledger.claims.size();

        // Re-sent with the same pin and another interface: no PAIR_FULL refusal, still waiting, nothing claimed.
        final Machine m1 = machine("m1", "a", P1);
        final Machine renamed = new Machine("m1", "a", "tap-other", m1.ipv4(), m1.ipv6(), m1.pin());
        assertThat(alloc.upsertMachine(renamed)).isEqualTo(new Done(List.of("m1")));
        assertThat(egress("m1").scope()).isEqualTo(Scope.PENDING);
        assertThat(ledger.claims).hasSize(claims);

        final Machine unpinned = new Machine("m1", "a", "tap-other", m1.ipv4(), m1.ipv6(), null);
        assertThat(alloc.upsertMachine(unpinned).ok()).isTrue();
        assertThat(egress("m1").pair().ipv4()).isEqualTo(v4(P2));
        assertThat(alloc.apps().get(0).waiting()).isEmpty();
    }

    @Test
    void claimsThatKeepLosingStopAfterEightTriesAndTheMachineWaitsUntilTheRegionChanges()
    {
        alloc = new EgressAllocator(WIDE, 42, ledger);
        addPair("a", P1);
        for (int b = 1; b < 16; b++)
        {
            ledger.taken.add(ScriptedLedger.slot(P1, b));
        }
        upsert(machine("m1", "a"));
        assertThat(ledger.claims).hasSize(EgressAllocator.MAX_CLAIMS);
        assertThat(egress("m1").scope()).isEqualTo(Scope.PENDING);
        assertThat(egress("m1").reason()).contains("kept losing races").contains("8 tries")
            .contains("retried when the region's slots change");
        assertThat(pairView(P1).used()).as("each lost claim marked one slot held").isEqualTo(8);
        assertThat(alloc.anyWaitingWithFreeSlot()).as("m1 waits while 8 of 16 slots look free here").isTrue();

        // The region sync names one holder: the app settles again and the claims go on from where they stopped.
        assertThat(alloc.holdForeign(v4(P1), 1, "host-b", "x1").ok()).isTrue();
        assertThat(ledger.claims).hasSize(2 * EgressAllocator.MAX_CLAIMS);
        assertThat(egress("m1").block()).isZero();
        assertThat(egress("m1").scope()).isEqualTo(Scope.APP);
    }

    @Test
    void aMachineOfAnAppThatOptedOutFallsBackToTheHostWhenItsClaimsKeepLosing()
    {
        alloc = new EgressAllocator(WIDE, 42, ledger);
        alloc.upsertApp("a", false);
        addPair("a", P1);
        for (int b = 0; b < 16; b++)
        {
            ledger.taken.add(ScriptedLedger.slot(P1, b));
        }
        upsert(machine("m1", "a"));
        assertThat(egress("m1").scope()).isEqualTo(Scope.HOST);
        assertThat(egress("m1").reason()).contains("kept losing races").contains("is not fail-closed");
    }

    @Test
    void anUnavailableLedgerLeavesTheMachinePendingAndStopsFurtherClaimsInTheOperation()
    {
        addPair("a", P1);
        ledger.unavailable = true;
        upsert(machine("m1", "a"));
        upsert(machine("m2", "a"));
        assertThat(egress("m1").scope()).isEqualTo(Scope.PENDING);
        assertThat(egress("m1").reason()).startsWith("region ledger unavailable");
        assertThat(egress("m2").reason()).startsWith("region ledger unavailable");
        // One claim per operation: m2's operation asked once (for m1, first in the queue) and stopped there.
        assertThat(ledger.claims).containsExactly(P1 + "/1 m1", P1 + "/1 m1");
        assertThat(pairView(P1).used()).as("the candidate is given back").isZero();

        addPair("a", P2);
        assertThat(ledger.claims).hasSize(3);
        assertThat(alloc.apps().get(0).waiting()).containsExactly("m1", "m2");
        assertThat(alloc.anyWaitingWithFreeSlot()).as("two waiting machines, free slots on two pairs").isTrue();

        ledger.unavailable = false;
        final Outcome retried = alloc.retryWaiting();
        assertThat(retried).isEqualTo(new Done(List.of("m1", "m2")));
        assertThat(egress("m1").scope()).isEqualTo(Scope.APP);
        assertThat(egress("m2").scope()).isEqualTo(Scope.APP);
        assertThat(alloc.anyWaitingWithFreeSlot()).as("nobody waits").isFalse();
    }

    @Test
    void anUnavailableLedgerMasqueradesTheMachinesOfAnAppThatOptedOut()
    {
        alloc.upsertApp("a", false);
        addPair("a", P1);
        ledger.unavailable = true;
        upsert(machine("m1", "a"));
        assertThat(egress("m1").scope()).isEqualTo(Scope.HOST);
        assertThat(egress("m1").reason()).startsWith("region ledger unavailable")
            .contains("opted out of fail-closed");
    }

    @Test
    void anUnavailableLedgerLeavesAPinnedMachineWaiting()
    {
        addPair("a", P1);
        ledger.unavailable = true;
        upsert(machine("m1", "a", P1));
        assertThat(egress("m1").scope()).isEqualTo(Scope.PENDING);
        assertThat(egress("m1").reason()).startsWith("region ledger unavailable");
        ledger.unavailable = false;
        alloc.retryWaiting();
        assertThat(egress("m1").pair().ipv4()).isEqualTo(v4(P1));
    }

    @Test
    void aPromoteWhoseClaimIsNotGrantedIsRefusedAndChangesNothing()
    {
        upsert(machine("m1", "a"));
        assertThat(alloc.setMachineScopedPair("m1", pair(P2)).ok()).isTrue();
        ledger.unavailable = true;
        assertRefused(() -> alloc.promote("m1"), Reason.LEDGER_UNAVAILABLE, "machine");
        ledger.unavailable = false;
        ledger.taken.add(ScriptedLedger.slot(P2, 1));
        assertRefused(() -> alloc.promote("m1"), Reason.SLOT_TAKEN, "machine");
        ledger.taken.clear();
        ledger.claims.clear();
        assertThat(alloc.promote("m1").ok()).isTrue();
        assertThat(ledger.claims).containsExactly(P2 + "/1 m1");
        assertThat(egress("m1").pair().ipv4()).isEqualTo(v4(P2));
        assertThat(egress("m1").block()).isEqualTo(1);
    }

    @Test
    void restoresNeverClaim()
    {
        addPair("a", P1);
        assertThat(alloc.restoreMachine(machine("m1", "a"), v4(P1), 3).ok()).isTrue();
        assertThat(alloc.restoreMachineScoped(machine("m2", "a"), pair(P2)).ok()).isTrue();
        assertThat(ledger.claims).isEmpty();
        assertThat(egress("m1").reason()).isEqualTo("slot 3 on app pair " + P1 + " (restored)");
    }

    // ------------------------------------------------------------------------------------------ releases

    @Test
    void everySlotAMachineGivesUpIsReleased()
    {
        addPair("a", P1);
        addPair("b", P2);
        upsert(machine("m1", "a"));
        upsert(machine("m2", "a"));
        upsert(machine("m3", "a"));
        assertThat(alloc.removeMachine("m1").ok()).isTrue();
        assertThat(ledger.releases).containsExactly(P1 + "/1 m1");

        upsert(machine("m2", "b"));
        assertThat(ledger.releases).containsExactly(P1 + "/1 m1", P1 + "/2 m2");
        assertThat(ledger.claims).endsWith(P2 + "/1 m2");

        assertThat(alloc.setMachineScopedPair("m3", pair("198.51.100.7")).ok()).isTrue();
        assertThat(ledger.releases).endsWith(P1 + "/3 m3");

        assertThat(alloc.releasePair("b", v4(P2)).ok()).isTrue();
        assertThat(ledger.releases).endsWith(P2 + "/1 m2");
        assertThat(ledger.releases).hasSize(4);
    }

    // ------------------------------------------------------------------------------------ foreign holders

    @Test
    void aForeignHoldCountsAsHeldSoMostFreeIsRegionWide()
    {
        addPair("a", P1);
        addPair("a", P2);
        assertThat(alloc.holdForeign(v4(P1), 1, "host-b", "x1")).isEqualTo(Done.NOTHING);
        assertThat(alloc.holdForeign(v4(P1), 2, "host-b", "x2")).isEqualTo(Done.NOTHING);
        upsert(machine("m1", "a"));
        upsert(machine("m2", "a"));
        assertThat(egress("m1").pair().ipv4()).isEqualTo(v4(P2));
        assertThat(egress("m2").pair().ipv4()).isEqualTo(v4(P2));
        assertThat(pairView(P1).slots()).containsExactly(new SlotHolder(1, "x1", "host-b"),
            new SlotHolder(2, "x2", "host-b"));
        assertThat(pairView(P1).free()).isEqualTo(2);
        assertThat(alloc.apps().get(0).freeSlots()).isEqualTo(4);
    }

    @Test
    void holdingForeignIsIdempotentAndMayRenameTheHolder()
    {
        addPair("a", P1);
        final Snapshot empty = alloc.snapshot();
        alloc.holdForeign(v4(P1), 2, "host-b", "x1");
        final Snapshot held = alloc.snapshot();
        assertThat(held).as("a foreign hold is part of the state").isNotEqualTo(empty);
        assertThat(alloc.holdForeign(v4(P1), 2, "host-b", "x1")).isEqualTo(Done.NOTHING);
        assertThat(alloc.snapshot()).isEqualTo(held);
        assertThat(alloc.holdForeign(v4(P1), 2, "host-c", "x9").ok()).isTrue();
        assertThat(pairView(P1).slots()).containsExactly(new SlotHolder(2, "x9", "host-c"));
        assertThat(pairView(P1).used()).isEqualTo(1);
        assertThat(alloc.releaseForeign(v4(P1), 2)).isEqualTo(Done.NOTHING);
        assertThat(alloc.snapshot()).isEqualTo(empty);
        assertThat(alloc.releaseForeign(v4(P1), 2)).as("not foreign-held: nothing to do").isEqualTo(Done.NOTHING);
    }

    @Test
    void badForeignHoldsAreRefusedNamingTheField()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        assertRefused(() -> alloc.holdForeign(v4(P2), 1, "host-b", "x1"), Reason.UNKNOWN_PAIR, "pair");
        assertRefused(() -> alloc.holdForeign(null, 1, "host-b", "x1"), Reason.UNKNOWN_PAIR, "pair");
        assertRefused(() -> alloc.holdForeign(v4(P1), 4, "host-b", "x1"), Reason.INVALID, "block");
        assertRefused(() -> alloc.holdForeign(v4(P1), -1, "host-b", "x1"), Reason.INVALID, "block");
        assertRefused(() -> alloc.holdForeign(v4(P1), 1, "", "x1"), Reason.INVALID, "host");
        assertRefused(() -> alloc.holdForeign(v4(P1), 1, "host-b", null), Reason.INVALID, "machine");
        assertRefused(() -> alloc.releaseForeign(v4(P2), 1), Reason.UNKNOWN_PAIR, "pair");
        assertRefused(() -> alloc.releaseForeign(v4(P1), 9), Reason.INVALID, "block");
    }

    @Test
    void theOwnerOfRecordWinsOverALocalMachineWhichMovesWithoutReleasing()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        upsert(machine("m2", "a"));
        assertThat(egress("m1").block()).isEqualTo(1);

        final Outcome outcome = alloc.holdForeign(v4(P1), 1, "host-b", "x1");
        assertThat(outcome).isEqualTo(new Done(List.of("m1")));
        assertThat(alloc.regionConflicts()).isEqualTo(1);
        assertThat(ledger.releases).as("the slot was not ours to release").isEmpty();
        assertThat(ledger.claims).endsWith(P1 + "/3 m1");
        assertThat(egress("m1").block()).isEqualTo(3);
        assertThat(pairView(P1).slots()).containsExactly(new SlotHolder(1, "x1", "host-b"),
            new SlotHolder(2, "m2", null), new SlotHolder(3, "m1", null));
    }

    @Test
    void aLocalMachineLosingItsSlotWaitsWhenNothingElseIsFree()
    {
        addPair("a", P1);
        for (int i = 1; i <= 4; i++)
        {
            upsert(machine("m" + i, "a"));
        }
        assertThat(alloc.holdForeign(v4(P1), 2, "host-b", "x1")).isEqualTo(new Done(List.of("m2")));
        assertThat(egress("m2").scope()).isEqualTo(Scope.PENDING);
        assertThat(egress("m2").reason()).startsWith("all 1 pair of app a are full");
        assertThat(alloc.restoreMachine(machine("m9", "a"), v4(P1), 2))
            .as("a restore onto a slot another host holds").extracting(o -> ((Outcome.Refusal)o).code())
            .isEqualTo(Reason.SLOT_TAKEN);
    }

    @Test
    void aSlotFreedElsewhereInTheRegionPlacesAPendingMachine()
    {
        addPair("a", P1);
        for (int b = 0; b < 4; b++)
        {
            alloc.holdForeign(v4(P1), b, "host-b", "x" + b);
        }
        upsert(machine("m1", "a"));
        assertThat(egress("m1").scope()).isEqualTo(Scope.PENDING);
        assertThat(ledger.claims).as("no slot in view, no claim").isEmpty();

        assertThat(alloc.releaseForeign(v4(P1), 2)).isEqualTo(new Done(List.of("m1")));
        assertThat(egress("m1").block()).isEqualTo(2);
        assertThat(ledger.claims).containsExactly(P1 + "/2 m1");
    }

    @Test
    void releasingAPairDropsItsForeignHoldsAndReleasesOnlyLocalSlots()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        alloc.holdForeign(v4(P1), 2, "host-b", "x1");
        assertThat(alloc.releasePair("a", v4(P1)).ok()).isTrue();
        assertThat(ledger.releases).containsExactly(P1 + "/1 m1");
        addPair("a", P1);
        assertThat(pairView(P1).slots()).containsExactly(new SlotHolder(1, "m1", null));
    }

    // --------------------------------------------------------------------------------------------- reasons

    @Test
    void regionReasonsNameOnlyFactsThatHoldOnEveryHost()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        assertThat(egress("m1").reason()).isEqualTo("slot 1 on app pair " + P1 + " (most free slots)");
        alloc.regionReasons(true);
        assertThat(egress("m1").reason()).isEqualTo("slot 1 of app pair " + P1 + ", region ord (placed)");
        upsert(machine("m2", "a", P1));
        assertThat(egress("m2").reason()).isEqualTo("slot 2 of app pair " + P1 + ", region ord (pinned)");
        assertThat(alloc.restoreMachine(machine("m3", "a"), v4(P1), 3).ok()).isTrue();
        assertThat(egress("m3").reason()).isEqualTo("slot 3 of app pair " + P1 + ", region ord (restored)");
        alloc.regionReasons(false);
        assertThat(egress("m1").reason()).isEqualTo("slot 1 on app pair " + P1 + " (most free slots)");
    }

    @Test
    void aQuarantinedBlockIsHeldWithoutAMachineAndFreedLikeAnyOther()
    {
        final ScriptedLedger ledger = new ScriptedLedger();
        final EgressAllocator allocator = new EgressAllocator(new HostSettings("ord", new BlockLayout(2, 1024), 1024), 1,
            ledger);
        final Ipv4Address ipv4 = Ipv4Address.parse("203.0.113.10");
        assertThat(allocator.addPair("shop", new EgressPair(ipv4, Ipv6Address.parse("2001:db8::10"), "ord")).ok())
            .isTrue();
        assertThat(allocator.holdForeign(ipv4, 0, EgressAllocator.QUARANTINE, null).ok()).isTrue();
        assertThat(allocator.holdForeign(ipv4, 1, EgressAllocator.QUARANTINE, null).ok()).isTrue();
        assertThat(allocator.holdForeign(ipv4, 1, "(other)", null).ok()).as("only the quarantine has no machine")
            .isFalse();
        assertThat(allocator.upsertMachine(new Machine("m1", "shop", "tap-m1", Ipv4Address.parse("10.77.0.2"), null,
            null)).ok()).isTrue();
        assertThat(allocator.egress("m1").orElseThrow().scope()).isEqualTo(Scope.PENDING);
        assertThat(allocator.releaseForeign(ipv4, 1).ok()).isTrue();
        assertThat(allocator.egress("m1").orElseThrow().block()).isEqualTo(1);
    }
}
