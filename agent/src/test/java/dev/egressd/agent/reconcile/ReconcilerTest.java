package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.FakeKernel;
import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.KernelException;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import static org.assertj.core.api.Assertions.assertThat;

class ReconcilerTest
{
    private static final long SECOND = 1_000_000_000L;
    private static final long MILLI = 1_000_000L;

    private static final PlanElement GUEST = new PlanElement.Static4(Ipv4Address.parse("10.77.0.2"));
    private static final PlanElement UP4 = new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10"));
    private static final PlanElement UP4B = new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.11"));

    private final AtomicLong clock = new AtomicLong(1_000 * SECOND);

    /** The fake kernel, with named counters, and a read that takes time on the test's clock. */
    private final class TimedKernel implements Kernel
    {
        final FakeKernel fake = new FakeKernel();
        final Map<String, Long> counters = new HashMap<>();
        long readNanos;

        @Override
        public boolean ensureTable() throws KernelException
        {
            return fake.ensureTable();
        }

        @Override
        public KernelPlan read() throws KernelException
        {
            clock.addAndGet(readNanos);
            return fake.read();
        }

        @Override
        public void apply(final List<PlanChange> changes) throws KernelException
        {
            fake.apply(changes);
        }

        @Override
        public Map<String, Long> counters() throws KernelException
        {
            if (fake.failing != null)
            {
                throw new KernelException(fake.failing);
            }
            return Map.copyOf(counters);
        }
    }

    private final TimedKernel kernel = new TimedKernel();
    private final DrainingAddresses draining = new DrainingAddresses(clock::get, () -> 1_700_000_000_000L, 100);
    /** The allocator's part of the desired plan; draining addresses are added as the loop adds them. */
    private final List<PlanElement> own = new ArrayList<>(List.of(GUEST, UP4));
    private final KernelReads reads = new KernelReads(kernel, clock::get);
    private final Reconciler reconciler = new Reconciler(kernel, reads, this::desired, draining, clock::get);
    /** Read tasks for the reader, and results for the loop, when the reads are put on a "thread" by a test. */
    private final java.util.ArrayDeque<Runnable> readerQueue = new java.util.ArrayDeque<>();
    private final java.util.concurrent.ConcurrentLinkedQueue<Runnable> loopQueue =
        new java.util.concurrent.ConcurrentLinkedQueue<>();

    /** Reads on a reader the test steps by hand: a read runs at {@code readerQueue.poll().run()}. */
    private void readsSteppedByHand()
    {
        final java.util.concurrent.ExecutorService reader = new java.util.concurrent.AbstractExecutorService()
        {
            private boolean down;

            @Override
            public void execute(final Runnable command)
            {
                readerQueue.add(command);
            }

            @Override
            public void shutdown()
            {
                down = true;
            }

            @Override
            public List<Runnable> shutdownNow()
            {
                down = true;
                return List.of();
            }

            @Override
            public boolean isShutdown()
            {
                return down;
            }

            @Override
            public boolean isTerminated()
            {
                return down;
            }

            @Override
            public boolean awaitTermination(final long timeout, final java.util.concurrent.TimeUnit unit)
            {
                return true;
            }
        };
        reads.onThread(reader, loopQueue::add);
    }

    private void runLoopTasks()
    {
        Runnable r;
        while ((r = loopQueue.poll()) != null)
        {
            r.run();
        }
    }

    private KernelPlan desired()
    {
        final List<PlanElement> all = new ArrayList<>(own);
        for (final PlanElement address : draining.addresses())
        {
            if (!all.contains(address))
            {
                all.add(address);
            }
        }
        return KernelPlan.of(all);
    }

    private void synced() throws Exception
    {
        reconciler.initialSync();
        reconciler.markInSync();
        assertThat(kernel.fake.plan()).isEqualTo(desired());
    }

    @Test
    void beforeTheFirstSyncTheHealthSaysStarting() throws Exception
    {
        assertThat(reconciler.health()).isEqualTo(Health.STARTING);
        synced();
        assertThat(reconciler.health()).isEqualTo(new Health(KernelStatus.IN_SYNC, 1, 0, 0, null, null));
    }

    @Test
    void driftIsRepairedAndCountedAsARepair() throws Exception
    {
        synced();
        reconciler.reconcile();
        assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        kernel.fake.plan(KernelPlan.of(List.of(UP4))); // someone deleted the guest's element
        reconciler.reconcile();
        assertThat(kernel.fake.plan()).isEqualTo(desired());
        assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
        assertThat(reconciler.health().repairs()).isEqualTo(1);
        final String repair = "1 changes: [" + PlanChange.add(GUEST) + "]";
        assertThat(reconciler.health().lastRepair()).isEqualTo(repair);
        reconciler.reconcile();
        assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(reconciler.health().lastRepair()).as("kept").isEqualTo(repair);
        assertThat(reconciler.runs()).isEqualTo(3);
        kernel.fake.deleteTable();
        reconciler.reconcile();
        assertThat(reconciler.health().lastRepair()).startsWith("created or repaired the table's fixed part; ");
        assertThat(kernel.fake.plan()).isEqualTo(desired());
    }

    @Test
    void kernelErrorsBackOffFromOneSecondDoublingToThirty() throws Exception
    {
        synced();
        kernel.fake.failing = "nft: busy";
        reconciler.reconcile();
        final long[] backoffs = {1, 2, 4, 8, 16, 30, 30, 30};
        for (int i = 0; i < backoffs.length; i++)
        {
            assertThat(reconciler.health().consecutiveFailures()).isEqualTo(i + 1);
            assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.UNAVAILABLE);
            assertThat(reconciler.health().lastError()).isEqualTo("nft: busy");
            final long runs = reconciler.runs();
            clock.addAndGet(backoffs[i] * SECOND - 1);
            reconciler.reconcile();
            assertThat(reconciler.runs()).as("still backing off after failure " + (i + 1)).isEqualTo(runs);
            clock.addAndGet(1);
            reconciler.reconcile();
            assertThat(reconciler.runs()).as("tried again " + backoffs[i] + " s after failure " + (i + 1))
                .isEqualTo(runs + 1);
        }
        assertThat(reconciler.failures()).isEqualTo(backoffs.length + 1);
        kernel.fake.failing = null;
        clock.addAndGet(30 * SECOND);
        reconciler.reconcile();
        assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(reconciler.health().consecutiveFailures()).isZero();
        assertThat(reconciler.failures()).isEqualTo(backoffs.length + 1);
    }

    @Test
    void aFailedMutationBacksTheReconcileOffToo() throws Exception
    {
        synced();
        reconciler.failed(new KernelException("nft: refused"));
        reconciler.reconcile();
        assertThat(reconciler.runs()).isZero();
        clock.addAndGet(SECOND);
        reconciler.reconcile();
        assertThat(reconciler.runs()).isEqualTo(1);
        assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
    }

    @Test
    void readsArePacedToFourTimesTheCheaperOfTheLastTwoReads() throws Exception
    {
        synced();
        kernel.readNanos = 100 * MILLI;
        final long start = clock.get();
        reconciler.reconcile(); // reads for 100 ms: the next read waits until 400 ms after this one began
        assertThat(reconciler.runs()).isEqualTo(1);
        clock.set(start + 399 * MILLI);
        reconciler.reconcile();
        assertThat(reconciler.runs()).as("paced").isEqualTo(1);
        clock.set(start + 400 * MILLI);
        kernel.readNanos = 10 * MILLI;
        reconciler.reconcile(); // 10 ms: 40 ms
        assertThat(reconciler.runs()).isEqualTo(2);
        final long second = start + 400 * MILLI;
        kernel.readNanos = 200 * MILLI;
        clock.set(second + 40 * MILLI);
        reconciler.reconcile(); // one slow (deep) read does not hold the next back by 800 ms, only by 40 ms
        assertThat(reconciler.runs()).isEqualTo(3);
        final long third = second + 40 * MILLI;
        clock.set(third + 40 * MILLI - 1);
        reconciler.reconcile();
        assertThat(reconciler.runs()).isEqualTo(3);
        clock.set(third + 40 * MILLI);
        reconciler.reconcile();
        assertThat(reconciler.runs()).isEqualTo(4);
    }

    @Test
    void aMutationsSyncStartsDrainingWhatItStopsUsingAndTheReconcileEndsItQuietly() throws Exception
    {
        synced();
        final int reads = kernel.fake.reads;
        own.remove(UP4);
        own.add(UP4B);
        final List<PlanChange> applied = reconciler.sync(true);
        assertThat(kernel.fake.reads).as("diffed against what the kernel last held").isEqualTo(reads);
        assertThat(applied).containsExactly(PlanChange.add(UP4B));
        assertThat(draining.addresses()).containsExactly(UP4);
        assertThat(kernel.fake.plan().contains(UP4)).as("draining").isTrue();

        clock.addAndGet(100 * SECOND - 1);
        reconciler.reconcile();
        assertThat(kernel.fake.plan().contains(UP4)).as("until its deadline").isTrue();
        clock.addAndGet(1);
        reconciler.reconcile();
        assertThat(kernel.fake.plan().contains(UP4)).as("gone at its deadline").isFalse();
        assertThat(draining.addresses()).isEmpty();
        assertThat(reconciler.health().kernel()).as("not drift").isEqualTo(KernelStatus.IN_SYNC);
        assertThat(reconciler.health().repairs()).isZero();
    }

    /** A desired plan over {@link #desired()} that counts its builds and moves its version only on a change. */
    private final class CountingPlan implements DesiredPlan
    {
        int builds;
        long ownVersion;
        private KernelPlan marked = KernelPlan.empty();

        private KernelPlan build()
        {
            builds++;
            return desired();
        }

        @Override
        public KernelPlan plan()
        {
            return build();
        }

        @Override
        public long version()
        {
            // what the plan is made of, without building it: the test's own elements and the draining ones
            return ownVersion * 31 + draining.addresses().hashCode();
        }

        @Override
        public List<PlanChange> changesSinceMark()
        {
            return dev.egressd.core.plan.PlanDiff.between(marked, build());
        }

        @Override
        public void mark()
        {
            marked = build();
        }
    }

    @Test
    void anIdleReconcileBuildsNoPlanButDriftAndDrainsStillGetTheirs() throws Exception
    {
        final CountingPlan plans = new CountingPlan();
        final Reconciler r = new Reconciler(kernel, reads, plans, draining, clock::get);
        r.initialSync();
        r.markInSync();
        r.reconcile(); // the first read diffs: nothing to repair, the read is remembered as quiet
        assertThat(r.idleSkips()).isZero();
        final int builds = plans.builds;
        for (int i = 0; i < 5; i++)
        {
            clock.addAndGet(SECOND);
            r.reconcile();
        }
        assertThat(plans.builds).as("the same read, nothing applied, the same plan: no build").isEqualTo(builds);
        assertThat(r.idleSkips()).isEqualTo(5);
        assertThat(r.runs()).as("still counted as passes").isEqualTo(6);
        assertThat(r.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(r.health().reconciles()).isEqualTo(7);

        // a hand edit makes the read another object: the diff is taken and the element put back
        kernel.fake.plan(KernelPlan.of(List.of(UP4)));
        clock.addAndGet(SECOND);
        r.reconcile();
        assertThat(kernel.fake.plan()).isEqualTo(desired());
        assertThat(r.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
        clock.addAndGet(SECOND);
        r.reconcile(); // reads what the repair left: the diff is taken once more, and is empty
        final int afterRepair = plans.builds;
        clock.addAndGet(SECOND);
        r.reconcile();
        assertThat(plans.builds).as("idle again").isEqualTo(afterRepair);

        // a mutation stops using UP4: it drains, and its deadline ends it although no read sees a change
        own.remove(UP4);
        own.add(UP4B);
        plans.ownVersion++;
        r.sync(true);
        assertThat(draining.addresses()).containsExactly(UP4);
        for (int i = 0; i < 3; i++)
        {
            clock.addAndGet(SECOND);
            r.reconcile();
        }
        assertThat(kernel.fake.plan().contains(UP4)).as("draining").isTrue();
        final long skips = r.idleSkips();
        assertThat(skips).as("idle while it drains").isGreaterThan(5);
        clock.addAndGet(100 * SECOND);
        r.reconcile();
        assertThat(kernel.fake.plan().contains(UP4)).as("gone at its deadline").isFalse();
        assertThat(draining.addresses()).isEmpty();
        assertThat(r.idleSkips()).as("the expiry took the diff").isEqualTo(skips);
        assertThat(r.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
    }

    @Test
    void theIdleReconcileStillAddsTheCounters() throws Exception
    {
        final CountingPlan plans = new CountingPlan();
        final Reconciler r = new Reconciler(kernel, reads, plans, draining, clock::get);
        r.initialSync();
        r.markInSync();
        kernel.counters.put("spoof", 5L);
        r.reconcile();
        kernel.counters.put("spoof", 9L);
        clock.addAndGet(SECOND);
        r.reconcile();
        assertThat(r.idleSkips()).isEqualTo(1);
        assertThat(r.counters()).containsEntry("spoof", 9L);
    }

    @Test
    void theReconcilesOwnSyncDrainsNothing() throws Exception
    {
        synced();
        own.remove(UP4);
        reconciler.sync(false);
        assertThat(draining.addresses()).isEmpty();
        assertThat(kernel.fake.plan().contains(UP4)).isFalse();
    }

    @Test
    void anExpiredAddressTheKernelCannotRemoveYetKeepsDrainingUntilItCan() throws Exception
    {
        synced();
        own.remove(UP4);
        reconciler.sync(true);
        clock.addAndGet(100 * SECOND);
        kernel.fake.failing = "nft: busy";
        reconciler.reconcile();
        assertThat(draining.addresses()).containsExactly(UP4);
        kernel.fake.failing = null;
        clock.addAndGet(SECOND);
        reconciler.reconcile();
        assertThat(draining.addresses()).isEmpty();
        assertThat(kernel.fake.plan().contains(UP4)).isFalse();
    }

    @Test
    void aMutationReadsTheKernelBackWhenItChangedBehindEgressdsBack() throws Exception
    {
        synced();
        final int reads = kernel.fake.reads;
        kernel.fake.plan(KernelPlan.of(List.of(UP4))); // the guest's element deleted by hand
        own.remove(GUEST); // and the mutation removes it: nft refuses to remove what is missing
        assertThat(reconciler.sync(true)).isEmpty();
        assertThat(kernel.fake.reads).isEqualTo(reads + 1);
        assertThat(kernel.fake.plan()).isEqualTo(desired());
    }

    @Test
    void counterTotalsAreReadAfterEachSuccessfulReconcileOnly() throws Exception
    {
        synced();
        assertThat(reconciler.counters()).isEmpty();
        kernel.counters.put("cap4", 3L);
        reconciler.reconcile();
        assertThat(reconciler.counters()).containsExactly(Map.entry("cap4", 3L));
        kernel.counters.put("cap4", 5L);
        kernel.fake.failing = "nft: busy";
        reconciler.reconcile();
        assertThat(reconciler.counters()).containsExactly(Map.entry("cap4", 3L));
        kernel.fake.failing = null;
        clock.addAndGet(SECOND);
        reconciler.reconcile();
        assertThat(reconciler.counters()).containsExactly(Map.entry("cap4", 5L));
    }

    // ------------------------------------------------------------------------------------ reads off the writer

    @Test
    void aChangeAppliedWhileAReadIsOutIsNotUndoneOrCalledDriftByThatRead() throws Exception
    {
        synced();
        readsSteppedByHand();
        reconciler.reconcile();
        assertThat(readerQueue).as("the read is handed to the reader, the loop goes on").hasSize(1);
        readerQueue.poll().run(); // the reader sees GUEST and UP4
        final long before = reconciler.revision();
        own.remove(GUEST); // a mutation while the result is on its way: removes GUEST, adds UP4B
        own.add(UP4B);
        assertThat(reconciler.sync(true)).hasSize(2);
        assertThat(reconciler.revision()).isEqualTo(before + 1);
        final int applies = kernel.fake.applied.size();
        runLoopTasks();
        // taken whole, the stale read would re-add GUEST and remove UP4B (or fail removing what is gone)
        assertThat(kernel.fake.applied).as("nothing the change touched is judged by the older read")
            .hasSize(applies);
        assertThat(kernel.fake.plan()).isEqualTo(desired());
        assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(reconciler.health().repairs()).isZero();
        // the next read sees the change and finds nothing to do
        clock.addAndGet(SECOND);
        reconciler.reconcile();
        readerQueue.poll().run();
        runLoopTasks();
        assertThat(kernel.fake.applied).hasSize(applies);
        assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
    }

    @Test
    void driftOfAnElementNoChangeTouchedIsRepairedByAReadThatOverlappedAChange() throws Exception
    {
        synced();
        readsSteppedByHand();
        kernel.fake.plan(KernelPlan.of(List.of(GUEST))); // someone deleted the uplink address
        reconciler.reconcile();
        readerQueue.poll().run();
        own.add(UP4B);
        reconciler.sync(true); // a change while the result is on its way
        runLoopTasks();
        assertThat(kernel.fake.plan()).isEqualTo(desired());
        assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
        assertThat(reconciler.health().lastRepair()).contains("1 changes", "203.0.113.10");
    }

    @Test
    void oneReadAtATimeAndItsFailureCountsAsBefore() throws Exception
    {
        synced();
        readsSteppedByHand();
        reconciler.reconcile();
        clock.addAndGet(5 * SECOND);
        reconciler.reconcile();
        assertThat(readerQueue).as("a second reconcile while the read is out starts none").hasSize(1);
        kernel.fake.failing = "nft: busy";
        readerQueue.poll().run();
        runLoopTasks();
        assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.UNAVAILABLE);
        assertThat(reconciler.failures()).isEqualTo(1);
        kernel.fake.failing = null;
        clock.addAndGet(SECOND);
        reconciler.reconcile();
        readerQueue.poll().run();
        runLoopTasks();
        assertThat(reconciler.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
    }

    @Test
    void aChangeDoesNotWaitForAReadThatIsStuckOnTheReaderThread() throws Exception
    {
        final java.util.concurrent.CountDownLatch reading = new java.util.concurrent.CountDownLatch(1);
        final java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
        final dev.egressd.agent.kernel.MemoryKernel slow = new dev.egressd.agent.kernel.MemoryKernel()
        {
            @Override
            public KernelPlan read() throws KernelException
            {
                if (!Thread.currentThread().getName().equals("test-reader"))
                {
                    return super.read();
                }
                reading.countDown();
                try
                {
                    release.await();
                }
                catch (final InterruptedException e)
                {
                    Thread.currentThread().interrupt();
                }
                return super.read();
            }
        };
        final KernelReads offWriter = new KernelReads(slow, System::nanoTime);
        final Reconciler r = new Reconciler(slow, offWriter, this::desired, draining, System::nanoTime);
        offWriter.onThread(java.util.concurrent.Executors.newSingleThreadExecutor(t -> new Thread(t, "test-reader")),
            loopQueue::add);
        r.initialSync();
        r.markInSync();
        r.reconcile();
        assertThat(reading.await(5, java.util.concurrent.TimeUnit.SECONDS)).isTrue();
        own.add(UP4B);
        final long t0 = System.nanoTime();
        assertThat(r.sync(true)).hasSize(1);
        assertThat(System.nanoTime() - t0).as("the change went to the kernel while the read is stuck")
            .isLessThan(2 * SECOND);
        assertThat(slow.plan().contains(UP4B)).isTrue();
        release.countDown();
        final long until = System.nanoTime() + 5 * SECOND;
        while (loopQueue.isEmpty() && System.nanoTime() < until)
        {
            Thread.sleep(5);
        }
        runLoopTasks();
        assertThat(r.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(slow.plan()).isEqualTo(desired());
        offWriter.close();
    }
}
