package dev.egressd.core.plan;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.integers;
import static org.quicktheories.generators.SourceDSL.lists;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.plan.PlanChange.Op;
import dev.egressd.core.plan.PlanElement.Snat4;
import dev.egressd.core.plan.PlanElement.Static4;
import dev.egressd.core.plan.PlanElement.Uplink4;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.quicktheories.core.Gen;

class PlanDiffTest
{
    static final Ipv4Address G1 = Ipv4Address.parse("10.77.0.2");
    static final Ipv4Address G2 = Ipv4Address.parse("10.77.0.3");
    static final Ipv4Address E1 = Ipv4Address.parse("203.0.113.10");
    static final Ipv4Address E2 = Ipv4Address.parse("203.0.113.11");

    @Test
    void equalPlansHaveNoChanges()
    {
        final KernelPlan plan = KernelPlan.of(List.of(new Static4(G1), new Snat4(G1, E1, 1024, 2047)));
        assertThat(PlanDiff.between(plan, KernelPlan.of(List.of(new Snat4(G1, E1, 1024, 2047), new Static4(G1)))))
            .isEmpty();
    }

    @Test
    void remapIsOneReplaceOfTheSameKey()
    {
        final KernelPlan before = KernelPlan.of(List.of(new Snat4(G1, E1, 1024, 2047)));
        final KernelPlan after = KernelPlan.of(List.of(new Snat4(G1, E2, 4096, 5119)));

        assertThat(PlanDiff.between(before, after)).containsExactly(
            PlanChange.replace(new Snat4(G1, E1, 1024, 2047), new Snat4(G1, E2, 4096, 5119)));
    }

    @Test
    void addsComeBeforeRemovesAndUplinkAddressesLeadAdds()
    {
        final KernelPlan before = KernelPlan.of(List.of(new Uplink4(E1), new Static4(G1), new Snat4(G1, E1, 1024, 2047)));
        final KernelPlan after = KernelPlan.of(List.of(new Static4(G2), new Snat4(G2, E2, 1024, 2047), new Uplink4(E2)));

        final List<PlanChange> changes = PlanDiff.between(before, after);

        assertThat(changes).extracting(PlanChange::op).containsExactly(Op.ADD, Op.ADD, Op.ADD, Op.REMOVE, Op.REMOVE, Op.REMOVE);
        assertThat(changes.get(0).element()).isEqualTo(new Uplink4(E2));
        assertThat(changes.get(changes.size() - 1).element()).isEqualTo(new Uplink4(E1));
    }

    @Test
    void twoElementsWithOneKeyAndDifferentDataAreRefused()
    {
        assertThatThrownBy(() -> KernelPlan.of(List.of(new Snat4(G1, E1, 1024, 2047), new Snat4(G1, E2, 1024, 2047))))
            .isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("snat4");
    }

    /** Applying the diff from a to b to a gives b, and the diff is minimal: every change is needed. */
    @Test
    void diffTurnsAnyPlanIntoAnyOtherMinimally()
    {
        // 300 distinct cases: QuickTheories skips a repeated draw, and its first two (simplest, minimum) coincide here.
        qt().withExamples(301)
            .forAll(guestLists(), guestLists(), integers().between(0, 3))
            .checkAssert(PlanDiffTest::diffTurnsPlanIntoOtherMinimally);
    }

    /** Up to 12 guest numbers, each 0 to 15 (repeats allowed). */
    private static Gen<List<Integer>> guestLists()
    {
        return lists().of(integers().between(0, 15)).ofSizeBetween(0, 12);
    }

    private static void diffTurnsPlanIntoOtherMinimally(final List<Integer> a, final List<Integer> b, final int seed)
    {
        final KernelPlan planA = planOf(a, 0);
        final KernelPlan planB = planOf(b, seed);
        final List<PlanChange> changes = PlanDiff.between(planA, planB);

        assertThat(PlanDiff.apply(planA, changes)).isEqualTo(planB);
        assertThat(changes).containsExactlyInAnyOrderElementsOf(ReferencePlanDiff.between(planA, planB));
        for (final PlanChange change : changes)
        {
            if (change.op() == Op.REMOVE)
            {
                assertThat(planA.contains(change.element()) && !planB.elements(change.element().kind())
                    .containsKey(change.element().key())).as("%s removes something held and unwanted", change).isTrue();
            }
            else
            {
                assertThat(planA.contains(change.element())).as("%s is not already held", change).isFalse();
            }
        }
        final Set<Object> keys = new java.util.HashSet<>();
        for (final PlanChange change : changes)
        {
            assertThat(keys.add(change.element().kind() + change.element().key())).as("one change per key").isTrue();
        }
        boolean removing = false;
        for (final PlanChange change : changes)
        {
            removing |= change.op() == Op.REMOVE;
            assertThat(removing && change.op() != Op.REMOVE).as("no add after a remove").isFalse();
        }
    }

    /** Guests g in the list get static4 and a snat4 whose block depends on seed, so keys collide with new data. */
    private static KernelPlan planOf(final List<Integer> guests, final int seed)
    {
        final List<PlanElement> elements = new ArrayList<>();
        for (final int g : new java.util.TreeSet<>(guests))
        {
            final Ipv4Address guest = new Ipv4Address(G1.bits() + g);
            elements.add(new Static4(guest));
            final int block = 1 + (g + seed) % 4;
            elements.add(new Snat4(guest, (g + seed) % 2 == 0 ? E1 : E2, block * 1024, block * 1024 + 1023));
            elements.add(new Uplink4((g + seed) % 2 == 0 ? E1 : E2));
        }
        return KernelPlan.of(elements);
    }
}
