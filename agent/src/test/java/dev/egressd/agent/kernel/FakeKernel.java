package dev.egressd.agent.kernel;

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

    /** Times the kernel was read back. */
    public int reads;

    @Override
    public KernelPlan read() throws KernelException
    {
        check();
        reads++;
        return plan;
    }

    /**
     * Applies all-or-nothing and, like nft, refuses to remove what is missing, to add a key that is held (with
     * other data), or to replace what is not held.
     */
    @Override
    public void apply(final List<PlanChange> changes) throws KernelException
    {
        check();
        for (final PlanChange change : changes)
        {
            final dev.egressd.core.plan.PlanElement e = change.element();
            final dev.egressd.core.plan.PlanElement held = plan.elements(e.kind()).get(e.key());
            final boolean ok = switch (change.op())
            {
                case ADD -> held == null || held.equals(e);
                case REMOVE -> held != null;
                case REPLACE -> held != null && held.equals(change.previous());
            };
            if (!ok)
            {
                throw new KernelException("nft: " + change + ": " + (held == null ? "No such file or directory"
                    : "File exists"));
            }
        }
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
