package dev.egressd.core.alloc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.booleans;
import static org.quicktheories.generators.SourceDSL.integers;
import static org.quicktheories.generators.SourceDSL.lists;
import static org.quicktheories.generators.SourceDSL.longs;

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

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import org.junit.jupiter.api.Test;
import org.quicktheories.api.Pair;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

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

    @Test
    void fastAllocatorAgreesWithReferenceAndKeepsInvariants()
    {
        // 200 distinct cases: QuickTheories skips a repeated draw, and its first two (simplest, minimum) coincide here.
        qt().withExamples(201).forAll(actionSequences(), longs().all())
            .checkAssert(AllocatorModelTest::agreeAndKeepInvariants);
    }

    private static void agreeAndKeepInvariants(final List<Action> actions, final long seed)
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

    /** Random operation sequences over small pools of apps, pairs, machines and addresses (PlacementRuleTest too). */
    static Gen<List<Action>> actionSequences()
    {
        final Gen<Action> action = Generate.frequency(List.of(
            Pair.of(2, upsertApps()),
            Pair.of(5, addPairs()),
            Pair.of(2, releasePairs()),
            Pair.of(2, drains()),
            Pair.of(14, upsertMachines()),
            Pair.of(3, removeMachines()),
            Pair.of(2, setScoped()),
            Pair.of(2, releaseScoped()),
            Pair.of(2, promotes())));
        return lists().of(action).ofSizeBetween(30, 120);
    }

    /** A weighted choice among constants: each pair is (weight, value). */
    @SafeVarargs
    private static <T> Gen<T> weighted(final Pair<Integer, T>... choices)
    {
        final List<Pair<Integer, Gen<T>>> gens = new ArrayList<>();
        for (final Pair<Integer, T> choice : choices)
        {
            gens.add(Pair.of(choice._1, Generate.constant(choice._2)));
        }
        return Generate.frequency(gens);
    }

    private static Gen<String> app()
    {
        // Mostly one app, so its pairs fill up and machines wait.
        return weighted(Pair.of(3, APPS[0]), Pair.of(1, APPS[1]));
    }

    private static Gen<String> machineId()
    {
        return integers().between(0, MACHINES - 1).map(i -> "m" + i);
    }

    private static Ipv4Address pairIpv4(final int i)
    {
        return new Ipv4Address(0xCB007100 | (i + 1));
    }

    private static Ipv6Address pairIpv6(final int i)
    {
        return new Ipv6Address(0x20010DB800000000L, i + 1);
    }

    private static Gen<Ipv4Address> anyPairIpv4()
    {
        return integers().between(0, PAIRS).map(AllocatorModelTest::pairIpv4);
    }

    private static Gen<EgressPair> egressPair()
    {
        final Gen<Integer> index = integers().between(0, PAIRS);
        final Gen<Integer> skew = weighted(Pair.of(8, 0), Pair.of(1, 1), Pair.of(1, 2));
        final Gen<String> region = weighted(Pair.of(12, "ord"), Pair.of(1, "lhr"));
        return index.zip(skew, region, (i, k, r) -> new EgressPair(pairIpv4(i), pairIpv6((i + k) % (PAIRS + 1)), r));
    }

    private static Gen<Action> upsertApps()
    {
        return app().zip(booleans().all(), UpsertApp::new);
    }

    private static Gen<Action> addPairs()
    {
        return app().zip(egressPair(), AddPair::new);
    }

    private static Gen<Action> releasePairs()
    {
        return app().zip(anyPairIpv4(), ReleasePair::new);
    }

    private static Gen<Action> drains()
    {
        return app().zip(anyPairIpv4(), booleans().all(), Drain::new);
    }

    private static Gen<Action> upsertMachines()
    {
        final Gen<Integer> id = integers().between(0, MACHINES - 1);
        final Gen<String> app = app();
        final Gen<Integer> other = weighted(Pair.of(10, -1), Pair.of(1, 0), Pair.of(1, 1));
        final Gen<Integer> v4Kind = weighted(Pair.of(20, 0), Pair.of(2, 1), Pair.of(2, 2), Pair.of(1, 3));
        final Gen<Integer> v6 = weighted(Pair.of(20, 1), Pair.of(10, 0), Pair.of(1, 2));
        final Gen<Ipv4Address> pin = weighted(Pair.of(16, -1), Pair.of(2, 0), Pair.of(1, 1), Pair.of(1, 3))
            .map(i -> i < 0 ? null : pairIpv4(i));
        return in ->
        {
            final int i = id.generate(in);
            final String a = app.generate(in);
            final int collide = other.generate(in);
            final int kind = v4Kind.generate(in);
            final int six = v6.generate(in);
            final Ipv4Address p = pin.generate(in);
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
            return new UpsertMachine(new Machine("m" + i, a, "tap" + own, v4, v6Address, p));
        };
    }

    private static Gen<Action> removeMachines()
    {
        return machineId().map(RemoveMachine::new);
    }

    private static Gen<Action> setScoped()
    {
        final Gen<EgressPair> legacy = integers().between(0, 3).map(i ->
            new EgressPair(new Ipv4Address(0xC6336400 | (i + 1)), new Ipv6Address(0x20010DB800010000L, i + 1), "ord"));
        return machineId().zip(Generate.oneOf(legacy, legacy, egressPair()), SetScoped::new);
    }

    private static Gen<Action> releaseScoped()
    {
        return machineId().map(ReleaseScoped::new);
    }

    private static Gen<Action> promotes()
    {
        return machineId().map(Promote::new);
    }
}
