package dev.egressd.agent.kernel;

import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;

import java.util.List;

/**
 * A kernel that programs nothing and remembers the plan in memory: {@code egressd --dry-run}, to try the API and
 * the state handling without privileges. Forgets everything when the process ends.
 */
public final class MemoryKernel implements Kernel
{
    private KernelPlan plan = KernelPlan.empty();
    private boolean table;

    @Override
    public synchronized boolean ensureTable()
    {
        final boolean created = !table;
        table = true;
        return created;
    }

    @Override
    public synchronized KernelPlan read()
    {
        return plan;
    }

    @Override
    public synchronized void apply(final List<PlanChange> changes)
    {
        plan = PlanDiff.apply(plan, changes);
    }
}
