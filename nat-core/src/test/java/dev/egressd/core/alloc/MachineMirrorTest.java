package dev.egressd.core.alloc;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.core.model.BlockLayout;
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
import java.util.Random;

import org.junit.jupiter.api.Test;

class MachineMirrorTest
{
    private static final HostSettings HOST = new HostSettings("ord", new BlockLayout(4, 16), 1024);

    private static EgressPair pair(final int i)
    {
        return new EgressPair(new Ipv4Address(0xC6336400 | (i + 1)), new Ipv6Address(0x20010DB800010000L, i + 1), "ord");
    }

    private static Machine machine(final int i, final String app)
    {
        return new Machine("m" + i, app, "tap" + i, new Ipv4Address(0x0A000000 | (i + 1)),
            new Ipv6Address(0xFD00000000000000L, i + 1), null);
    }

    private static List<Integer> handles(final MachineMirror.Reader r)
    {
        final List<Integer> hs = new ArrayList<>();
        for (int i = 0; i < r.size(); i++)
        {
            hs.add(r.handle(i));
        }
        hs.sort(null);
        return hs;
    }

    @Test
    void tellsEachReaderOnlyTheFieldsItAskedFor()
    {
        final EgressAllocator a = new EgressAllocator(HOST, 1);
        a.upsertApp("a", true);
        a.addPair("a", pair(0));
        a.upsertMachine(machine(1, "a"));
        a.upsertMachine(machine(2, "a"));
        final MachineMirror mirror = new MachineMirror();
        final MachineMirror.Reader plan = mirror.reader(MachineMirror.ALL & ~MachineMirror.PAIR_LOST);
        final MachineMirror.Reader all = mirror.reader(MachineMirror.ALL);
        mirror.update(a);
        final int h1 = a.handle("m1");
        final int h2 = a.handle("m2");
        assertThat(handles(all)).containsExactlyInAnyOrder(h1, h2);
        assertThat(all.fields(h1) & MachineMirror.PRESENCE).isNotZero();
        assertThat(mirror.machine(h1)).isEqualTo(machine(1, "a"));
        assertThat(mirror.scope(h1)).isEqualTo(Scope.APP);
        assertThat(mirror.size()).isEqualTo(2);
        assertThat(mirror.machine(mirror.inOrder(0)).id()).isEqualTo("m1");
        plan.clear();
        all.clear();

        // nothing changed: no scan
        final long scans = mirror.scans();
        mirror.update(a);
        assertThat(mirror.scans()).isEqualTo(scans);
        assertThat(plan.size()).isZero();

        // the pair goes: both machines lose it (fail-closed: pending, no ports)
        a.releasePair("a", pair(0).ipv4());
        mirror.update(a);
        assertThat(mirror.scans()).isEqualTo(scans + 1);
        assertThat(handles(plan)).containsExactlyInAnyOrder(h1, h2);
        assertThat(plan.fields(h1)).isEqualTo(MachineMirror.SCOPE | MachineMirror.PAIR | MachineMirror.PORTS
            | MachineMirror.BLOCK);
        assertThat(mirror.pair(h1)).isNull();
        plan.clear();
        all.clear();

        // held closed: its scope moves (pending) and its pair-lost flag, which only the reader that asked is told of
        assertThat(a.holdMachineClosed("m1")).isInstanceOf(Outcome.Done.class);
        mirror.update(a);
        assertThat(mirror.pairLost(h1)).isTrue();
        assertThat(mirror.scope(h1)).isEqualTo(Scope.PENDING);
        assertThat(handles(plan)).containsExactly(h1);
        assertThat(plan.fields(h1)).isEqualTo(MachineMirror.SCOPE);
        assertThat(all.fields(h1)).isEqualTo(MachineMirror.SCOPE | MachineMirror.PAIR_LOST);
        plan.clear();
        all.clear();

        // a machine removed and its handle taken by another before the next look: a new record on that handle
        a.removeMachine("m2");
        a.upsertMachine(machine(3, "a"));
        assertThat(a.handle("m3")).isEqualTo(h2);
        mirror.update(a);
        assertThat(handles(plan)).containsExactly(h2);
        assertThat(plan.fields(h2) & MachineMirror.MACHINE).isNotZero();
        assertThat(mirror.machine(h2).id()).isEqualTo("m3");
        plan.clear();

        // gone: told with PRESENCE and the fields it had
        a.removeMachine("m1");
        mirror.update(a);
        assertThat(handles(plan)).containsExactly(h1);
        assertThat(plan.fields(h1) & MachineMirror.PRESENCE).isNotZero();
        assertThat(mirror.present(h1)).isFalse();
    }

    @Test
    void holdsWhatTheAllocatorScansThroughRandomOperations()
    {
        final Random random = new Random(5);
        final EgressAllocator a = new EgressAllocator(HOST, 5);
        final MachineMirror mirror = new MachineMirror();
        final MachineMirror.Reader r = mirror.reader(MachineMirror.ALL);
        final Map<Integer, List<Object>> known = new HashMap<>();
        for (int step = 0; step < 2000; step++)
        {
            final String app = "a" + random.nextInt(2);
            final int m = random.nextInt(12);
            switch (random.nextInt(8))
            {
                case 0 -> a.upsertApp(app, random.nextBoolean());
                case 6 -> a.holdClosed(app);
                case 7 -> a.holdMachineClosed("m" + m);
                case 1 -> a.addPair(app, pair(random.nextInt(4)));
                case 2 -> a.releasePair(app, pair(random.nextInt(4)).ipv4());
                case 3 -> a.removeMachine("m" + m);
                case 4 -> a.setMachineScopedPair("m" + m, pair(4 + random.nextInt(2)));
                default -> a.upsertMachine(machine(m, app));
            }
            if (random.nextInt(3) > 0)
            {
                continue; // changes pile up between looks
            }
            mirror.update(a);
            // what the reader was told, applied to what it knew, is what the allocator holds now
            for (int i = 0; i < r.size(); i++)
            {
                final int h = r.handle(i);
                if (mirror.present(h))
                {
                    known.put(h, List.of(mirror.machine(h), mirror.scope(h), String.valueOf(mirror.pair(h)),
                        mirror.firstPort(h), String.valueOf(mirror.scoped(h)), mirror.pairLost(h)));
                }
                else
                {
                    known.remove(h);
                }
            }
            r.clear();
            final Map<Integer, List<Object>> now = new HashMap<>();
            final List<String> ids = new ArrayList<>();
            a.scanMachines((h, mc, s, p, b, first, last, sp, lost) ->
            {
                now.put(h, List.of(mc, s, String.valueOf(p), first, String.valueOf(sp), lost));
                ids.add(mc.id());
            });
            assertThat(known).as("step %d", step).isEqualTo(now);
            final List<String> inOrder = new ArrayList<>();
            for (int i = 0; i < mirror.size(); i++)
            {
                inOrder.add(mirror.machine(mirror.inOrder(i)).id());
            }
            assertThat(inOrder).as("id order, step %d", step).isEqualTo(ids);
        }
        assertThat(mirror.incrementalScans()).as("all but the first look took only the changed machines")
            .isEqualTo(mirror.scans() - 1);
    }

    @Test
    void aLookAfterAnOperationTakesOnlyTheMachinesItMovedAndEveryOneOfThem()
    {
        final EgressAllocator a = new EgressAllocator(new HostSettings("ord", new BlockLayout(4, 16), 1024), 1);
        a.upsertApp("a", true);
        a.addPair("a", pair(0));
        a.addPair("a", pair(1));
        for (int i = 0; i < 40; i++)
        {
            a.upsertMachine(machine(i, "a"));
        }
        final MachineMirror mirror = new MachineMirror();
        final MachineMirror.Reader r = mirror.reader(MachineMirror.ALL);
        mirror.update(a);
        r.clear();
        final int pending = a.handle("m39");
        assertThat(mirror.scope(pending)).as("two pairs of 16 blocks: the last machines wait").isEqualTo(Scope.PENDING);

        // a pair released moves its machines (to pending: the other pair is full) and nothing else
        final List<Integer> onPair0 = new ArrayList<>();
        for (int i = 0; i < 40; i++)
        {
            if (pair(0).equals(mirror.pair(a.handle("m" + i))))
            {
                onPair0.add(a.handle("m" + i));
            }
        }
        a.releasePair("a", pair(0).ipv4());
        mirror.update(a);
        assertThat(mirror.incrementalScans()).isEqualTo(1);
        assertThat(handles(r)).containsExactlyInAnyOrderElementsOf(onPair0);
        onPair0.forEach(h -> assertThat(mirror.scope(h)).isEqualTo(Scope.PENDING));
        r.clear();

        // a slot freed: the first waiting machine is placed there, and is told with the removed one
        final String onPair1 = idOnPair(a, mirror, pair(1));
        final int freed = a.handle(onPair1);
        a.removeMachine(onPair1);
        mirror.update(a);
        assertThat(mirror.incrementalScans()).isEqualTo(2);
        final List<Integer> told = handles(r);
        assertThat(told).contains(freed).hasSize(2);
        final int placed = told.get(0) == freed ? told.get(1) : told.get(0);
        assertThat(mirror.pair(placed)).isEqualTo(pair(1));
        assertThat(mirror.present(freed)).isFalse();
    }

    private static String idOnPair(final EgressAllocator a, final MachineMirror mirror, final EgressPair pair)
    {
        for (int i = 0; i < mirror.size(); i++)
        {
            final int h = mirror.inOrder(i);
            if (pair.equals(mirror.pair(h)))
            {
                return mirror.machine(h).id();
            }
        }
        throw new AssertionError("no machine on " + pair);
    }
}
