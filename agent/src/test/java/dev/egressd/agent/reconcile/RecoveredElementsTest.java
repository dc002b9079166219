package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.FakeKernel;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;

class RecoveredElementsTest
{
    private final HostSettings settings = new HostSettings("ord", new BlockLayout(8, 1024), 1024);
    private final FakeKernel kernel = new FakeKernel();
    /** The allocator the lost state file described: what the kernel still holds. */
    private final EgressAllocator before = new EgressAllocator(settings);
    /** The allocator after the restart: empty, the orchestrator has not re-sent anything yet. */
    private EgressAllocator after;
    private RecoveredElements recovered;

    private static final PlanElement FOREIGN = new PlanElement.Uplink4(Ipv4Address.parse("198.51.100.7"));

    private static Machine machine(final String id, final int n)
    {
        return new Machine(id, "a1", "tap-" + id, Ipv4Address.parse("10.77.0." + n), Ipv6Address.parse("fd77::" + n),
            null);
    }

    @BeforeEach
    void kernelHoldsALostState() throws Exception
    {
        before.addPair("a1", pair("203.0.113.10", "2001:db8::10"));
        for (int i = 1; i <= 4; i++)
        {
            before.upsertMachine(machine("m" + i, i + 1));
        }
        before.removeMachine("m2"); // so placements are not simply in creation order
        before.upsertMachine(machine("m5", 6));
        before.upsertMachine(machine("s1", 7));
        before.setMachineScopedPair("s1", pair("203.0.113.20", "2001:db8::20"));
        final List<PlanElement> held = new ArrayList<>(StateMapper.plan(before, List.of()).elements());
        held.add(FOREIGN); // an address someone else put on the uplink (no SNAT element leaves from it)
        kernel.plan(KernelPlan.of(held));
        after = new EgressAllocator(settings);
        recovered = new RecoveredElements(settings, Set.of());
    }

    private Egress placement(final EgressAllocator allocator, final String id)
    {
        final Egress e = allocator.machine(id).orElseThrow().egress();
        return new Egress(e.scope(), e.pair(), e.block(), e.firstPort(), e.lastPort(), "");
    }

    @Test
    void everythingTheKernelHoldsIsRecoveredExceptAnUplinkAddressNoGuestLeavesFrom() throws Exception
    {
        final int count = recovered.recoverFromKernel(kernel, after);
        assertThat(count).isEqualTo(kernel.plan().size() - 1);
        assertThat(recovered.elements()).doesNotContain(FOREIGN).hasSize(count);
        assertThat(recovered.recoverFromKernel(kernel, after)).as("nothing new the second time").isZero();
    }

    @Test
    void elementsTheAllocatorAlreadyPlansAreNotRecovered() throws Exception
    {
        after.addPair("a1", pair("203.0.113.10", "2001:db8::10"));
        recovered.recoverFromKernel(kernel, after);
        assertThat(recovered.elements()).doesNotContain(
            new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10")),
            new PlanElement.Uplink6(Ipv6Address.parse("2001:db8::10")));
        assertThat(recovered.elements()).contains(new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.20")));
    }

    @Test
    void aResentMachineGoesBackOnExactlyItsPairAndBlock() throws Exception
    {
        recovered.recoverFromKernel(kernel, after);
        after.addPair("a1", pair("203.0.113.10", "2001:db8::10"));
        for (final String id : new String[] {"m5", "m4", "m1", "m3"})
        {
            final Outcome outcome = recovered.restore(before.machine(id).orElseThrow().machine(), after);
            assertThat(outcome).as(id).isNotNull();
            assertThat(outcome.ok()).as(id).isTrue();
            assertThat(placement(after, id)).as(id).isEqualTo(placement(before, id));
        }
    }

    @Test
    void aResentMachineOnTheWholePortRangeGetsItsMachineScopedPairBack() throws Exception
    {
        recovered.recoverFromKernel(kernel, after);
        after.upsertApp("a1", true);
        final Outcome outcome = recovered.restore(before.machine("s1").orElseThrow().machine(), after);
        assertThat(outcome.ok()).isTrue();
        assertThat(after.machine("s1").orElseThrow().egress().scope()).isEqualTo(Scope.MACHINE);
        assertThat(after.machine("s1").orElseThrow().machineScopedPair())
            .isEqualTo(before.machine("s1").orElseThrow().machineScopedPair());
    }

    @Test
    void aMachineTheKernelDoesNotMapOrWhosePairIsGoneIsLeftToBePlacedAnew() throws Exception
    {
        recovered.recoverFromKernel(kernel, after);
        after.upsertApp("a1", true);
        assertThat(recovered.restore(machine("m9", 60), after)).as("not in the kernel").isNull();
        // m1's pair has not been re-sent: its block cannot be restored
        assertThat(recovered.restore(before.machine("m1").orElseThrow().machine(), after)).isNull();
        assertThat(after.machine("m1")).isEmpty();
    }

    @Test
    void whatTheAllocatorClaimsIsPrunedAndTheRestIsKept() throws Exception
    {
        recovered.recoverFromKernel(kernel, after);
        after.addPair("a1", pair("203.0.113.10", "2001:db8::10"));
        final Machine m1 = before.machine("m1").orElseThrow().machine();
        final Set<PlanElement> initial = Set.copyOf(recovered.elements());
        recovered.restore(m1, after);
        recovered.prune(after);
        // exactly what m1 and the pair account for goes: what the allocator now plans itself
        final Set<PlanElement> expected = new java.util.HashSet<>(initial);
        expected.removeAll(StateMapper.plan(after, List.of()).elements());
        assertThat(expected).hasSizeLessThan(initial.size());
        assertThat(recovered.elements()).containsExactlyInAnyOrderElementsOf(expected);
        assertThat(recovered.elements()).contains(
            new PlanElement.Guest4("tap-m3", Ipv4Address.parse("10.77.0.4")),
            new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.20")));
        // every other machine re-sent: nothing is left
        for (final String id : new String[] {"m3", "m4", "m5", "s1"})
        {
            final Machine m = before.machine(id).orElseThrow().machine();
            if (recovered.restore(m, after) == null)
            {
                after.upsertMachine(m);
            }
        }
        recovered.prune(after);
        assertThat(recovered.isEmpty()).as(recovered.elements().toString()).isTrue();
    }

    @Test
    void aRollbackGoesBackToTheLastCommittedSet() throws Exception
    {
        recovered.recoverFromKernel(kernel, after);
        final Set<PlanElement> all = Set.copyOf(recovered.elements());
        recovered.commit();
        assertThat(recovered.forget().ok()).isTrue();
        assertThat(recovered.isEmpty()).isTrue();
        recovered.rollback();
        assertThat(recovered.elements()).isEqualTo(all);
        recovered.forget();
        recovered.commit();
        recovered.rollback();
        assertThat(recovered.isEmpty()).isTrue();
    }

    @Test
    void theStateFilesRecoveredElementsAreReadBackAndAnUnreadableOneIsSkipped()
    {
        final var good = StateMapper.toData(new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10")));
        final var bad = new dev.egressd.agent.state.DesiredState.Element("uplink4", null, "not-an-address", null,
            null, null);
        assertThat(RecoveredElements.fromState(List.of(good, bad)))
            .containsExactly(new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10")));
    }

    private EgressPair pair(final String ipv4, final String ipv6)
    {
        return new EgressPair(Ipv4Address.parse(ipv4), Ipv6Address.parse(ipv6), settings.region());
    }
}
