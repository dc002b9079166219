package dev.egressd.agent.kernel;

import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** The in-memory kernel with a test's handles: it can be told to fail, counts reads, records applies, drifts. */
public final class FakeKernel extends MemoryKernel
{
    /** When set, every call fails with this message. */
    public String failing;
    /**
     * Uplink addresses someone else put there: the real kernel never lists them as egressd's (they lack its
     * IFA_PROTO mark), so neither does the fake.
     */
    public final Set<PlanElement> foreignUplinks = new HashSet<>();
    /** Every batch applied. */
    public final List<List<PlanChange>> applied = new ArrayList<>();
    /** Times the kernel was read back. */
    public int reads;
    /** The table's named counters, as {@link #counters()} reads them. */
    public final Map<String, Long> counters = new LinkedHashMap<>();

    @Override
    public boolean ensureTable() throws KernelException
    {
        check();
        return super.ensureTable();
    }

    @Override
    public KernelPlan read() throws KernelException
    {
        check();
        reads++;
        return super.read();
    }

    @Override
    public void apply(final List<PlanChange> changes) throws KernelException
    {
        check();
        super.apply(changes);
        applied.add(List.copyOf(changes));
    }

    @Override
    public Map<String, Long> counters() throws KernelException
    {
        check();
        return Map.copyOf(counters);
    }

    /**
     * Someone changes the kernel's elements by hand.
     *
     * @param drifted what it holds from now on (the table exists).
     */
    public void plan(final KernelPlan drifted)
    {
        hold(drifted, true);
    }

    /** Someone deletes the whole table by hand. */
    public void deleteTable()
    {
        hold(KernelPlan.empty(), false);
    }

    private void check() throws KernelException
    {
        if (failing != null)
        {
            throw new KernelException(failing);
        }
    }
}
