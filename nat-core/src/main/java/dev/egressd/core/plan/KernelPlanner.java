package dev.egressd.core.plan;

import dev.egressd.core.model.AddressDevice;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The pure function from a host's desired state to its {@link KernelPlan}.
 *
 * <ul>
 *   <li>Every machine's guest addresses are allowed on its interface (anti-spoofing).</li>
 *   <li>MACHINE and APP scope: the guest is of the static class and mapped to its pair and ports.</li>
 *   <li>PENDING: the guest is of the static class and unmapped, so the kernel refuses it (fail-closed).</li>
 *   <li>HOST: nothing more; the kernel masquerades it.</li>
 *   <li>Every held pair's addresses are on the uplink (app-scoped ones on {@code lo} when the host says so,
 *       docs/region.md "Addresses on lo"), used or not, so that a machine placed on a pair later never waits for
 *       an address.</li>
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
        return plan(machines, heldPairs, List.of(), AddressDevice.UPLINK);
    }

    /**
     * Plans the kernel state with the app-scoped pairs' addresses on a chosen device; machine-scoped pairs stay on
     * the uplink (they are this host's alone, and only the uplink answers ARP/ND for them).
     *
     * @param machines     every machine with its egress.
     * @param appPairs     every app-scoped pair held on this host.
     * @param machinePairs every machine-scoped pair held on this host (a pair in both lists is planned on the
     *                     uplink).
     * @param appDevice    where the app-scoped pairs' addresses go.
     * @return the plan.
     */
    public static KernelPlan plan(final Collection<PlannedMachine> machines, final Collection<EgressPair> appPairs,
        final Collection<EgressPair> machinePairs, final AddressDevice appDevice)
    {
        final List<PlanElement> elements = new ArrayList<>();
        pairElements(appPairs, machinePairs, appDevice, elements);
        for (final PlannedMachine planned : machines)
        {
            final dev.egressd.core.model.Egress egress = planned.egress();
            machineElements(planned.machine(), egress.scope(), egress.pair(), egress.firstPort(), egress.lastPort(),
                elements);
        }
        return KernelPlan.of(elements);
    }

    /**
     * The uplink addresses of the held pairs (see {@link #plan(Collection, Collection, Collection, AddressDevice)}).
     *
     * @param appPairs     every app-scoped pair held on this host.
     * @param machinePairs every machine-scoped pair held on this host.
     * @param appDevice    where the app-scoped pairs' addresses go.
     * @param out          receives the elements.
     */
    public static void pairElements(final Collection<EgressPair> appPairs, final Collection<EgressPair> machinePairs,
        final AddressDevice appDevice, final List<PlanElement> out)
    {
        final Set<EgressPair> onUplink = machinePairs.isEmpty() ? Set.of() : new HashSet<>(machinePairs);
        for (final EgressPair pair : appPairs)
        {
            final AddressDevice device = onUplink.contains(pair) ? AddressDevice.UPLINK : appDevice;
            out.add(new PlanElement.Uplink4(pair.ipv4(), device));
            out.add(new PlanElement.Uplink6(pair.ipv6(), device));
        }
        for (final EgressPair pair : machinePairs)
        {
            out.add(new PlanElement.Uplink4(pair.ipv4(), AddressDevice.UPLINK));
            out.add(new PlanElement.Uplink6(pair.ipv6(), AddressDevice.UPLINK));
        }
    }

    /**
     * One machine's elements: its anti-spoofing elements, and by its scope its static class and mapping.
     *
     * @param m         the machine.
     * @param scope     its scope.
     * @param pair      the pair it leaves from (MACHINE and APP scope), else null.
     * @param first     its first port (MACHINE and APP scope).
     * @param last      its last port (MACHINE and APP scope).
     * @param out       receives the elements.
     */
    public static void machineElements(final Machine m, final Scope scope, final EgressPair pair, final int first,
        final int last, final List<PlanElement> out)
    {
        if (m.ipv4() != null)
        {
            out.add(new PlanElement.Guest4(m.iface(), m.ipv4()));
        }
        if (m.ipv6() != null)
        {
            out.add(new PlanElement.Guest6(m.iface(), m.ipv6()));
        }
        switch (scope)
        {
            case MACHINE, APP ->
            {
                if (m.ipv4() != null)
                {
                    out.add(new PlanElement.Static4(m.ipv4()));
                    out.add(new PlanElement.Snat4(m.ipv4(), pair.ipv4(), first, last));
                }
                if (m.ipv6() != null)
                {
                    out.add(new PlanElement.Static6(m.ipv6()));
                    out.add(new PlanElement.Snat6(m.ipv6(), pair.ipv6(), first, last));
                }
            }
            case PENDING ->
            {
                if (m.ipv4() != null)
                {
                    out.add(new PlanElement.Static4(m.ipv4()));
                }
                if (m.ipv6() != null)
                {
                    out.add(new PlanElement.Static6(m.ipv6()));
                }
            }
            case HOST ->
            {
                // masqueraded: only the anti-spoofing elements
            }
            default -> throw new IllegalStateException("unknown scope " + scope);
        }
    }
}
