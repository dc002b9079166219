package dev.egressd.agent.router;

import dev.egressd.agent.region.ForwardingRegionStore;
import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.region.RegionUnavailableException;

import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.LongSupplier;

/**
 * A router's store for the router's tests: everything goes to the store, and the full reads and the revisions
 * published are counted and recorded, so a test can tell when the router read everything again and what it
 * published. A publish is a write (the router's key), so it makes a revision of its own that the router never
 * applies: {@link #lastChange} tells the revisions a test waits for from those.
 */
final class RecordingRegionStore extends ForwardingRegionStore
{
    final List<Long> published = new CopyOnWriteArrayList<>();
    final AtomicInteger reads = new AtomicInteger();
    /** The store's revision after each publish: the revision of the router key written. */
    private final Set<Long> publishRevisions = ConcurrentHashMap.newKeySet();
    private final LongSupplier storeRevision;

    /**
     * @param store         the router's store.
     * @param storeRevision the store's current revision (its backend's).
     */
    RecordingRegionStore(final RegionStore store, final LongSupplier storeRevision)
    {
        super(store);
        this.storeRevision = storeRevision;
    }

    /**
     * The last revision at or before this one that is not one of the router's own publishes: what the router
     * must have applied to be up to date with it.
     *
     * @param revision a store revision.
     * @return the revision of the last change the router applies.
     */
    long lastChange(final long revision)
    {
        long r = revision;
        while (publishRevisions.contains(r))
        {
            r--;
        }
        return r;
    }

    @Override
    public RegionSnapshot read() throws RegionUnavailableException
    {
        final RegionSnapshot snapshot = super.read();
        reads.incrementAndGet();
        return snapshot;
    }

    @Override
    public void publishRouter(final String router, final long applied) throws RegionUnavailableException
    {
        super.publishRouter(router, applied);
        publishRevisions.add(storeRevision.getAsLong()); // the tests write from one thread, the router from another
        published.add(applied);
    }
}
