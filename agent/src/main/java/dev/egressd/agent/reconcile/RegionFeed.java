package dev.egressd.agent.reconcile;

import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.region.RegionStore.HostRecord;
import dev.egressd.agent.region.RegionStore.RegionChange;
import dev.egressd.agent.region.RegionStore.RegionSnapshot;
import dev.egressd.agent.region.RegionStore.RouterChange;
import dev.egressd.agent.region.RegionUnavailableException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;

/**
 * Keeps the {@link RegionLedger}'s cache in line with etcd, on its own thread: register this host, read everything,
 * apply it on the loop thread, then watch from the next revision. A compaction, or a request that found etcd
 * unreachable, or a broken watch, starts over with a full read (retried once a second), so a claim whose outcome
 * was unknown is always re-read before anything is retried. Watched changes go to the loop in arrival order.
 */
public final class RegionFeed implements RegionStore.Listener, AutoCloseable
{
    private static final Logger LOG = LoggerFactory.getLogger(RegionFeed.class);
    private static final long RETRY_MILLIS = 1000;

    private final RegionStore store;
    private final RegionLedger ledger;
    private final ControlLoop loop;
    private final HostRecord self;
    private final LongSupplier nanoTime;
    private final Object lock = new Object();
    private final Thread thread;

    private boolean again = true;
    /** The mark the last registration returned (feed thread only). */
    private int mark;
    private volatile boolean closed;
    private AutoCloseable watch;

    /**
     * Creates the feed; {@link #start()} starts it.
     *
     * @param store    the region's store.
     * @param ledger   the ledger it feeds.
     * @param loop     the loop whose thread applies what it reads.
     * @param self     this host as the region's routers should see it.
     * @param nanoTime the clock.
     */
    public RegionFeed(final RegionStore store, final RegionLedger ledger, final ControlLoop loop, final HostRecord self,
        final LongSupplier nanoTime)
    {
        this.store = store;
        this.ledger = ledger;
        this.loop = loop;
        this.self = self;
        this.nanoTime = nanoTime;
        this.thread = new Thread(this::run, "egressd-region");
        this.thread.setDaemon(true);
        ledger.onUnavailable(this::startOver);
    }

    /** Starts the feed's thread. */
    public void start()
    {
        thread.start();
    }

    private void startOver()
    {
        synchronized (lock)
        {
            again = true;
            lock.notifyAll();
        }
    }

    private void run()
    {
        while (!closed)
        {
            synchronized (lock)
            {
                while (!again && !closed)
                {
                    try
                    {
                        lock.wait();
                    }
                    catch (final InterruptedException e)
                    {
                        return;
                    }
                }
                again = false;
            }
            if (closed)
            {
                return;
            }
            closeWatch();
            if (!connect())
            {
                startOver();
                sleep();
            }
        }
    }

    private boolean connect()
    {
        try
        {
            final HostRecord registered = store.registerHost(self);
            if (registered.mark() != mark)
            {
                LOG.info("region {}: host {} registered with mark {} (the routers steer its blocks by it)",
                    ledger.region(), registered.id(), registered.mark());
                mark = registered.mark();
            }
            final RegionSnapshot snapshot = store.read();
            loop.mutate(Operation.REGION_SYNC, "region full read at revision " + snapshot.revision(),
                l -> ledger.resync(l.allocator(), snapshot)).get(30, TimeUnit.SECONDS);
            synchronized (lock)
            {
                if (!closed)
                {
                    watch = store.watch(snapshot.revision() + 1, this);
                }
            }
            LOG.info("region {}: read {} pairs, {} slots, {} hosts, {} routers at revision {}; watching",
                ledger.region(), snapshot.pairs().size(), snapshot.slots().size(), snapshot.hosts().size(),
                snapshot.routers().size(), snapshot.revision());
            return true;
        }
        catch (final RegionUnavailableException e)
        {
            ledger.unavailable("full read: " + e.getMessage());
            return false;
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            return false;
        }
        catch (final Exception e)
        {
            LOG.error("region: applying the full read failed", e);
            return false;
        }
    }

    private void sleep()
    {
        try
        {
            Thread.sleep(RETRY_MILLIS);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
    }

    private void closeWatch()
    {
        final AutoCloseable w;
        synchronized (lock)
        {
            w = watch;
            watch = null;
        }
        if (w != null)
        {
            try
            {
                w.close();
            }
            catch (final Exception e)
            {
                LOG.debug("region: closing the watch", e);
            }
        }
    }

    @Override
    public void changed(final List<RegionChange> changes)
    {
        final long arrived = nanoTime.getAsLong();
        // A router's published revision goes straight to the routers' table: the answers waiting for it must not
        // wait for the loop (which may be the one busy), and it changes nothing the loop holds.
        final List<RegionChange> forLoop = new ArrayList<>(changes.size());
        for (final RegionChange change : changes)
        {
            if (change instanceof RouterChange router)
            {
                ledger.routers().changed(router);
            }
            else
            {
                forLoop.add(change);
            }
        }
        if (forLoop.isEmpty())
        {
            return;
        }
        loop.mutate(Operation.REGION_SYNC, "region changes to revision " + forLoop.get(forLoop.size() - 1).revision(),
            l -> ledger.apply(l.allocator(), forLoop, arrived, nanoTime));
    }

    @Override
    public void compacted()
    {
        LOG.warn("region: the watch's revision was compacted; reading everything again");
        startOver();
    }

    @Override
    public void interrupted(final String problem)
    {
        // The watch broke: etcd is likely gone. Say so at once (claims would each cost the deadline) and read
        // everything again once it answers, so this host does not act on a cache that may have missed changes.
        ledger.unavailable("the watch broke: " + problem);
    }

    @Override
    public void close()
    {
        closed = true;
        startOver();
        closeWatch();
        thread.interrupt();
    }
}
