package dev.egressd.core.alloc;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.core.alloc.EgressAllocator.MachineView;
import dev.egressd.core.alloc.EgressAllocator.PairView;
import dev.egressd.core.alloc.EgressAllocator.SlotHolder;
import dev.egressd.core.alloc.EgressAllocator.Snapshot;
import dev.egressd.core.alloc.ReferenceAllocator.Placement;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;

import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;

/**
 * Model-based test: random sequences of operations run against {@link EgressAllocator} and
 * {@link ReferenceAllocator}, which must agree on every decision and every placement, while the DESIGN invariants
 * hold after every step. A small layout (4 blocks a pair) and small pools of names and addresses make pairs fill
 * up, pins hit full and drained pairs, and addresses collide.
 */
class AllocatorModelTest
{
    private static final BlockLayout LAYOUT = new BlockLayout(4, 16);
    private static final HostSettings HOST = new HostSettings("ord", LAYOUT, 1024);
    private static final String[] APPS = {"a", "b"};
    private static final int MACHINES = 14;
    private static final int PAIRS = 3;
    private static final Ipv4Address[] UNUSABLE_IPV4 = {
        Ipv4Address.parse("127.0.0.1"), Ipv4Address.parse("0.0.0.0"), Ipv4Address.parse("224.0.0.5"),
        Ipv4Address.parse("255.255.255.255")};
    private static final Ipv6Address[] UNUSABLE_IPV6 = {
        Ipv6Address.parse("fe80::2"), Ipv6Address.parse("::"), Ipv6Address.parse("::1"), Ipv6Address.parse("ff02::1")};

    /** One operation, applied the same way to both allocators. */
    interface Action
    {
        Outcome apply(EgressAllocator fast);

        Outcome apply(ReferenceAllocator reference);
    }

    record UpsertApp(String app, boolean failClosed) implements Action
    {
        public Outcome apply(final EgressAllocator f)
        {
            return f.upsertApp(app, failClosed);
        }

        public Outcome apply(final ReferenceAllocator r)
        {
            return r.upsertApp(app, failClosed);
        }
    }

    record AddPair(String app, EgressPair pair) implements Action
    {
        public Outcome apply(final EgressAllocator f)
        {
            return f.addPair(app, pair);
        }

        public Outcome apply(final ReferenceAllocator r)
        {
            return r.addPair(app, pair);
        }
    }

    record ReleasePair(String app, Ipv4Address ipv4) implements Action
    {
        public Outcome apply(final EgressAllocator f)
        {
            return f.releasePair(app, ipv4);
        }

        public Outcome apply(final ReferenceAllocator r)
        {
            return r.releasePair(app, ipv4);
        }
    }

    record Drain(String app, Ipv4Address ipv4, boolean drained) implements Action
    {
        public Outcome apply(final EgressAllocator f)
        {
            return f.setDrained(app, ipv4, drained);
        }

        public Outcome apply(final ReferenceAllocator r)
        {
            return r.setDrained(app, ipv4, drained);
        }
    }

    record UpsertMachine(Machine machine) implements Action
    {
        public Outcome apply(final EgressAllocator f)
        {
            return f.upsertMachine(machine);
        }

        public Outcome apply(final ReferenceAllocator r)
        {
            return r.upsertMachine(machine);
        }
    }

    record RemoveMachine(String id) implements Action
    {
        public Outcome apply(final EgressAllocator f)
        {
            return f.removeMachine(id);
        }

        public Outcome apply(final ReferenceAllocator r)
        {
            return r.removeMachine(id);
        }
    }

    record SetScoped(String id, EgressPair pair) implements Action
    {
        public Outcome apply(final EgressAllocator f)
        {
            return f.setMachineScopedPair(id, pair);
        }

        public Outcome apply(final ReferenceAllocator r)
        {
            return r.setMachineScopedPair(id, pair);
        }
    }

    record ReleaseScoped(String id) implements Action
    {
        public Outcome apply(final EgressAllocator f)
        {
            return f.releaseMachineScopedPair(id);
        }

        public Outcome apply(final ReferenceAllocator r)
        {
            return r.releaseMachineScopedPair(id);
        }
    }

    record Promote(String id) implements Action
    {
        public Outcome apply(final EgressAllocator f)
        {
            return f.promote(id);
        }

        public Outcome apply(final ReferenceAllocator r)
        {
            return r.promote(id);
        }
    }

    @Property(tries = 200)
    void fastAllocatorAgreesWithReferenceAndKeepsInvariants(
        @ForAll("actions") final List<Action> actions, @ForAll final long seed)
    {
        final EgressAllocator fast = new EgressAllocator(HOST, seed);
        final ReferenceAllocator reference = new ReferenceAllocator(HOST, seed);
        for (final Action action : actions)
        {
            final Snapshot before = fast.snapshot();
            final String referenceBefore = reference.dump();

            final Outcome f = action.apply(fast);
            final Outcome r = action.apply(reference);

            assertThat(f.ok()).as("accepted? %s -> %s vs %s", action, f, r).isEqualTo(r.ok());
            if (f instanceof Outcome.Refusal refusal)
            {
                final Outcome.Refusal expected = (Outcome.Refusal)r;
                assertThat(refusal.code()).as("code of %s -> %s", action, f).isEqualTo(expected.code());
                assertThat(refusal.field()).as("field of %s -> %s", action, f).isEqualTo(expected.field());
                assertThat(refusal.message()).contains(refusal.field());
                assertThat(fast.snapshot()).as("a refusal changes nothing: %s", action).isEqualTo(before);
                assertThat(reference.dump()).isEqualTo(referenceBefore);
            }
            final Snapshot after = fast.snapshot();
            assertThat(placements(after)).as("placements after %s", action).isEqualTo(reference.placements());
            assertThat(records(after)).as("records after %s", action).isEqualTo(reference.machineRecords());
            final Map<String, List<String>> waiting = new TreeMap<>();
            after.apps().forEach(a -> waiting.put(a.id(), a.waiting()));
            assertThat(waiting).as("waiting after %s", action).isEqualTo(reference.waiting());
            checkInvariants(after);
            if (f instanceof Outcome.Done done)
            {
                checkChangedListed(before, after, done, action);
            }
        }
        checkRebuildMovesNoMachine(fast, seed);
    }

    /** Invariant 6: rebuilding from the state (as after a restart) puts every machine back where it was. */
    private static void checkRebuildMovesNoMachine(final EgressAllocator original, final long seed)
    {
        final Snapshot state = original.snapshot();
        final EgressAllocator rebuilt = new EgressAllocator(HOST, ~seed);
        state.apps().forEach(a -> assertThat(rebuilt.upsertApp(a.id(), a.failClosed()).ok()).isTrue());
        for (final PairView p : state.pairs())
        {
            assertThat(rebuilt.addPair(p.app(), p.pair()).ok()).isTrue();
            assertThat(rebuilt.setDrained(p.app(), p.pair().ipv4(), p.drained()).ok()).isTrue();
        }
        for (final MachineView m : state.machines())
        {
            final Egress e = m.egress();
            if (e.scope() == Scope.APP)
            {
                assertThat(rebuilt.restoreMachine(m.machine(), e.pair().ipv4(), e.block()).ok()).isTrue();
            }
            else if (e.scope() == Scope.MACHINE)
            {
                assertThat(rebuilt.restoreMachineScoped(m.machine(), m.machineScopedPair()).ok()).isTrue();
            }
        }
        final Map<String, MachineView> byId = new TreeMap<>();
        state.machines().forEach(m -> byId.put(m.machine().id(), m));
        state.apps().forEach(a -> a.waiting().forEach(id ->
            assertThat(rebuilt.upsertMachine(byId.get(id).machine()).ok()).isTrue()));
        assertThat(placements(rebuilt.snapshot())).isEqualTo(placements(state));
        assertThat(rebuilt.apps()).isEqualTo(state.apps());
    }

    private static void checkInvariants(final Snapshot s)
    {
        // Invariant 1: no (pair, block) held twice; at most blockCount machines per IPv4.
        final Set<String> held = new HashSet<>();
        final Map<Ipv4Address, Integer> perPair = new TreeMap<>();
        final Set<Integer> handles = new HashSet<>();
        for (final MachineView m : s.machines())
        {
            final Egress e = m.egress();
            assertThat(handles.add(m.handle())).as("unique handle %s", m).isTrue();
            assertThat(e.reason()).isNotBlank();
            if (e.scope() == Scope.APP)
            {
                assertThat(held.add(e.pair().ipv4() + "/" + e.block())).as("slot held once: %s", m).isTrue();
                perPair.merge(e.pair().ipv4(), 1, Integer::sum);
                // Invariant 2's static half: an APP machine's port range is exactly its block's.
                assertThat(e.firstPort()).isEqualTo(LAYOUT.firstPort(e.block()));
                assertThat(e.lastPort()).isEqualTo(LAYOUT.lastPort(e.block()));
                assertThat(m.machineScopedPair()).isNull();
                if (m.machine().pin() != null)
                {
                    assertThat(e.pair().ipv4()).as("pinned machine sits on its pin").isEqualTo(m.machine().pin());
                }
            }
            else if (e.scope() == Scope.MACHINE)
            {
                assertThat(e.pair()).isEqualTo(m.machineScopedPair());
                assertThat(e.firstPort()).isEqualTo(1);
                assertThat(e.lastPort()).isEqualTo(65535);
            }
            else
            {
                assertThat(e.pair()).isNull();
                assertThat(m.machine().pin()).as("a pinned machine never waits").isNull();
            }
        }
        perPair.values().forEach(n -> assertThat(n).isLessThanOrEqualTo(LAYOUT.blockCount()));
        for (final PairView p : s.pairs())
        {
            assertThat(p.used()).isEqualTo(p.slots().size()).isLessThanOrEqualTo(p.capacity());
            assertThat(p.used() + p.free()).isEqualTo(p.capacity());
            for (final SlotHolder h : p.slots())
            {
                final Egress e = s.machines().stream().filter(m -> m.machine().id().equals(h.machine()))
                    .findFirst().orElseThrow().egress();
                assertThat(e.pair()).isEqualTo(p.pair());
                assertThat(e.block()).isEqualTo(h.block());
            }
        }
        // Waiting machines exist only while the app has no room.
        s.apps().forEach(a ->
        {
            if (!a.waiting().isEmpty())
            {
                assertThat(a.freeSlots()).as("app %s waits with free slots", a.id()).isZero();
            }
        });
    }

    private static void checkChangedListed(final Snapshot before, final Snapshot after, final Outcome.Done done,
        final Action action)
    {
        final Map<String, Placement> was = placements(before);
        final Map<String, Placement> now = placements(after);
        final Set<String> moved = new HashSet<>(was.keySet());
        moved.addAll(now.keySet());
        moved.removeIf(id -> java.util.Objects.equals(was.get(id), now.get(id)));
        assertThat(done.changed()).as("changed ids of %s", action).containsAll(moved);
    }

    private static Map<String, Placement> placements(final Snapshot s)
    {
        final Map<String, Placement> result = new TreeMap<>();
        for (final MachineView m : s.machines())
        {
            final Egress e = m.egress();
            result.put(m.machine().id(),
                new Placement(e.scope(), e.pair() == null ? null : e.pair().ipv4(), e.block()));
        }
        return result;
    }

    private static Map<String, Machine> records(final Snapshot s)
    {
        final Map<String, Machine> result = new TreeMap<>();
        s.machines().forEach(m -> result.put(m.machine().id(), m.machine()));
        return result;
    }

    // ------------------------------------------------------------------------------------------ generators

    @Provide
    Arbitrary<List<Action>> actions()
    {
        return actionSequences();
    }

    /** Random operation sequences over small pools of apps, pairs, machines and addresses (PlacementRuleTest too). */
    static Arbitrary<List<Action>> actionSequences()
    {
        return Arbitraries.frequencyOf(
            net.jqwik.api.Tuple.of(2, upsertApps()),
            net.jqwik.api.Tuple.of(5, addPairs()),
            net.jqwik.api.Tuple.of(2, releasePairs()),
            net.jqwik.api.Tuple.of(2, drains()),
            net.jqwik.api.Tuple.of(14, upsertMachines()),
            net.jqwik.api.Tuple.of(3, removeMachines()),
            net.jqwik.api.Tuple.of(2, setScoped()),
            net.jqwik.api.Tuple.of(2, releaseScoped()),
            net.jqwik.api.Tuple.of(2, promotes()))
            .list().ofMinSize(30).ofMaxSize(120);
    }

    private static Arbitrary<String> app()
    {
        // Mostly one app, so its pairs fill up and machines wait.
        return Arbitraries.frequency(net.jqwik.api.Tuple.of(3, APPS[0]), net.jqwik.api.Tuple.of(1, APPS[1]));
    }

    private static Arbitrary<String> machineId()
    {
        return Arbitraries.integers().between(0, MACHINES - 1).map(i -> "m" + i);
    }

    private static Ipv4Address pairIpv4(final int i)
    {
        return new Ipv4Address(0xCB007100 | (i + 1));
    }

    private static Ipv6Address pairIpv6(final int i)
    {
        return new Ipv6Address(0x20010DB800000000L, i + 1);
    }

    private static Arbitrary<Ipv4Address> anyPairIpv4()
    {
        return Arbitraries.integers().between(0, PAIRS).map(AllocatorModelTest::pairIpv4);
    }

    private static Arbitrary<EgressPair> egressPair()
    {
        final Arbitrary<Integer> index = Arbitraries.integers().between(0, PAIRS);
        final Arbitrary<Integer> skew = Arbitraries.frequency(
            net.jqwik.api.Tuple.of(8, 0), net.jqwik.api.Tuple.of(1, 1), net.jqwik.api.Tuple.of(1, 2));
        final Arbitrary<String> region = Arbitraries.frequency(
            net.jqwik.api.Tuple.of(12, "ord"), net.jqwik.api.Tuple.of(1, "lhr"));
        return Combinators.combine(index, skew, region).as(
            (i, k, r) -> new EgressPair(pairIpv4(i), pairIpv6((i + k) % (PAIRS + 1)), r));
    }

    private static Arbitrary<Action> upsertApps()
    {
        return Combinators.combine(app(), Arbitraries.of(true, false)).as(UpsertApp::new);
    }

    private static Arbitrary<Action> addPairs()
    {
        return Combinators.combine(app(), egressPair()).as(AddPair::new);
    }

    private static Arbitrary<Action> releasePairs()
    {
        return Combinators.combine(app(), anyPairIpv4()).as(ReleasePair::new);
    }

    private static Arbitrary<Action> drains()
    {
        return Combinators.combine(app(), anyPairIpv4(), Arbitraries.of(true, false)).as(Drain::new);
    }

    private static Arbitrary<Action> upsertMachines()
    {
        final Arbitrary<Integer> id = Arbitraries.integers().between(0, MACHINES - 1);
        final Arbitrary<Integer> other = Arbitraries.frequency(
            net.jqwik.api.Tuple.of(10, -1), net.jqwik.api.Tuple.of(1, 0), net.jqwik.api.Tuple.of(1, 1));
        final Arbitrary<Integer> v4Kind = Arbitraries.frequency(
            net.jqwik.api.Tuple.of(20, 0), net.jqwik.api.Tuple.of(2, 1), net.jqwik.api.Tuple.of(2, 2),
            net.jqwik.api.Tuple.of(1, 3));
        final Arbitrary<Integer> v6 = Arbitraries.frequency(
            net.jqwik.api.Tuple.of(20, 1), net.jqwik.api.Tuple.of(10, 0), net.jqwik.api.Tuple.of(1, 2));
        final Arbitrary<Ipv4Address> pin = Arbitraries.frequency(
            net.jqwik.api.Tuple.of(16, -1), net.jqwik.api.Tuple.of(2, 0), net.jqwik.api.Tuple.of(1, 1),
            net.jqwik.api.Tuple.of(1, 3))
            .map(i -> i < 0 ? null : pairIpv4(i));
        return Combinators.combine(id, app(), other, v4Kind, v6, pin).as((i, app, collide, kind, six, p) ->
        {
            // Mostly each machine has its own interface and addresses; sometimes they collide with another's.
            final int own = collide < 0 ? i : (i + 1 + collide) % MACHINES;
            final Ipv4Address v4 = switch (kind)
            {
                case 0 -> new Ipv4Address(0x0A000000 | own + 2);
                case 1 -> null;
                case 2 -> pairIpv4(i % PAIRS); // an egress address: ADDRESS_IN_USE if that pair exists
                default -> UNUSABLE_IPV4[i % UNUSABLE_IPV4.length]; // INVALID: not a usable guest source
            };
            final Ipv6Address v6Address = six == 2 ? UNUSABLE_IPV6[i % UNUSABLE_IPV6.length]
                : six == 1 || v4 == null ? new Ipv6Address(0xFD00000000000000L, own + 2) : null;
            return new UpsertMachine(new Machine("m" + i, app, "tap" + own, v4, v6Address, p));
        });
    }

    private static Arbitrary<Action> removeMachines()
    {
        return machineId().map(RemoveMachine::new);
    }

    private static Arbitrary<Action> setScoped()
    {
        final Arbitrary<EgressPair> legacy = Arbitraries.integers().between(0, 3).map(i ->
            new EgressPair(new Ipv4Address(0xC6336400 | (i + 1)), new Ipv6Address(0x20010DB800010000L, i + 1), "ord"));
        return Combinators.combine(machineId(), Arbitraries.oneOf(legacy, legacy, egressPair())).as(SetScoped::new);
    }

    private static Arbitrary<Action> releaseScoped()
    {
        return machineId().map(ReleaseScoped::new);
    }

    private static Arbitrary<Action> promotes()
    {
        return machineId().map(Promote::new);
    }
}
