package dev.egressd.agent.reconcile;

import dev.egressd.agent.conntrack.ConntrackMonitor;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import dev.egressd.core.plan.PlanElement;

import java.util.ArrayList;
import java.util.Arrays;
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

    // What the monitor was last told of each machine, by allocator handle (loop thread only), compared by reference
    // with the allocator's scan so a change tells it of O(what changed) machines (as DesiredPlanCache does).
    private final EgressAllocator.MachineScan visit = this::visit;
    private ConntrackMonitor told;
    private Machine[] machine = new Machine[64];
    private Scope[] scope = new Scope[64];
    private EgressPair[] pair = new EgressPair[64];
    private EgressPair[] scoped = new EgressPair[64];
    private int[] first = new int[64];
    private int[] last = new int[64];
    private long[] seen = new long[64];
    private int[] changedHandles = new int[64];
    private int nChanged;
    private int handles;
    private long scans;
    private final List<String> goneIds = new ArrayList<>();
    private final List<Ipv4Address> heldScoped4 = new ArrayList<>();
    private final List<Ipv6Address> heldScoped6 = new ArrayList<>();

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
        handles = 0;
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
        heldScoped4.clear();
        heldScoped6.clear();
        nChanged = 0;
        scans++;
        allocator.scanMachines(visit);
        final List<String> gone = new ArrayList<>(goneIds);
        goneIds.clear();
        for (int h = 0; h < handles; h++)
        {
            if (machine[h] != null && seen[h] != scans)
            {
                gone.add(machine[h].id());
                machine[h] = null;
            }
        }
        gone.sort(null);
        final List<EgressAllocator.MachineView> changed = new ArrayList<>(nChanged);
        for (int i = 0; i < nChanged; i++)
        {
            changed.add(allocator.machine(machine[changedHandles[i]].id()).orElseThrow());
        }
        final List<Ipv4Address> held4 = new ArrayList<>();
        final List<Ipv6Address> held6 = new ArrayList<>();
        for (final EgressPair pair : allocator.appPairs()) // not pairs(): its slot views cost O(machines)
        {
            held4.add(pair.ipv4());
            held6.add(pair.ipv6());
        }
        held4.addAll(heldScoped4);
        held6.addAll(heldScoped6);
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
     * One machine of the scan: told again if anything the monitor takes from it is another reference or number
     * (a {@link Machine} and an {@link EgressPair} are immutable: a changed one is a new reference).
     */
    private void visit(final int handle, final Machine m, final Scope s, final EgressPair p, final int block,
        final int firstPort, final int lastPort, final EgressPair sp, final boolean pairLost)
    {
        if (handle >= machine.length)
        {
            final int n = Math.max(handle + 1, machine.length * 2);
            machine = Arrays.copyOf(machine, n);
            scope = Arrays.copyOf(scope, n);
            pair = Arrays.copyOf(pair, n);
            scoped = Arrays.copyOf(scoped, n);
            first = Arrays.copyOf(first, n);
            last = Arrays.copyOf(last, n);
            seen = Arrays.copyOf(seen, n);
            changedHandles = Arrays.copyOf(changedHandles, n);
        }
        handles = Math.max(handles, handle + 1);
        seen[handle] = scans;
        if (sp != null)
        {
            heldScoped4.add(sp.ipv4());
            heldScoped6.add(sp.ipv6());
        }
        final Machine was = machine[handle];
        if (was == m && scope[handle] == s && pair[handle] == p && first[handle] == firstPort
            && last[handle] == lastPort && scoped[handle] == sp)
        {
            return;
        }
        if (was != null && !was.id().equals(m.id()))
        {
            // the handle went to another machine (a rebuilt allocator may number them anew): the old one may be gone
            goneIds.add(was.id());
        }
        machine[handle] = m;
        scope[handle] = s;
        pair[handle] = p;
        first[handle] = firstPort;
        last[handle] = lastPort;
        scoped[handle] = sp;
        changedHandles[nChanged++] = handle;
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
