package dev.egressd.agent.reconcile;

import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.alloc.SlotLedger;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Machine;

/** The single-host ledger (the default): this host owns its apps, pairs and slots; the state file is the record. */
public final class LocalLedger implements Ledger
{
    /** The one instance: it holds nothing. */
    public static final LocalLedger INSTANCE = new LocalLedger();

    private LocalLedger()
    {
    }

    @Override
    public SlotLedger slots()
    {
        return SlotLedger.LOCAL;
    }

    @Override
    public String hostId()
    {
        return null;
    }

    @Override
    public boolean groupsMutations()
    {
        return true; // nothing to undo per mutation: a refusal changed nothing
    }

    @Override
    public void begin()
    {
    }

    @Override
    public void committed()
    {
    }

    @Override
    public void rolledBack()
    {
    }

    @Override
    public void attach(final EgressAllocator allocator)
    {
    }

    @Override
    public Outcome putApp(final EgressAllocator allocator, final String app, final boolean failClosed)
    {
        return allocator.upsertApp(app, failClosed);
    }

    @Override
    public Outcome addPair(final EgressAllocator allocator, final String app, final EgressPair pair)
    {
        return allocator.addPair(app, pair);
    }

    @Override
    public Outcome releasePair(final EgressAllocator allocator, final String app, final Ipv4Address ipv4)
    {
        return allocator.releasePair(app, ipv4);
    }

    @Override
    public Outcome setDrained(final EgressAllocator allocator, final String app, final Ipv4Address ipv4,
        final boolean drained)
    {
        return allocator.setDrained(app, ipv4, drained);
    }

    @Override
    public Outcome handover(final EgressAllocator allocator, final Machine machine, final String fromHost)
    {
        return regionOnly("from_host");
    }

    @Override
    public Outcome removeForHandover(final EgressAllocator allocator, final String machineId)
    {
        return regionOnly("handover");
    }

    @Override
    public Outcome deleteHost(final EgressAllocator allocator, final String host)
    {
        return regionOnly("host");
    }

    @Override
    public boolean wantsTick(final EgressAllocator allocator)
    {
        return false;
    }

    @Override
    public Outcome tick(final EgressAllocator allocator)
    {
        return Outcome.Done.NOTHING;
    }

    private static Outcome regionOnly(final String field)
    {
        return new Outcome.Refusal(Outcome.Reason.INVALID, field,
            field + " applies in region mode only (ledger = etcd); this host uses the local ledger");
    }
}
