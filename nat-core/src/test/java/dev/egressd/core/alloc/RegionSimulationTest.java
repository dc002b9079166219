package dev.egressd.core.alloc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.booleans;
import static org.quicktheories.generators.SourceDSL.integers;
import static org.quicktheories.generators.SourceDSL.lists;
import static org.quicktheories.generators.SourceDSL.longs;

import dev.egressd.core.alloc.EgressAllocator.AppView;
import dev.egressd.core.alloc.EgressAllocator.MachineView;
import dev.egressd.core.alloc.EgressAllocator.PairView;
import dev.egressd.core.alloc.EgressAllocator.SlotHolder;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;

import org.junit.jupiter.api.Test;
import org.quicktheories.api.Pair;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

/**
 * Region simulation: 2 to 4 {@link EgressAllocator}s ("hosts") share one owner of record, an in-memory map where a
 * claim is a put-if-absent and a release a remove-if-ours, which logs every change with a revision. Each host learns
 * the other hosts' slots from that log through {@link EgressAllocator#holdForeign} and
 * {@link EgressAllocator#releaseForeign}, with a lag the steps choose (a watch that falls behind), dropping a change
 * older than its own last claim or release of the slot, as an etcd watch compared by revision does. Random steps add
 * and remove machines on random hosts, add, release and drain pairs on every host, let hosts catch up, and take the
 * ledger down and bring it back (then every host retries its waiting machines, as the daemon does).
 *
 * <p>After every step: no slot is held by two machines of the region; every slot a host's machine holds is that
 * machine's in the ledger, and every ledger entry is a machine's slot (or a release the ledger will apply when it is
 * back); no pair has more than its block count of machines region-wide; the owner of record never overrules a host
 * (no region conflict); a machine waits with a free slot in sight only with a reason saying the ledger was
 * unavailable or its claims lost races; with the ledger down, an operation makes at most one claim and nothing is
 * granted. After a full catch-up with the ledger up: every host's view of every pair is exactly the ledger, and a
 * machine waits only if its app (or its pin) has no free slot in its host's view.
 */
class RegionSimulationTest
{
    private static final BlockLayout LAYOUT = new BlockLayout(8, 16);
    private static final HostSettings SETTINGS = new HostSettings("ord", LAYOUT, 1024);
    private static final String[] APPS = {"a", "b"};
    private static final int MACHINES = 10;
    private static final int PAIRS = 4;
    private static final int MAX_HOSTS = 4;

    // What the runs exercised, across examples, so the property is shown not to hold vacuously.
    private static final AtomicLong TAKEN_ANSWERS = new AtomicLong();
    private static final AtomicLong UNAVAILABLE_ANSWERS = new AtomicLong();
    private static final AtomicLong FOREIGN_RELEASES_THAT_PLACED = new AtomicLong();
    private static final AtomicLong STALE_CHANGES_DROPPED = new AtomicLong();

    enum Kind
    {
        ADD_MACHINE, REMOVE_MACHINE, ADD_PAIR, RELEASE_PAIR, DRAIN, CATCH_UP, FULL_SYNC, LEDGER_DOWN, LEDGER_UP
    }

    /** One step; fields its kind does not use are ignored. */
    record Step(Kind kind, int host, int machine, int app, int pair, int pin, int count, boolean flag)
    {
    }

    // ------------------------------------------------------------------------------------------ the region

    record Holder(String host, String machine)
    {
    }

    /** One change of the owner of record: a slot held (holder) or released (held false, holder who had it). */
    record Change(long revision, Ipv4Address pair, int block, Holder holder, boolean held)
    {
    }

    record PendingRelease(HostLedger ledger, Ipv4Address pair, int block, String machine)
    {
    }

    /** The owner of record: one map of slots, a change log, and a switch that makes it unreachable. */
    static final class Region
    {
        final TreeMap<String, Holder> slots = new TreeMap<>();
        final List<Change> log = new ArrayList<>();
        final List<PendingRelease> pending = new ArrayList<>();
        boolean up = true;
        long revision;

        long append(final Ipv4Address pair, final int block, final Holder holder, final boolean held)
        {
            revision++;
            log.add(new Change(revision, pair, block, holder, held));
            return revision;
        }

        void comeBack()
        {
            up = true;
            for (final PendingRelease r : pending)
            {
                r.ledger().apply(r.pair(), r.block(), r.machine());
            }
            pending.clear();
        }
    }

    static String key(final Ipv4Address pair, final int block)
    {
        return pair + "/" + block;
    }

    /** A host's view of the owner of record, as the agent's etcd ledger would be. */
    static final class HostLedger implements SlotLedger
    {
        final Region region;
        final String host;
        /** Revision of this host's own last claim or release of each slot: older changes are stale to it. */
        final Map<String, Long> own = new HashMap<>();
        int claimsThisOperation;

        HostLedger(final Region region, final String host)
        {
            this.region = region;
            this.host = host;
        }

        @Override
        public Claim claim(final Ipv4Address pair, final int block, final String machineId)
        {
            claimsThisOperation++;
            if (!region.up)
            {
                UNAVAILABLE_ANSWERS.incrementAndGet();
                return Claim.UNAVAILABLE;
            }
            final Holder me = new Holder(host, machineId);
            final Holder holder = region.slots.putIfAbsent(key(pair, block), me);
            if (holder == null)
            {
                own.put(key(pair, block), region.append(pair, block, me, true));
                return Claim.CLAIMED;
            }
            if (holder.equals(me))
            {
                return Claim.CLAIMED;
            }
            TAKEN_ANSWERS.incrementAndGet();
            return Claim.TAKEN;
        }

        @Override
        public void release(final Ipv4Address pair, final int block, final String machineId)
        {
            if (region.up)
            {
                apply(pair, block, machineId);
            }
            else
            {
                region.pending.add(new PendingRelease(this, pair, block, machineId));
            }
        }

        void apply(final Ipv4Address pair, final int block, final String machineId)
        {
            final Holder me = new Holder(host, machineId);
            if (region.slots.remove(key(pair, block), me))
            {
                own.put(key(pair, block), region.append(pair, block, me, false));
            }
        }
    }

    /** One host: its allocator, its ledger client and how far it has read the region's change log. */
    static final class Host
    {
        final String name;
        final HostLedger ledger;
        final EgressAllocator alloc;
        int cursor;

        Host(final Region region, final int index, final long seed)
        {
            this.name = "host-" + index;
            this.ledger = new HostLedger(region, name);
            this.alloc = new EgressAllocator(SETTINGS, seed, ledger);
            alloc.regionReasons(true);
        }

        boolean behind()
        {
            return cursor < ledger.region.log.size();
        }

        /** Applies the next change of the log, as the region sync would. */
        void catchUpOne()
        {
            final Change change = ledger.region.log.get(cursor++);
            if (change.holder().host().equals(name))
            {
                return;
            }
            final Long mine = ledger.own.get(key(change.pair(), change.block()));
            if (mine != null && mine > change.revision())
            {
                STALE_CHANGES_DROPPED.incrementAndGet();
                return;
            }
            final boolean waited = !waiting().isEmpty();
            final Outcome outcome = call(this, a -> change.held()
                ? a.holdForeign(change.pair(), change.block(), change.holder().host(), change.holder().machine())
                : a.releaseForeign(change.pair(), change.block()));
            if (outcome instanceof Outcome.Refusal refusal)
            {
                // The pair was released on every host after the change was logged.
                assertThat(refusal.code()).as("%s on %s: %s", change, name, refusal)
                    .isEqualTo(Outcome.Reason.UNKNOWN_PAIR);
            }
            else if (!change.held() && waited && !((Outcome.Done)outcome).changed().isEmpty())
            {
                FOREIGN_RELEASES_THAT_PLACED.incrementAndGet();
            }
        }

        List<String> waiting()
        {
            final List<String> ids = new ArrayList<>();
            alloc.apps().forEach(a -> ids.addAll(a.waiting()));
            return ids;
        }
    }

    /** One allocator operation; with the ledger down it may ask at most one claim. */
    static Outcome call(final Host host, final Function<EgressAllocator, Outcome> operation)
    {
        final boolean down = !host.ledger.region.up;
        final long revision = host.ledger.region.revision;
        host.ledger.claimsThisOperation = 0;
        final Outcome outcome = operation.apply(host.alloc);
        if (down)
        {
            assertThat(host.ledger.claimsThisOperation).as("claims in one operation while the ledger is down")
                .isLessThanOrEqualTo(1);
            assertThat(host.ledger.region.revision).as("nothing changes in an unreachable ledger").isEqualTo(revision);
        }
        return outcome;
    }

    // ------------------------------------------------------------------------------------------- the test

    @Test
    void hostsSharingOneLedgerNeverShareASlotAndAgreeWithItOnceInSync()
    {
        qt().withExamples(300).forAll(steps(), integers().between(2, MAX_HOSTS), longs().all())
            .checkAssert(RegionSimulationTest::simulate);
        assertThat(TAKEN_ANSWERS.get()).as("claims lost to another host").isPositive();
        assertThat(UNAVAILABLE_ANSWERS.get()).as("claims while the ledger was down").isPositive();
        assertThat(FOREIGN_RELEASES_THAT_PLACED.get()).as("a slot freed elsewhere placed a waiting machine")
            .isPositive();
        assertThat(STALE_CHANGES_DROPPED.get()).as("late echoes of a slot this host claimed since").isPositive();
    }

    private static void simulate(final List<Step> steps, final int hostCount, final long seed)
    {
        final Region region = new Region();
        final List<Host> hosts = new ArrayList<>();
        for (int i = 0; i < hostCount; i++)
        {
            hosts.add(new Host(region, i, seed + i));
        }
        for (final Step step : steps)
        {
            apply(step, hosts, region);
            checkAlways(hosts, region, step);
            if (step.kind() == Kind.FULL_SYNC && region.up)
            {
                checkInSync(hosts, region, step);
            }
        }
        apply(new Step(Kind.LEDGER_UP, 0, 0, 0, 0, -1, 0, false), hosts, region);
        final Step last = new Step(Kind.FULL_SYNC, 0, 0, 0, 0, -1, 0, false);
        apply(last, hosts, region);
        checkAlways(hosts, region, last);
        checkInSync(hosts, region, last);
    }

    private static void apply(final Step step, final List<Host> hosts, final Region region)
    {
        final Host host = hosts.get(step.host() % hosts.size());
        final String app = APPS[step.app()];
        switch (step.kind())
        {
            case ADD_MACHINE -> call(host, a -> a.upsertMachine(machine(host, step.machine(), app, step.pin())));
            case REMOVE_MACHINE -> call(host, a -> a.removeMachine(machineId(host, step.machine())));
            case ADD_PAIR -> hosts.forEach(h -> call(h, a -> a.addPair(app, pair(step.pair()))));
            case RELEASE_PAIR -> hosts.forEach(h -> call(h, a -> a.releasePair(app, pairIpv4(step.pair()))));
            case DRAIN -> hosts.forEach(h -> call(h, a -> a.setDrained(app, pairIpv4(step.pair()), step.flag())));
            case CATCH_UP ->
            {
                for (int i = 0; i < step.count() && host.behind(); i++)
                {
                    host.catchUpOne();
                }
            }
            case FULL_SYNC ->
            {
                // Catching up may place machines, whose claims are new changes: go on until nobody is behind.
                int rounds = 0;
                while (hosts.stream().anyMatch(Host::behind))
                {
                    assertThat(rounds++).as("the region settles").isLessThan(100_000);
                    hosts.stream().filter(Host::behind).forEach(Host::catchUpOne);
                }
            }
            case LEDGER_DOWN -> region.up = false;
            case LEDGER_UP ->
            {
                if (!region.up)
                {
                    region.comeBack();
                    hosts.forEach(h -> call(h, EgressAllocator::retryWaiting));
                }
            }
            default -> fail("unknown step " + step);
        }
    }

    // ------------------------------------------------------------------------------------------ invariants

    private static void checkAlways(final List<Host> hosts, final Region region, final Step step)
    {
        final Map<String, Holder> placed = new TreeMap<>();
        final Map<Ipv4Address, Integer> perPair = new TreeMap<>();
        for (final Host host : hosts)
        {
            assertThat(host.alloc.regionConflicts()).as("the ledger never overrules %s (after %s)", host.name, step)
                .isZero();
            final Map<String, AppView> apps = new TreeMap<>();
            host.alloc.apps().forEach(a -> apps.put(a.id(), a));
            final Map<Ipv4Address, PairView> pairs = new TreeMap<>();
            host.alloc.pairs().forEach(p -> pairs.put(p.pair().ipv4(), p));
            for (final MachineView m : host.alloc.machines())
            {
                final Egress e = m.egress();
                final String id = m.machine().id();
                if (e.scope() == Scope.APP)
                {
                    final String slot = key(e.pair().ipv4(), e.block());
                    final Holder me = new Holder(host.name, id);
                    assertThat(placed.put(slot, me)).as("%s held twice in the region (after %s)", slot, step).isNull();
                    assertThat(region.slots.get(slot)).as("%s of %s is %s's in the ledger (after %s)", slot, id,
                        host.name, step).isEqualTo(me);
                    perPair.merge(e.pair().ipv4(), 1, Integer::sum);
                    // A pin set later to the pair the machine already holds does not move it: still "placed".
                    assertThat(e.reason()).isIn(
                        "slot " + e.block() + " of app pair " + e.pair().ipv4() + ", region ord (placed)",
                        "slot " + e.block() + " of app pair " + e.pair().ipv4() + ", region ord (pinned)");
                }
                else if (e.scope() == Scope.PENDING || e.scope() == Scope.HOST)
                {
                    final AppView app = apps.get(m.machine().app());
                    if (app != null && !app.pairs().isEmpty() && hasRoom(m.machine(), app, pairs))
                    {
                        assertThat(e.reason()).as("%s waits on %s with room in sight (after %s)", id, host.name, step)
                            .satisfiesAnyOf(r -> assertThat(r).startsWith("region ledger unavailable"),
                                r -> assertThat(r).startsWith("claims for a slot of app " + app.id()
                                    + " kept losing races"));
                    }
                }
            }
        }
        perPair.values().forEach(n -> assertThat(n).isLessThanOrEqualTo(LAYOUT.blockCount()));
        final Set<String> releasing = new TreeSet<>();
        region.pending.forEach(r -> releasing.add(key(r.pair(), r.block())));
        for (final Map.Entry<String, Holder> entry : region.slots.entrySet())
        {
            if (!releasing.contains(entry.getKey()))
            {
                assertThat(placed.get(entry.getKey())).as("ledger entry %s is a machine's slot (after %s)", entry, step)
                    .isEqualTo(entry.getValue());
            }
        }
    }

    private static boolean hasRoom(final Machine machine, final AppView app, final Map<Ipv4Address, PairView> pairs)
    {
        if (machine.pin() == null)
        {
            return app.freeSlots() > 0;
        }
        final PairView pin = pairs.get(machine.pin());
        return pin != null && !pin.drained() && pin.free() > 0;
    }

    private static void checkInSync(final List<Host> hosts, final Region region, final Step step)
    {
        for (final Host host : hosts)
        {
            final Map<String, AppView> apps = new TreeMap<>();
            host.alloc.apps().forEach(a -> apps.put(a.id(), a));
            final Map<Ipv4Address, PairView> pairs = new TreeMap<>();
            for (final PairView p : host.alloc.pairs())
            {
                pairs.put(p.pair().ipv4(), p);
                final List<SlotHolder> expected = new ArrayList<>();
                for (int b = 0; b < LAYOUT.blockCount(); b++)
                {
                    final Holder holder = region.slots.get(key(p.pair().ipv4(), b));
                    if (holder != null)
                    {
                        expected.add(new SlotHolder(b, holder.machine(),
                            holder.host().equals(host.name) ? null : holder.host()));
                    }
                }
                assertThat(p.slots()).as("%s's view of %s is the ledger (after %s)", host.name, p.pair().ipv4(), step)
                    .isEqualTo(expected);
            }
            for (final MachineView m : host.alloc.machines())
            {
                final Scope scope = m.egress().scope();
                final AppView app = apps.get(m.machine().app());
                if ((scope == Scope.PENDING || scope == Scope.HOST) && !app.pairs().isEmpty())
                {
                    assertThat(hasRoom(m.machine(), app, pairs)).as("%s waits on %s in sync: %s (after %s)",
                        m.machine().id(), host.name, m.egress().reason(), step).isFalse();
                }
            }
        }
    }

    // ------------------------------------------------------------------------------------------ generators

    private static String machineId(final Host host, final int index)
    {
        return host.name.replace("host-", "h") + "m" + index;
    }

    private static Machine machine(final Host host, final int index, final String app, final int pin)
    {
        final int h = Integer.parseInt(host.name.substring("host-".length()));
        return new Machine(machineId(host, index), app, "tap" + index, new Ipv4Address(0x0A000000 | h << 8 | index + 2),
            new Ipv6Address(0xFD00000000000000L, (long)h << 8 | index + 2), pin < 0 ? null : pairIpv4(pin));
    }

    private static Ipv4Address pairIpv4(final int i)
    {
        return new Ipv4Address(0xCB007100 | (i + 1));
    }

    private static EgressPair pair(final int i)
    {
        return new EgressPair(pairIpv4(i), new Ipv6Address(0x20010DB800000000L, i + 1), "ord");
    }

    private static Gen<List<Step>> steps()
    {
        final Gen<Integer> hosts = integers().between(0, MAX_HOSTS - 1);
        final Gen<Integer> machines = integers().between(0, MACHINES - 1);
        final Gen<Integer> apps = Generate.frequency(List.of(
            Pair.of(4, Generate.constant(0)), Pair.of(1, Generate.constant(1))));
        final Gen<Integer> pairs = integers().between(0, PAIRS - 1);
        final Gen<Integer> pins = Generate.frequency(List.of(
            Pair.of(8, Generate.constant(-1)), Pair.of(1, integers().between(0, PAIRS - 1))));
        final Gen<Integer> counts = integers().between(0, 12);
        final Gen<Kind> kinds = Generate.frequency(List.of(
            Pair.of(14, Generate.constant(Kind.ADD_MACHINE)),
            Pair.of(5, Generate.constant(Kind.REMOVE_MACHINE)),
            Pair.of(3, Generate.constant(Kind.ADD_PAIR)),
            Pair.of(1, Generate.constant(Kind.RELEASE_PAIR)),
            Pair.of(1, Generate.constant(Kind.DRAIN)),
            Pair.of(10, Generate.constant(Kind.CATCH_UP)),
            Pair.of(2, Generate.constant(Kind.FULL_SYNC)),
            Pair.of(1, Generate.constant(Kind.LEDGER_DOWN)),
            Pair.of(2, Generate.constant(Kind.LEDGER_UP))));
        final Gen<Step> step = in -> new Step(kinds.generate(in), hosts.generate(in), machines.generate(in),
            apps.generate(in), pairs.generate(in), pins.generate(in), counts.generate(in),
            booleans().all().generate(in));
        return lists().of(step).ofSizeBetween(40, 160);
    }
}
