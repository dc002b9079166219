package dev.egressd.agent.reconcile;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.testing.Privileged;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The writer's own batches keep the kernel proven, against the real kernel in a throwaway namespace: after each
 * batch the writer reads the ruleset's generation back, and when it is the proven one plus one the reconcile's next
 * read (on its own reader thread) skips the table. An {@code nft} command by hand moves the generation: the next
 * read is whole and repairs, within a second (docs/design.md, "The control plane").
 */
@Privileged
class OwnBatchProofPrivilegedTest
{
    @TempDir
    Path dir;

    private LoopInNamespace at;

    @BeforeEach
    void setUp() throws Exception
    {
        at = LoopInNamespace.start("genproof", dir);
        for (int n = 2; n < 6; n++)
        {
            at.putMachine("m" + n, n);
        }
        at.reconcileAndWait(); // whatever the start proved, a read now finds the kernel as the plan wants
        at.reconcileAndWait();
        assertThat(at.loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
    }

    @AfterEach
    void tearDown() throws Exception
    {
        if (at != null)
        {
            at.close();
        }
    }

    @Test
    void ownBatchesKeepTheProofAndAHandEditMakesTheNextReadWholeAndRepaired() throws Exception
    {
        for (int n = 6; n < 9; n++)
        {
            at.putMachine("m" + n, n);
            assertThat(at.on(at.loop::kernelSeen)).as("the batch for m%d was the only commit since the proof", n)
                .isNotNull();
            final long skips = at.loop.idleReconciles();
            at.reconcileAndWait();
            assertThat(at.loop.idleReconciles()).as("the read after m%d skipped the table", n).isEqualTo(skips + 1);
            assertThat(at.loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        }
        assertThat(at.kernelPlan()).isEqualTo(at.on(at.loop::desiredPlan));

        at.lab.exec("nft", "delete", "element", "inet", "egressd", "snat4", "{", "10.77.0.7", "}");
        final long skips = at.loop.idleReconciles();
        final long t0 = System.nanoTime();
        at.reconcileAndWait();
        assertThat(System.nanoTime() - t0).as("repaired within a second").isLessThan(LoopInNamespace.SECOND);
        assertThat(at.loop.idleReconciles()).as("read whole").isEqualTo(skips);
        assertThat(at.loop.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
        assertThat(at.loop.health().lastRepair()).contains("10.77.0.7");
        assertThat(at.kernelPlan()).isEqualTo(at.on(at.loop::desiredPlan));
    }

    @Test
    void aForeignCommitBeforeABatchLosesTheProof() throws Exception
    {
        at.putMachine("m6", 6);
        assertThat(at.on(at.loop::kernelSeen)).isNotNull();
        at.lab.exec("nft", "add", "table", "inet", "genproof_other"); // someone's transaction, in another table
        at.putMachine("m7", 7);
        assertThat(at.on(at.loop::kernelSeen)).as("two commits since the proof: it proves nothing").isNull();
        final long skips = at.loop.idleReconciles();
        at.reconcileAndWait();
        assertThat(at.loop.idleReconciles()).as("read whole").isEqualTo(skips);
        assertThat(at.loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(at.on(at.loop::kernelSeen)).as("the whole read proved it again").isNotNull();
    }
}
