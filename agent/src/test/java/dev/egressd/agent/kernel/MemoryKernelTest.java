package dev.egressd.agent.kernel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The in-memory kernel refuses what nft refuses, all or nothing, and names nft as the part that refused. */
class MemoryKernelTest
{
    private static final PlanElement A = new PlanElement.Static4(Ipv4Address.parse("10.77.0.2"));
    private static final PlanElement B = new PlanElement.Static4(Ipv4Address.parse("10.77.0.3"));
    private static final PlanElement SNAT = new PlanElement.Snat4(Ipv4Address.parse("10.77.0.2"),
        Ipv4Address.parse("203.0.113.10"), 1024, 2047);
    private static final PlanElement OTHER_SNAT = new PlanElement.Snat4(Ipv4Address.parse("10.77.0.2"),
        Ipv4Address.parse("203.0.113.10"), 2048, 3071);

    private final MemoryKernel kernel = new MemoryKernel();

    @Test
    void theTableIsCreatedOnceAndChangesAreHeld() throws KernelException
    {
        assertThat(kernel.ensureTable()).isTrue();
        assertThat(kernel.ensureTable()).isFalse();
        kernel.apply(List.of(PlanChange.add(A), PlanChange.add(SNAT)));
        assertThat(kernel.read()).isEqualTo(KernelPlan.of(List.of(A, SNAT)));
        assertThat(kernel.plan()).isEqualTo(kernel.read());
        assertThat(kernel.counters()).isEmpty();
    }

    @Test
    void aRefusedBatchChangesNothing() throws KernelException
    {
        kernel.apply(List.of(PlanChange.add(A), PlanChange.add(SNAT)));
        final KernelPlan before = kernel.read();

        assertThatThrownBy(() -> kernel.apply(List.of(PlanChange.add(B), PlanChange.remove(
            new PlanElement.Static4(Ipv4Address.parse("10.77.0.9"))))))
            .isInstanceOf(KernelException.class).hasMessageStartingWith("nft: ")
            .hasMessageEndingWith("No such file or directory")
            .satisfies(e -> assertThat(((KernelException)e).source()).isEqualTo(KernelException.Source.NFT));
        assertThatThrownBy(() -> kernel.apply(List.of(PlanChange.add(B), PlanChange.add(OTHER_SNAT))))
            .isInstanceOf(KernelException.class).hasMessageEndingWith("File exists");
        assertThatThrownBy(() -> kernel.apply(List.of(PlanChange.replace(B, B))))
            .isInstanceOf(KernelException.class).hasMessageEndingWith("No such file or directory");
        assertThatThrownBy(() -> kernel.apply(List.of(PlanChange.replace(OTHER_SNAT, SNAT))))
            .isInstanceOf(KernelException.class).hasMessageEndingWith("File exists");
        assertThat(kernel.read()).isEqualTo(before);

        kernel.apply(List.of(PlanChange.add(SNAT), PlanChange.replace(SNAT, OTHER_SNAT)));
        assertThat(kernel.read()).isEqualTo(KernelPlan.of(List.of(A, OTHER_SNAT)));
    }
}
