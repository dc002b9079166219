package dev.egressd.core.plan;

import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Machine;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;

/**
 * The pure function from a host's desired state to its {@link KernelPlan}.
 *
 * <ul>
 *   <li>Every machine's guest addresses are allowed on its interface (anti-spoofing).</li>
 *   <li>MACHINE and APP scope: the guest is of the static class and mapped to its pair and ports.</li>
 *   <li>PENDING: the guest is of the static class and unmapped, so the kernel refuses it (fail-closed).</li>
 *   <li>HOST: nothing more; the kernel masquerades it.</li>
 *   <li>Every held pair's addresses are on the uplink, used or not, so that a machine placed on a pair
 *       later never waits for an address.</li>
 * </ul>
 */
public final class KernelPlanner
{
    private KernelPlanner()
    {
    }

    /**
     * Plans the kernel state.
     *
     * @param machines   every machine with its egress.
     * @param heldPairs  every pair held on this host, app-scoped and machine-scoped.
     * @return the plan.
     */
    public static KernelPlan plan(final Collection<PlannedMachine> machines, final Collection<EgressPair> heldPairs)
    {
        final List<PlanElement> elements = new ArrayList<>();
        for (final EgressPair pair : heldPairs)
        {
            elements.add(new PlanElement.Uplink4(pair.ipv4()));
            elements.add(new PlanElement.Uplink6(pair.ipv6()));
        }
        for (final PlannedMachine planned : machines)
        {
            final Machine m = planned.machine();
            if (m.ipv4() != null)
            {
                elements.add(new PlanElement.Guest4(m.iface(), m.ipv4()));
            }
            if (m.ipv6() != null)
            {
                elements.add(new PlanElement.Guest6(m.iface(), m.ipv6()));
            }
            switch (planned.egress().scope())
            {
                case MACHINE, APP ->
                {
                    final EgressPair pair = planned.egress().pair();
                    final int first = planned.egress().firstPort();
                    final int last = planned.egress().lastPort();
                    if (m.ipv4() != null)
                    {
                        elements.add(new PlanElement.Static4(m.ipv4()));
                        elements.add(new PlanElement.Snat4(m.ipv4(), pair.ipv4(), first, last));
                    }
                    if (m.ipv6() != null)
                    {
                        elements.add(new PlanElement.Static6(m.ipv6()));
                        elements.add(new PlanElement.Snat6(m.ipv6(), pair.ipv6(), first, last));
                    }
                }
                case PENDING ->
                {
                    if (m.ipv4() != null)
                    {
                        elements.add(new PlanElement.Static4(m.ipv4()));
                    }
                    if (m.ipv6() != null)
                    {
                        elements.add(new PlanElement.Static6(m.ipv6()));
                    }
                }
                case HOST ->
                {
                    // masqueraded: only the anti-spoofing elements above
                }
                default -> throw new IllegalStateException("unknown scope " + planned.egress().scope());
            }
        }
        return KernelPlan.of(elements);
    }
}
