package dev.egressd.agent.reconcile;

import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;

import java.util.List;
import java.util.function.Supplier;

/**
 * The plan the kernel should hold, as the {@link Reconciler} asks for it: whole (to diff against a read), or as the
 * changes since a mark (the plan the kernel was last put in line with), which is all a mutation needs.
 *
 * <p>Loop thread only.
 */
interface DesiredPlan
{
    /**
     * The whole plan now.
     *
     * @return the plan.
     */
    KernelPlan plan();

    /**
     * A number that moves whenever the plan may have changed since it was last asked (equal numbers: equal plans).
     *
     * @return the version.
     */
    long version();

    /**
     * The changes from the plan at the last {@link #mark()} to the plan now, ordered as {@link PlanDiff} orders
     * them.
     *
     * @return the changes; empty when the plan is as it was.
     */
    List<PlanChange> changesSinceMark();

    /** The plan now is the one the kernel holds: the next {@link #changesSinceMark()} starts from it. */
    void mark();

    /**
     * A plan built afresh by a supplier on every call, its changes by a whole-plan diff: for tests, and the
     * reference the incremental one is checked against.
     *
     * @param supplier builds the plan.
     * @return the desired plan.
     */
    static DesiredPlan rebuiltBy(final Supplier<KernelPlan> supplier)
    {
        return new DesiredPlan()
        {
            private KernelPlan marked = KernelPlan.empty();
            private long version;

            @Override
            public KernelPlan plan()
            {
                return supplier.get();
            }

            @Override
            public long version()
            {
                return ++version; // unknown without building it: always "may have changed"
            }

            @Override
            public List<PlanChange> changesSinceMark()
            {
                return PlanDiff.between(marked, supplier.get());
            }

            @Override
            public void mark()
            {
                marked = supplier.get();
            }
        };
    }
}
