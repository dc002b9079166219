package dev.egressd.agent.conntrack;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.groups.Tuple.tuple;

import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.Test;

/** The machine diff alone: what each new list of machines registers, unregisters and deletes, and when. */
class MachineRegistryTest
{
    private static final EgressPair A = new EgressPair(Ipv4Address.parse("203.0.113.10"),
        Ipv6Address.parse("2001:db8:10::10"), "lab");
    private static final EgressPair B = new EgressPair(Ipv4Address.parse("203.0.113.20"),
        Ipv6Address.parse("2001:db8:10::20"), "lab");
    private static final Ipv4Address G1 = Ipv4Address.parse("10.77.0.2");
    private static final Ipv6Address G1V6 = Ipv6Address.parse("fd77::2");
    private static final Ipv4Address G2 = Ipv4Address.parse("10.77.0.3");
    private static final Ipv4Address G3 = Ipv4Address.parse("10.77.0.4");
    private static final long DRAIN = 350_000_000_000L;

    private final AtomicLong clock = new AtomicLong(5_000_000_000L);
    private final List<String> lines = new ArrayList<>();
    private final MachineRegistry registry = new MachineRegistry(
        new RefusalLog(RefusalLog.Format.TEXT, lines::add, clock::get), clock::get);

    private static EgressAllocator.MachineView view(final String id, final Ipv4Address guest4,
        final Ipv6Address guest6, final Egress egress, final EgressPair machineScoped)
    {
        return new EgressAllocator.MachineView(0, new Machine(id, "a1", "tap-" + id, guest4, guest6, null), egress,
            machineScoped);
    }

    private static EgressAllocator.MachineView app(final String id, final Ipv4Address guest, final EgressPair pair,
        final int first)
    {
        return view(id, guest, id.equals("m1") ? G1V6 : null, new Egress(Scope.APP, pair, 1, first, first + 1023,
            "slot"), null);
    }

    private static EgressAllocator.MachineView host(final String id, final Ipv4Address guest)
    {
        return view(id, guest, id.equals("m1") ? G1V6 : null, new Egress(Scope.HOST, null, -1, -1, -1, "masquerade"),
            null);
    }

    private static EgressAllocator.MachineView pending(final String id, final Ipv4Address guest)
    {
        return view(id, guest, null, new Egress(Scope.PENDING, null, -1, -1, -1, "every pair is full"), null);
    }

    private MachineRegistry.Update diff(final List<EgressPair> held, final EgressAllocator.MachineView... machines)
    {
        return registry.diff(List.of(machines), held.stream().map(EgressPair::ipv4).toList(),
            held.stream().map(EgressPair::ipv6).toList(), DRAIN);
    }

    @Test
    void theFirstListRegistersEveryMachineUnderTheLowestFreeHandlesAndIndexesItsGuestAddresses()
    {
        final MachineRegistry.Update u = diff(List.of(A), app("m1", G1, A, 1024), host("m2", G2));
        assertThat(u.registers()).extracting(TrackedMachine::id, TrackedMachine::handle)
            .containsExactly(tuple("m1", 0), tuple("m2", 1));
        assertThat(u.registers().get(0)).extracting(TrackedMachine::firstPort, TrackedMachine::lastPort,
            TrackedMachine::egress4).containsExactly(1024, 2047, A.ipv4());
        assertThat(u.registers().get(1)).as("a host machine: any port is in its range")
            .extracting(TrackedMachine::firstPort, TrackedMachine::lastPort).containsExactly(1, 65535);
        assertThat(u.unregisters()).isEmpty();
        assertThat(u.index().handle4(G1.bits())).isEqualTo(0);
        assertThat(u.index().handle6(G1V6.high(), G1V6.low())).isEqualTo(0);
        assertThat(u.index().handle4(G2.bits())).isEqualTo(1);
        assertThat(u.index().handle4(G3.bits())).isEqualTo(GuestIndex.MISSING);
        assertThat(u.held().contains4(A.ipv4().bits())).isTrue();
        assertThat(u.held().contains4(B.ipv4().bits())).isFalse();
        // first seen static: its unheld flows go at once; the host machine keeps every flow
        assertThat(u.deletions()).singleElement().satisfies(d ->
        {
            assertThat(d.machine()).isEqualTo("m1");
            assertThat(d.kind()).isEqualTo(FlowDeletion.Kind.UNHELD);
            assertThat(d.due()).isEqualTo(clock.get());
            assertThat(d.guest4()).isEqualTo(G1);
            assertThat(d.guest6()).isEqualTo(G1V6);
            assertThat(d.why()).isEqualTo("first seen app via 203.0.113.10: flows translated to no held egress "
                + "address");
        });
    }

    @Test
    void theSameMachinesAgainChangeNothingUnlessTheHeldAddressesChanged()
    {
        diff(List.of(A), app("m1", G1, A, 1024), host("m2", G2));
        assertThat(diff(List.of(A), app("m1", G1, A, 1024), host("m2", G2))).isNull();
        final MachineRegistry.Update u = diff(List.of(A, B), app("m1", G1, A, 1024), host("m2", G2));
        assertThat(u).isNotNull();
        assertThat(u.registers()).isEmpty();
        assertThat(u.unregisters()).isEmpty();
        assertThat(u.deletions()).isEmpty();
        assertThat(u.held().contains4(B.ipv4().bits())).isTrue();
        assertThat(u.held().contains6(B.ipv6().high(), B.ipv6().low())).isTrue();
    }

    @Test
    void aDeletedMachineIsUnregisteredLosesEveryFlowAtOnceAndItsHandleGoesToTheNextNewMachine()
    {
        diff(List.of(A), app("m1", G1, A, 1024), host("m2", G2));
        clock.addAndGet(1_000);
        final MachineRegistry.Update u = diff(List.of(A), host("m2", G2));
        assertThat(u.registers()).isEmpty();
        assertThat(u.unregisters()).extracting(TrackedMachine::id, TrackedMachine::handle)
            .containsExactly(tuple("m1", 0));
        assertThat(u.deletions()).singleElement().satisfies(d ->
        {
            assertThat(d.kind()).isEqualTo(FlowDeletion.Kind.ALL_OR_VIA);
            assertThat(d.due()).isEqualTo(clock.get());
            assertThat(d.guest4()).isEqualTo(G1);
            assertThat(d.guest6()).isEqualTo(G1V6);
            assertThat(d.egress4()).isNull();
            assertThat(d.egress6()).isNull();
            assertThat(d.why()).isEqualTo("machine deleted");
        });
        assertThat(u.index().handle4(G1.bits())).isEqualTo(GuestIndex.MISSING);

        final MachineRegistry.Update next = diff(List.of(A), host("m2", G2), host("m3", G3));
        assertThat(next.registers()).extracting(TrackedMachine::id, TrackedMachine::handle)
            .containsExactly(tuple("m3", 0));
    }

    @Test
    void aNewEgressAddressDeletesTheOldOnesFlowsAfterTheDrainAndPromotionDeletesNothing()
    {
        diff(List.of(A, B), app("m1", G1, A, 1024));
        final MachineRegistry.Update moved = diff(List.of(A, B), app("m1", G1, B, 2048));
        assertThat(moved.registers()).extracting(TrackedMachine::egress4, TrackedMachine::firstPort)
            .containsExactly(tuple(B.ipv4(), 2048));
        assertThat(moved.deletions()).singleElement().satisfies(d ->
        {
            assertThat(d.kind()).isEqualTo(FlowDeletion.Kind.ALL_OR_VIA);
            assertThat(d.due()).as("after the drain time").isEqualTo(clock.get() + DRAIN);
            assertThat(d.egress4()).isEqualTo(A.ipv4());
            assertThat(d.egress6()).isEqualTo(A.ipv6());
            assertThat(d.guest4()).isEqualTo(G1);
            assertThat(d.why()).isEqualTo("egress changed from 203.0.113.10 to 203.0.113.20");
        });

        // promotion: the pair becomes the machine's own, same address, no block; re-registered, no flow goes
        final MachineRegistry.Update promoted = diff(List.of(A, B),
            view("m1", G1, G1V6, new Egress(Scope.MACHINE, B, -1, -1, -1, "promoted"), B));
        assertThat(promoted.registers()).extracting(TrackedMachine::scope, TrackedMachine::firstPort)
            .containsExactly(tuple(Scope.MACHINE, 1));
        assertThat(promoted.deletions()).isEmpty();
    }

    @Test
    void aMachineThatBecomesStaticLosesItsUnheldFlowsAtOnceAndAPendingMachineIsLoggedOnce()
    {
        diff(List.of(A), host("m1", G1), pending("m2", G2));
        assertThat(lines).containsExactly("refusal reason=pending machine=m2 app=a1 detail=\"every pair is full\"");
        final MachineRegistry.Update u = diff(List.of(A), app("m1", G1, A, 1024), pending("m2", G2));
        assertThat(lines).as("still pending: not logged again").hasSize(1);
        assertThat(u.deletions()).singleElement().satisfies(d ->
        {
            assertThat(d.machine()).isEqualTo("m1");
            assertThat(d.kind()).isEqualTo(FlowDeletion.Kind.UNHELD);
            assertThat(d.due()).as("at once, no drain").isEqualTo(clock.get());
            assertThat(d.why()).isEqualTo("became static (host to app via 203.0.113.10): flows translated to no "
                + "held egress address");
        });
        final MachineRegistry.Update back = diff(List.of(A), host("m1", G1), pending("m2", G2));
        assertThat(back.deletions()).as("back to host: its flows via A go after the drain").singleElement()
            .satisfies(d -> assertThat(d.due()).isEqualTo(clock.get() + DRAIN));
    }

    @Test
    void aGivenUpGuestAddressLosesItsFlowsAtOnceAndNoDrainDeletionIsAddedForIt()
    {
        diff(List.of(A, B), app("m2", G2, A, 1024));
        final MachineRegistry.Update u = diff(List.of(A, B), app("m2", G3, B, 1024));
        assertThat(u.deletions()).singleElement().satisfies(d ->
        {
            assertThat(d.kind()).isEqualTo(FlowDeletion.Kind.ALL_OR_VIA);
            assertThat(d.guest4()).isEqualTo(G2);
            assertThat(d.egress4()).isNull();
            assertThat(d.due()).isEqualTo(clock.get());
            assertThat(d.why()).isEqualTo("guest address changed");
        });
        assertThat(u.index().handle4(G2.bits())).isEqualTo(GuestIndex.MISSING);
        assertThat(u.index().handle4(G3.bits())).isEqualTo(0);
    }

    @Test
    void theMachinesHoldTheirPairsAndMachineScopedPairs()
    {
        final List<Ipv4Address> held4 = new ArrayList<>();
        final List<Ipv6Address> held6 = new ArrayList<>();
        MachineRegistry.heldBy(List.of(app("m1", G1, A, 1024), host("m2", G2),
            view("m3", G3, null, new Egress(Scope.APP, A, 2, 2048, 3071, "slot"), B)), held4, held6);
        assertThat(held4).containsExactly(A.ipv4(), A.ipv4(), B.ipv4());
        assertThat(held6).containsExactly(A.ipv6(), A.ipv6(), B.ipv6());
    }

    @Test
    void toldOnlyWhatChangedItGivesTheWholeDiffsUpdatesThroughRandomChanges()
    {
        final List<String> incrementalLines = new ArrayList<>();
        final MachineRegistry incremental = new MachineRegistry(
            new RefusalLog(RefusalLog.Format.TEXT, incrementalLines::add, clock::get), clock::get);
        final Random random = new Random(20261205L);
        final TreeMap<String, EgressAllocator.MachineView> now = new TreeMap<>();
        final List<EgressPair> pairs = List.of(A, B);
        int compared = 0;
        for (int step = 0; step < 3000; step++)
        {
            clock.addAndGet(1_000_000_000L);
            final TreeMap<String, EgressAllocator.MachineView> changed = new TreeMap<>();
            final TreeSet<String> gone = new TreeSet<>();
            for (int k = random.nextInt(4); k >= 0; k--)
            {
                final String id = "m" + random.nextInt(12);
                final int n = Integer.parseInt(id.substring(1));
                if (now.containsKey(id) && random.nextInt(4) == 0)
                {
                    now.remove(id);
                    changed.remove(id);
                    gone.add(id);
                    continue;
                }
                final Ipv4Address g4 = new Ipv4Address(0x0A4D0000 | n << 8 | 1 + random.nextInt(2));
                final Ipv6Address g6 = random.nextBoolean() ? null : new Ipv6Address(0xFD77000000000000L, n << 8 | 1);
                final EgressPair p = pairs.get(random.nextInt(2));
                final int first = 1024 * (1 + random.nextInt(2));
                final Egress e = switch (random.nextInt(4))
                {
                    case 0 -> new Egress(Scope.APP, p, first / 1024, first, first + 1023, "slot");
                    case 1 -> new Egress(Scope.HOST, null, -1, -1, -1, "masquerade");
                    case 2 -> new Egress(Scope.PENDING, null, -1, -1, -1, "every pair is full");
                    default -> new Egress(Scope.MACHINE, p, -1, 1, 65535, "machine-scoped");
                };
                final EgressAllocator.MachineView v = view(id, g4, g6, e, e.scope() == Scope.MACHINE ? p : null);
                now.put(id, v);
                changed.put(id, v);
                gone.remove(id);
            }
            // told more than changed: an unchanged machine told again, an id both gone and told (a renumbered one)
            if (!now.isEmpty() && random.nextBoolean())
            {
                final String id = now.keySet().stream().skip(random.nextInt(now.size())).findFirst().orElseThrow();
                changed.put(id, now.get(id));
                if (random.nextBoolean())
                {
                    gone.add(id);
                }
            }
            final List<EgressPair> held = random.nextInt(5) == 0 ? List.of(A) : pairs;
            final MachineRegistry.Update whole = registry.diff(new ArrayList<>(now.values()),
                held.stream().map(EgressPair::ipv4).toList(), held.stream().map(EgressPair::ipv6).toList(), DRAIN);
            final MachineRegistry.Update only = incremental.changed(new ArrayList<>(changed.values()), gone,
                held.stream().map(EgressPair::ipv4).toList(), held.stream().map(EgressPair::ipv6).toList(), DRAIN);
            assertThat(only == null).as("step %d: an update or none", step).isEqualTo(whole == null);
            if (whole != null)
            {
                compared++;
                assertThat(only.registers()).as("step %d", step).isEqualTo(whole.registers());
                assertThat(only.unregisters()).as("step %d", step).isEqualTo(whole.unregisters());
                assertThat(only.deletions()).as("step %d", step).isEqualTo(whole.deletions());
                assertThat(only.held()).as("step %d", step).isEqualTo(whole.held());
                for (int n = 0; n < 12; n++)
                {
                    for (int last = 1; last <= 2; last++)
                    {
                        final int g4 = 0x0A4D0000 | n << 8 | last;
                        assertThat(only.index().handle4(g4)).as("step %d, guest %d.%d", step, n, last)
                            .isEqualTo(whole.index().handle4(g4));
                    }
                    assertThat(only.index().handle6(0xFD77000000000000L, n << 8 | 1)).as("step %d", step)
                        .isEqualTo(whole.index().handle6(0xFD77000000000000L, n << 8 | 1));
                }
            }
        }
        assertThat(incrementalLines).isEqualTo(lines);
        assertThat(compared).as("most steps change something").isGreaterThan(1000);
    }
}
