package dev.egressd.agent.kernel;

import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;

import java.util.List;

/**
 * A kernel that programs nothing and keeps the plan in memory: {@code egressd --dry-run}, to try the API and the
 * state handling without privileges, and the tests of everything above the kernel. Forgets everything when the
 * process ends.
 *
 * <p>It refuses what nft refuses, all or nothing: removing what is not held, adding a key that is held with other
 * data, replacing what is not held. A test subclass may inject failures, record what is applied and change what it
 * holds behind the loop's back ({@link #hold}).
 */
public class MemoryKernel implements Kernel
{
    private KernelPlan plan = KernelPlan.empty();
    private boolean table;
    private volatile HostAddresses host = HostAddresses.NONE;

    @Override
    public HostAddresses hostAddresses()
    {
        return host;
    }

    /**
     * Sets the host's addresses as a read of a real kernel would have found them (tests).
     *
     * @param addresses the snapshot.
     */
    public void hostAddresses(final HostAddresses addresses)
    {
        this.host = addresses;
    }

    @Override
    public synchronized boolean ensureTable() throws KernelException
    {
        final boolean created = !table;
        table = true;
        return created;
    }

    @Override
    public synchronized KernelPlan read() throws KernelException
    {
        return plan;
    }

    @Override
    public synchronized void apply(final List<PlanChange> changes) throws KernelException
    {
        for (final PlanChange change : changes)
        {
            final PlanElement e = change.element();
            final PlanElement held = plan.elements(e.kind()).get(e.key());
            final boolean ok = switch (change.op())
            {
                case ADD -> held == null || held.equals(e);
                case REMOVE -> held != null;
                case REPLACE -> held != null && held.equals(change.previous());
            };
            if (!ok)
            {
                throw new KernelException(KernelException.Source.NFT, change + ": "
                    + (held == null ? "No such file or directory" : "File exists"), null);
            }
        }
        plan = PlanDiff.apply(plan, changes);
    }

    /**
     * What it holds now (not a read: never fails).
     *
     * @return the plan.
     */
    public synchronized KernelPlan plan()
    {
        return plan;
    }

    /**
     * Changes what it holds as someone would by hand, behind the loop's back.
     *
     * @param held  what it holds from now on.
     * @param exists whether the table exists.
     */
    protected synchronized void hold(final KernelPlan held, final boolean exists)
    {
        this.plan = held;
        this.table = exists;
    }
}
