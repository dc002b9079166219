package dev.egressd.core.plan;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The obviously-correct diff: set differences of all elements, then pairs of (removed, added) with the same
 * kind and key become one replace. The baseline PlanDiff is checked and benchmarked against.
 */
public final class ReferencePlanDiff
{
    private ReferencePlanDiff()
    {
    }

    /**
     * The changes from actual to desired, as a set (no particular order).
     *
     * @param actual  what is held.
     * @param desired what is wanted.
     * @return the changes.
     */
    public static List<PlanChange> between(final KernelPlan actual, final KernelPlan desired)
    {
        final Set<PlanElement> have = new HashSet<>(actual.elements());
        final Set<PlanElement> want = new HashSet<>(desired.elements());
        final List<PlanElement> added = new ArrayList<>(want);
        added.removeAll(have);
        final List<PlanElement> removed = new ArrayList<>(have);
        removed.removeAll(want);
        final List<PlanChange> changes = new ArrayList<>();
        for (final PlanElement add : added)
        {
            PlanElement replaced = null;
            for (final PlanElement gone : removed)
            {
                if (gone.kind().equals(add.kind()) && gone.key().equals(add.key()))
                {
                    replaced = gone;
                    break;
                }
            }
            if (replaced != null)
            {
                removed.remove(replaced);
                changes.add(PlanChange.replace(replaced, add));
            }
            else
            {
                changes.add(PlanChange.add(add));
            }
        }
        for (final PlanElement gone : removed)
        {
            changes.add(PlanChange.remove(gone));
        }
        return changes;
    }
}
