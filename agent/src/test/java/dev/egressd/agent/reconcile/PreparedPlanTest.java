package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.FakeKernel;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.KernelPlan;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The plan built ahead of the first sync ({@link ControlLoop#preparePlan()}, on the loop thread while the daemon
 * wires the rest) is the plan that sync applies and keeps: the same kernel and the same state as without it.
 */
class PreparedPlanTest
{
    @TempDir
    Path dir;

    private final HostSettings settings = new HostSettings("ord", new BlockLayout(8, 1024), 1024);

    private ControlLoop loop(final FakeKernel kernel) throws Exception
    {
        final StateStore store = new StateStore(dir);
        final StateStore.Loaded loaded = store.load();
        final DesiredState state = loaded.state() != null ? loaded.state()
            : DesiredState.empty(StateMapper.host(settings));
        return ControlLoop.of(settings, state, kernel, store, Runnable::run, () -> 0L, 0);
    }

    @Test
    void aPreparedPlanIsThePlanTheFirstSyncAppliesAndKeeps() throws Exception
    {
        final ControlLoop first = loop(new FakeKernel());
        first.initialSync(false, null);
        first.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", new EgressPair(
            Ipv4Address.parse("203.0.113.10"), Ipv6Address.parse("2001:db8::10"), "ord"))).get();
        for (int i = 0; i < 5; i++)
        {
            final int m = i;
            first.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(new Machine("m" + m, "a1", "tap-m" + m,
                Ipv4Address.parse("10.77.0." + (m + 2)), Ipv6Address.parse("fd77::" + (m + 2)), null))).get();
        }

        final FakeKernel prepared = new FakeKernel();
        final ControlLoop withPlan = loop(prepared);
        withPlan.preparePlan();
        withPlan.initialSync(true, null);

        final FakeKernel plain = new FakeKernel();
        final ControlLoop without = loop(plain);
        without.initialSync(true, null);

        final KernelPlan held = prepared.plan();
        assertThat(held.elements("snat4")).hasSize(5);
        assertThat(held).isEqualTo(plain.plan());
        assertThat(held).isEqualTo(withPlan.fullDesiredPlan());
        assertThat(withPlan.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(withPlan.allocator().machine("m4")).isPresent();
    }
}
