package dev.egressd.agent.conntrack;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvents;
import dev.egressd.agent.conntrack.ctnetlink.GuestPrefixes;
import dev.egressd.agent.natives.NativeException;
import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.ledger.ConnectionLedger;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.function.LongSupplier;

/**
 * Conntrack, live: one dedicated thread reads ctnetlink NEW, UPDATE and DESTROY events and hands each to the
 * {@link LedgerFeed}, which counts the flows whose original source is a guest address. This class is the thread:
 * when events are read, when the ledger is resynchronised, and how other threads reach what the thread owns.
 *
 * <h2>Threading: the monitor thread owns the ledger</h2>
 * The ledger feed and {@link FlowHygiene} are touched by the monitor thread only, so neither needs a lock (a single
 * writer). Everyone else talks to the thread through one {@link CommandQueue} that it drains between two polls (at
 * most the poll timeout, {@value #POLL_MILLIS} ms, apart):
 * <ul>
 *     <li>the control loop calls {@link #machinesChanged} after each committed mutation: what it was told is queued,
 *     and the monitor thread has {@link MachineRegistry} compute the difference there (guest index, registrations,
 *     flows to delete now or after the drain time) and applies it, in the order of the calls. Not on the caller's
 *     thread: the guest index is a copy of O(machines) arrays, and the loop answers its change only after telling
 *     the monitor (a query the API queues after the answer must see the machine), so that copy would be on every
 *     change's wall time;</li>
 *     <li>the API asks through {@link #queries()}: a detailed read runs on the monitor thread, and a
 *     {@link CompletableFuture} carries the answer back (or an error, once the monitor has stopped: a query is
 *     never left unanswered);</li>
 *     <li>metrics and the machine view read {@link PublishedStats}, an immutable snapshot the thread publishes every
 *     second (and after every update, deletion or resync); a second in which nothing moved (no event, command,
 *     deletion or error) keeps the last one rather than building it again.</li>
 * </ul>
 * Flow deletions run on this thread too, at the start of each turn: ctnetlink's request socket belongs to one
 * thread, and events wait in the socket's large buffer meanwhile.
 *
 * <h2>Overruns</h2>
 * ENOBUFS means the kernel dropped events: the thread resynchronises the ledger from a full dump
 * ({@code beginResync}, dump, {@code endResync}) and counts it. The same happens once at start. Not at once: the
 * socket still holds the events queued before the drop, and a NEW among them whose DESTROY was dropped would, read
 * after the dump, open a connection that no longer exists and that nothing would ever close. So the thread first
 * keeps reading (in order, as usual) until the socket is empty (a poll times out) or for at most 0.5 s, which
 * consumes everything queued before the drop, and only then dumps (measured in the privileged overrun test).
 *
 * <h2>The kernel-side filter</h2>
 * Events the ledger would ignore never reach Java: the subscription carries a socket filter
 * ({@code ctnetlink.EventFilter}) that keeps only source-translated flows from inside a cover of the guest addresses
 * ({@link GuestPrefixes}), and of UPDATE only TCP's TIME_WAIT and CLOSE. The thread replaces it when a machine
 * update brings a guest address outside the cover, and narrows it after machines were removed (at most once a second:
 * the wider cover meanwhile only lets through events the ledger ignores). Events the old filter dropped before the
 * new one was attached cannot be read again, so a cover that grew is followed by a resync from a full dump (at
 * most one a second: a burst of registrations costs one dump, not one per machine).
 *
 * <h2>Wake-ups</h2>
 * A blocking read returns as soon as one event is queued, so under churn the thread would wake, and make a system
 * call, for every few events; the wake-up and the call cost far more than the event itself (benchmarks/README.md,
 * "Where the daemon's CPU per conntrack event goes"). So after a read that emptied the socket the thread waits
 * {@link #COALESCE_NANOS} (a queued command still runs at once), and the next read takes what gathered, up to
 * {@link ConntrackEvents#BATCH} datagrams per call. The ledger is then at most that much behind the kernel, which
 * enforces the cap itself; the socket's buffer holds far more than the events of that wait. Not while draining
 * before a resync, which wants the socket empty as soon as possible.
 *
 * <p>Reading an event allocates nothing (the listener hands the reused event straight to the feed).
 */
public final class ConntrackMonitor implements AutoCloseable
{
    /** How long one poll waits for events, so queued work is picked up at least this often. */
    public static final int POLL_MILLIS = 100;

    private static final Logger LOG = LoggerFactory.getLogger(ConntrackMonitor.class);
    private static final long SECOND = 1_000_000_000L;
    /**
     * After a read that emptied the socket, how long the thread waits before the next one (queued work still runs at
     * once): the events of that time are then read together, up to {@link ConntrackEvents#BATCH} per system call,
     * instead of one wake-up and one read for every few events (see the class comment, "Wake-ups").
     */
    static final long COALESCE_NANOS = 2_000_000L;
    /** After an overrun, how long queued events are still read before the resync dump (see the class comment). */
    private static final long DRAIN_BEFORE_RESYNC_NANOS = 500_000_000L;

    private final ConntrackEvents events;
    private final LedgerFeed feed;
    private final FlowHygiene hygiene;
    private final MachineRegistry registry;
    private final PublishedStats published;
    private final MonitorQueries queries;
    private final RefusalLog refusals;
    private final LongSupplier nanoTime;
    private final CommandQueue commands;
    private final ConntrackEvents.Listener listener = new ConntrackEvents.Listener()
    {
        @Override
        public void onEvent(final ConntrackEvent event)
        {
            feed.onEvent(event);
            moved = true;
        }

        @Override
        public void onOverrun()
        {
            moved = true;
            overruns++;
            overranThisPoll = true;
            if (!draining)
            {
                draining = true;
                drainDeadline = nanoTime.getAsLong() + DRAIN_BEFORE_RESYNC_NANOS;
            }
        }
    };
    private Thread thread;
    private volatile boolean running;

    // monitor thread only
    private boolean resyncNeeded;
    private boolean draining;
    private boolean overranThisPoll;
    private long drainDeadline;
    private boolean publishNeeded = true;
    /**
     * Whether anything the stats are built from may have moved since they were last published: an event, an
     * overrun, a command (a machine's change, a cap), a deletion, a resync, an error. While nothing does, the
     * once-a-second publication keeps the last stats instead of building them again (a map of every machine: at
     * 4,000 machines most of an idle monitor's CPU).
     */
    private boolean moved = true;
    /** The flow deletions' failures and deletions at the last publication. */
    private long hygieneAtPublish = -1;
    private volatile ConntrackTable table;
    private long publishedAt;
    private long overruns;
    private long resyncs;
    private long errors;
    private GuestPrefixes filtered;          // the cover the attached filter keeps; null: no filter yet
    private boolean resyncAfterWidening;
    private boolean resyncForFilter;         // the next resync follows a wider filter, not lost events
    private long widenedResyncAt;
    private long filtersAttached;
    private GuestIndex narrowFrom;           // machines were removed: the index to narrow the cover to, or null
    private long narrowedAt;

    /**
     * A monitor over a conntrack subscription (opened in the namespace to watch; the monitor closes it).
     *
     * @param events         the subscription (NEW, UPDATE, DESTROY), or null for a monitor without a kernel
     *                       (dry run, tests): the ledger then stays empty but the API answers.
     * @param destinationCap the destination cap.
     * @param refusals       where violations and limits crossed are logged.
     * @param nanoTime       the clock (drain times, publishing).
     */
    public ConntrackMonitor(final ConntrackEvents events, final int destinationCap, final RefusalLog refusals,
        final LongSupplier nanoTime)
    {
        this(events, events == null ? null : FlowHygiene.FlowTable.of(events), destinationCap, refusals, nanoTime);
    }

    /**
     * A monitor whose hygiene deletes through the given table; for tests (with {@code events} null, the monitor
     * reads no events but still deletes).
     *
     * @param events         the subscription, or null.
     * @param flows          the table hygiene dumps and deletes from, or null to delete nothing.
     * @param destinationCap the destination cap.
     * @param refusals       where violations and limits crossed are logged.
     * @param nanoTime       the clock.
     */
    ConntrackMonitor(final ConntrackEvents events, final FlowHygiene.FlowTable flows, final int destinationCap,
        final RefusalLog refusals, final LongSupplier nanoTime)
    {
        this.events = events;
        this.feed = new LedgerFeed(destinationCap, refusals);
        this.commands = new CommandQueue(feed.ledger());
        this.hygiene = new FlowHygiene(flows, nanoTime);
        this.registry = new MachineRegistry(refusals, nanoTime);
        this.refusals = refusals;
        this.nanoTime = nanoTime;
        this.published = new PublishedStats(snapshot());
        this.queries = new MonitorQueries(this, feed, published);
    }

    /**
     * Reads the kernel table's fill with every publish (once a second), from the monitor thread.
     *
     * @param table the reader, or null to read nothing (the fill is then unknown).
     * @return this.
     */
    public ConntrackMonitor table(final ConntrackTable table)
    {
        this.table = table;
        return this;
    }

    /**
     * The refusal log this monitor writes to (shared with the control loop).
     *
     * @return the log.
     */
    public RefusalLog refusals()
    {
        return refusals;
    }

    /**
     * Starts the monitor thread: it applies queued machine updates, dumps the table once, then follows events.
     *
     * @return this.
     */
    public synchronized ConntrackMonitor start()
    {
        if (thread != null)
        {
            throw new IllegalStateException("already started");
        }
        running = true;
        thread = new Thread(this::run, "egressd-conntrack");
        thread.setDaemon(true);
        thread.start();
        return this;
    }

    /**
     * The last published snapshot.
     *
     * @return the figures, at most about a second old.
     */
    public ConntrackSnapshot stats()
    {
        return published.snapshot();
    }

    /**
     * The published figures as the metrics binder reads them.
     *
     * @return the stats; each read answers from the last snapshot.
     */
    public ConntrackStats published()
    {
        return published;
    }

    /**
     * What the API may ask of the live connections.
     *
     * @return the queries, answered by this monitor.
     */
    public ConnectionQueries queries()
    {
        return queries;
    }

    // ------------------------------------------------------------------------------ control loop side

    /**
     * Tells the monitor the machines as the allocator now has them (after every committed change); see
     * {@link MachineRegistry} for what each change does. The egress addresses egressd holds are taken to be the
     * machines' own pairs and machine-scoped pairs, so a released pair still draining is not among them here; the
     * control loop, which also knows pairs no machine uses now and addresses still draining, calls
     * {@link #machinesChanged(List, Collection, Collection, long)}.
     *
     * @param machines   every machine.
     * @param drainNanos the drain time for flows of a changed egress address.
     */
    public void machinesChanged(final List<EgressAllocator.MachineView> machines, final long drainNanos)
    {
        final List<Ipv4Address> held4 = new ArrayList<>();
        final List<Ipv6Address> held6 = new ArrayList<>();
        MachineRegistry.heldBy(machines, held4, held6);
        machinesChanged(machines, held4, held6, drainNanos);
    }

    /**
     * As {@link #machinesChanged(List, long)}, with the egress addresses egressd holds: a machine that becomes
     * static, and a machine of static scope that the monitor learns of for the first time, has its source-translated
     * flows to any other address deleted at once. The difference is computed and applied on the monitor thread, in the
     * order of the calls (and of the queries queued after them); the lists given must not change afterwards.
     *
     * @param machines   every machine.
     * @param held4      every IPv4 egress address egressd holds: app pairs, machine-scoped pairs, still draining.
     * @param held6      the same for IPv6.
     * @param drainNanos the drain time for flows of a changed egress address.
     */
    public void machinesChanged(final List<EgressAllocator.MachineView> machines,
        final Collection<Ipv4Address> held4, final Collection<Ipv6Address> held6, final long drainNanos)
    {
        commands.add(() -> apply(registry.diff(machines, held4, held6, drainNanos)));
    }

    /**
     * As {@link #machinesChanged(List, Collection, Collection, long)}, told only what may have changed since the
     * last call (by whoever keeps a copy of the machines to compare with): the same update for O(what changed) work.
     * Every call, of either kind, must describe the same allocator's machines as the calls before it did. Computed
     * and applied on the monitor thread, as the other; the collections given must not change afterwards.
     *
     * @param changed    the machines that may have changed or be new, in id order (any other is as last told).
     * @param gone       ids of machines that may be gone (an id also in {@code changed} is not), in id order.
     * @param held4      every IPv4 egress address egressd holds: app pairs, machine-scoped pairs, still draining.
     * @param held6      the same for IPv6.
     * @param drainNanos the drain time for flows of a changed egress address.
     */
    public void machinesChangedOnly(final List<EgressAllocator.MachineView> changed,
        final Collection<String> gone, final Collection<Ipv4Address> held4, final Collection<Ipv6Address> held6,
        final long drainNanos)
    {
        commands.add(() -> apply(registry.changed(changed, gone, held4, held6, drainNanos)));
    }

    // ------------------------------------------------------------------------------ other threads' reads

    /**
     * Runs a read of the ledger on the monitor thread.
     *
     * @param query the read; it must not keep the ledger.
     * @param <T>   its result.
     * @return the result.
     */
    public <T> CompletableFuture<T> query(final Function<ConnectionLedger, T> query)
    {
        return commands.query(query);
    }

    /**
     * Runs a task on the monitor thread, e.g. a test's pause that lets events pile up in the socket.
     *
     * @param task the task.
     * @return done when it ran.
     */
    public CompletableFuture<Void> runOnMonitorThread(final Runnable task)
    {
        return query(l ->
        {
            task.run();
            return null;
        });
    }

    // ------------------------------------------------------------------------------ monitor thread

    private void run()
    {
        drainCommands();
        resyncNeeded = events != null;
        while (running)
        {
            try
            {
                step();
            }
            catch (final IOException e)
            {
                errors++;
                moved = true;
                LOG.error("conntrack: {}; resynchronising in 1 s", e.getMessage());
                resyncNeeded = events != null;
                sleepQuietly(1000);
            }
            catch (final RuntimeException e)
            {
                errors++;
                moved = true;
                LOG.error("conntrack monitor", e);
                sleepQuietly(1000);
            }
        }
        drainCommands();
        commands.stop();
        commands.failQueued();
    }

    /**
     * One turn of the loop: queued work, due deletions, a resync if one is needed, one poll.
     *
     * @throws IOException if the socket fails.
     */
    void step() throws IOException
    {
        drainCommands();
        if (hygiene.runDue(feed::machine))
        {
            publishNeeded = true;
        }
        if (events == null)
        {
            try
            {
                if (commands.runNext(POLL_MILLIS))
                {
                    moved = true;
                }
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
                running = false;
            }
        }
        else
        {
            if (resyncAfterWidening && nanoTime.getAsLong() - widenedResyncAt >= SECOND)
            {
                resyncAfterWidening = false;
                widenedResyncAt = nanoTime.getAsLong();
                resyncNeeded = true;
                resyncForFilter = true;
            }
            if (resyncNeeded)
            {
                resync();
            }
            overranThisPoll = false;
            final int n = events.poll(listener);
            if (draining && (n == 0 && !overranThisPoll || nanoTime.getAsLong() - drainDeadline >= 0))
            {
                draining = false;
                resync();
            }
            else if (n > 0 && n < ConntrackEvents.BATCH && !draining)
            {
                coalesce();
            }
        }
        final long now = nanoTime.getAsLong();
        narrowCover(now);
        if (publishNeeded || now - publishedAt >= SECOND)
        {
            final long hygieneNow = hygiene.failures() + hygiene.flowsDeleted();
            if (publishNeeded || moved || hygieneNow != hygieneAtPublish)
            {
                published.publish(snapshot());
                moved = false;
                hygieneAtPublish = hygieneNow;
            }
            final ConntrackTable t = table;
            if (t != null)
            {
                published.publishTable(t.sample());
            }
            publishedAt = now;
            publishNeeded = false;
            refusals.flush();
        }
    }

    /** Waits {@link #COALESCE_NANOS} for events to gather in the socket, running a command that arrives meanwhile. */
    private void coalesce()
    {
        try
        {
            if (commands.runNext(COALESCE_NANOS, TimeUnit.NANOSECONDS))
            {
                moved = true;
            }
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            running = false;
        }
    }

    /** Runs every queued command; monitor thread (tests call it directly on an unstarted monitor). */
    void drainCommands()
    {
        if (commands.drain() > 0)
        {
            moved = true;
        }
    }

    private void resync() throws IOException
    {
        resyncNeeded = false;
        final long t0 = System.nanoTime();
        final ConnectionLedger ledger = feed.ledger();
        ledger.beginResync();
        events.dump(listener);
        final int swept = ledger.endResync();
        resyncs++;
        publishNeeded = true;
        if (resyncs > 1)
        {
            if (resyncForFilter)
            {
                LOG.info("conntrack: resynchronised the ledger from a full dump after the event filter took in new "
                    + "guests ({} live, {} stale dropped, {} ms)", ledger.liveConnections(), swept,
                    (System.nanoTime() - t0) / 1_000_000);
            }
            else
            {
                LOG.warn("conntrack: resynchronised the ledger from a full dump after lost events ({} live, {} stale "
                    + "dropped, {} ms)", ledger.liveConnections(), swept, (System.nanoTime() - t0) / 1_000_000);
            }
        }
        resyncForFilter = false;
    }

    private void apply(final MachineRegistry.Update update)
    {
        if (update == null)
        {
            return; // nothing the monitor keeps changed
        }
        feed.apply(update);
        hygiene.schedule(update.deletions(), update.held());
        publishNeeded = true;
        refilter(update);
    }

    /** Replaces the kernel-side filter if the guests may have left its cover (see the class comment). */
    private void refilter(final MachineRegistry.Update update)
    {
        if (events == null)
        {
            return;
        }
        boolean stale = filtered == null;
        for (int i = 0; !stale && i < update.registers().size(); i++)
        {
            final TrackedMachine t = update.registers().get(i);
            stale = t.guest4() != null && !filtered.contains4(t.guest4().bits())
                || t.guest6() != null && !filtered.contains6(t.guest6().high(), t.guest6().low());
        }
        if (!stale)
        {
            // Machines removed only: the cover still holds every guest, and lets through at most events the ledger
            // ignores. A narrower one waits for the next turn a second after the last (building a cover sorts
            // every guest address: not once per deleted machine). Always to the newest index: a guest added
            // meanwhile inside the old cover must stay in the narrower one.
            if (!update.unregisters().isEmpty() || narrowFrom != null)
            {
                narrowFrom = update.index();
            }
            return;
        }
        // New guests outside the cover: their networks added to it at its prefix lengths (O(prefixes) each; every
        // registration of a new machine comes here), the whole cover built again (sorting every guest address) only
        // when that would need too many prefixes. A narrowing that waits keeps waiting, for the newest index.
        final int n = update.registers().size();
        final int[] v4 = new int[n];
        final long[] v6 = new long[2 * n];
        int n4 = 0;
        int n6 = 0;
        for (final TrackedMachine t : update.registers())
        {
            if (t.guest4() != null)
            {
                v4[n4++] = t.guest4().bits();
            }
            if (t.guest6() != null)
            {
                v6[2 * n6] = t.guest6().high();
                v6[2 * n6++ + 1] = t.guest6().low();
            }
        }
        final GuestPrefixes wider = filtered == null ? null
            : filtered.widen(v4, n4, v6, n6, GuestPrefixes.DEFAULT_MAX);
        if (wider != null)
        {
            if (narrowFrom != null)
            {
                narrowFrom = update.index();
            }
            attach(wider);
            return;
        }
        narrowFrom = null;
        attachCover(update.index());
    }

    /** Narrows the filter's cover after machines were removed, at most once a second (see {@link #refilter}). */
    private void narrowCover(final long now)
    {
        if (narrowFrom != null && events != null && now - narrowedAt >= SECOND)
        {
            final GuestIndex index = narrowFrom;
            narrowFrom = null;
            narrowedAt = now;
            attachCover(index);
        }
    }

    /** Attaches the cover of the index unless the filter keeps it already; a wider one is followed by a resync. */
    private void attachCover(final GuestIndex index)
    {
        attach(index.cover(GuestPrefixes.DEFAULT_MAX));
    }

    /** Attaches a cover unless the filter keeps it already; a wider one is followed by a resync. */
    private void attach(final GuestPrefixes next)
    {
        if (next.equals(filtered))
        {
            return;
        }
        final boolean widened = filtered != null && !filtered.holdsAll(next);
        try
        {
            events.filter(next);
            filtered = next;
            filtersAttached++;
        }
        catch (final NativeException e)
        {
            // The old filter stays; it may drop a new guest's events, which only a dump brings back.
            errors++;
            moved = true;
            LOG.error("conntrack: cannot replace the event filter ({}): resynchronising from dumps", e.getMessage());
            resyncNeeded = true;
            return;
        }
        if (widened)
        {
            resyncAfterWidening = true;
        }
    }

    /**
     * The cover the kernel-side filter keeps now; for tests on the monitor thread.
     *
     * @return the cover, or null before the first filter.
     */
    GuestPrefixes filtered()
    {
        return filtered;
    }

    /**
     * How many filters were attached; for tests on the monitor thread.
     *
     * @return the count.
     */
    long filtersAttached()
    {
        return filtersAttached;
    }

    /**
     * One event or dumped entry; monitor thread. Allocates nothing unless a limit is crossed.
     *
     * @param e the event.
     */
    void onEvent(final ConntrackEvent e)
    {
        listener.onEvent(e);
    }

    private ConntrackSnapshot snapshot()
    {
        return feed.snapshot(overruns, resyncs, errors + hygiene.failures(), hygiene.flowsDeleted());
    }

    /**
     * The ledger, for tests running on an unstarted monitor (the thread that calls {@link #step()} owns it).
     *
     * @return the ledger.
     */
    ConnectionLedger ledger()
    {
        return feed.ledger();
    }

    /**
     * Publishes the stats now; for tests on an unstarted monitor.
     *
     * @return the snapshot.
     */
    ConntrackSnapshot publish()
    {
        published.publish(snapshot());
        return published.snapshot();
    }

    private static void sleepQuietly(final long millis)
    {
        try
        {
            Thread.sleep(millis);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Stops the thread (within the poll timeout) and closes the subscription. Queries queued before run as usual;
     * any still queued once the thread has stopped, or made from now on, fail at once (the API answers an error
     * rather than waiting for ever).
     */
    @Override
    public void close()
    {
        final Thread t;
        synchronized (this)
        {
            commands.stop();
            running = false;
            t = thread;
        }
        commands.wake();
        if (t != null)
        {
            try
            {
                t.join(5000);
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
            }
        }
        commands.failQueued();
        if (events != null)
        {
            events.close();
        }
    }
}
