package dev.egressd.agent.reconcile;

import dev.egressd.agent.conntrack.ConntrackMonitor;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.plan.PlanElement;

import java.util.ArrayList;
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
     * restart too; flows through a draining address go when its drain time ends).
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
        final List<EgressAllocator.MachineView> machines = allocator.machines();
        final List<Ipv4Address> held4 = new ArrayList<>();
        final List<Ipv6Address> held6 = new ArrayList<>();
        for (final EgressPair pair : allocator.appPairs()) // not pairs(): its slot views cost O(machines)
        {
            held4.add(pair.ipv4());
            held6.add(pair.ipv6());
        }
        for (final EgressAllocator.MachineView view : machines)
        {
            if (view.machineScopedPair() != null)
            {
                held4.add(view.machineScopedPair().ipv4());
                held6.add(view.machineScopedPair().ipv6());
            }
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
        m.machinesChanged(machines, held4, held6, drainNanos);
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
