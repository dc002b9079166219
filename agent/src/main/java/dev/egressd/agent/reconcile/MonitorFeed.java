package dev.egressd.agent.reconcile;

import dev.egressd.agent.conntrack.ConntrackMonitor;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.MachineMirror;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.PlanElement;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * What the loop tells the attached conntrack monitor: after every committed change the machines and every egress
 * address egressd holds, and every refused mutation as a line of the monitor's refusal log. Silent until a
 * monitor is attached (tests, and a start-up that has not wired one yet).
 */
final class MonitorFeed
{
    private volatile ConntrackMonitor monitor;

    // What the monitor was last told of each machine, by allocator handle (loop thread only): the mirror of the
    // machines it shares with the loop's other incremental consumers says which changed, so a change tells the
    // monitor of O(what changed) machines. Not their pair-lost flag: the monitor has no use for it.
    private final MachineMirror mirror;
    private final MachineMirror.Reader changes;
    private ConntrackMonitor told;
    private EgressAllocator toldOf;
    private Machine[] machine = new Machine[64];

    /** A feed with a mirror of the machines of its own. */
    MonitorFeed()
    {
        this(new MachineMirror());
    }

    /**
     * A feed over a mirror of the machines it shares with other consumers.
     *
     * @param mirror the machines as last scanned.
     */
    MonitorFeed(final MachineMirror mirror)
    {
        this.mirror = mirror;
        this.changes = mirror.reader(MachineMirror.MACHINE | MachineMirror.SCOPE | MachineMirror.PAIR
            | MachineMirror.PORTS | MachineMirror.SCOPED);
    }

    /**
     * Attaches the monitor.
     *
     * @param monitor the monitor.
     */
    void attach(final ConntrackMonitor monitor)
    {
        this.monitor = monitor;
    }

    /**
     * The attached monitor.
     *
     * @return the monitor, or null if none.
     */
    ConntrackMonitor monitor()
    {
        return monitor;
    }

    /**
     * Tells the monitor the machines and every egress address egressd holds: app pairs, machine-scoped pairs, and
     * released addresses still draining (a machine that becomes static, or a static machine the monitor first learns
     * of, keeps its flows through any of them and loses the rest at once: docs/design.md, invariant 3, across a
     * restart too; flows through a draining address go when its drain time ends). Only the machines that differ
     * from what the monitor was last told are looked up and sent; finding them is one scan of the machines that
     * allocates nothing.
     *
     * @param allocator  the allocator as committed.
     * @param draining   the uplink addresses still draining.
     * @param drainNanos the drain time.
     */
    void machinesChanged(final EgressAllocator allocator, final Set<PlanElement> draining, final long drainNanos)
    {
        final ConntrackMonitor m = monitor;
        if (m == null)
        {
            return;
        }
        if (m != told)
        {
            // a monitor not told of anything yet: every machine is new to it
            told = m;
            forget();
        }
        final Told t = tell(allocator, draining);
        m.machinesChangedOnly(t.changed(), t.gone(), t.held4(), t.held6(), drainNanos);
    }

    /**
     * What to tell a monitor: what a {@link ConntrackMonitor#machinesChangedOnly} call takes.
     *
     * @param changed the machines that differ from what was last told, or are new, in id order.
     * @param gone    ids of machines that may be gone, in id order (an id also in {@code changed} is not).
     * @param held4   every IPv4 egress address egressd holds.
     * @param held6   the same for IPv6.
     */
    record Told(List<EgressAllocator.MachineView> changed, List<String> gone, List<Ipv4Address> held4,
        List<Ipv6Address> held6)
    {
    }

    /** Forgets what was told: the next {@link #tell} tells every machine. */
    void forget()
    {
        Arrays.fill(machine, null);
        changes.clear();
        changes.all();
    }

    /**
     * What changed since the last call, and is now taken as told.
     *
     * @param allocator the allocator as committed.
     * @param draining  the uplink addresses still draining.
     * @return what to tell.
     */
    Told tell(final EgressAllocator allocator, final Set<PlanElement> draining)
    {
        if (allocator != toldOf)
        {
            // another allocator (a rollback) may number the machines anew: every machine is looked at again
            toldOf = allocator;
            changes.all();
        }
        mirror.update(allocator);
        final List<String> gone = new ArrayList<>();
        final List<EgressAllocator.MachineView> changed = new ArrayList<>();
        final int n = changes.size();
        for (int i = 0; i < n; i++)
        {
            final int h = changes.handle(i);
            if (h >= machine.length)
            {
                machine = Arrays.copyOf(machine, Math.max(h + 1, machine.length * 2));
            }
            final Machine was = machine[h];
            final Machine now = mirror.machine(h);
            if (was != null && (now == null || !was.id().equals(now.id())))
            {
                // gone, or the handle went to another machine (a rebuilt allocator may number them anew)
                gone.add(was.id());
            }
            machine[h] = now;
            if (now != null)
            {
                changed.add(allocator.machine(now.id()).orElseThrow());
            }
        }
        changes.clear();
        changed.sort(Comparator.comparing(v -> v.machine().id()));
        gone.sort(null);
        final List<Ipv4Address> held4 = new ArrayList<>();
        final List<Ipv6Address> held6 = new ArrayList<>();
        for (final EgressPair pair : allocator.appPairs()) // not pairs(): its slot views cost O(machines)
        {
            held4.add(pair.ipv4());
            held6.add(pair.ipv6());
        }
        for (int h = mirror.nextScoped(0); h >= 0; h = mirror.nextScoped(h + 1))
        {
            held4.add(mirror.scoped(h).ipv4());
            held6.add(mirror.scoped(h).ipv6());
        }
        for (final PlanElement element : draining)
        {
            if (element instanceof PlanElement.Uplink4 u)
            {
                held4.add(u.address());
            }
            else if (element instanceof PlanElement.Uplink6 u)
            {
                held6.add(u.address());
            }
        }
        return new Told(changed, gone, held4, held6);
    }

    /**
     * A mutation was refused: one refusal-log line, kind {@code api_<reason>}.
     *
     * @param what    the mutation's description.
     * @param refusal the allocator's refusal.
     */
    void refused(final String what, final Outcome.Refusal refusal)
    {
        final ConntrackMonitor m = monitor;
        if (m != null)
        {
            m.refusals().refusal("api_" + refusal.code().name().toLowerCase(Locale.ROOT), null, null, null, 1,
                what + ": " + refusal.message());
        }
    }
}
