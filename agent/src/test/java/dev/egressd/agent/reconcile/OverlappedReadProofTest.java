package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.GenerationKernel;
import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.KernelException;
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
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.function.UnaryOperator;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A whole read that the writer's own changes overlapped proves the kernel again (docs/design.md, "The control
 * plane"): under a steady stream of changes every whole read overlaps some, so without this a proof lost once (a
 * start, a hand edit, a refused batch) stayed lost while the changes went on, and every reconcile read the whole
 * table. The reads run on a reader thread of their own and the changes on the loop thread, as in the daemon; the
 * kernel's generation moves by one per committed transaction ({@link GenerationKernel}).
 */
class OverlappedReadProofTest
{
    @TempDir
    Path dir;

    private final HostSettings settings = new HostSettings("ord", new BlockLayout(8, 1024), 1024);
    private final GenerationKernel counting = new GenerationKernel(41);
    private final DuringRead kernel = new DuringRead(counting);
    private final ExecutorService loopThread = Executors.newSingleThreadExecutor();
    private final ExecutorService readerThread = Executors.newSingleThreadExecutor();
    private ControlLoop loop;
    private int machines;

    /**
     * The counting kernel, with something that happens while a read is out (after it took the generation, before
     * the elements are dumped), and a dump that may come back without elements it skipped.
     */
    static final class DuringRead implements Kernel
    {
        final GenerationKernel k;
        /** Run once, on the reader thread, in the middle of the next read. */
        volatile Callable<Void> during;
        /** What the next read's dump returns, from what the kernel holds. */
        volatile UnaryOperator<KernelPlan> dump;

        DuringRead(final GenerationKernel k)
        {
            this.k = k;
        }

        @Override
        public synchronized boolean ensureTable() throws KernelException
        {
            return k.ensureTable();
        }

        @Override
        public KernelPlan read() throws KernelException
        {
            final Callable<Void> d = during;
            during = null;
            if (d != null)
            {
                try
                {
                    d.call(); // waits for the loop thread: no lock held here
                }
                catch (final Exception e)
                {
                    throw new IllegalStateException(e);
                }
            }
            final UnaryOperator<KernelPlan> f = dump;
            dump = null;
            synchronized (this)
            {
                final KernelPlan held = k.read();
                return f == null ? held : f.apply(held);
            }
        }

        @Override
        public synchronized void apply(final List<PlanChange> changes) throws KernelException
        {
            k.apply(changes);
        }

        @Override
        public synchronized long appliedGeneration()
        {
            return k.appliedGeneration();
        }

        @Override
        public synchronized boolean appliedTransaction()
        {
            return k.appliedTransaction();
        }

        @Override
        public synchronized long generation()
        {
            return k.generation();
        }

        @Override
        public String tableFingerprint()
        {
            return k.tableFingerprint();
        }

        @Override
        public synchronized KernelPlan readTrusting(final KernelPlan table)
        {
            return k.readTrusting(table);
        }

        synchronized void edit(final KernelPlan drifted)
        {
            k.edit(drifted);
        }

        synchronized KernelPlan held()
        {
            return k.fake.plan();
        }
    }

    @BeforeEach
    void start() throws Exception
    {
        loop = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)), kernel, new StateStore(dir),
            loopThread, System::nanoTime, 0);
        on(() ->
        {
            loop.initialSync(false, null);
            loop.readsOn(readerThread);
            return null;
        });
        on(() -> loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", new EgressPair(
            Ipv4Address.parse("203.0.113.10"), Ipv6Address.parse("2001:db8::10"), "ord")))).get();
        addMachine();
        addMachine();
        // someone else's transaction (another table's): the proof is lost, the next read is whole
        kernel.edit(kernel.held());
        addMachine();
        assertThat(on(loop::kernelSeen)).as("lost").isNull();
    }

    @AfterEach
    void stop() throws Exception
    {
        on(() ->
        {
            loop.closeReads();
            return null;
        });
        loopThread.shutdownNow();
        readerThread.shutdownNow();
        assertThat(loopThread.awaitTermination(5, TimeUnit.SECONDS)).isTrue();
    }

    @Test
    void aWholeReadOverlappedByTheWritersOwnChangesProvesTheKernelAgain() throws Exception
    {
        kernel.during = () ->
        {
            addMachine(); // two changes answered while the read is out
            addMachine();
            return null;
        };
        final long tableReads = loop.reconcileTableReads();
        reconcileAndWait();
        assertThat(loop.reconcileTableReads()).as("read whole").isEqualTo(tableReads + 1);
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(on(loop::kernelSeen)).as("proven at the generation of the writer's last commit").isNotNull()
            .extracting(s -> s.generation()).isEqualTo(counting.generation);

        addMachine(); // and the writer's next commits keep it
        final int reads = counting.fake.reads;
        reconcileAndWait();
        assertThat(counting.fake.reads).as("the next read skipped the table").isEqualTo(reads);
        assertThat(loop.reconcileTableReads()).isEqualTo(tableReads + 1);
        assertThat(on(loop::desiredPlan)).isEqualTo(kernel.held());
    }

    @Test
    void anElementTheOverlappedDumpSkippedIsAddedBackAndTheKernelIsProven() throws Exception
    {
        final PlanElement untouched = kernel.held().elements("snat4").values().iterator().next();
        kernel.during = () ->
        {
            addMachine();
            return null;
        };
        // a delete between two of the dump's messages shifts where the next resumes: one element is not in it
        kernel.dump = held -> PlanDiff.apply(held, List.of(PlanChange.remove(untouched)));
        reconcileAndWait();
        assertThat(kernel.held().elements("snat4")).containsValue(untouched);
        assertThat(on(loop::kernelSeen)).as("proven").isNotNull();
        final int reads = counting.fake.reads;
        reconcileAndWait();
        assertThat(counting.fake.reads).as("the next read skipped the table").isEqualTo(reads);
    }

    @Test
    void someoneElsesCommitAfterTheWritersLastDuringTheReadProvesNothing() throws Exception
    {
        kernel.during = () ->
        {
            addMachine();
            kernel.edit(kernel.held()); // nothing the read can see: only its generation tells
            return null;
        };
        reconcileAndWait();
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(on(loop::kernelSeen)).isNull();
        final int reads = counting.fake.reads;
        reconcileAndWait();
        assertThat(counting.fake.reads).as("read whole again").isEqualTo(reads + 1);
    }

    @Test
    void someoneElsesCommitBeforeTheWritersDuringTheReadProvesNothingAndItsDriftIsRepaired() throws Exception
    {
        final KernelPlan before = kernel.held();
        final PlanElement snat = before.elements("snat4").values().iterator().next();
        kernel.during = () ->
        {
            kernel.edit(PlanDiff.apply(kernel.held(), List.of(PlanChange.remove(snat)))); // nft delete element
            addMachine();
            return null;
        };
        reconcileAndWait();
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
        assertThat(kernel.held().elements("snat4")).containsValue(snat);
        assertThat(on(loop::kernelSeen)).as("the run of own commits began after the read did").isNull();
        final int reads = counting.fake.reads;
        reconcileAndWait();
        assertThat(counting.fake.reads).as("read whole again").isEqualTo(reads + 1);
        assertThat(on(loop::desiredPlan)).isEqualTo(kernel.held());
    }

    /** A reconcile on the loop thread; waits until its read came back and was taken there. */
    private void reconcileAndWait() throws Exception
    {
        ReconcileOnce.andWait(loop, this::on);
    }

    private void addMachine() throws Exception
    {
        final int n = ++machines;
        final MutationResult r = on(() -> loop.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(
            new Machine("m" + n, "a1", "tap-m" + n, Ipv4Address.parse("10.77.0." + (n + 1)),
                Ipv6Address.parse("fd77::" + (n + 1)), null)))).get();
        assertThat(r).isInstanceOf(MutationResult.Ok.class);
    }

    private <T> T on(final Callable<T> task) throws Exception
    {
        return loopThread.submit(task).get();
    }
}
