package dev.egressd.agent.router;

import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.region.RegionUnavailableException;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A router's view of a {@code MemoryRegionStore} for the router's tests, until the store assigns host marks and
 * keeps router keys: hosts get the marks this decorator is given, and {@link #publishRouter} records the revisions
 * (and, as etcd would, echoes a router key change into the watch, which the router must ignore).
 */
final class MarkedRegionStore implements RegionStore
{
    private final RegionStore store;
    private final Map<String, Integer> marks = new ConcurrentHashMap<>();
    final List<Long> published = new CopyOnWriteArrayList<>();
    final AtomicInteger reads = new AtomicInteger();
    private final List<Listener> listeners = new CopyOnWriteArrayList<>();
    private final AtomicLong echo = new AtomicLong(1L << 40);

    MarkedRegionStore(final RegionStore store)
    {
        this.store = store;
    }

    void mark(final String host, final int mark)
    {
        marks.put(host, mark);
    }

    private HostRecord marked(final HostRecord h)
    {
        return h == null ? null : new HostRecord(h.id(), h.addresses(), h.alive(), marks.getOrDefault(h.id(), 0));
    }

    @Override
    public RegionSnapshot read() throws RegionUnavailableException
    {
        final RegionSnapshot s = store.read();
        reads.incrementAndGet();
        final Map<String, HostRecord> hosts = new java.util.TreeMap<>();
        s.hosts().forEach((id, h) -> hosts.put(id, marked(h)));
        return new RegionSnapshot(s.revision(), s.apps(), s.pairs(), s.slots(), hosts, s.routers());
    }

    @Override
    public AutoCloseable watch(final long fromRevision, final Listener listener)
    {
        listeners.add(listener);
        final AutoCloseable inner = store.watch(fromRevision, new Listener()
        {
            @Override
            public void changed(final List<RegionChange> changes)
            {
                final List<RegionChange> out = new ArrayList<>();
                for (final RegionChange c : changes)
                {
                    out.add(c instanceof HostChange h ? new HostChange(h.revision(), h.id(), marked(h.value())) : c);
                }
                listener.changed(out);
            }

            @Override
            public void compacted()
            {
                listener.compacted();
            }

            @Override
            public void interrupted(final String problem)
            {
                listener.interrupted(problem);
            }
        });
        return () ->
        {
            listeners.remove(listener);
            inner.close();
        };
    }

    @Override
    public void publishRouter(final String router, final long applied) throws RegionUnavailableException
    {
        store.read(); // fails as a write would while the store is unavailable
        published.add(applied);
        final RouterChange change = new RouterChange(echo.incrementAndGet(), router, new RouterRecord(router, applied));
        listeners.forEach(l -> l.changed(List.of(change)));
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
    public boolean setDrained(final dev.egressd.core.model.Ipv4Address ipv4, final boolean drained)
        throws RegionUnavailableException
    {
        return store.setDrained(ipv4, drained);
    }

    @Override
    public void deletePair(final dev.egressd.core.model.Ipv4Address ipv4) throws RegionUnavailableException
    {
        store.deletePair(ipv4);
    }

    @Override
    public HostRecord registerHost(final HostRecord host) throws RegionUnavailableException
    {
        return marked(store.registerHost(host));
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
