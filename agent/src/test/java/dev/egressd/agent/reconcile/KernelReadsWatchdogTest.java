package dev.egressd.agent.reconcile;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.KernelException;
import dev.egressd.agent.kernel.MemoryKernel;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The read watchdog (docs/reliability.md, "A read that never returns"): a read whose kernel call never returns is
 * abandoned after its deadline, the health says the kernel is unavailable and names the stuck step, and the next
 * read runs on a fresh reader thread with a fresh handle; the stuck handle is closed on its own thread when (if)
 * its read returns, and its late result is dropped.
 */
class KernelReadsWatchdogTest
{
    private static final long SECOND = TimeUnit.SECONDS.toNanos(1);
    private static final PlanElement GUEST = new PlanElement.Static4(Ipv4Address.parse("10.77.0.2"));

    private final AtomicLong clock = new AtomicLong(1_000 * SECOND);
    private final ConcurrentLinkedQueue<Runnable> loopQueue = new ConcurrentLinkedQueue<>();
    private final CountDownLatch reading = new CountDownLatch(1);
    private final CountDownLatch release = new CountDownLatch(1);
    private final List<Handle> handles = new CopyOnWriteArrayList<>();

    /** A reader handle over the shared in-memory kernel; the first one's read blocks until released. */
    private final class Handle implements Kernel, AutoCloseable
    {
        final boolean blocks;
        volatile boolean closed;
        volatile String closedOn;
        volatile String readOn;

        Handle(final boolean blocks)
        {
            this.blocks = blocks;
        }

        @Override
        public boolean ensureTable() throws KernelException
        {
            return kernel.ensureTable();
        }

        @Override
        public KernelPlan read() throws KernelException
        {
            readOn = Thread.currentThread().getName();
            if (blocks)
            {
                reading.countDown();
                try
                {
                    release.await(); // a netlink socket that never answers
                }
                catch (final InterruptedException e)
                {
                    Thread.currentThread().interrupt();
                }
            }
            return kernel.read();
        }

        @Override
        public void apply(final List<PlanChange> changes)
        {
            throw new AssertionError("a reader handle never writes");
        }

        @Override
        public void close()
        {
            closed = true;
            closedOn = Thread.currentThread().getName();
        }
    }

    private final MemoryKernel kernel = new MemoryKernel()
    {
        @Override
        public Kernel reader()
        {
            final Handle h = new Handle(handles.isEmpty());
            handles.add(h);
            return h;
        }
    };
    private final ExecutorService first = Executors.newSingleThreadExecutor(r -> named(r, "egressd-reader"));
    private final List<ExecutorService> fresh = new CopyOnWriteArrayList<>();
    private final KernelReads reads = new KernelReads(kernel, clock::get);
    private final Reconciler reconciler = new Reconciler(kernel, reads, () -> KernelPlan.of(List.of(GUEST)),
        new DrainingAddresses(clock::get, () -> 1_700_000_000_000L, 100), clock::get);

    private static Thread named(final Runnable r, final String name)
    {
        final Thread t = new Thread(r, name);
        t.setDaemon(true);
        return t;
    }

    @AfterEach
    void tearDown()
    {
        release.countDown();
        reads.close();
        first.shutdownNow();
        fresh.forEach(ExecutorService::shutdownNow);
    }

    @Test
    void aReadThatNeverReturnsIsAbandonedAtItsDeadlineAndTheNextUsesAFreshHandle() throws Exception
    {
        reads.onThread(first, loopQueue::add);
        reads.watchdog(30 * SECOND, () ->
        {
            final ExecutorService e = Executors.newSingleThreadExecutor(r -> named(r, "egressd-reader-2"));
            fresh.add(e);
            return e;
        });
        reconciler.initialSync();
        reconciler.markInSync();

        reconciler.reconcile();
        assertThat(reading.await(5, TimeUnit.SECONDS)).as("the first read is stuck in the kernel").isTrue();
        clock.addAndGet(29 * SECOND);
        reconciler.reconcile();
        assertThat(reconciler.health().kernel()).as("before the deadline, nothing is said")
            .isEqualTo(KernelStatus.IN_SYNC);
        assertThat(reconciler.stuckReads()).isZero();

        clock.addAndGet(2 * SECOND);
        reconciler.reconcile();
        final Health h = reconciler.health();
        assertThat(h.kernel()).isEqualTo(KernelStatus.UNAVAILABLE);
        assertThat(h.lastError()).contains("egressd-reader").contains("(read)").contains("31 s")
            .contains("fresh reader handle");
        assertThat(reconciler.stuckReads()).isEqualTo(1);
        assertThat(reads.inFlight()).isFalse();
        assertThat(handles.get(0).closed).as("never closed from another thread while its read is in it").isFalse();

        // after the backoff, the next read runs on a fresh reader thread with a fresh handle
        clock.addAndGet(2 * SECOND);
        reconciler.reconcile();
        awaitLoopTask();
        runLoopTasks();
        assertThat(handles).hasSize(2);
        assertThat(handles.get(1).readOn).isEqualTo("egressd-reader-2");
        assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(reconciler.stuckReads()).isEqualTo(1);

        // the stuck read returns at last: its result is dropped, its handle closed on its own thread
        final long runs = reconciler.runs();
        release.countDown();
        final long until = System.nanoTime() + 5 * SECOND;
        while (!handles.get(0).closed && System.nanoTime() < until)
        {
            Thread.sleep(5);
        }
        assertThat(handles.get(0).closed).isTrue();
        assertThat(handles.get(0).closedOn).isEqualTo("egressd-reader");
        assertThat(first.awaitTermination(5, TimeUnit.SECONDS)).as("the abandoned reader thread ends").isTrue();
        runLoopTasks();
        assertThat(reconciler.runs()).as("the late result is not a reconcile").isEqualTo(runs);
        assertThat(handles.get(1).closed).isFalse();
        reads.close();
        assertThat(handles.get(1).closed).as("closed with the reads, on its thread").isTrue();
        assertThat(handles.get(1).closedOn).isEqualTo("egressd-reader-2");
    }

    private void awaitLoopTask() throws InterruptedException
    {
        final long until = System.nanoTime() + 5 * SECOND;
        while (loopQueue.isEmpty() && System.nanoTime() < until)
        {
            Thread.sleep(5);
        }
    }

    private void runLoopTasks()
    {
        Runnable r;
        while ((r = loopQueue.poll()) != null)
        {
            r.run();
        }
    }
}
