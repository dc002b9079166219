package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.GenerationKernel;
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
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The writer's own batches keep the kernel proven (docs/design.md, "The control plane"): when the generation the
 * writer's commit produced is the proven one plus one, nobody else committed in between, and the reconcile's next
 * read skips the table. Anyone else's commit, before the batch, between it and its generation read, or after it,
 * loses the proof: the next read is whole and repairs.
 */
class OwnBatchProofTest
{
    @TempDir
    Path dir;

    private final HostSettings settings = new HostSettings("ord", new BlockLayout(8, 1024), 1024);
    private final GenerationKernel kernel = new GenerationKernel(41);
    private ControlLoop loop;
    private int machines;
    /** Trusted reads before the test. */
    private int trusted;


    @BeforeEach
    void start() throws Exception
    {
        final StateStore store = new StateStore(dir);
        loop = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)), kernel, store,
            Runnable::run, () -> 0L, 0);
        loop.initialSync(false, null);
        loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", new EgressPair(
            Ipv4Address.parse("203.0.113.10"), Ipv6Address.parse("2001:db8::10"), "ord"))).get();
        addMachine();
        loop.reconcile();
        assertThat(loop.kernelSeen()).isNotNull();
        trusted = kernel.trustedReads;
    }

    private void addMachine() throws Exception
    {
        final int n = ++machines;
        loop.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(new Machine("m" + n, "a1", "tap-m" + n,
            Ipv4Address.parse("10.77.0." + (n + 1)), Ipv6Address.parse("fd77::" + (n + 1)), null))).get();
    }

    /** The kernel's table without one of its SNAT elements, as {@code nft delete element} leaves it. */
    private KernelPlan withoutOneSnat()
    {
        final KernelPlan held = kernel.fake.plan();
        final PlanElement snat = held.elements("snat4").values().iterator().next();
        return PlanDiff.apply(held, List.of(PlanChange.remove(snat)));
    }

    @Test
    void ownBatchesKeepTheProofAndTheNextReadSkipsTheTable() throws Exception
    {
        final long before = kernel.generation;
        addMachine();
        addMachine();
        assertThat(kernel.generation).as("two batches, two transactions").isEqualTo(before + 2);
        assertThat(loop.kernelSeen()).as("the kernel holds the plan at the generation of the last batch")
            .isNotNull().extracting(s -> s.generation()).isEqualTo(kernel.generation);

        final int reads = kernel.fake.reads;
        final long skips = loop.idleReconciles();
        loop.reconcile();
        assertThat(kernel.fake.reads).as("the table was not read").isEqualTo(reads);
        assertThat(kernel.trustedReads).as("only the addresses were").isEqualTo(trusted + 1);
        assertThat(loop.idleReconciles()).isEqualTo(skips + 1);
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
    }

    @Test
    void aForeignCommitBeforeOurBatchLosesTheProofAndTheNextReadRepairs() throws Exception
    {
        final KernelPlan held = kernel.fake.plan();
        kernel.edit(withoutOneSnat());
        addMachine(); // its generation is the proven one plus two
        assertThat(loop.kernelSeen()).isNull();

        final int reads = kernel.fake.reads;
        loop.reconcile();
        assertThat(kernel.fake.reads).as("read whole").isEqualTo(reads + 1);
        assertThat(kernel.trustedReads).isEqualTo(trusted);
        assertThat(kernel.fake.plan().elements("snat4")).as("repaired").containsAllEntriesOf(held.elements("snat4"));
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
    }

    @Test
    void aForeignCommitBetweenOurBatchAndItsGenerationReadLosesTheProof() throws Exception
    {
        final KernelPlan held = kernel.fake.plan();
        kernel.foreignAfterNextBatch = withoutOneSnat();
        addMachine();
        assertThat(loop.kernelSeen()).isNull();

        final int reads = kernel.fake.reads;
        loop.reconcile();
        assertThat(kernel.fake.reads).as("read whole").isEqualTo(reads + 1);
        assertThat(kernel.fake.plan().elements("snat4")).as("repaired").containsAllEntriesOf(held.elements("snat4"));
    }

    @Test
    void aForeignCommitAfterOurBatchMakesTheNextReadWhole() throws Exception
    {
        addMachine();
        final KernelPlan held = kernel.fake.plan();
        assertThat(loop.kernelSeen()).isNotNull();
        kernel.edit(withoutOneSnat());

        final int reads = kernel.fake.reads;
        loop.reconcile();
        assertThat(kernel.fake.reads).as("read whole").isEqualTo(reads + 1);
        assertThat(kernel.trustedReads).isEqualTo(trusted);
        assertThat(kernel.fake.plan()).as("repaired").isEqualTo(held);
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);

        // the repair was the writer's only transaction since that read: proven again, and the next read skips
        loop.reconcile();
        final int after = kernel.fake.reads;
        loop.reconcile();
        assertThat(kernel.fake.reads).isEqualTo(after);
    }

    @Test
    void aChangeOfOnlyAddressesKeepsTheProofUnlessSomeoneCommittedMeanwhile() throws Exception
    {
        final long before = kernel.generation;
        loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a2", new EgressPair(
            Ipv4Address.parse("203.0.113.11"), Ipv6Address.parse("2001:db8::11"), "ord"))).get();
        assertThat(kernel.fake.applied.get(kernel.fake.applied.size() - 1)).allMatch(c -> GenerationKernel.isUplink(c.element()));
        assertThat(kernel.generation).as("no transaction").isEqualTo(before);
        assertThat(loop.kernelSeen()).isNotNull();

        kernel.foreignAfterNextBatch = withoutOneSnat(); // here: during the address change
        loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a3", new EgressPair(
            Ipv4Address.parse("203.0.113.12"), Ipv6Address.parse("2001:db8::12"), "ord"))).get();
        assertThat(loop.kernelSeen()).as("the generation moved without a transaction of ours").isNull();
        final int reads = kernel.fake.reads;
        loop.reconcile();
        assertThat(kernel.fake.reads).as("read whole").isEqualTo(reads + 1);
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
    }

    @Test
    void aRefusedBatchLosesTheProof() throws Exception
    {
        kernel.refuseNext = true;
        int reads = kernel.fake.reads;
        addMachine(); // refused, then read back and applied against the read
        assertThat(kernel.fake.reads).isEqualTo(reads + 1);
        assertThat(loop.kernelSeen()).isNull();
        reads = kernel.fake.reads;
        loop.reconcile();
        assertThat(kernel.trustedReads).isEqualTo(trusted);
        assertThat(kernel.fake.reads).as("read whole").isEqualTo(reads + 1);
    }

    @Test
    void uplinkAddressDriftIsStillRepairedWhenTheTableIsTrusted() throws Exception
    {
        addMachine();
        final KernelPlan held = kernel.fake.plan();
        final PlanElement uplink = held.elements("uplink4").values().iterator().next();
        kernel.fake.plan(PlanDiff.apply(held, List.of(PlanChange.remove(uplink)))); // `ip addr del`: no generation
        loop.reconcile();
        assertThat(kernel.trustedReads).isEqualTo(trusted + 1);
        assertThat(kernel.fake.plan()).as("the address is back").isEqualTo(held);
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
    }
}
