package dev.egressd.agent.daemon;

import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;

import java.util.ArrayList;
import java.util.List;

/** An in-memory kernel: applies changes all-or-nothing, can be told to fail, and can have drift injected. */
public final class FakeKernel implements Kernel
{
    /** What the kernel holds. */
    public KernelPlan plan = KernelPlan.empty();
    /** Whether the table exists. */
    public boolean table;
    /** When set, every call fails with this message. */
    public String failing;
    /**
     * Uplink addresses someone else put there: the real kernel never lists them as egressd's (they lack its
     * IFA_PROTO mark), so neither does the fake.
     */
    public final java.util.Set<dev.egressd.core.plan.PlanElement> foreignUplinks = new java.util.HashSet<>();
    /** Every batch applied. */
    public final List<List<PlanChange>> applied = new ArrayList<>();

    @Override
    public boolean ensureTable() throws KernelException
    {
        check();
        if (table)
        {
            return false;
        }
        table = true;
        return true;
    }

    @Override
    public KernelPlan read() throws KernelException
    {
        check();
        return plan;
    }

    @Override
    public void apply(final List<PlanChange> changes) throws KernelException
    {
        check();
        plan = PlanDiff.apply(plan, changes);
        applied.add(List.copyOf(changes));
    }

    /** Someone deletes the whole table by hand. */
    public void deleteTable()
    {
        table = false;
        plan = KernelPlan.empty();
    }

    private void check() throws KernelException
    {
        if (failing != null)
        {
            throw new KernelException(failing);
        }
    }
}
