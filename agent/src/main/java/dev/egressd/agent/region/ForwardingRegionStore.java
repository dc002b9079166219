package dev.egressd.agent.region;

import dev.egressd.core.model.Ipv4Address;

import java.util.List;

/**
 * A {@link RegionStore} that passes every call to another: the base of decorators that watch or time some calls
 * (a benchmark's timer of claims, a test's recorder of a router's reads and publishes) and override only those.
 * Every method forwards, so a decorator never changes what the store does by forgetting one.
 */
public class ForwardingRegionStore implements RegionStore
{
    private final RegionStore store;

    /**
     * A store that forwards every call.
     *
     * @param store where the calls go.
     */
    public ForwardingRegionStore(final RegionStore store)
    {
        this.store = store;
    }

    /**
     * The store the calls go to.
     *
     * @return the decorated store.
     */
    protected final RegionStore delegate()
    {
        return store;
    }

    @Override
    public RegionSnapshot read() throws RegionUnavailableException
    {
        return store.read();
    }

    @Override
    public AutoCloseable watch(final long fromRevision, final Listener listener)
    {
        return store.watch(fromRevision, listener);
    }

    @Override
    public ClaimAnswer claim(final SlotId slot, final String host, final String machine)
        throws RegionUnavailableException
    {
        return store.claim(slot, host, machine);
    }

    @Override
    public boolean release(final SlotId slot, final String host, final String machine)
        throws RegionUnavailableException
    {
        return store.release(slot, host, machine);
    }

    @Override
    public boolean markLeaving(final SlotId slot, final String host, final String machine)
        throws RegionUnavailableException
    {
        return store.markLeaving(slot, host, machine);
    }

    @Override
    public ClaimAnswer handover(final String machine, final String fromHost, final String toHost)
        throws RegionUnavailableException
    {
        return store.handover(machine, fromHost, toHost);
    }

    @Override
    public List<SlotId> quarantineHost(final String host, final long untilMillis) throws RegionUnavailableException
    {
        return store.quarantineHost(host, untilMillis);
    }

    @Override
    public Quarantine quarantine(final String host, final long untilMillis) throws RegionUnavailableException
    {
        return store.quarantine(host, untilMillis);
    }

    @Override
    public void putApp(final RegionApp app) throws RegionUnavailableException
    {
        store.putApp(app);
    }

    @Override
    public RegionPair createPair(final RegionPair pair) throws RegionUnavailableException
    {
        return store.createPair(pair);
    }

    @Override
    public boolean setDrained(final Ipv4Address ipv4, final boolean drained) throws RegionUnavailableException
    {
        return store.setDrained(ipv4, drained);
    }

    @Override
    public void deletePair(final Ipv4Address ipv4) throws RegionUnavailableException
    {
        store.deletePair(ipv4);
    }

    @Override
    public HostRecord registerHost(final HostRecord host) throws RegionUnavailableException
    {
        return store.registerHost(host);
    }

    @Override
    public void publishRouter(final String router, final long applied) throws RegionUnavailableException
    {
        store.publishRouter(router, applied);
    }

    @Override
    public Stats stats()
    {
        return store.stats();
    }

    @Override
    public void close()
    {
        store.close();
    }
}
