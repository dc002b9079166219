package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.Kernel;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntUnaryOperator;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A read on the reader thread that finds the ruleset one generation past the proof looks again before it reads the
 * whole table: the writer's batch was committed, and its proof is published once the writer has read the generation
 * back (docs/design.md, "The control plane"). Only when the proof then matches is the table skipped.
 */
class KernelReadsCatchUpTest
{
    private static final long PROVEN = 41;

    private final ExecutorService readerThread = Executors.newSingleThreadExecutor();

    /** A kernel whose generation each call is told by the test (call number to generation). */
    static final class Generations implements Kernel
    {
        final AtomicInteger calls = new AtomicInteger();
        volatile IntUnaryOperator generation = n -> (int)PROVEN;
        volatile Runnable onSecondCall = () -> { };
        final AtomicInteger reads = new AtomicInteger();
        final AtomicInteger trusting = new AtomicInteger();

        @Override
        public boolean ensureTable()
        {
            return false;
        }

        @Override
        public KernelPlan read()
        {
            reads.incrementAndGet();
            return KernelPlan.empty();
        }

        @Override
        public void apply(final List<PlanChange> changes)
        {
            throw new AssertionError("a read applies nothing");
        }

        @Override
        public long generation()
        {
            final int n = calls.incrementAndGet();
            if (n == 2)
            {
                onSecondCall.run();
            }
            return generation.applyAsInt(n);
        }

        @Override
        public KernelPlan readTrusting(final KernelPlan table)
        {
            trusting.incrementAndGet();
            return KernelPlan.empty();
        }
    }

    @AfterEach
    void stop() throws InterruptedException
    {
        readerThread.shutdownNow();
        assertThat(readerThread.awaitTermination(5, TimeUnit.SECONDS)).isTrue();
    }

    private KernelReads.Result readOnce(final Generations kernel, final KernelReads reads) throws Exception
    {
        final CompletableFuture<KernelReads.Result> result = new CompletableFuture<>();
        reads.onThread(readerThread, Runnable::run);
        assertThat(reads.start(1, result::complete)).isTrue();
        return result.get(10, TimeUnit.SECONDS);
    }

    @Test
    void aProofPublishedJustAfterTheWritersCommitStillSkipsTheTable() throws Exception
    {
        final Generations kernel = new Generations();
        final KernelReads reads = new KernelReads(kernel, System::nanoTime);
        reads.proven(PROVEN);
        // the writer's batch is in the kernel (PROVEN + 1) and its proof is published between the two looks
        kernel.generation = n -> (int)PROVEN + 1;
        kernel.onSecondCall = () -> reads.proven(PROVEN + 1);
        final KernelReads.Result r = readOnce(kernel, reads);
        assertThat(r.trusted()).as("the table was skipped").isTrue();
        assertThat(r.generation()).isEqualTo(PROVEN + 1);
        assertThat(kernel.reads.get()).as("not read").isZero();
        assertThat(kernel.trusting.get()).isEqualTo(1);
    }

    @Test
    void aGenerationThatStaysOnePastTheProofIsReadWhole() throws Exception
    {
        final Generations kernel = new Generations();
        final KernelReads reads = new KernelReads(kernel, System::nanoTime);
        reads.proven(PROVEN);
        kernel.generation = n -> (int)PROVEN + 1; // someone else's commit: no proof comes
        final KernelReads.Result r = readOnce(kernel, reads);
        assertThat(r.trusted()).isFalse();
        assertThat(kernel.reads.get()).as("read whole").isEqualTo(1);
        assertThat(kernel.calls.get()).as("looked again, a bounded number of times")
            .isEqualTo(1 + KernelReads.CATCH_UP_TRIES);
    }

    @Test
    void aGenerationFurtherAwayIsReadWholeAtOnce() throws Exception
    {
        final Generations kernel = new Generations();
        final KernelReads reads = new KernelReads(kernel, System::nanoTime);
        reads.proven(PROVEN);
        kernel.generation = n -> (int)PROVEN + 2;
        final KernelReads.Result r = readOnce(kernel, reads);
        assertThat(r.trusted()).isFalse();
        assertThat(kernel.calls.get()).as("no second look").isEqualTo(1);
        assertThat(kernel.reads.get()).isEqualTo(1);
    }
}
