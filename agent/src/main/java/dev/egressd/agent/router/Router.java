package dev.egressd.agent.router;

import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.region.RegionStore.HostChange;
import dev.egressd.agent.region.RegionStore.HostRecord;
import dev.egressd.agent.region.RegionStore.PairChange;
import dev.egressd.agent.region.RegionStore.RegionChange;
import dev.egressd.agent.region.RegionStore.RegionPair;
import dev.egressd.agent.region.RegionStore.RegionSnapshot;
import dev.egressd.agent.region.RegionStore.RouterChange;
import dev.egressd.agent.region.RegionStore.SlotChange;
import dev.egressd.agent.region.RegionStore.SlotId;
import dev.egressd.agent.region.RegionStore.SlotRecord;
import dev.egressd.agent.region.RegionUnavailableException;
import dev.egressd.core.model.Ipv4Address;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;

/**
 * The router role's loop (docs/region.md, "The router"), on its own thread: read the region, compute the
 * {@link SteeringPlan}, make the kernel hold it, publish the revision applied; then apply each watched batch of
 * changes the same way (its own router keys' changes are ignored: its publishes would loop). A compaction or a
 * broken watch starts over with a full read, diffed against the kernel. While etcd does not answer, the kernel keeps
 * what it holds (the router never flushes); the full read is retried once a second. Once a second (less often when
 * a read-back takes long) the kernel is read back and drift repaired.
 *
 * <p>Order of a change: rules and routes for new hosts first, then the elements (one nft transaction), then the
 * rules and routes of hosts that went: a mark never steers into a table that does not exist yet.
 */
public final class Router implements RegionStore.Listener, AutoCloseable
{
    private static final Logger LOG = LoggerFactory.getLogger(Router.class);
    private static final long SECOND = TimeUnit.SECONDS.toNanos(1);
    /** Drift checks take at most a fifth of the time (a read-back of a big table is O(elements)). */
    private static final int REPAIR_PACE = 4;
    private static final Object START_OVER = new Object();
    private static final Object STOP = new Object();

    /**
     * The router's settings.
     *
     * @param id        the router's id (its key {@code routers/<id>}).
     * @param blockSize ports per block.
     * @param tableBase the routing table base.
     */
    public record Settings(String id, int blockSize, int tableBase)
    {
    }

    private final RegionStore store;
    private final SteeringTable table;
    private final PolicyTables routing;
    private final Settings settings;
    private final LongSupplier nanoTime;
    private final BlockingQueue<Object> events = new LinkedBlockingQueue<>();
    private final Thread thread;

    // Loop thread only.
    private final Map<Ipv4Address, RegionPair> pairs = new HashMap<>();
    private final Map<SlotId, SlotRecord> slots = new HashMap<>();
    private final Map<String, HostRecord> hosts = new HashMap<>();
    private AutoCloseable watch;
    private boolean synced;
    private boolean created;
    private boolean kernelBehind;
    private long modelRevision;
    private SteeringPlan plan = SteeringPlan.EMPTY;
    private long nextRepair;

    // Read by metrics.
    private volatile long applied;
    private volatile long published = -1;
    private volatile boolean available;
    private volatile int elements;
    private volatile long tableReads;
    private volatile long tableReadsSkipped;
    private final AtomicLong applies = new AtomicLong();
    private final AtomicLong applyNanos = new AtomicLong();
    private final AtomicLong repairs = new AtomicLong();

    /**
     * A router; {@link #start()} starts its thread.
     *
     * @param store    the region's store.
     * @param table    the nft table (used on the router's thread only).
     * @param routing  the rules and routes (used on the router's thread only).
     * @param settings the settings.
     * @param nanoTime the clock.
     */
    public Router(final RegionStore store, final SteeringTable table, final PolicyTables routing,
        final Settings settings, final LongSupplier nanoTime)
    {
        this.store = Objects.requireNonNull(store, "store");
        this.table = Objects.requireNonNull(table, "table");
        this.routing = Objects.requireNonNull(routing, "routing");
        this.settings = Objects.requireNonNull(settings, "settings");
        this.nanoTime = nanoTime;
        this.thread = new Thread(this::run, "egressd-router");
        this.thread.setDaemon(true);
    }

    /** Starts the loop's thread. */
    public void start()
    {
        thread.start();
    }

    /** @return the last region revision the kernel holds (0 before the first). */
    public long appliedRevision()
    {
        return applied;
    }

    /** @return the last revision published in the region (-1 before the first). */
    public long publishedRevision()
    {
        return published;
    }

    /** @return whether the last request to the region store succeeded. */
    public boolean regionAvailable()
    {
        return available;
    }

    /** @return the elements of the nft maps as last applied. */
    public int elements()
    {
        return elements;
    }

    /** @return changes applied to the kernel so far (full reads and batches). */
    public long applies()
    {
        return applies.get();
    }

    /** @return total time of those applies. */
    public long applyNanos()
    {
        return applyNanos.get();
    }

    /** @return read-backs of the nft table that read it (the ruleset's generation id had moved). */
    public long tableReads()
    {
        return tableReads;
    }

    /** @return read-backs of the nft table skipped because the ruleset's generation id had not moved. */
    public long tableReadsSkipped()
    {
        return tableReadsSkipped;
    }

    /** @return drift repaired so far: elements, rules and routes put right, tables replaced. */
    public long repairs()
    {
        return repairs.get();
    }

    // ------------------------------------------------------------------------------------------------------------

    private void run()
    {
        while (true)
        {
            try
            {
                if (!step())
                {
                    return;
                }
            }
            catch (final RuntimeException e)
            {
                // a bug or a store that broke its contract: log, keep the kernel, start over a second later
                LOG.error("router {}: the loop failed; the kernel keeps its steering; reading everything again",
                    settings.id(), e);
                synced = false;
                available = false;
                try
                {
                    if (events.poll(1, TimeUnit.SECONDS) == STOP)
                    {
                        return;
                    }
                }
                catch (final InterruptedException interrupted)
                {
                    return;
                }
            }
        }
    }

    /** One turn of the loop; false when it stops. */
    private boolean step()
    {
        if (!synced && !fullRead())
        {
            available = false;
        }
        final long now = nanoTime.getAsLong();
        if (synced && published != applied && !kernelBehind)
        {
            publish();
        }
        final boolean checked = created || kernelBehind; // kernelBehind before created: the first create failed
        if (checked && now - nextRepair >= 0)
        {
            repair();
        }
        final long wait = checked ? Math.max(1, Math.min(SECOND, nextRepair - now)) : SECOND;
        final Object event;
        try
        {
            event = events.poll(wait, TimeUnit.NANOSECONDS);
        }
        catch (final InterruptedException e)
        {
            return false;
        }
        if (event == STOP)
        {
            return false;
        }
        if (event == START_OVER)
        {
            synced = false;
        }
        else if (event instanceof List<?> batch && synced)
        {
            @SuppressWarnings("unchecked")
            final List<RegionChange> changes = (List<RegionChange>) batch;
            apply(changes);
        }
        return true;
    }

    /** Reads everything, makes the kernel hold it, watches from the next revision. */
    private boolean fullRead()
    {
        closeWatch();
        events.removeIf(e -> e instanceof List<?>); // superseded by the read
        final RegionSnapshot snapshot;
        try
        {
            snapshot = store.read();
        }
        catch (final RegionUnavailableException e)
        {
            LOG.warn("router {}: region unavailable, the kernel keeps its steering: {}", settings.id(),
                e.getMessage());
            return false;
        }
        available = true;
        pairs.clear();
        pairs.putAll(snapshot.pairs());
        slots.clear();
        slots.putAll(snapshot.slots());
        hosts.clear();
        hosts.putAll(snapshot.hosts());
        modelRevision = snapshot.revision();
        synced = true;
        watch = store.watch(snapshot.revision() + 1, this);
        LOG.info("router {}: read {} pairs, {} slots, {} hosts at revision {}; watching", settings.id(),
            pairs.size(), slots.size(), hosts.size(), snapshot.revision());
        applyModel(true);
        return true;
    }

    /** Applies a batch of watched changes to the model and the kernel. */
    private void apply(final List<RegionChange> changes)
    {
        boolean relevant = false;
        long revision = modelRevision;
        for (final RegionChange change : changes)
        {
            if (change.revision() <= modelRevision || change instanceof RouterChange)
            {
                continue; // already in the model, or a router key: publishing it again would loop
            }
            relevant = true;
            revision = Math.max(revision, change.revision());
            if (change instanceof PairChange p)
            {
                if (p.value() == null)
                {
                    pairs.remove(p.ipv4());
                }
                else
                {
                    pairs.put(p.ipv4(), p.value());
                }
            }
            else if (change instanceof SlotChange s)
            {
                if (s.value() == null)
                {
                    slots.remove(s.id());
                }
                else
                {
                    slots.put(s.id(), s.value());
                }
            }
            else if (change instanceof HostChange h)
            {
                if (h.value() == null)
                {
                    hosts.remove(h.id());
                }
                else
                {
                    final HostRecord old = hosts.get(h.id());
                    // A change of the liveness key may not carry the mark; the host key's mark never changes.
                    hosts.put(h.id(), h.value().mark() == 0 && old != null && old.mark() != 0
                        ? new HostRecord(h.id(), h.value().addresses(), h.value().alive(), old.mark()) : h.value());
                }
            }
        }
        if (relevant)
        {
            modelRevision = revision;
            applyModel(false);
        }
    }

    /** Makes the kernel hold the model's plan: routes first, one nft transaction, then removals. */
    private void applyModel(final boolean fromFullRead)
    {
        final SteeringPlan next = SteeringPlan.of(new RegionSnapshot(modelRevision, Map.of(), pairs, slots, hosts,
            Map.of()), settings.blockSize(), settings.tableBase());
        final long start = nanoTime.getAsLong();
        try
        {
            if (fromFullRead)
            {
                routing.reread(); // after a restart or an outage the rules and routes are read back
            }
            routing.add(next);
            if (!created)
            {
                table.create(next);
                created = true;
                nextRepair = nanoTime.getAsLong() + SECOND;
            }
            else if (fromFullRead)
            {
                repairs.addAndGet(table.repair(next));
            }
            else
            {
                table.apply(next);
            }
            routing.remove(next);
            plan = next;
            kernelBehind = false;
            applied = modelRevision;
            elements = Math.max(0, table.elements());
        }
        catch (final IOException | RuntimeException e)
        {
            LOG.error("router {}: applying revision {} failed; retrying with a read-back: {}", settings.id(),
                modelRevision, e.getMessage());
            kernelBehind = true;
            nextRepair = nanoTime.getAsLong() + SECOND;
            return;
        }
        finally
        {
            applies.incrementAndGet();
            applyNanos.addAndGet(nanoTime.getAsLong() - start);
        }
        publish();
    }

    private void publish()
    {
        final long revision = applied;
        try
        {
            store.publishRouter(settings.id(), revision);
            published = revision;
            available = true;
        }
        catch (final RegionUnavailableException e)
        {
            available = false;
            LOG.warn("router {}: cannot publish revision {} (retried): {}", settings.id(), revision, e.getMessage());
        }
        catch (final RuntimeException e)
        {
            // the steering is applied either way; hosts just cannot see it confirmed until a publish succeeds
            LOG.error("router {}: publishing revision {} failed (retried): {}", settings.id(), revision, e.toString());
        }
    }

    /** Reads the kernel back and puts right what differs from the plan (or what a failed apply left). */
    private void repair()
    {
        final long start = nanoTime.getAsLong();
        final SteeringPlan wanted = kernelBehind ? SteeringPlan.of(new RegionSnapshot(modelRevision, Map.of(), pairs,
            slots, hosts, Map.of()), settings.blockSize(), settings.tableBase()) : plan;
        try
        {
            routing.reread();
            int fixed = routing.add(wanted);
            fixed += table.repair(wanted); // creates the table if this router never did
            created = true;
            fixed += routing.remove(wanted);
            if (fixed > 0 && !kernelBehind)
            {
                LOG.warn("router {}: repaired {} drifted elements, rules or routes", settings.id(), fixed);
                repairs.addAndGet(fixed);
            }
            plan = wanted;
            if (kernelBehind)
            {
                kernelBehind = false;
                applied = modelRevision;
            }
            elements = Math.max(0, table.elements());
        }
        catch (final IOException | RuntimeException e)
        {
            LOG.error("router {}: reading back the kernel failed: {}", settings.id(), e.getMessage());
        }
        tableReads = table.reads();
        tableReadsSkipped = table.readsSkipped();
        final long took = nanoTime.getAsLong() - start;
        nextRepair = nanoTime.getAsLong() + Math.max(SECOND, REPAIR_PACE * took);
    }

    private void closeWatch()
    {
        if (watch != null)
        {
            try
            {
                watch.close();
            }
            catch (final Exception e)
            {
                LOG.debug("router: closing the watch", e);
            }
            watch = null;
        }
    }

    // ------------------------------------------------------------------------------------------------------------

    @Override
    public void changed(final List<RegionChange> changes)
    {
        events.add(List.copyOf(changes));
    }

    @Override
    public void compacted()
    {
        LOG.warn("router {}: the watch's revision was compacted; reading everything again", settings.id());
        events.add(START_OVER);
    }

    @Override
    public void interrupted(final String problem)
    {
        LOG.warn("router {}: the watch broke ({}); the kernel keeps its steering; reading everything again",
            settings.id(), problem);
        available = false;
        events.add(START_OVER);
    }

    /** Stops the loop; the kernel keeps what it holds (a router that stops never flushes its steering). */
    @Override
    public void close()
    {
        events.add(STOP);
        try
        {
            thread.join(TimeUnit.SECONDS.toMillis(10));
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
        closeWatch();
    }
}
