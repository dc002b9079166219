package dev.egressd.agent.testing;

import dev.egressd.agent.kernel.KernelException;
import dev.egressd.agent.kernel.MemoryKernel;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.reconcile.MutationResult;
import dev.egressd.agent.reconcile.Operation;
import dev.egressd.agent.reconcile.RegionFeed;
import dev.egressd.agent.reconcile.RegionLedger;
import dev.egressd.agent.reconcile.RouterRevisions;
import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.PlanChange;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * One host of a region in-process, as a dry-run daemon is: an in-memory kernel that outlives restarts (as the
 * real kernel outlives a {@code kill -9}), a state directory, the single-writer loop with the region ledger, the
 * feed, and the once-a-second region tick. Tests drive it as the API would (each call is one loop mutation).
 */
public final class RegionHost implements AutoCloseable
{
    /** An in-memory kernel that counts the changes applied to it. */
    public static final class CountingKernel extends MemoryKernel
    {
        private final AtomicLong applied = new AtomicLong();
        private volatile boolean failing;

        @Override
        public synchronized void apply(final List<PlanChange> changes) throws KernelException
        {
            if (failing)
            {
                throw new KernelException("refused by the test");
            }
            super.apply(changes);
            applied.addAndGet(changes.size());
        }

        /**
         * Makes every apply fail (or succeed again), as a kernel that refuses.
         *
         * @param fail whether applies fail.
         */
        public void failing(final boolean fail)
        {
            failing = fail;
        }

        /** @return changes applied so far. */
        public long applied()
        {
            return applied.get();
        }
    }

    private final String id;
    private final HostSettings settings;
    private final Path dir;
    private final Supplier<RegionStore> stores;
    private final int quarantineSeconds;
    private final CountingKernel kernel = new CountingKernel();

    private StateStore store;
    private RegionStore regionStore;
    private RegionLedger ledger;
    private RegionFeed feed;
    private ScheduledExecutorService executor;
    private ControlLoop loop;
    private final int routerConfirmMillis;

    /**
     * Creates and starts a host.
     *
     * @param id                the host id.
     * @param settings          region and layout.
     * @param dir               its state directory.
     * @param stores            makes its region store client (one per start, as a daemon opens one).
     * @param quarantineSeconds the quarantine of deleted hosts' blocks.
     * @throws Exception if it cannot start.
     */
    public RegionHost(final String id, final HostSettings settings, final Path dir, final Supplier<RegionStore> stores,
        final int quarantineSeconds) throws Exception
    {
        this(id, settings, dir, stores, quarantineSeconds, RouterRevisions.DEFAULT_CONFIRM_MILLIS);
    }

    /**
     * Creates and starts a host whose placements wait for the region's routers up to a time.
     *
     * @param id                  the host id.
     * @param settings            region and layout.
     * @param dir                 its state directory.
     * @param stores              makes its region store client (one per start, as a daemon opens one).
     * @param quarantineSeconds   the quarantine of deleted hosts' blocks.
     * @param routerConfirmMillis {@code router-confirm-ms}.
     * @throws Exception if it cannot start.
     */
    public RegionHost(final String id, final HostSettings settings, final Path dir, final Supplier<RegionStore> stores,
        final int quarantineSeconds, final int routerConfirmMillis) throws Exception
    {
        this.routerConfirmMillis = routerConfirmMillis;
        this.id = id;
        this.settings = settings;
        this.dir = dir;
        this.stores = stores;
        this.quarantineSeconds = quarantineSeconds;
        start();
    }

    /**
     * Starts (again, after {@link #kill()}): from the state file, onto the kernel as it was left.
     *
     * @throws Exception if it cannot start.
     */
    public void start() throws Exception
    {
        store = new StateStore(dir);
        final StateStore.Loaded loaded = store.load();
        final DesiredState state = loaded.state() != null ? loaded.state()
            : DesiredState.empty(StateMapper.host(settings));
        regionStore = stores.get();
        ledger = new RegionLedger(regionStore, id, settings.region(), quarantineSeconds, System::currentTimeMillis,
            new RouterRevisions(routerConfirmMillis, System::nanoTime));
        executor = Executors.newSingleThreadScheduledExecutor(r ->
        {
            final Thread t = new Thread(r, "region-host-" + id);
            t.setDaemon(true);
            return t;
        });
        loop = ControlLoop.of(settings, state, kernel, store, executor, System::nanoTime, System::currentTimeMillis, 0,
            ledger);
        executor.submit(() ->
        {
            loop.initialSync(loaded.status() == StateStore.Status.LOADED);
            return null;
        }).get();
        feed = new RegionFeed(regionStore, ledger, loop, new RegionStore.HostRecord(id, List.of(), true),
            System::nanoTime);
        feed.start();
        executor.scheduleWithFixedDelay(loop::regionTick, 200, 200, TimeUnit.MILLISECONDS);
    }

    /** Stops without any goodbye, as {@code kill -9} does: the kernel and the state file stay as they are. */
    public void kill()
    {
        feed.close();
        executor.shutdownNow();
        try
        {
            executor.awaitTermination(5, TimeUnit.SECONDS);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
        ledger.close();
        regionStore.close();
    }

    @Override
    public void close()
    {
        kill();
    }

    /** @return the host id. */
    public String id()
    {
        return id;
    }

    /** @return the in-memory kernel (it outlives restarts). */
    public CountingKernel kernel()
    {
        return kernel;
    }

    /** @return the control loop of the running start (for an API server in front of it). */
    public ControlLoop loop()
    {
        return loop;
    }

    /** @return the region ledger of the running start. */
    public RegionLedger ledger()
    {
        return ledger;
    }

    /**
     * Waits until the ledger is available (the feed's full read was applied).
     *
     * @param timeout how long at most.
     * @return true if it became available.
     * @throws InterruptedException if interrupted.
     */
    public boolean awaitAvailable(final Duration timeout) throws InterruptedException
    {
        final long end = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < end)
        {
            if (ledger.available())
            {
                return true;
            }
            Thread.sleep(20);
        }
        return ledger.available();
    }

    private MutationResult mutate(final String what, final ControlLoop.Mutation mutation) throws Exception
    {
        return loop.mutate(Operation.OTHER, what, mutation).get(30, TimeUnit.SECONDS);
    }

    /**
     * {@code PUT /v1/apps/{app}}.
     *
     * @param app        the app.
     * @param failClosed its flag.
     * @return the result.
     * @throws Exception if the loop fails.
     */
    public MutationResult putApp(final String app, final boolean failClosed) throws Exception
    {
        return mutate("put app", l -> l.ledger().putApp(l.allocator(), app, failClosed));
    }

    /**
     * {@code POST /v1/apps/{app}/pairs}.
     *
     * @param app  the app.
     * @param ipv4 the pair's IPv4.
     * @param ipv6 the pair's IPv6.
     * @return the result.
     * @throws Exception if the loop fails.
     */
    public MutationResult addPair(final String app, final String ipv4, final String ipv6) throws Exception
    {
        final EgressPair pair = new EgressPair(Ipv4Address.parse(ipv4), Ipv6Address.parse(ipv6), settings.region());
        return mutate("add pair", l -> l.ledger().addPair(l.allocator(), app, pair));
    }

    /**
     * {@code DELETE /v1/apps/{app}/pairs/{ipv4}}.
     *
     * @param app  the app.
     * @param ipv4 the pair.
     * @return the result.
     * @throws Exception if the loop fails.
     */
    public MutationResult releasePair(final String app, final String ipv4) throws Exception
    {
        return mutate("release pair", l -> l.ledger().releasePair(l.allocator(), app, Ipv4Address.parse(ipv4)));
    }

    /**
     * {@code PUT /v1/machines/{id}} for a machine with a guest IPv4 only.
     *
     * @param machine  the machine id.
     * @param app      its app.
     * @param guest    its guest IPv4 (unique per host).
     * @param fromHost the host it is handed over from, or null.
     * @return the result.
     * @throws Exception if the loop fails.
     */
    public MutationResult putMachine(final String machine, final String app, final String guest,
        final String fromHost) throws Exception
    {
        final Machine m = new Machine(machine, app, "tap-" + machine, Ipv4Address.parse(guest), null, null);
        return mutate("put machine", l -> l.putMachine(m, fromHost));
    }

    /**
     * {@code DELETE /v1/machines/{id}[?handover=true]}.
     *
     * @param machine  the machine.
     * @param handover whether it moves to another host.
     * @return the result.
     * @throws Exception if the loop fails.
     */
    public MutationResult deleteMachine(final String machine, final boolean handover) throws Exception
    {
        return mutate("delete machine", l -> handover ? l.ledger().removeForHandover(l.allocator(), machine)
            : l.allocator().removeMachine(machine));
    }

    /**
     * {@code DELETE /v1/hosts/{id}} with the fencing confirmation.
     *
     * @param host the host.
     * @return the result.
     * @throws Exception if the loop fails.
     */
    public MutationResult deleteHost(final String host) throws Exception
    {
        return mutate("delete host", l -> l.ledger().deleteHost(l.allocator(), host));
    }

    /**
     * A machine's egress.
     *
     * @param machine the machine.
     * @return its egress, or null if unknown here.
     * @throws Exception if the loop fails.
     */
    public Egress egress(final String machine) throws Exception
    {
        return loop.query(l -> l.allocator().egress(machine).orElse(null)).get(30, TimeUnit.SECONDS);
    }

    /**
     * Waits until a machine has a scope (placed, pending, ...) and returns its egress; fails the test if it does not
     * within the timeout.
     *
     * @param machine the machine.
     * @param scope   the scope awaited.
     * @param timeout how long at most.
     * @return its egress.
     * @throws Exception if the loop fails.
     */
    public Egress await(final String machine, final dev.egressd.core.model.Scope scope, final Duration timeout)
        throws Exception
    {
        final long end = System.nanoTime() + timeout.toNanos();
        Egress e = egress(machine);
        while ((e == null || e.scope() != scope) && System.nanoTime() < end)
        {
            Thread.sleep(20);
            e = egress(machine);
        }
        if (e == null || e.scope() != scope)
        {
            throw new AssertionError(machine + " on " + id + " is not " + scope + " within " + timeout + ": "
                + (e == null ? "unknown" : e.scope() + ", " + e.reason()));
        }
        return e;
    }

    /**
     * {@code GET /v1/region}'s figures, built on the loop thread.
     *
     * @return the view.
     * @throws Exception if the loop fails.
     */
    public RegionLedger.View regionView() throws Exception
    {
        return loop.query(l -> ((RegionLedger)l.ledger()).view(l.allocator())).get(30, TimeUnit.SECONDS);
    }

    /**
     * The allocator's pairs as this host sees them.
     *
     * @return the views.
     * @throws Exception if the loop fails.
     */
    public List<EgressAllocator.PairView> pairs() throws Exception
    {
        return loop.query(l -> l.allocator().pairs()).get(30, TimeUnit.SECONDS);
    }
}
