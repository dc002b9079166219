package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.GenerationKernel;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.KernelSeen;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The start that trusts the table the last clean stop saw in sync ({@link KernelSeen}; docs/operations.md,
 * "Start-up"): the stop records a generation only when a read proved the table since the last change, and a start
 * skips the table's read only when the generation, the table's configuration and the state all match.
 */
class TrustedStartTest
{
    @TempDir
    Path dir;

    private final HostSettings settings = new HostSettings("ord", new BlockLayout(8, 1024), 1024);
    private final GenerationKernel kernel = readingNothingBack();


    /** Without the batch's generation read back, only a read vouches for the table here. */
    private static GenerationKernel readingNothingBack()
    {
        final GenerationKernel kernel = new GenerationKernel(7);
        kernel.readsBack = false;
        return kernel;
    }

    private ControlLoop loop() throws Exception
    {
        final StateStore store = new StateStore(dir);
        final StateStore.Loaded loaded = store.load();
        final DesiredState state = loaded.state() != null ? loaded.state()
            : DesiredState.empty(StateMapper.host(settings));
        return ControlLoop.of(settings, state, kernel, store, Runnable::run, () -> 0L, 0);
    }

    /** A placed machine, then the stop's record as {@link ControlLoop#kernelSeen()} makes it after a quiet read. */
    private KernelSeen placedAndRecorded() throws Exception
    {
        final ControlLoop loop = loop();
        assertThat(loop.initialSync(false, null)).isFalse();
        loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", new EgressPair(
            Ipv4Address.parse("203.0.113.10"), Ipv6Address.parse("2001:db8::10"), "ord"))).get();
        loop.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(new Machine("m1", "a1", "tap-m1",
            Ipv4Address.parse("10.77.0.2"), Ipv6Address.parse("fd77::2"), null))).get();
        assertThat(loop.kernelSeen()).as("no read since the last change: nothing vouches for the table").isNull();
        loop.reconcile(); // inline: a read that finds the table as the plan wants
        final KernelSeen seen = loop.kernelSeen();
        assertThat(seen).isNotNull();
        assertThat(seen.generation()).isEqualTo(kernel.generation);
        return seen;
    }

    @Test
    void aStartTrustsTheTableTheStopSawWhenNothingMoved() throws Exception
    {
        final KernelSeen seen = placedAndRecorded();
        final KernelPlan held = kernel.fake.plan();
        final int reads = kernel.fake.reads;

        final ControlLoop next = loop();
        assertThat(next.initialSync(true, seen)).isTrue();
        assertThat(kernel.fake.reads).as("the table was not read").isEqualTo(reads);
        assertThat(kernel.trustedReads).isEqualTo(1);
        assertThat(next.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(next.allocator().machine("m1")).isPresent();
        assertThat(kernel.fake.plan()).isEqualTo(held);
        // nothing moved since: its own stop may vouch for the table again
        final KernelSeen again = next.kernelSeen();
        assertThat(again).isNotNull();
        assertThat(seen.mismatch(again)).isNull();
    }

    @Test
    void aTableChangedWhileDownIsReadAndRepaired() throws Exception
    {
        final KernelSeen seen = placedAndRecorded();
        final KernelPlan held = kernel.fake.plan();
        final PlanElement snat = held.elements("snat4").values().iterator().next();
        kernel.edit(PlanDiff.apply(held, List.of(PlanChange.remove(snat))));
        final int reads = kernel.fake.reads;

        final ControlLoop next = loop();
        assertThat(next.initialSync(true, seen)).isFalse();
        assertThat(kernel.fake.reads).as("read whole").isGreaterThan(reads);
        assertThat(kernel.trustedReads).isZero();
        assertThat(kernel.fake.plan()).as("repaired").isEqualTo(held);
    }

    @Test
    void anotherFixedPartOrAnotherStateIsReadToo() throws Exception
    {
        final KernelSeen seen = placedAndRecorded();
        kernel.fingerprint = "fixed part 2"; // e.g. another uplink or cap in the config
        assertThat(loop().initialSync(true, seen)).isFalse();

        kernel.fingerprint = "fixed part 1";
        final KernelSeen again = loop().kernelSeen();
        assertThat(again).as("a fresh loop has proved nothing yet").isNull();
        // a state that is not the one the stop left (the plan's fingerprint differs)
        final KernelSeen otherState = new KernelSeen(seen.bootId(), seen.bootMillis(), seen.netns(),
            seen.generation(), seen.table(), "0".repeat(64));
        final int reads = kernel.fake.reads;
        assertThat(loop().initialSync(true, otherState)).isFalse();
        assertThat(kernel.fake.reads).isGreaterThan(reads);
        assertThat(kernel.trustedReads).isZero();
    }

    @Test
    void theFullStartReadProvesTheTableToo() throws Exception
    {
        placedAndRecorded();
        final ControlLoop next = loop();
        assertThat(next.initialSync(true, null)).isFalse();
        final KernelSeen seen = next.kernelSeen();
        assertThat(seen).as("the start's own read found nothing to change").isNotNull();
        assertThat(seen.generation()).isEqualTo(kernel.generation);
        kernel.edit(kernel.fake.plan());
        assertThat(next.kernelSeen()).as("someone committed since").isNull();
    }

    @Test
    void thePlanFingerprintIsTheTableElementsInAnyOrder()
    {
        final PlanElement a = new PlanElement.Snat4(Ipv4Address.parse("10.77.0.2"), Ipv4Address.parse("203.0.113.10"),
            1024, 2047);
        final PlanElement b = new PlanElement.Guest4("tap-m1", Ipv4Address.parse("10.77.0.2"));
        final PlanElement up = new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10"),
            dev.egressd.core.model.AddressDevice.UPLINK);
        final String f = ControlLoop.planFingerprint(KernelPlan.of(List.of(a, b)));
        assertThat(ControlLoop.planFingerprint(KernelPlan.of(List.of(b, a, up)))).isEqualTo(f);
        assertThat(ControlLoop.planFingerprint(KernelPlan.of(List.of(b, new PlanElement.Snat4(
            Ipv4Address.parse("10.77.0.2"), Ipv4Address.parse("203.0.113.10"), 2048, 3071))))).isNotEqualTo(f);
        assertThat(ControlLoop.planFingerprint(KernelPlan.of(List.of(a)))).isNotEqualTo(f);
        assertThat(ControlLoop.planFingerprint(KernelPlan.of(List.of(a, new PlanElement.Guest4("tap-m2",
            Ipv4Address.parse("10.77.0.2")))))).isNotEqualTo(f);
    }
}
