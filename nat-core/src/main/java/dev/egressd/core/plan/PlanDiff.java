package dev.egressd.core.plan;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The minimal element changes that turn one plan into another.
 *
 * <p>Ordering: every ADD and REPLACE comes before any REMOVE ("add what is missing before removing what is
 * unused", as Cilium's reconciler does); uplink addresses are added first and removed last, so that an
 * egress address is on the uplink before any map points a guest at it, and leaves it only after nothing
 * does.
 * nft applies one transaction atomically, so the order inside it never shows to a packet; the address
 * changes go through rtnetlink, outside that transaction, which is why their order matters.
 */
public final class PlanDiff
{
    private PlanDiff()
    {
    }

    /**
     * The changes from {@code actual} to {@code desired}.
     *
     * @param actual  what the kernel holds.
     * @param desired what it should hold.
     * @return the changes, ordered as described above; empty when the plans are equal.
     */
    public static List<PlanChange> between(final KernelPlan actual, final KernelPlan desired)
    {
        final List<PlanChange> changes = new ArrayList<>();
        for (final String kind : KernelPlan.KINDS)
        {
            final Map<Object, PlanElement> have = actual.elements(kind);
            for (final PlanElement want : desired.elements(kind).values())
            {
                final PlanElement held = have.get(want.key());
                if (held == null)
                {
                    changes.add(PlanChange.add(want));
                }
                else if (!held.equals(want))
                {
                    changes.add(PlanChange.replace(held, want));
                }
            }
        }
        for (int k = KernelPlan.KINDS.size() - 1; k >= 0; k--)
        {
            final String kind = KernelPlan.KINDS.get(k);
            final Map<Object, PlanElement> want = desired.elements(kind);
            for (final PlanElement held : actual.elements(kind).values())
            {
                if (!want.containsKey(held.key()))
                {
                    changes.add(PlanChange.remove(held));
                }
            }
        }
        return changes;
    }

    /**
     * Applies changes to a plan, as the kernel would: the result of {@code between(a, b)} applied to
     * {@code a} is {@code b}.
     *
     * @param plan    the starting plan.
     * @param changes the changes.
     * @return the resulting plan.
     */
    public static KernelPlan apply(final KernelPlan plan, final List<PlanChange> changes)
    {
        final Map<String, Map<Object, PlanElement>> work = new java.util.LinkedHashMap<>();
        for (final String kind : KernelPlan.KINDS)
        {
            work.put(kind, new java.util.LinkedHashMap<>(plan.elements(kind)));
        }
        for (final PlanChange change : changes)
        {
            final Map<Object, PlanElement> map = work.get(change.element().kind());
            switch (change.op())
            {
                case ADD, REPLACE -> map.put(change.element().key(), change.element());
                case REMOVE -> map.remove(change.element().key());
                default -> throw new IllegalStateException("unknown op " + change.op());
            }
        }
        final List<PlanElement> all = new ArrayList<>();
        work.values().forEach(map -> all.addAll(map.values()));
        return KernelPlan.of(all);
    }
}
