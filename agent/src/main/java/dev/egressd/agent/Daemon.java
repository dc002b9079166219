package dev.egressd.agent;

import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.NftKernel;
import dev.egressd.core.model.AddressDevice;
import dev.egressd.agent.metrics.RegionMetrics;
import dev.egressd.agent.reconcile.RouterRevisions;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.reconcile.Ledger;
import dev.egressd.agent.reconcile.LocalLedger;
import dev.egressd.agent.reconcile.RegionFeed;
import dev.egressd.agent.reconcile.RegionLedger;
import dev.egressd.agent.region.EtcdRegionStore;
import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.reconcile.KernelStatus;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.api.ApiServer;
import dev.egressd.agent.api.PeerPolicy;
import dev.egressd.agent.config.BadSettingException;
import dev.egressd.agent.config.EgressdConfig;
import dev.egressd.agent.conntrack.ConntrackMonitor;
import dev.egressd.agent.conntrack.ConntrackTable;
import dev.egressd.agent.refusals.KernelCounterWatch;
import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvents;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateStore;
import dev.egressd.agent.state.KernelSeen;
import dev.egressd.agent.metrics.EgressMetrics;
import dev.egressd.agent.conntrack.ConntrackStats;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * The running daemon: load config → check natives → load state → read the kernel → reconcile → serve the API →
 * READY=1; then reconcile every second until SIGTERM, which leaves the kernel state in place.
 */
public final class Daemon
{
    private static final Logger LOG = LoggerFactory.getLogger(Daemon.class);

    /** The running settings: the start-up ones, with the reloadable ones as the last SIGHUP set them. */
    private volatile EgressdConfig config;
    /** Restart-only settings changed in the file (already warned about), with their file value. */
    private Map<String, String> pendingRestart = Map.of();
    private final Path configFile;
    private final Map<String, String> flags;
    private final Kernel kernel;
    private final String version;
    /**
     * Whether the control loop runs on the API's event loop ({@code -Degressd.loop-thread=event-loop}): a change's
     * request is then read, committed and answered on one thread, with no hand-off between threads either way. Not
     * the default: on a loaded 2-core machine it answered sequential changes 2-3x slower, though 8 clients 2.5x
     * faster; on a quiet one it saved no time (p50 0.67 vs 0.70 ms) and lost some under 8 clients (2,970 vs 3,424
     * changes/s) (benchmarks/README.md, "The loop on the event loop").
     */
    static final String LOOP_THREAD = "egressd.loop-thread";
    /**
     * The event loop the control loop shares with the API, or null: the loop has a thread of its own. Read when
     * the daemon is built ({@link #LOOP_THREAD}).
     */
    private final io.netty.channel.EventLoopGroup loopGroup = "event-loop".equals(System.getProperty(LOOP_THREAD))
        ? ApiServer.eventLoop("egressd-control") : null;
    private final ScheduledExecutorService executor = loopGroup != null ? loopGroup.next()
        : Executors.newSingleThreadScheduledExecutor(r ->
        {
            final Thread thread = new Thread(r, "egressd-control");
            thread.setDaemon(true);
            return thread;
        });
    /** Where metrics scrapes run (API socket and metrics-listen alike): never the API's Netty event loop. */
    private final java.util.concurrent.ExecutorService metricsExecutor = Executors.newSingleThreadExecutor(r ->
    {
        final Thread thread = new Thread(r, "egressd-metrics");
        thread.setDaemon(true);
        return thread;
    });
    private final CountDownLatch stopped = new CountDownLatch(1);
    private final SdNotify notify = new SdNotify(System.getenv("NOTIFY_SOCKET"));
    private StateStore store;
    /** A load of the state begun before the daemon was built, taken by the start; null once taken. */
    private StateLoad stateLoad;
    private ControlLoop loop;
    private ApiServer api;
    /** Set and read on {@link #metricsExecutor} only. */
    private PrometheusMeterRegistry registry;
    private volatile EgressMetrics metrics;
    private volatile ConntrackStats ledgerStats = ConntrackStats.NONE;
    private ConntrackMonitor conntrack;
    private KernelCounterWatch counterWatch;
    private RegionStore regionStore;
    private RegionLedger regionLedger;
    private RegionFeed regionFeed;

    /**
     * Creates the daemon.
     *
     * @param config     the settings.
     * @param configFile the config file (re-read on SIGHUP), or null for the default.
     * @param flags      the command-line settings (they keep winning on SIGHUP).
     * @param kernel     the kernel.
     * @param version    the version.
     */
    public Daemon(final EgressdConfig config, final Path configFile, final Map<String, String> flags,
        final Kernel kernel, final String version)
    {
        this.config = config;
        this.configFile = configFile;
        this.flags = flags;
        this.kernel = kernel;
        this.version = version;
    }

    /**
     * Starts everything; returns once the API serves and systemd has been told READY=1.
     *
     * @throws Exception if start-up fails; the message is the one line the operator sees.
     */
    public void start() throws Exception
    {
        final long t0 = System.nanoTime();
        final StartupPhases phases = new StartupPhases(t0);
        // The metrics registry (with the JVM's own meters) and the API's event loop are built on a thread of their
        // own meanwhile: most of their cost is loading and initialising classes, which then overlaps the state's
        // load and the kernel's sync. Neither touches the loop, and nothing is bound or answered before the kernel
        // is in sync (docs/design.md).
        final CompletableFuture<Prepared> prepared = CompletableFuture.supplyAsync(this::prepare, r ->
        {
            final Thread thread = new Thread(r, "egressd-prepare");
            thread.setDaemon(true);
            thread.start();
        });
        try
        {
            start(t0, phases, prepared);
        }
        catch (final Exception | Error e)
        {
            // a start that failed before taking the prepared server closes it; one it took is closed by stop(); the
            // loop's thread (the server's event loop too) is stopped here only if nothing took the loop, which
            // stop() then still has to snapshot
            prepared.thenAccept(ready ->
            {
                if (ready.api() != api)
                {
                    ready.api().close();
                }
            });
            if (loop == null && loopGroup != null)
            {
                loopGroup.shutdownGracefully(0, 1, TimeUnit.SECONDS);
            }
            throw e;
        }
    }

    /** What {@link #prepare()} built off the start-up's path. */
    private record Prepared(PrometheusMeterRegistry registry, ApiServer api)
    {
    }

    private Prepared prepare()
    {
        final PrometheusMeterRegistry r = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        EgressMetrics.bindProcessMeters(r); // first: it adds a meter filter
        // root only until start() sets the api-group's policy, before the socket is bound
        return new Prepared(r, loopGroup != null ? new ApiServer(PeerPolicy.ROOT_ONLY, loopGroup)
            : new ApiServer(PeerPolicy.ROOT_ONLY));
    }

    /**
     * The state directory locked and its snapshot and journal read on a thread of their own, begun before the
     * daemon is built ({@link #loadState}): the read (Jackson over the whole snapshot, 0.2-0.3 s at 4,000 machines)
     * then overlaps the kernel checks (libnftables bound through JNR), instead of following them.
     */
    public static final class StateLoad
    {
        private final CompletableFuture<StateStore> store;
        private final CompletableFuture<StateStore.Loaded> loaded;

        private StateLoad(final Path dir)
        {
            store = CompletableFuture.supplyAsync(() ->
            {
                // compaction snapshots on their own thread: a change never waits for the whole state to be written
                final StateStore s = new StateStore(dir).snapshotsInBackground().preallocated();
                try
                {
                    s.lock();
                }
                catch (final IOException e)
                {
                    throw new java.io.UncheckedIOException(e);
                }
                return s;
            }, r ->
            {
                final Thread thread = new Thread(r, "egressd-state");
                thread.setDaemon(true);
                thread.start();
            });
            loaded = store.thenApply(s ->
            {
                try
                {
                    return s.load();
                }
                catch (final IOException e)
                {
                    throw new java.io.UncheckedIOException(e);
                }
            });
        }

        /** The locked store, or the lock's failure as it was thrown. */
        StateStore store() throws IOException
        {
            return join(store);
        }

        /** The load's result, or its failure as it was thrown. */
        StateStore.Loaded loaded() throws IOException
        {
            return join(loaded);
        }

        /** A start that ends before the daemon takes the load: its lock is released (once the load is done). */
        public void abandon()
        {
            try
            {
                loaded(); // a load may move a corrupt file aside: done under the lock
            }
            catch (final IOException | RuntimeException e)
            {
                LOG.debug("state load abandoned: {}", e.toString());
            }
            try
            {
                store().unlock();
            }
            catch (final IOException | RuntimeException e)
            {
                LOG.debug("state load abandoned: {}", e.toString());
            }
        }

        private static <T> T join(final CompletableFuture<T> future) throws IOException
        {
            try
            {
                return future.join();
            }
            catch (final java.util.concurrent.CompletionException e)
            {
                if (e.getCause() instanceof java.io.UncheckedIOException io)
                {
                    throw io.getCause();
                }
                throw e.getCause() instanceof RuntimeException r ? r : e;
            }
        }
    }

    /**
     * Begins locking and reading the state directory on a thread of its own; {@link #stateLoad} hands it to the
     * daemon, whose start then waits for it instead of reading the directory itself.
     *
     * @param dir the state directory.
     * @return the load under way.
     */
    public static StateLoad loadState(final Path dir)
    {
        return new StateLoad(dir);
    }

    /**
     * Uses a load begun by {@link #loadState} (of this daemon's state directory) at start, instead of reading the
     * directory then.
     *
     * @param load the load.
     * @return this.
     */
    public Daemon stateLoad(final StateLoad load)
    {
        this.stateLoad = load;
        return this;
    }

    /**
     * Once the state directory's lock is held (no other egressd runs here): the loop thread opens its kernel handle
     * (the libnftables context, the nf_tables and rtnetlink sockets; the handle belongs to the thread that opens it),
     * asks the ruleset's generation and renders the table's fingerprint, while this thread waits for the state and
     * builds the loop. The first sync then finds them done instead of doing them first (docs/operations.md,
     * "Start-up"). Reads only; a failure here is met again, and reported, by the sync itself.
     */
    private void warmKernel()
    {
        executor.execute(() ->
        {
            try
            {
                kernel.generation();
                kernel.tableFingerprint();
            }
            catch (final RuntimeException e)
            {
                LOG.debug("kernel: opening the handle ahead of the first sync: {}", e.toString());
            }
        });
    }

    private void start(final long t0, final StartupPhases phases, final CompletableFuture<Prepared> prepared)
        throws Exception
    {
        final StateStore.Loaded loaded;
        if (stateLoad != null)
        {
            final StateLoad load = stateLoad;
            stateLoad = null;
            store = load.store();
            warmKernel();
            loaded = load.loaded();
        }
        else
        {
            // compaction snapshots on their own thread: a change never waits for the whole state to be written
            store = new StateStore(config.stateDir()).snapshotsInBackground().preallocated();
            store.lock();
            warmKernel();
            loaded = store.load();
        }
        // what the last clean stop saw of the kernel: good for this start only (taken: read and deleted)
        final KernelSeen seen = KernelSeen.take(config.stateDir());
        phases.done("state");
        final DesiredState state = loaded.state() != null ? loaded.state()
            : DesiredState.empty(StateMapper.host(config.hostSettings()));
        if (loaded.state() != null && !state.host().equals(StateMapper.host(config.hostSettings())))
        {
            final String[] moved = StateMapper.layoutProblem(state, config.hostSettings());
            if (moved != null)
            {
                // a setting that would move running machines is refused like any bad setting: nothing changes
                throw new BadSettingException(moved[0], moved[1], moved[2]);
            }
            LOG.info("the state was written under {} and the config now says {}: no placed machine moves",
                state.host(), StateMapper.host(config.hostSettings()));
        }
        final Ledger ledger = ledger();
        loop = ControlLoop.of(config.hostSettings(), state, kernel, store, executor, System::nanoTime,
            System::currentTimeMillis, config.conntrackDrainSeconds(), ledger);
        loop.guestInterfaces(config.guestInterfaces());
        if (loaded.status() == StateStore.Status.LOADED)
        {
            // the plan of the loaded state is built on the loop thread while the rest is wired here
            executor.execute(loop::preparePlan);
        }
        // the reconcile's reads of the kernel on a thread (and kernel handle) of their own: no change waits behind
        // one; this thread is in the daemon's network namespace, as the loop's is
        loop.readsOn(java.util.concurrent.Executors.newSingleThreadExecutor(r ->
        {
            final Thread t = new Thread(r, "egressd-reader");
            t.setDaemon(true);
            return t;
        }));
        final RefusalLog refusals = new RefusalLog(RefusalLog.Format.of(config.logFormat()));
        counterWatch = new KernelCounterWatch(refusals);
        // The conntrack subscription is opened here, on the daemon's own thread, so it watches the namespace
        // egressd runs in; a dry run (in-memory kernel) watches nothing, and its ledger stays empty.
        final ConntrackEvents events = kernel instanceof NftKernel
            ? ConntrackEvents.open(ConntrackEvents.DEFAULT_RECEIVE_BUFFER, ConntrackMonitor.POLL_MILLIS, true) : null;
        conntrack = new ConntrackMonitor(events, config.destinationCap(), refusals, System::nanoTime);
        if (events != null)
        {
            // the fill of the table that a full conntrack silently drops new connections from (docs/metrics.md)
            conntrack.table(ConntrackTable.system());
        }
        loop.attach(conntrack);
        ledgerStats(conntrack.published());
        phases.done("wiring");
        notify.notify("STATUS=reading the kernel table");
        final boolean trusted = executor.submit(() ->
        {
            if (loaded.status() != StateStore.Status.LOADED)
            {
                final int recovered = loop.recoverFromKernel();
                if (loaded.status() == StateStore.Status.CORRUPT || recovered > 0)
                {
                    LOG.error("STATE {}: kept {} kernel elements as they are until the orchestrator re-sends its "
                        + "machines (see GET /v1/state 'recovered'); nothing running moves", loaded.status(),
                        recovered);
                }
            }
            final boolean intact = loaded.status() == StateStore.Status.LOADED;
            return loop.initialSync(intact, intact ? seen : null);
        }).get();
        phases.done("kernel");
        conntrack.start();
        final Prepared ready;
        try
        {
            ready = prepared.join();
        }
        catch (final java.util.concurrent.CompletionException e)
        {
            throw e.getCause() instanceof RuntimeException r ? r : e;
        }
        phases.done("prepared");
        // egressd's own meters (a series per machine: 0.2-0.4 s at 4,000 machines) are bound on the thread every
        // scrape runs on, as its first task: a scrape that comes early waits behind it, the start does not
        metricsExecutor.execute(() ->
        {
            try
            {
                registry = metrics(ready.registry());
            }
            catch (final RuntimeException e)
            {
                LOG.error("metrics: binding egressd's meters failed; scrapes fail", e);
            }
        });
        final PeerPolicy policy = PeerPolicy.resolve(config.apiGroup());
        api = ready.api();
        api.policy(policy);
        final Supplier<String> scrape = () ->
        {
            metrics.refresh(); // per-machine and per-pair series follow machines and pairs as they come and go
            return registry.scrape();
        };
        api.start(config.apiSocket(), config.apiGroup(), loop, conntrack.queries(), version, scrape,
            metricsExecutor);
        if (config.metricsListen() != null)
        {
            // the same server, bound to TCP with /metrics its only route; one scrape at a time, wherever it comes from
            api.listenMetrics(config.metricsListen(), scrape, metricsExecutor);
        }
        phases.done("api");
        if (regionLedger != null)
        {
            // after the kernel holds the state file's placements: etcd is needed for new placements only
            regionFeed = new RegionFeed(regionStore, regionLedger, loop,
                new RegionStore.HostRecord(config.ledger().hostId(), config.ledger().hostAddresses(), true), System::nanoTime);
            regionFeed.start();
        }
        // a table trusted at start without a read is read whole by the first reconcile, at once (off the writer)
        executor.scheduleWithFixedDelay(this::reconcile, trusted ? 0 : 1000, 1000, TimeUnit.MILLISECONDS);
        executor.scheduleWithFixedDelay(this::kernelCounters, 0, 5, TimeUnit.SECONDS);
        final String watchdog = System.getenv("WATCHDOG_USEC");
        if (watchdog != null && notify.enabled())
        {
            final long half = Math.max(1, Long.parseLong(watchdog) / 2);
            // Pinged from the control loop's own thread: a stuck loop stops the pings and systemd restarts us.
            executor.scheduleWithFixedDelay(() -> notify.notify("WATCHDOG=1"), half, half, TimeUnit.MICROSECONDS);
        }
        final long ms = (System.nanoTime() - t0) / 1_000_000;
        LOG.info("egressd {} serving {} (region {}, uplink {}, pair addresses on {}, table {}) after {} ms", version,
            config.apiSocket(), config.region(), config.uplink(),
            config.pairAddressDevice() == AddressDevice.LO ? "lo" : config.uplink(), config.table(), ms);
        notify.notify("READY=1\nSTATUS=serving; kernel in sync; started in " + ms + " ms");
        LOG.info("start-up phases: {}", phases.line());
        StartupPhases.served();
    }

    private void reconcile()
    {
        try
        {
            final KernelStatus before = loop.health().kernel();
            loop.reconcile();
            loop.regionTick();
            final KernelStatus after = loop.health().kernel();
            if (after != before)
            {
                notify.notify("STATUS=kernel " + after.wireName());
            }
        }
        catch (final RuntimeException e)
        {
            LOG.error("reconcile", e);
        }
    }

    /**
     * Every 5 s on the loop thread: kernel refusal counters that moved become refusal-log lines. Fed from the
     * control loop's cached totals (it reads the kernel's counters once a second, after each reconcile), which never
     * go down: a table rebuild resets the kernel's counters, and the refusals counted after it are logged too.
     */
    private void kernelCounters()
    {
        try
        {
            counterWatch.observe(loop.kernelCounters());
        }
        catch (final RuntimeException e)
        {
            LOG.debug("kernel counters: {}", e.toString());
        }
    }

    /** Binds egressd's own meters to the registry {@link #prepare()} made (the JVM's are already there). */
    private PrometheusMeterRegistry metrics(final PrometheusMeterRegistry r)
    {
        metrics = new EgressMetrics(Objects.requireNonNull(loop));
        metrics.ledger(ledgerStats);
        metrics.bindTo(r);
        if (regionLedger != null)
        {
            new RegionMetrics(regionLedger).bindTo(r);
        }
        return r;
    }

    /**
     * Wires the conntrack feed's figures into the metrics (before or after {@link #start()}).
     *
     * @param stats the figures, or null to report 0 again.
     */
    public void ledgerStats(final ConntrackStats stats)
    {
        ledgerStats = stats == null ? ConntrackStats.NONE : stats;
        final EgressMetrics m = metrics;
        if (m != null)
        {
            m.ledger(ledgerStats);
        }
    }

    /** SIGHUP: re-reads the config; applies what is safe to change live, warns about the rest. */
    public synchronized void reload()
    {
        notify.notify("RELOADING=1\nMONOTONIC_USEC=" + System.nanoTime() / 1000);
        try
        {
            final EgressdConfig next = EgressdConfig.load(configFile, flags);
            final Reload reload = reloaded(config, next, pendingRestart);
            config = reload.config();
            pendingRestart = reload.pending();
            loop.drainSeconds(config.conntrackDrainSeconds());
            LOG.info("reload: conntrack-drain-seconds={}", config.conntrackDrainSeconds());
        }
        catch (final BadSettingException e)
        {
            LOG.error("reload refused, keeping the running settings: {}", e.getMessage());
        }
        notify.notify("READY=1\nSTATUS=serving; reloaded");
    }

    /**
     * What a SIGHUP made of the settings.
     *
     * @param config  the new running settings: the running ones with the reloadable settings just read.
     * @param pending restart-only settings whose file value differs from the running one, with that value.
     * @param warned  the restart-only settings warned about by this reload (changed since the last reload).
     */
    record Reload(EgressdConfig config, Map<String, String> pending, List<String> warned)
    {
    }

    /**
     * The settings after a SIGHUP. The file is compared with the running settings (not the start-up ones), so a
     * reloadable setting changed twice is applied twice and never warned about; a restart-only setting that
     * differs is warned about once per new value and stays pending until the restart.
     *
     * @param running the running settings.
     * @param next    the settings just read.
     * @param pending what the last reload found pending.
     * @return the outcome.
     */
    static Reload reloaded(final EgressdConfig running, final EgressdConfig next, final Map<String, String> pending)
    {
        final Map<String, String> was = running.asMap();
        final Map<String, String> now = next.asMap();
        final Map<String, String> stillPending = new java.util.LinkedHashMap<>();
        final List<String> warned = new java.util.ArrayList<>();
        for (final String key : now.keySet())
        {
            if (!Objects.equals(was.get(key), now.get(key)) && !EgressdConfig.RELOADABLE.contains(key))
            {
                stillPending.put(key, now.get(key));
                if (!Objects.equals(pending.get(key), now.get(key)))
                {
                    warned.add(key);
                    LOG.warn("reload: {} changed from {} to {}; it takes effect only after a restart", key,
                        was.get(key), now.get(key));
                }
            }
        }
        return new Reload(running.withReloadable(next), Map.copyOf(stillPending), List.copyOf(warned));
    }

    /**
     * The ledger the config names: the local one, or the region's etcd (docs/region.md).
     *
     * @return the ledger.
     */
    private Ledger ledger()
    {
        final EgressdConfig.LedgerSettings settings = config.ledger();
        if (!settings.etcd())
        {
            return LocalLedger.INSTANCE;
        }
        final EtcdRegionStore.Tls tls = settings.caFile() == null && settings.certFile() == null ? null
            : new EtcdRegionStore.Tls(settings.caFile(), settings.certFile(), settings.keyFile());
        regionStore = new EtcdRegionStore(settings.endpoints(), settings.prefix(), config.region(),
            java.time.Duration.ofMillis(settings.deadlineMillis()), tls, EtcdRegionStore.DEFAULT_LEASE_TTL);
        regionLedger = new RegionLedger(regionStore, settings.hostId(), config.region(), settings.quarantineSeconds(),
            System::currentTimeMillis, new RouterRevisions(settings.routerConfirmMillis(), System::nanoTime));
        LOG.info("region mode: ledger etcd at {} (prefix {}), host {}", settings.endpoints(), settings.prefix(),
            settings.hostId());
        return regionLedger;
    }

    /** Stops serving and closes everything; the kernel keeps its state so machines keep their egress. */
    public void stop()
    {
        stop(false);
    }

    /**
     * SIGTERM: stops serving; the kernel keeps its state so machines keep their egress.
     *
     * <p>In order: the API closes (nothing more is taken, a request in flight gets no answer); the loop runs what was
     * queued before (each change answered only once in the kernel and on disk) and the stop's snapshot; the region's
     * clients close; the state directory's lock goes. With {@code processEnds} (the daemon's own SIGTERM, which ends
     * the process right after: {@link Egressd}) the threads that only read the kernel (the reconcile's reader, the
     * conntrack monitor, the host-address watchers) are not stopped and waited for: they hold nothing that is not
     * in the kernel already, and waiting for them (each leaves a blocking receive only at its timeout: 0.1-0.5 s)
     * was most of the stop's time (docs/operations.md, "Start-up").
     *
     * @param processEnds whether the process ends right after (then the reading threads are left to it).
     */
    public void stop(final boolean processEnds)
    {
        final StartupPhases phases = new StartupPhases(System.nanoTime(), false);
        notify.notify("STOPPING=1\nSTATUS=stopping; kernel state left in place");
        if (api != null)
        {
            api.close(); // the API socket and metrics-listen
        }
        metricsExecutor.shutdownNow();
        phases.done("api");
        if (loop != null && !executor.isShutdown())
        {
            executor.execute(() ->
            {
                loop.snapshotOnStop(); // after every change queued before it
                recordKernel();
            });
        }
        // the tasks queued before run (the snapshot above among them), the timers are cancelled
        if (loopGroup != null)
        {
            loopGroup.shutdownGracefully(0, 5, TimeUnit.SECONDS);
        }
        else
        {
            executor.shutdown();
        }
        try
        {
            executor.awaitTermination(5, TimeUnit.SECONDS);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
        phases.done("loop");
        if (!processEnds)
        {
            if (loop != null)
            {
                loop.closeReads();
            }
            if (conntrack != null)
            {
                conntrack.close();
            }
            phases.done("readers");
        }
        if (regionFeed != null)
        {
            regionFeed.close();
        }
        if (regionLedger != null)
        {
            regionLedger.close(); // answers still waiting for the routers leave unconfirmed
        }
        if (regionStore != null)
        {
            regionStore.close(); // the liveness lease is left to expire: slots stay, they carry no lease
        }
        if (store != null)
        {
            store.unlock();
        }
        notify.close();
        phases.done("rest");
        LOG.info("egressd stopped; the kernel table and uplink addresses stay in place (stop phases: {})",
            phases.line("stop"));
        stopped.countDown();
    }

    /**
     * On the loop thread, after the last change and the stop's snapshot: what the kernel holds, for the next start
     * ({@link KernelSeen}); nothing when no read proved the table since the last change.
     */
    private void recordKernel()
    {
        try
        {
            final KernelSeen seen = loop.kernelSeen();
            if (seen != null)
            {
                seen.writeTo(config.stateDir());
            }
            else
            {
                LOG.info("stop: no read proved the kernel's table since the last change; the next start reads it");
            }
        }
        catch (final IOException | RuntimeException e)
        {
            LOG.warn("stop: {} not written ({}); the next start reads the kernel", KernelSeen.FILE, e.toString());
        }
    }

    /**
     * Waits until {@link #stop()} has finished.
     *
     * @throws InterruptedException if interrupted.
     */
    public void awaitStop() throws InterruptedException
    {
        stopped.await();
    }
}
