package dev.egressd.agent.reconcile;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateChange;
import dev.egressd.agent.state.StateExport;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.MachineMirror;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.AddressDevice;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;

/**
 * The incrementally kept desired plan against the whole build: random sequences of allocator operations (refusals,
 * pairs added, released and drained, apps opened and closed, machine-scoped pairs, promotions, other hosts' blocks,
 * holds after a lost restore, rollbacks that rebuild the allocator) and of recovered, draining and holding elements,
 * with the plan and the changes since the last mark checked after every step: the plan equals the whole build, and
 * the changes applied to the plan of the mark give it, and are the whole-plan diff's. The state export
 * ({@link StateExport}) equals the whole one, and the journal record against the last state written
 * ({@link StateChange#between}) equals the one taken by id lookups over unshared entries, and replays to it.
 */
class IncrementalChangePathTest
{
    private static final HostSettings HOST = new HostSettings("ord", new BlockLayout(4, 16), 1024, AddressDevice.LO);
    private static final String[] APPS = {"a", "b", "c"};
    private static final int MACHINES = 16;
    private static final int PAIRS = 5;

    private EgressAllocator allocator;
    private final List<PlanElement> extra = new ArrayList<>();
    private final List<PlanElement> holding = new ArrayList<>();
    // one mirror of the machines shared by the three incremental consumers, as in the loop, and kept across the
    // seeds: each seed's new allocator is what a rollback does to them
    private final MachineMirror mirror = new MachineMirror();
    private final DesiredPlanCache cache = new DesiredPlanCache(HOST.pairAddressDevice(), () -> allocator,
        () -> extra, () -> holding, mirror);
    private final StateExport export = new StateExport(mirror);
    private final MonitorFeed feed = new MonitorFeed(mirror);

    private static EgressPair pair(final int i)
    {
        return new EgressPair(new Ipv4Address(0xC6336400 | (i + 1)), new Ipv6Address(0x20010DB800010000L, i + 1), "ord");
    }

    private static Ipv4Address guest4(final int i)
    {
        return new Ipv4Address(0x0A000000 | (i + 1));
    }

    private static Ipv6Address guest6(final int i)
    {
        return new Ipv6Address(0xFD00000000000000L, i + 1);
    }

    private KernelPlan whole()
    {
        return DesiredPlanCache.build(allocator, extra, holding, HOST.pairAddressDevice());
    }

    @Test
    void keepsTheWholeBuildsPlanAndDiffThroughRandomOperations()
    {
        for (long seed = 1; seed <= 40; seed++)
        {
            run(seed, 300);
        }
    }

    @Test
    void aPlanThatDidNotMoveIsTheOneBuiltLastAndAMoveBuildsItAgain()
    {
        final Random random = new Random(7);
        allocator = new EgressAllocator(HOST, 7);
        int moves = 0;
        for (int step = 0; step < 300; step++)
        {
            final KernelPlan before = cache.plan();
            final long version = cache.version();
            operate(random);
            final KernelPlan now = cache.plan();
            assertThat(now).as("step " + step).isEqualTo(whole());
            if (cache.version() == version)
            {
                // an idle reconcile asks for the plan every second: nothing moved, nothing is built
                assertThat(now).as("step " + step + ": unmoved").isSameAs(before);
            }
            else if (!now.equals(before))
            {
                moves++;
            }
        }
        assertThat(moves).as("the operations moved the plan").isGreaterThan(20);
    }

    private void run(final long seed, final int steps)
    {
        final Random random = new Random(seed);
        allocator = new EgressAllocator(HOST, seed);
        extra.clear();
        holding.clear();
        cache.mark();
        KernelPlan held = cache.plan();
        DesiredState committed = StateMapper.export(allocator, List.of());
        DesiredState written = export.export(allocator, extra);
        final Map<String, List<Object>> told = new TreeMap<>();
        for (int step = 0; step < steps; step++)
        {
            final String what = operate(random);
            if (what.equals("commit"))
            {
                committed = StateMapper.export(allocator, List.of());
            }
            else if (what.equals("rollback"))
            {
                allocator = StateMapper.rebuild(HOST, committed, seed).allocator();
            }
            final String at = "seed " + seed + " step " + step + " (" + what + ")";
            final DesiredState exported = export.export(allocator, extra);
            assertThat(exported).as(at + ": the export").isEqualTo(StateMapper.export(allocator, extra));
            final StateChange record = StateChange.between(written, exported);
            assertThat(record).as(at + ": the journal record").isEqualTo(StateChange.betweenById(written, exported));
            assertThat(record.applyTo(written)).as(at + ": the record replays to the export").isEqualTo(exported);
            assertThat(StateChange.same(written, exported)).as(at).isEqualTo(written.equals(exported));
            if (random.nextInt(3) > 0)
            {
                written = exported;
            }
            tellMonitor(feed, told, at);
            final KernelPlan full = whole();
            final List<PlanChange> changes = cache.changesSinceMark();
            assertThat(cache.plan()).as(at).isEqualTo(full);
            assertThat(PlanDiff.apply(held, changes)).as(at + ": the changes lead from the mark's plan to it")
                .isEqualTo(full);
            assertThat(new HashSet<>(changes)).as(at + ": the whole-plan diff's changes")
                .isEqualTo(new HashSet<>(PlanDiff.between(held, full)));
            boolean removing = false;
            for (final PlanChange c : changes)
            {
                assertThat(removing && c.op() != PlanChange.Op.REMOVE).as(at + ": removals last").isFalse();
                removing |= c.op() == PlanChange.Op.REMOVE;
            }
            if (random.nextInt(3) > 0)
            {
                cache.mark();
                held = full;
            }
        }
    }

    /** One random operation; returns its name. */
    private String operate(final Random random)
    {
        final String app = APPS[random.nextInt(APPS.length)];
        final int m = random.nextInt(MACHINES);
        final int p = random.nextInt(PAIRS);
        final int op = random.nextInt(100);
        final Outcome outcome;
        final String what;
        if (op < 6)
        {
            what = "app";
            outcome = allocator.upsertApp(app, random.nextBoolean());
        }
        else if (op < 16)
        {
            what = "addPair";
            outcome = allocator.addPair(app, pair(p));
        }
        else if (op < 20)
        {
            what = "releasePair";
            outcome = allocator.releasePair(app, pair(p).ipv4());
        }
        else if (op < 24)
        {
            what = "drain";
            outcome = allocator.setDrained(app, pair(p).ipv4(), random.nextBoolean());
        }
        else if (op < 48)
        {
            what = "upsertMachine";
            // small pools: addresses and interfaces collide (refusals), records change in place
            final int v4 = random.nextInt(MACHINES + 2);
            final Ipv6Address v6 = random.nextInt(4) == 0 ? null : guest6(random.nextInt(MACHINES + 2));
            final Ipv4Address pin = random.nextInt(6) == 0 ? pair(random.nextInt(PAIRS)).ipv4() : null;
            outcome = allocator.upsertMachine(new Machine("m" + m, app, "tap" + (random.nextInt(5) == 0
                ? random.nextInt(MACHINES) : m), random.nextInt(8) == 0 && v6 != null ? null : guest4(v4), v6, pin));
        }
        else if (op < 58)
        {
            what = "removeMachine";
            outcome = allocator.removeMachine("m" + m);
        }
        else if (op < 63)
        {
            what = "machineScoped";
            outcome = allocator.setMachineScopedPair("m" + m, pair(PAIRS + random.nextInt(3)));
        }
        else if (op < 66)
        {
            what = "releaseMachineScoped";
            outcome = allocator.releaseMachineScopedPair("m" + m);
        }
        else if (op < 69)
        {
            what = "promote";
            outcome = allocator.promote("m" + m);
        }
        else if (op < 71)
        {
            what = "holdClosed";
            outcome = allocator.holdClosed(app);
        }
        else if (op < 73)
        {
            what = "holdMachineClosed";
            outcome = allocator.holdMachineClosed("m" + m);
        }
        else if (op < 76)
        {
            what = "holdForeign";
            outcome = allocator.holdForeign(pair(p).ipv4(), random.nextInt(4), "other", "x" + m);
        }
        else if (op < 78)
        {
            what = "releaseForeign";
            outcome = allocator.releaseForeign(pair(p).ipv4(), random.nextInt(4));
        }
        else if (op < 80)
        {
            what = "retryWaiting";
            outcome = allocator.retryWaiting();
        }
        else if (op < 86)
        {
            what = "extra";
            extras(random);
            outcome = null;
        }
        else if (op < 90)
        {
            what = "holding";
            holding(random);
            outcome = null;
        }
        else if (op < 96)
        {
            what = "commit";
            outcome = null;
        }
        else
        {
            what = "rollback";
            outcome = null;
        }
        return outcome instanceof Outcome.Refusal ? what + " refused" : what;
    }

    /** What the conntrack monitor is told, applied to a copy: the allocator's machines, after a plain step no more. */
    private void tellMonitor(final MonitorFeed feed, final Map<String, List<Object>> told, final String at)
    {
        final MonitorFeed.Told t = feed.tell(allocator, Set.of());
        final Set<String> changedIds = new HashSet<>();
        final Map<String, List<Object>> before = new TreeMap<>(told);
        for (final EgressAllocator.MachineView v : t.changed())
        {
            changedIds.add(v.machine().id());
            told.put(v.machine().id(), registration(v));
        }
        for (final String id : t.gone())
        {
            if (!changedIds.contains(id))
            {
                told.remove(id);
            }
        }
        final Map<String, List<Object>> now = new TreeMap<>();
        final List<Ipv4Address> held4 = new ArrayList<>();
        for (final EgressPair p : allocator.appPairs())
        {
            held4.add(p.ipv4());
        }
        for (final EgressAllocator.MachineView v : allocator.machines())
        {
            now.put(v.machine().id(), registration(v));
            if (v.machineScopedPair() != null)
            {
                held4.add(v.machineScopedPair().ipv4());
            }
        }
        assertThat(told).as(at + ": the machines as told").isEqualTo(now);
        assertThat(t.changed()).extracting(v -> v.machine().id()).as(at + ": told in id order").isSorted();
        assertThat(t.gone()).as(at + ": gone in id order").isSorted();
        if (!at.contains("(rollback)"))
        {
            // a rebuilt allocator has new records (all told again); otherwise only what changed is looked up
            for (final String id : changedIds)
            {
                assertThat(now.get(id)).as(at + ": %s told again though unchanged", id).isNotEqualTo(before.get(id));
            }
        }
        assertThat(t.held4()).as(at + ": the held addresses").containsExactlyInAnyOrderElementsOf(held4);
    }

    private static List<Object> registration(final EgressAllocator.MachineView v)
    {
        final Egress e = v.egress();
        return Arrays.asList(v.machine(), e.scope(), e.pair(), e.scope() == Scope.APP || e.scope() == Scope.MACHINE
            ? e.firstPort() : -1, e.scope() == Scope.APP || e.scope() == Scope.MACHINE ? e.lastPort() : -1,
            v.machineScopedPair());
    }

    /** Recovered elements and draining addresses: some the allocator also plans, some only here. */
    private void extras(final Random random)
    {
        if (!extra.isEmpty() && random.nextBoolean())
        {
            extra.remove(random.nextInt(extra.size()));
            return;
        }
        final int i = random.nextInt(MACHINES + 2);
        final EgressPair pair = pair(random.nextInt(PAIRS + 3));
        extra.add(switch (random.nextInt(5))
        {
            case 0 -> new PlanElement.Uplink4(pair.ipv4(), AddressDevice.UPLINK);
            case 1 -> new PlanElement.Uplink6(pair.ipv6(), AddressDevice.LO);
            case 2 -> new PlanElement.Static4(guest4(i));
            case 3 -> new PlanElement.Snat4(guest4(i), pair.ipv4(), 1 + 16 * (i % 4), 16 + 16 * (i % 4));
            default -> new PlanElement.Guest4("tap" + i, guest4(i));
        });
    }

    /** The recovered egress of re-sent machines: one element a key, as {@link RecoveredElements} holds them. */
    private void holding(final Random random)
    {
        if (!holding.isEmpty() && random.nextBoolean())
        {
            holding.remove(random.nextInt(holding.size()));
            return;
        }
        final int i = random.nextInt(MACHINES + 2);
        final PlanElement e = random.nextBoolean() ? new PlanElement.Static6(guest6(i))
            : new PlanElement.Snat4(guest4(i), pair(random.nextInt(PAIRS)).ipv4(), 33, 48);
        final Map<String, PlanElement> byKey = new LinkedHashMap<>();
        for (final PlanElement h : holding)
        {
            byKey.put(h.kind() + "|" + h.key(), h);
        }
        byKey.putIfAbsent(e.kind() + "|" + e.key(), e);
        holding.clear();
        holding.addAll(byKey.values());
    }

    @Test
    void aCheckAgainstTheWholeBuildRepairsAMissedChange()
    {
        allocator = new EgressAllocator(HOST, 7);
        allocator.upsertApp("a", true);
        allocator.addPair("a", pair(0));
        allocator.upsertMachine(new Machine("m1", "a", "tap1", guest4(1), guest6(1), null));
        cache.mark();
        assertThat(cache.verify(whole())).isTrue();
        // an input the cache cannot see changed behind its back: the check finds it and takes the whole build
        final List<PlanElement> hidden = new ArrayList<>();
        final DesiredPlanCache blind = new DesiredPlanCache(HOST.pairAddressDevice(), () -> allocator, List::of,
            List::of);
        blind.mark();
        hidden.add(new PlanElement.Static4(guest4(9)));
        final KernelPlan full = DesiredPlanCache.build(allocator, hidden, List.of(), HOST.pairAddressDevice());
        assertThat(blind.verify(full)).isFalse();
        assertThat(blind.plan()).isEqualTo(full);
        assertThat(blind.changesSinceMark()).containsExactly(PlanChange.add(new PlanElement.Static4(guest4(9))));
    }
}
