package dev.egressd.core.plan;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.core.model.AddressDevice;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import dev.egressd.core.plan.PlanElement.Guest4;
import dev.egressd.core.plan.PlanElement.Guest6;
import dev.egressd.core.plan.PlanElement.Snat4;
import dev.egressd.core.plan.PlanElement.Snat6;
import dev.egressd.core.plan.PlanElement.Static4;
import dev.egressd.core.plan.PlanElement.Static6;
import dev.egressd.core.plan.PlanElement.Uplink4;
import dev.egressd.core.plan.PlanElement.Uplink6;
import java.util.List;
import org.junit.jupiter.api.Test;

class KernelPlannerTest
{
    static final EgressPair PAIR = new EgressPair(v4("203.0.113.10"), v6("2001:db8:10::10"), "ord");

    static Ipv4Address v4(final String s)
    {
        return Ipv4Address.parse(s);
    }

    static Ipv6Address v6(final String s)
    {
        return Ipv6Address.parse(s);
    }

    static Machine machine(final String id, final int n)
    {
        return new Machine(id, "app", "tap-" + id, v4("10.77.0." + n), v6("fd77::" + n), null);
    }

    @Test
    void appScopedMachineIsStaticMappedToItsBlockAndAllowedOnItsInterface()
    {
        final Machine m = machine("m1", 2);
        final KernelPlan plan = KernelPlanner.plan(
            List.of(new PlannedMachine(m, new Egress(Scope.APP, PAIR, 1, 1024, 2047, "slot 1"))), List.of(PAIR));

        assertThat(plan.elements()).containsExactlyInAnyOrder(
            new Uplink4(PAIR.ipv4()), new Uplink6(PAIR.ipv6()),
            new Guest4("tap-m1", m.ipv4()), new Guest6("tap-m1", m.ipv6()),
            new Static4(m.ipv4()), new Static6(m.ipv6()),
            new Snat4(m.ipv4(), PAIR.ipv4(), 1024, 2047), new Snat6(m.ipv6(), PAIR.ipv6(), 1024, 2047));
    }

    @Test
    void pendingMachineIsStaticButUnmappedSoTheKernelRefusesIt()
    {
        final Machine m = machine("m1", 2);
        final KernelPlan plan = KernelPlanner.plan(
            List.of(new PlannedMachine(m, new Egress(Scope.PENDING, null, -1, -1, -1, "full"))), List.of());

        assertThat(plan.elements()).containsExactlyInAnyOrder(
            new Guest4("tap-m1", m.ipv4()), new Guest6("tap-m1", m.ipv6()),
            new Static4(m.ipv4()), new Static6(m.ipv6()));
    }

    @Test
    void hostScopedMachineGetsOnlyAntiSpoofing()
    {
        final Machine m = new Machine("m1", "app", "tap-m1", v4("10.77.0.2"), null, null);
        final KernelPlan plan = KernelPlanner.plan(
            List.of(new PlannedMachine(m, new Egress(Scope.HOST, null, -1, -1, -1, "no pairs"))), List.of());

        assertThat(plan.elements()).containsExactly(new Guest4("tap-m1", m.ipv4()));
    }

    @Test
    void machineScopedMachineMayUseTheWholePortRange()
    {
        final Machine m = new Machine("m1", "app", "tap-m1", null, v6("fd77::2"), null);
        final KernelPlan plan = KernelPlanner.plan(
            List.of(new PlannedMachine(m, new Egress(Scope.MACHINE, PAIR, -1, 1, 65535, "legacy"))), List.of(PAIR));

        assertThat(plan.elements("snat6").values()).containsExactly(new Snat6(m.ipv6(), PAIR.ipv6(), 1, 65535));
        assertThat(plan.elements("snat4")).isEmpty();
    }

    @Test
    void appPairAddressesGoOnTheChosenDeviceAndMachineScopedOnesStayOnTheUplink()
    {
        final EgressPair legacy = new EgressPair(v4("203.0.113.50"), v6("2001:db8:10::50"), "ord");
        final Machine m1 = machine("m1", 2);
        final Machine m2 = machine("m2", 3);
        final List<PlannedMachine> machines = List.of(
            new PlannedMachine(m1, new Egress(Scope.APP, PAIR, 1, 1024, 2047, "slot 1")),
            new PlannedMachine(m2, new Egress(Scope.MACHINE, legacy, -1, 1, 65535, "legacy")));

        final KernelPlan onLo = KernelPlanner.plan(machines, List.of(PAIR), List.of(legacy), AddressDevice.LO);
        assertThat(onLo.elements("uplink4").values()).containsExactlyInAnyOrder(
            new Uplink4(PAIR.ipv4(), AddressDevice.LO), new Uplink4(legacy.ipv4(), AddressDevice.UPLINK));
        assertThat(onLo.elements("uplink6").values()).containsExactlyInAnyOrder(
            new Uplink6(PAIR.ipv6(), AddressDevice.LO), new Uplink6(legacy.ipv6(), AddressDevice.UPLINK));
        // the device does not change what the table maps
        final KernelPlan onUplink = KernelPlanner.plan(machines, List.of(PAIR), List.of(legacy), AddressDevice.UPLINK);
        assertThat(onLo.elements("snat4")).isEqualTo(onUplink.elements("snat4"));
        assertThat(onUplink.elements("uplink4").values()).containsExactlyInAnyOrder(new Uplink4(PAIR.ipv4()),
            new Uplink4(legacy.ipv4()));
        assertThat(KernelPlanner.plan(machines, List.of(PAIR, legacy))).as("the two-list form is all on the uplink")
            .isEqualTo(onUplink);

        // a pair held both ways (not something the allocator does) is planned once, on the uplink
        final KernelPlan both = KernelPlanner.plan(List.of(), List.of(legacy), List.of(legacy), AddressDevice.LO);
        assertThat(both.elements("uplink4").values()).containsExactly(new Uplink4(legacy.ipv4(), AddressDevice.UPLINK));
    }

    @Test
    void anAddressOnLoIsAnotherElementThanTheSameAddressOnTheUplink()
    {
        final Uplink4 lo = new Uplink4(PAIR.ipv4(), AddressDevice.LO);
        assertThat(lo).isNotEqualTo(new Uplink4(PAIR.ipv4()));
        assertThat(lo.key()).isNotEqualTo(new Uplink4(PAIR.ipv4()).key());
        final List<PlanChange> move = PlanDiff.between(KernelPlan.of(List.of(new Uplink4(PAIR.ipv4()))),
            KernelPlan.of(List.of(lo)));
        assertThat(move).containsExactly(PlanChange.add(lo), PlanChange.remove(new Uplink4(PAIR.ipv4())));
    }
}
