package dev.egressd.agent.kernel;

import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;
import java.util.ArrayList;
import java.util.List;

/**
 * The fake kernel with a ruleset generation that moves by one per committed nf_tables transaction (egressd's or
 * anyone's), as the real one does; uplink addresses are rtnetlink's and move nothing. The writer may read the
 * generation back after its batch ({@link #readsBack}), someone may commit right after a batch, and a batch may be
 * refused. The trusted read takes the table as given and reads only the uplink addresses.
 */
public final class GenerationKernel implements Kernel
{
    public final FakeKernel fake = new FakeKernel();
    public long generation;
    /** Whether the writer learns its batch's generation (a kernel that cannot tells -1). */
    public boolean readsBack = true;
    /** The fixed part's fingerprint, as the stop's record and a trusted start compare it. */
    public String fingerprint = "fixed part 1";
    /** Trusted reads so far. */
    public int trustedReads;
    /** Someone commits this right after the next batch, before the writer reads the generation back. */
    public KernelPlan foreignAfterNextBatch;
    /** The next batch is refused, as nft refuses one: nothing changes. */
    public boolean refuseNext;
    private long applied = -1;
    private boolean transaction;

    /** @param generation the ruleset's generation to start from. */
    public GenerationKernel(final long generation)
    {
        this.generation = generation;
    }

    public static boolean isUplink(final PlanElement e)
    {
        return e instanceof PlanElement.Uplink4 || e instanceof PlanElement.Uplink6;
    }

    @Override
    public boolean ensureTable() throws KernelException
    {
        return fake.ensureTable();
    }

    @Override
    public KernelPlan read() throws KernelException
    {
        return fake.read();
    }

    @Override
    public void apply(final List<PlanChange> changes) throws KernelException
    {
        applied = -1;
        if (refuseNext)
        {
            refuseNext = false;
            throw new KernelException("refused");
        }
        fake.apply(changes); // a refused batch throws before the generation moves
        transaction = changes.stream().anyMatch(c -> !isUplink(c.element()));
        if (transaction)
        {
            generation++;
        }
        if (foreignAfterNextBatch != null)
        {
            edit(foreignAfterNextBatch);
            foreignAfterNextBatch = null;
        }
        applied = generation;
    }

    @Override
    public long appliedGeneration()
    {
        return readsBack ? applied : -1;
    }

    @Override
    public boolean appliedTransaction()
    {
        return transaction;
    }

    @Override
    public long generation()
    {
        return generation;
    }

    @Override
    public String tableFingerprint()
    {
        return fingerprint;
    }

    @Override
    public KernelPlan readTrusting(final KernelPlan table)
    {
        trustedReads++;
        final List<PlanElement> held = new ArrayList<>();
        table.elements().stream().filter(e -> !isUplink(e)).forEach(held::add);
        fake.plan().elements().stream().filter(GenerationKernel::isUplink).forEach(held::add);
        return KernelPlan.of(held);
    }

    /** A hand edit: one transaction of someone else's. */
    public void edit(final KernelPlan drifted)
    {
        fake.plan(drifted);
        generation++;
    }
}
