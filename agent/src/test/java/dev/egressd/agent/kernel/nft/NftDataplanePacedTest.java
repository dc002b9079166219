package dev.egressd.agent.kernel.nft;

import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static dev.egressd.agent.kernel.nft.PlanFixtures.machine;
import static dev.egressd.agent.kernel.nft.PlanFixtures.machines;
import static dev.egressd.agent.kernel.nft.PlanFixtures.withoutUplinks;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

/**
 * The dataplane with its deep checks paced, as the daemon runs it ({@code NftKernel}), against the in-memory fake:
 * shallow reads list the sets and maps by name and take the per-guest IPv6 chains as last written or read; the
 * whole table is listed, and the fixed chains checked, only when due. The clock moves 1 ms each time it is read,
 * so a deep read or check "costs" 1 ms and the next one is due 9 ms later.
 */
class NftDataplanePacedTest
{
    private static final long TICK = TimeUnit.MILLISECONDS.toNanos(1);

    private final FakeNftablesClient nft = new FakeNftablesClient();
    private final NftDataplane dataplane = new NftDataplane(nft, nft, DataplaneConfig.defaults("uplink"));
    private final AtomicLong now = new AtomicLong(1_000_000_000L);

    @BeforeEach
    void pace()
    {
        dataplane.paceDeepChecks(9, () -> now.addAndGet(TICK));
    }

    private void later()
    {
        now.addAndGet(TimeUnit.SECONDS.toNanos(1));
    }

    private int tableListings()
    {
        return nft.listings()[1];
    }

    @Test
    void shallowReadsListEachSetAndKnowTheChainsWritten() throws Exception
    {
        dataplane.ensureTable();
        final KernelPlan plan = withoutUplinks(machines(1, 2));
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
        assertThat(dataplane.read()).isEqualTo(plan);
        assertThat(tableListings()).as("the first read is deep").isEqualTo(1);

        final int sets = nft.listings()[0];
        nft.run("add table inet other"); // a change elsewhere in the ruleset: the generation moves
        assertThat(dataplane.read()).isEqualTo(plan);
        assertThat(tableListings()).as("the next is shallow").isEqualTo(1);
        assertThat(nft.listings()[0] - sets).as("one listing per set or map").isEqualTo(Ruleset.ELEMENT_SETS.size());

        // machine 1 moves: a shallow read sees its new elements
        final List<PlanElement> moved = new ArrayList<>(machines(2).elements());
        moved.addAll(machine(1, 9).elements());
        final KernelPlan next = withoutUplinks(KernelPlan.of(moved));
        dataplane.apply(PlanDiff.between(plan, next));
        assertThat(dataplane.read()).isEqualTo(next);
        assertThat(tableListings()).isEqualTo(1);

        // machine 2 goes
        final KernelPlan last = withoutUplinks(machine(1, 9));
        dataplane.apply(PlanDiff.between(next, last));
        assertThat(dataplane.read()).isEqualTo(last);
        later();
        assertThat(dataplane.read()).as("nothing changed since: answered without a listing").isEqualTo(last);
        assertThat(tableListings()).isEqualTo(1);
        assertThat(dataplane.readFull()).as("a deep read agrees").isEqualTo(last);
    }

    @Test
    void anElementDeletedByHandShowsAtOnceAndSoDoesTheFlushedNat6Chain() throws Exception
    {
        dataplane.ensureTable();
        final KernelPlan plan = withoutUplinks(machines(1, 2));
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
        dataplane.read();

        nft.run("delete element inet egressd snat4 { " + PlanFixtures.guest4(1) + " }");
        assertThat(PlanDiff.between(dataplane.read(), plan)).as("seen by the shallow read").hasSize(1);
        dataplane.apply(PlanDiff.between(dataplane.read(), plan));

        // The IPv6 SNAT rules were built over netlink: a hand flush is seen, and repaired, by the next check (the
        // generation moved), however recent the last deep one.
        dataplane.ensureTable();
        assertThat(dataplane.read()).as("the elements are all there").isEqualTo(plan);
        nft.run("flush chain inet egressd " + Ruleset.NAT6_CHAIN);
        final int batches = nft.batches().size();
        assertThat(dataplane.ensureTable()).as("the generation moved: checked at once, repaired").isTrue();
        assertThat(dataplane.lastRepair()).contains("chain nat6 holds 0 rules");
        assertThat(nft.batches()).as("the rules went over netlink, once").hasSize(batches + 1);
        assertThat(nft.rules("egressd", Ruleset.NAT6_CHAIN)).hasSize(3)
            .allMatch(r -> r.contains(" snat ip6 to ip6 saddr map @snat6 comment \"egressd "));
        assertThat(nft.scripts().get(nft.scripts().size() - 1)).as("never loaded back as text")
            .doesNotContain("saddr map @snat6");
    }

    @Test
    void theFixedChainsAreCheckedWhenDueAMissingTableAtOnce() throws Exception
    {
        assertThat(dataplane.ensureTable()).as("created").isTrue();
        assertThat(dataplane.ensureTable()).as("deep: nothing to pace by yet").isFalse();
        dataplane.read(); // the deep read that closes the cycle, as in a reconcile
        final int deepChecks = dataplane.deepCounts()[1];

        assertThat(dataplane.ensureTable()).as("the generation did not move: nothing looked at").isFalse();
        assertThat(dataplane.deepCounts()[1]).isEqualTo(deepChecks);
        nft.run("flush chain inet egressd forward");
        final int deepReads = dataplane.deepCounts()[0];
        final int listings = tableListings();
        assertThat(dataplane.ensureTable()).as("the generation moved: checked at once though not due, repaired")
            .isTrue();
        assertThat(dataplane.lastRepair()).contains("chain forward holds 0 rules");
        assertThat(nft.rules("egressd", "forward")).hasSize(5);
        dataplane.read();
        assertThat(dataplane.deepCounts()[0]).as("the read after a deep check is deep: one cycle")
            .isEqualTo(deepReads + 1);
        assertThat(tableListings()).as("the repair ran between the check's listing and the read: two listings")
            .isEqualTo(listings + 2);
        later();
        dataplane.ensureTable();
        dataplane.read();
        assertThat(tableListings()).as("nothing changed since the last read: the deep check lists, the read does not")
            .isEqualTo(listings + 3);
        assertThat(dataplane.deepCounts()).containsExactly(deepReads + 1, deepChecks + 2);
        assertThat(dataplane.ensureTable()).isFalse();
        assertThat(dataplane.deepCounts()[1]).as("and the next check is shallow again").isEqualTo(deepChecks + 2);
        nft.run("add table inet other"); // a change elsewhere: the generation moves, the read lists again
        final int sets = nft.listings()[0];
        final KernelPlan read = dataplane.read();
        assertThat(nft.listings()[0]).as("so was the next read").isEqualTo(sets + Ruleset.ELEMENT_SETS.size());
        assertThat(read).isEqualTo(dataplane.readFull());

        nft.run("delete table inet egressd");
        assertThat(dataplane.ensureTable()).as("a missing table is seen by the shallow check").isTrue();
        assertThat(dataplane.lastRepair()).isEqualTo("created the table inet egressd");
        assertThat(dataplane.read()).isEqualTo(KernelPlan.empty());
    }

    @Test
    void aCycleFallingDueBetweenTheCheckAndTheReadMakesTheNextCheckDeep() throws Exception
    {
        dataplane.ensureTable();
        dataplane.ensureTable();
        dataplane.read(); // the deep cycle closes
        assertThat(dataplane.ensureTable()).as("shallow, not due").isFalse();
        final int checks = dataplane.deepCounts()[1];
        later();
        dataplane.read(); // due now: deep, but without the fixed-chain check before it

        nft.run("flush chain inet egressd forward");
        dataplane.ensureTable();
        assertThat(dataplane.deepCounts()[1]).as("the check the read went without").isEqualTo(checks + 1);
        assertThat(dataplane.lastRepair()).contains("forward");
    }

    @Test
    void aRefusedTransactionMakesTheNextReadAndCheckDeep() throws Exception
    {
        dataplane.ensureTable();
        dataplane.ensureTable();
        final KernelPlan plan = withoutUplinks(machines(1));
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
        dataplane.read();
        dataplane.read();
        final int deepReads = dataplane.deepCounts()[0];
        final int checks = dataplane.deepCounts()[1];

        final NftException e = catchThrowableOfType(NftException.class, () -> dataplane.apply(List.of(
            PlanChange.remove(new PlanElement.Static4(PlanFixtures.guest4(7))))));
        assertThat(e.isNotFound()).isTrue();
        assertThat(dataplane.read()).isEqualTo(plan);
        assertThat(dataplane.deepCounts()[0]).as("the read after a refusal is deep").isEqualTo(deepReads + 1);
        dataplane.ensureTable();
        assertThat(dataplane.deepCounts()[1]).isEqualTo(checks + 1);
    }

    @Test
    void unpacedEveryReadAndCheckIsDeep() throws Exception
    {
        dataplane.paceDeepChecks(0, System::nanoTime);
        dataplane.ensureTable();
        dataplane.ensureTable();
        dataplane.ensureTable();
        dataplane.read();
        dataplane.read();
        assertThat(tableListings()).as("one dump of the table's rules to remember them as written, then one per check")
            .isEqualTo(3);
        assertThat(nft.listings()[0]).as("each read dumps every set").isEqualTo(2 * Ruleset.ELEMENT_SETS.size());
        assertThat(dataplane.deepCounts()).containsExactly(2, 2);
    }

    @Test
    void whileTheGenerationStaysTheSameChecksAndReadsListNothing() throws Exception
    {
        dataplane.ensureTable();
        final KernelPlan plan = withoutUplinks(machines(1, 2));
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
        later();
        dataplane.ensureTable(); // deep: records the generation at which the fixed part is right
        assertThat(dataplane.read()).isEqualTo(plan);
        final int[] listings = nft.listings();
        final int scripts = nft.scripts().size();
        final int skips = dataplane.unchangedSkips();
        final int generations = nft.generationReads();
        for (int i = 0; i < 10; i++)
        {
            later();
            assertThat(dataplane.ensureTable()).isFalse();
            assertThat(dataplane.read()).isEqualTo(plan);
        }
        assertThat(nft.listings()).as("no listing at all, even with deep cycles due").containsExactly(listings);
        assertThat(nft.scripts()).hasSize(scripts);
        assertThat(dataplane.unchangedSkips() - skips).isEqualTo(20);
        assertThat(nft.generationReads() - generations).as("one generation read per check and per read").isEqualTo(20);

        // A hand change moves the generation: the next read lists the sets again and sees it.
        nft.run("delete element inet egressd snat4 { " + PlanFixtures.guest4(1) + " }");
        assertThat(PlanDiff.between(dataplane.read(), plan)).hasSize(1);
        assertThat(nft.listings()[0] + nft.listings()[1]).isGreaterThan(listings[0] + listings[1]);
        // A hand flush of a fixed chain: seen by the deep check once due, although idle reads had been skipped.
        dataplane.apply(PlanDiff.between(dataplane.read(), plan));
        later();
        dataplane.ensureTable();
        dataplane.read();
        nft.run("flush chain inet egressd forward");
        later();
        assertThat(dataplane.ensureTable()).isTrue();
        assertThat(dataplane.lastRepair()).contains("chain forward holds 0 rules");
    }

    @Test
    void unpacedTheGenerationIsNotUsed() throws Exception
    {
        final NftDataplane unpaced = new NftDataplane(nft, nft, DataplaneConfig.defaults("uplink"));
        unpaced.ensureTable();
        unpaced.read();
        unpaced.ensureTable();
        unpaced.read();
        assertThat(nft.generationReads()).isZero();
        assertThat(unpaced.unchangedSkips()).isZero();
    }
}
