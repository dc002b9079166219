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
    private final Reconciler reconciler = new Reconciler(kernel, this::desired, draining, clock::get);

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
}
