package dev.egressd.core.alloc;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.core.alloc.EgressAllocator.MachineView;
import dev.egressd.core.alloc.EgressAllocator.Snapshot;
import dev.egressd.core.alloc.Outcome.Reason;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;

import java.util.HashSet;
import java.util.Set;
import java.util.function.Supplier;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class EgressAllocatorTest
{
    private static final HostSettings HOST = new HostSettings("ord", new BlockLayout(4, 16), 1024);
    private static final String P1 = "203.0.113.1";
    private static final String P2 = "203.0.113.2";
    private static final String P3 = "203.0.113.3";

    private EgressAllocator alloc;

    @BeforeEach
    void setUp()
    {
        alloc = new EgressAllocator(HOST, 42);
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

    private void addPair(final String app, final String ipv4)
    {
        final int last = v4(ipv4).bits() & 0xFF;
        assertThat(alloc.addPair(app, pair(ipv4, "2001:db8::" + Integer.toHexString(last))).ok()).isTrue();
    }

    private static EgressPair pair(final String ipv4, final String ipv6)
    {
        return new EgressPair(v4(ipv4), Ipv6Address.parse(ipv6), HOST.region());
    }

    // As the API calls the allocator: the request text is parsed first, then the typed operation runs.

    private Outcome addPairText(final String app, final String ipv4, final String ipv6, final String region)
    {
        return RequestText.pair(ipv4, ipv6, region, HOST.region()).then(p -> alloc.addPair(app, p));
    }

    private Outcome releasePairText(final String app, final String ipv4)
    {
        return RequestText.ipv4(ipv4, "ipv4").then(v -> alloc.releasePair(app, v));
    }

    private Outcome setDrainedText(final String app, final String ipv4, final boolean drained)
    {
        return RequestText.ipv4(ipv4, "ipv4").then(v -> alloc.setDrained(app, v, drained));
    }

    private Outcome setMachineScopedPairText(final String id, final String ipv4, final String ipv6)
    {
        return RequestText.pair(ipv4, ipv6, null, HOST.region()).then(p -> alloc.setMachineScopedPair(id, p));
    }

    private void upsert(final Machine m)
    {
        assertThat(alloc.upsertMachine(m).ok()).as("upsert %s", m).isTrue();
    }

    private Egress egress(final String id)
    {
        return alloc.egress(id).orElseThrow();
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

    // ------------------------------------------------------------------------------------------- placement

    @Test
    void aMachineOfAnAppWithoutPairsIsMasqueradedToTheHost()
    {
        upsert(machine("m1", "a"));
        final Egress e = egress("m1");
        assertThat(e.scope()).isEqualTo(Scope.HOST);
        assertThat(e.pair()).isNull();
        assertThat(e.reason()).isEqualTo("app a has no egress pairs in region ord: masqueraded to the host address");
    }

    @Test
    void aMachineGetsTheLowestNonZeroBlockOnItsAppsPairWithThatBlocksPorts()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        final Egress e = egress("m1");
        assertThat(e.scope()).isEqualTo(Scope.APP);
        assertThat(e.pair().ipv4()).isEqualTo(v4(P1));
        assertThat(e.block()).isEqualTo(1);
        assertThat(e.firstPort()).isEqualTo(16);
        assertThat(e.lastPort()).isEqualTo(31);
        assertThat(e.reason()).isEqualTo("slot 1 on app pair 203.0.113.1 (most free slots)");
    }

    @Test
    void machinesGoToThePairWithTheMostFreeSlots()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        upsert(machine("m2", "a"));
        addPair("a", P2);
        upsert(machine("m3", "a"));
        upsert(machine("m4", "a"));
        assertThat(egress("m3").pair().ipv4()).isEqualTo(v4(P2));
        assertThat(egress("m4").pair().ipv4()).isEqualTo(v4(P2));
    }

    @Test
    void equallyFreePairsAreEachChosenSometimes()
    {
        final Set<Ipv4Address> chosen = new HashSet<>();
        for (long seed = 0; seed < 40; seed++)
        {
            final EgressAllocator a = new EgressAllocator(HOST, seed);
            a.addPair("a", pair(P1, "2001:db8::1"));
            a.addPair("a", pair(P2, "2001:db8::2"));
            a.upsertMachine(machine("m1", "a"));
            chosen.add(a.egress("m1").orElseThrow().pair().ipv4());
        }
        assertThat(chosen).containsExactlyInAnyOrder(v4(P1), v4(P2));
    }

    @Test
    void blockZeroIsTheLastBlockHandedOut()
    {
        addPair("a", P1);
        for (int i = 1; i <= 4; i++)
        {
            upsert(machine("m" + i, "a"));
        }
        assertThat(egress("m4").block()).isZero();
        assertThat(egress("m4").firstPort()).isEqualTo(1);
    }

    @Test
    void theMachineAfterTheLastSlotIsPendingWhenItsAppFailsClosed()
    {
        addPair("a", P1);
        for (int i = 1; i <= 5; i++)
        {
            upsert(machine("m" + i, "a"));
        }
        final Egress e = egress("m5");
        assertThat(e.scope()).isEqualTo(Scope.PENDING);
        assertThat(e.reason()).startsWith("all 1 pair of app a are full: pending (fail-closed)");
    }

    @Test
    void theMachineAfterTheLastSlotFallsBackToTheHostWhenItsAppOptedOut()
    {
        assertThat(alloc.upsertApp("a", false).ok()).isTrue();
        addPair("a", P1);
        for (int i = 1; i <= 5; i++)
        {
            upsert(machine("m" + i, "a"));
        }
        assertThat(egress("m5").scope()).isEqualTo(Scope.HOST);
        assertThat(egress("m5").reason()).contains("fell back to the host address");
        final Outcome flip = alloc.upsertApp("a", true);
        assertThat(((Outcome.Done)flip).changed()).containsExactly("m5");
        assertThat(egress("m5").scope()).isEqualTo(Scope.PENDING);
    }

    @Test
    void aPendingMachineIsPlacedAsSoonAsASlotFrees()
    {
        addPair("a", P1);
        for (int i = 1; i <= 5; i++)
        {
            upsert(machine("m" + i, "a"));
        }
        final Egress freed = egress("m2");
        final Outcome outcome = alloc.removeMachine("m2");
        assertThat(((Outcome.Done)outcome).changed()).containsExactly("m2", "m5");
        assertThat(egress("m5").scope()).isEqualTo(Scope.APP);
        assertThat(egress("m5").block()).isEqualTo(freed.block());
    }

    @Test
    void pendingAndMasqueradedMachinesArePlacedWhenAPairIsAdded()
    {
        upsert(machine("m1", "a"));
        addPair("b", P3);
        for (int i = 2; i <= 6; i++)
        {
            upsert(machine("m" + i, "b"));
        }
        assertThat(egress("m6").scope()).isEqualTo(Scope.PENDING);
        final Outcome outcome = alloc.addPair("a", pair(P1, "2001:db8::1"));
        assertThat(((Outcome.Done)outcome).changed()).containsExactly("m1");
        assertThat(egress("m1").scope()).isEqualTo(Scope.APP);
        addPair("b", P2);
        assertThat(egress("m6").scope()).isEqualTo(Scope.APP);
        assertThat(egress("m6").pair().ipv4()).isEqualTo(v4(P2));
    }

    @Test
    void pendingMachinesArePlacedFirstComeFirstServed()
    {
        addPair("a", P1);
        for (int i = 1; i <= 7; i++)
        {
            upsert(machine("m" + i, "a"));
        }
        alloc.removeMachine("m1");
        assertThat(egress("m5").scope()).isEqualTo(Scope.APP);
        assertThat(egress("m6").scope()).isEqualTo(Scope.PENDING);
        assertThat(alloc.apps().get(0).waiting()).containsExactly("m6", "m7");
    }

    @Test
    void releasingAPairMovesItsMachinesToTheOtherPairsThenToPending()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        upsert(machine("m2", "a"));
        upsert(machine("m3", "a"));
        addPair("a", P2);
        upsert(machine("m4", "a"));
        upsert(machine("m5", "a"));
        final Outcome outcome = alloc.releasePair("a", v4(P1));
        assertThat(((Outcome.Done)outcome).changed()).containsExactly("m1", "m2", "m3");
        assertThat(egress("m1").pair().ipv4()).isEqualTo(v4(P2));
        assertThat(egress("m2").pair().ipv4()).isEqualTo(v4(P2));
        assertThat(egress("m3").scope()).isEqualTo(Scope.PENDING);
    }

    @Test
    void releasingTheLastPairMasqueradesItsMachines()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        alloc.releasePair("a", v4(P1));
        assertThat(egress("m1").scope()).isEqualTo(Scope.HOST);
        assertThat(alloc.pairs()).isEmpty();
        addPair("b", P1); // the address is free again
    }

    @Test
    void releasingAPairDropsThePinsToItAndPlacesThoseMachinesNormally()
    {
        addPair("a", P1);
        addPair("a", P2);
        upsert(machine("m1", "a", P1));
        alloc.releasePair("a", v4(P1));
        final MachineView m1 = alloc.machine("m1").orElseThrow();
        assertThat(m1.machine().pin()).isNull();
        assertThat(m1.egress().pair().ipv4()).isEqualTo(v4(P2));
    }

    @Test
    void aDrainedPairKeepsItsMachinesAndTakesNoNewOnes()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        assertThat(alloc.setDrained("a", v4(P1), true).ok()).isTrue();
        upsert(machine("m2", "a"));
        assertThat(egress("m1").pair().ipv4()).isEqualTo(v4(P1));
        assertThat(egress("m2").scope()).isEqualTo(Scope.PENDING);
        assertThat(egress("m2").reason()).contains("full or drained (1 drained)");
        assertThat(alloc.pairs().get(0).drained()).isTrue();
        alloc.setDrained("a", v4(P1), false);
        assertThat(egress("m2").scope()).isEqualTo(Scope.APP);
    }

    @Test
    void aPinnedMachineIsPlacedOnItsPinEvenWhenAnotherPairIsFreer()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        addPair("a", P2);
        upsert(machine("m2", "a", P1));
        assertThat(egress("m2").pair().ipv4()).isEqualTo(v4(P1));
        assertThat(egress("m2").reason()).endsWith("(pinned)");
    }

    @Test
    void anUpdateKeepsTheSlotUnlessTheAppOrThePinChanges()
    {
        addPair("a", P1);
        addPair("a", P2);
        addPair("b", P3);
        upsert(machine("m1", "a"));
        final Egress first = egress("m1");
        final Machine moved = new Machine("m1", "a", "tap-other", v4("10.9.9.9"), null, null);
        assertThat(((Outcome.Done)alloc.upsertMachine(moved)).changed()).containsExactly("m1");
        assertThat(egress("m1")).isEqualTo(first);
        final String other = first.pair().ipv4().equals(v4(P1)) ? P2 : P1;
        upsert(new Machine("m1", "a", "tap-other", v4("10.9.9.9"), null, v4(other)));
        assertThat(egress("m1").pair().ipv4()).isEqualTo(v4(other));
        upsert(new Machine("m1", "a", "tap-other", v4("10.9.9.9"), null, null));
        assertThat(egress("m1").pair().ipv4()).isEqualTo(v4(other));
        upsert(new Machine("m1", "b", "tap-other", v4("10.9.9.9"), null, null));
        assertThat(egress("m1").pair().ipv4()).isEqualTo(v4(P3));
    }

    @Test
    void repeatingARequestSucceedsAndChangesNothing()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        alloc.setDrained("a", v4(P1), true);
        final Snapshot before = alloc.snapshot();
        assertThat(alloc.addPair("a", pair(P1, "2001:db8::1"))).isEqualTo(Outcome.Done.NOTHING);
        assertThat(alloc.upsertMachine(machine("m1", "a"))).isEqualTo(Outcome.Done.NOTHING);
        assertThat(alloc.setDrained("a", v4(P1), true)).isEqualTo(Outcome.Done.NOTHING);
        assertThat(alloc.upsertApp("a", true)).isEqualTo(Outcome.Done.NOTHING);
        assertThat(alloc.snapshot()).isEqualTo(before);
    }

    // ------------------------------------------------------------------------------------- machine-scoped

    @Test
    void aMachineScopedPairTakesPrecedenceAndItsFreedSlotGoesToAPendingMachine()
    {
        addPair("a", P1);
        for (int i = 1; i <= 5; i++)
        {
            upsert(machine("m" + i, "a"));
        }
        final Outcome outcome = alloc.setMachineScopedPair("m1", pair("198.51.100.7", "2001:db8:1::7"));
        assertThat(((Outcome.Done)outcome).changed()).containsExactly("m1", "m5");
        final Egress e = egress("m1");
        assertThat(e.scope()).isEqualTo(Scope.MACHINE);
        assertThat(e.pair().ipv4()).isEqualTo(v4("198.51.100.7"));
        assertThat(e.firstPort()).isEqualTo(1);
        assertThat(e.lastPort()).isEqualTo(65535);
        assertThat(egress("m5").scope()).isEqualTo(Scope.APP);
    }

    @Test
    void releasingAMachineScopedPairSendsTheMachineBackToItsAppsPairs()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        alloc.setMachineScopedPair("m1", pair("198.51.100.7", "2001:db8:1::7"));
        assertThat(alloc.releaseMachineScopedPair("m1").ok()).isTrue();
        assertThat(egress("m1").scope()).isEqualTo(Scope.APP);
        addPair("a", "198.51.100.7"); // its addresses are free again
    }

    @Test
    void promotingKeepsTheAddressesAndGivesTheMachineASlotOnThatPair()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        upsert(machine("m2", "a"));
        alloc.setMachineScopedPair("m1", pair("198.51.100.7", "2001:db8:1::7"));
        for (int i = 3; i <= 6; i++)
        {
            upsert(machine("m" + i, "a"));
        }
        assertThat(egress("m6").scope()).isEqualTo(Scope.PENDING);
        assertThat(alloc.promote("m1").ok()).isTrue();
        final Egress e = egress("m1");
        assertThat(e.scope()).isEqualTo(Scope.APP);
        assertThat(e.pair()).isEqualTo(new EgressPair(v4("198.51.100.7"), Ipv6Address.parse("2001:db8:1::7"), "ord"));
        assertThat(e.reason()).contains("promoted");
        assertThat(alloc.machine("m1").orElseThrow().machineScopedPair()).isNull();
        assertThat(egress("m6").pair().ipv4()).isEqualTo(v4("198.51.100.7"));
    }

    @Test
    void removingAMachineReleasesItsMachineScopedPair()
    {
        upsert(machine("m1", "a"));
        alloc.setMachineScopedPair("m1", pair("198.51.100.7", "2001:db8:1::7"));
        alloc.removeMachine("m1");
        addPair("a", "198.51.100.7");
    }

    // ------------------------------------------------------------------------------------- restore, handles

    @Test
    void restoringPutsEveryMachineBackOnItsExactSlot()
    {
        addPair("a", P1);
        addPair("a", P2);
        for (int i = 1; i <= 6; i++)
        {
            upsert(machine("m" + i, "a"));
        }
        alloc.removeMachine("m3");
        alloc.setMachineScopedPair("m4", pair("198.51.100.7", "2001:db8:1::7"));
        alloc.setDrained("a", v4(P2), true);

        final EgressAllocator rebuilt = new EgressAllocator(HOST, 1);
        alloc.pairs().forEach(p ->
        {
            rebuilt.addPair(p.app(), p.pair());
            rebuilt.setDrained(p.app(), p.pair().ipv4(), p.drained());
        });
        for (final MachineView m : alloc.machines())
        {
            final Outcome o = m.egress().scope() == Scope.APP
                ? rebuilt.restoreMachine(m.machine(), m.egress().pair().ipv4(), m.egress().block())
                : rebuilt.restoreMachineScoped(m.machine(), m.machineScopedPair());
            assertThat(o.ok()).isTrue();
        }
        for (final MachineView m : alloc.machines())
        {
            assertThat(rebuilt.egress(m.machine().id()).orElseThrow().pair()).isEqualTo(m.egress().pair());
            assertThat(rebuilt.egress(m.machine().id()).orElseThrow().block()).isEqualTo(m.egress().block());
        }
    }

    @Test
    void restoringOntoAHeldSlotIsRefused()
    {
        addPair("a", P1);
        assertThat(alloc.restoreMachine(machine("m1", "a"), v4(P1), 2).ok()).isTrue();
        assertThat(egress("m1").block()).isEqualTo(2);
        assertRefused(() -> alloc.restoreMachine(machine("m2", "a"), v4(P1), 2), Reason.SLOT_TAKEN, "block");
        assertRefused(() -> alloc.restoreMachine(machine("m2", "a"), v4(P1), 4), Reason.INVALID, "block");
        assertRefused(() -> alloc.restoreMachine(machine("m2", "b"), v4(P1), 3), Reason.UNKNOWN_PAIR, "pair");
        assertRefused(() -> alloc.restoreMachine(machine("m1", "a"), v4(P1), 3), Reason.ALREADY_EXISTS, "id");
        assertThat(alloc.restoreMachine(machine("m1", "a"), v4(P1), 2)).isEqualTo(Outcome.Done.NOTHING);
    }

    @Test
    void handlesAreSmallStableAndReusedAfterRemoval()
    {
        upsert(machine("m1", "a"));
        upsert(machine("m2", "a"));
        upsert(machine("m3", "a"));
        assertThat(alloc.handle("m2")).isEqualTo(1);
        alloc.removeMachine("m2");
        upsert(machine("m4", "a"));
        assertThat(alloc.handle("m4")).isEqualTo(1);
        assertThat(alloc.handle("m3")).isEqualTo(2);
        assertThat(alloc.handle("nope")).isEqualTo(-1);
    }

    // ------------------------------------------------------------------------------------------- refusals

    @Test
    void badPairRequestsAreRefusedNamingTheFieldAndChangeNothing()
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        assertRefused(() -> addPairText("a", "2001:db8::9", "2001:db8::9", null), Reason.WRONG_FAMILY, "ipv4");
        assertRefused(() -> addPairText("a", "203.0.113.9", "203.0.113.9", null), Reason.WRONG_FAMILY, "ipv6");
        assertRefused(() -> addPairText("a", "203.0.113", "2001:db8::9", null), Reason.INVALID, "ipv4");
        assertRefused(() -> addPairText("a", "203.0.113.9", "2001:db8::zz", null), Reason.INVALID, "ipv6");
        assertRefused(() -> addPairText("a", "0.0.0.0", "2001:db8::9", null), Reason.INVALID, "ipv4");
        assertRefused(() -> addPairText("a", "203.0.113.9", "2001:db8::9", "lhr"), Reason.WRONG_REGION, "region");
        assertRefused(() -> addPairText("a b", "203.0.113.9", "2001:db8::9", null), Reason.INVALID, "app");
        assertRefused(() -> addPairText("b", P1, "2001:db8::1", null), Reason.ADDRESS_IN_USE, "ipv4");
        assertRefused(() -> addPairText("a", P1, "2001:db8::9", null), Reason.ADDRESS_IN_USE, "ipv4");
        assertRefused(() -> addPairText("a", "203.0.113.9", "2001:db8::1", null), Reason.ADDRESS_IN_USE, "ipv6");
        assertRefused(() -> addPairText("a", "10.0.0.3", "2001:db8::9", null), Reason.ADDRESS_IN_USE, "ipv4");
        assertRefused(() -> releasePairText("zz", P1), Reason.UNKNOWN_APP, "app");
        assertRefused(() -> releasePairText("a", P2), Reason.UNKNOWN_PAIR, "ipv4");
        assertRefused(() -> setDrainedText("a", "::1", true), Reason.WRONG_FAMILY, "ipv4");
        assertRefused(() -> setDrainedText("a", P2, true), Reason.UNKNOWN_PAIR, "ipv4");
    }

    @Test
    void badMachineRequestsAreRefusedNamingTheFieldAndChangeNothing()
    {
        addPair("a", P1);
        addPair("a", P2);
        addPair("b", P3);
        upsert(machine("m1", "a"));
        for (int i = 2; i <= 4; i++)
        {
            upsert(machine("m" + i, "a", P1));
        }
        alloc.setDrained("a", v4(P2), true);
        final Machine m9 = machine("m9", "a");
        assertRefused(() -> alloc.upsertMachine(null), Reason.INVALID, "machine");
        assertRefused(() -> alloc.upsertMachine(new Machine("", "a", "tap9", m9.ipv4(), null, null)),
            Reason.INVALID, "id");
        assertRefused(() -> alloc.upsertMachine(new Machine("m9", "a/b", "tap9", m9.ipv4(), null, null)),
            Reason.INVALID, "app");
        assertRefused(() -> alloc.upsertMachine(new Machine("m9", "a", "a-very-long-interface", m9.ipv4(), null, null)),
            Reason.INVALID, "interface");
        assertRefused(() -> alloc.upsertMachine(new Machine("m9", "a", "tap9", null, null, null)),
            Reason.INVALID, "ipv4");
        assertRefused(() -> alloc.upsertMachine(new Machine("m9", "a", "tap-m1", m9.ipv4(), null, null)),
            Reason.DUPLICATE_INTERFACE, "interface");
        assertRefused(() -> alloc.upsertMachine(new Machine("m9", "a", "tap9", v4("10.0.0.3"), null, null)),
            Reason.ADDRESS_IN_USE, "ipv4");
        assertRefused(() -> alloc.upsertMachine(new Machine("m9", "a", "tap9", v4(P1), null, null)),
            Reason.ADDRESS_IN_USE, "ipv4");
        assertRefused(() -> alloc.upsertMachine(new Machine("m9", "a", "tap9", null,
            Ipv6Address.parse("fd00::3"), null)), Reason.ADDRESS_IN_USE, "ipv6");
        assertRefused(() -> alloc.upsertMachine(machine("m9", "a", "203.0.113.77")), Reason.UNKNOWN_PAIR, "pin");
        assertRefused(() -> alloc.upsertMachine(machine("m9", "a", P3)), Reason.PIN_FOREIGN_PAIR, "pin");
        assertRefused(() -> alloc.upsertMachine(machine("m9", "a", P2)), Reason.PAIR_DRAINED, "pin");
        alloc.upsertMachine(machine("m5", "a", P1)); // the last slot of P1 (block 0)
        assertRefused(() -> alloc.upsertMachine(machine("m9", "a", P1)), Reason.PAIR_FULL, "pin");
        assertRefused(() -> alloc.removeMachine("m9"), Reason.UNKNOWN_MACHINE, "machine");
        assertRefused(() -> alloc.promote("m1"), Reason.NO_MACHINE_SCOPED_PAIR, "machine");
        assertRefused(() -> alloc.releaseMachineScopedPair("m1"), Reason.NO_MACHINE_SCOPED_PAIR, "machine");
        assertRefused(() -> setMachineScopedPairText("m9", "198.51.100.7", "2001:db8:1::7"),
            Reason.UNKNOWN_MACHINE, "machine");
        assertRefused(() -> setMachineScopedPairText("m1", P3, "2001:db8:1::7"), Reason.ADDRESS_IN_USE, "ipv4");
        assertRefused(() -> setMachineScopedPairText("m1", "2001:db8:1::7", "2001:db8:1::7"),
            Reason.WRONG_FAMILY, "ipv4");
    }

    @org.junit.jupiter.params.ParameterizedTest(name = "ipv4 {0}: {1}")
    @org.junit.jupiter.params.provider.CsvSource({
        "0.0.0.0, 0.0.0.0/8",
        "0.1.2.3, 0.0.0.0/8",
        "127.0.0.1, loopback",
        "127.255.0.9, loopback",
        "224.0.0.1, multicast",
        "239.255.255.250, multicast",
        "255.255.255.255, broadcast"})
    void anUnusableGuestIpv4IsRefusedNamingTheProblem(final String address, final String problem)
    {
        addPair("a", P1);
        upsert(machine("m1", "a"));
        final Machine bad = new Machine("m9", "a", "tap9", v4(address), Ipv6Address.parse("fd00::9"), null);
        assertRefused(() -> alloc.upsertMachine(bad), Reason.INVALID, "ipv4");
        assertThat(((Outcome.Refusal)alloc.upsertMachine(bad)).message()).contains(address).contains(problem);
        // An existing machine may not be updated to it either, and a restore refuses it too.
        final Machine m1 = alloc.machine("m1").orElseThrow().machine();
        assertRefused(() -> alloc.upsertMachine(new Machine("m1", "a", m1.iface(), v4(address), m1.ipv6(), null)),
            Reason.INVALID, "ipv4");
        assertRefused(() -> alloc.restoreMachine(bad, v4(P1), 2), Reason.INVALID, "ipv4");
    }

    @org.junit.jupiter.params.ParameterizedTest(name = "ipv6 {0}: {1}")
    @org.junit.jupiter.params.provider.CsvSource({
        "::, unspecified",
        "::1, loopback",
        "fe80::1, link-local",
        "febf:ffff::1, link-local",
        "ff02::1, multicast",
        "ff05::1:3, multicast"})
    void anUnusableGuestIpv6IsRefusedNamingTheProblem(final String address, final String problem)
    {
        addPair("a", P1);
        final Machine bad = new Machine("m9", "a", "tap9", v4("10.0.0.9"), Ipv6Address.parse(address), null);
        assertRefused(() -> alloc.upsertMachine(bad), Reason.INVALID, "ipv6");
        final Outcome.Refusal refusal = (Outcome.Refusal)alloc.upsertMachine(bad);
        assertThat(refusal.message()).contains(Ipv6Address.parse(address).toString()).contains(problem);
        assertRefused(() -> alloc.upsertMachine(new Machine("m9", "a", "tap9", null, Ipv6Address.parse(address), null)),
            Reason.INVALID, "ipv6");
    }

    @Test
    void guestAddressesNextToTheUnusableRangesAreAccepted()
    {
        addPair("a", P1);
        final String[][] fine = {
            {"1.0.0.1", "fec0::1"}, {"126.255.255.254", "fe7f::1"}, {"128.0.0.1", "fc00::1"},
            {"223.255.255.254", "fd77::2"}, {"240.0.0.1", "2001:db8::99"}, {"10.77.0.2", "::2"}};
        for (int i = 0; i < fine.length; i++)
        {
            upsert(new Machine("m" + i, "a", "tap" + i, v4(fine[i][0]), Ipv6Address.parse(fine[i][1]), null));
        }
    }

    @Test
    void blockZeroIsTheLastBlockAcrossAllTheAppsPairs()
    {
        // P1 ends with only block 0 free, P2 with only block 2 free: the next machine gets P2's block 2.
        for (long seed = 0; seed < 40; seed++)
        {
            final EgressAllocator a = new EgressAllocator(HOST, seed);
            a.addPair("a", pair(P1, "2001:db8::1"));
            a.addPair("a", pair(P2, "2001:db8::2"));
            for (int b = 1; b <= 3; b++)
            {
                a.restoreMachine(machine("m" + b, "a"), v4(P1), b);
            }
            a.restoreMachine(machine("m4", "a"), v4(P2), 0);
            a.restoreMachine(machine("m5", "a"), v4(P2), 1);
            a.restoreMachine(machine("m6", "a"), v4(P2), 3);
            a.upsertMachine(machine("m7", "a"));
            assertThat(a.egress("m7").orElseThrow().pair().ipv4()).as("seed %d", seed).isEqualTo(v4(P2));
            assertThat(a.egress("m7").orElseThrow().block()).isEqualTo(2);
            a.upsertMachine(machine("m8", "a"));
            assertThat(a.egress("m8").orElseThrow().pair().ipv4()).isEqualTo(v4(P1));
            assertThat(a.egress("m8").orElseThrow().block()).isZero();
        }
    }

    @Test
    void releasingAMachineScopedPairIsRefusedWhenThePinnedPairHasNoRoom()
    {
        addPair("a", P1);
        upsert(machine("m1", "a", P1));
        alloc.setMachineScopedPair("m1", pair("198.51.100.7", "2001:db8:1::7"));
        for (int i = 2; i <= 5; i++)
        {
            upsert(machine("m" + i, "a"));
        }
        assertRefused(() -> alloc.releaseMachineScopedPair("m1"), Reason.PAIR_FULL, "pin");
        alloc.removeMachine("m5");
        alloc.setDrained("a", v4(P1), true);
        assertRefused(() -> alloc.releaseMachineScopedPair("m1"), Reason.PAIR_DRAINED, "pin");
    }
}
