package dev.egressd.agent.reconcile;

import dev.egressd.agent.conntrack.ConntrackMonitor;
import dev.egressd.agent.kernel.HostAddresses;
import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.KernelException;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateChange;
import dev.egressd.agent.state.StateExport;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.StateStore;
import dev.egressd.agent.state.KernelSeen;
import dev.egressd.agent.natives.Boot;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.MachineMirror;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.function.Function;
import java.util.function.LongSupplier;

/**
 * The daemon's single writer: every mutation, query and reconcile runs on one executor thread, so the allocator,
 * the kernel handles and the state file need no locks (docs/design.md, "The control plane"). Two things run beside
 * it without touching its state: the reconcile's reads of the kernel ({@link KernelReads}, with a kernel handle of
 * their own) and the state's compaction snapshots ({@link StateStore#snapshotsInBackground()}).
 *
 * <p>A mutation: apply it to the allocator (a refusal changes nothing) → put the kernel in line ({@link Reconciler})
 * → persist the state → answer. The answer leaves only after the kernel holds the change (the readiness gate). If
 * the kernel or the disk fails, the allocator is rebuilt from the last persisted state and the kernel is put back,
 * so nothing changes.
 *
 * <p>Group commit: mutations that queue while one is in flight are taken together, up to {@value #MAX_BATCH}: each
 * is applied to the allocator in turn (each keeps its own refusal or outcome, and sees the ones before it, as if
 * run one by one), then all go to the kernel in one sync and to disk in one journal record, and are answered after
 * both. If the kernel or the disk fails, the whole batch is undone and every change of it is answered unavailable:
 * the failure is the kernel's or the disk's, not one change's, and retrying each alone would only repeat it while
 * the queue behind grows. A mutation that throws undoes the batch; the others are then run again without it.
 * Mutations are grouped only with a ledger that allows it ({@link Ledger#groupsMutations()}).
 *
 * <p>The desired plan is the allocator's plus the {@link RecoveredElements} not yet claimed plus the
 * {@link DrainingAddresses}; the {@link Reconciler} also repairs drift once a second ({@link #reconcile()}), from a
 * read that runs off the loop thread once {@link #readsOn} is set ({@link KernelReads}).
 */
public final class ControlLoop implements LoopStats
{
    private static final Logger LOG = LoggerFactory.getLogger(ControlLoop.class);

    /** The guest-interfaces pattern assumed until {@link #guestInterfaces(String)} says otherwise (the default). */
    public static final String DEFAULT_GUEST_INTERFACES = "tap-*";

    /** A change to the allocator, run on the loop thread. */
    @FunctionalInterface
    public interface Mutation
    {
        /**
         * Runs the change.
         *
         * @param loop the loop, for its allocator and recovered elements.
         * @return the allocator's outcome; on a refusal the mutation must have changed nothing.
         */
        Outcome apply(ControlLoop loop);
    }

    /**
     * Every how many reconciles (one a second) the incremental desired plan is checked against a whole build: a
     * whole build costs what every change cost before it was incremental, so once a minute.
     */
    static final int PLAN_CHECK_EVERY = 60;

    /** The most mutations one commit carries: bounds the wait of the first behind the last. */
    public static final int MAX_BATCH = 256;

    /** A queued mutation and its answer. */
    private record Pending(Operation operation, String what, Mutation mutation, Function<ControlLoop, ?> view,
        long queued, CompletableFuture<MutationResult> answer)
    {
    }

    private final java.util.concurrent.ConcurrentLinkedQueue<Pending> pending =
        new java.util.concurrent.ConcurrentLinkedQueue<>();
    private volatile long batches;

    private final HostSettings settings;
    private final Kernel kernel;
    private final StateStore store;
    private final Executor executor;
    private final LongSupplier nanoTime;
    private final RecoveredElements recovered;
    private final DrainingAddresses draining;
    private final KernelReads reads;
    private final Reconciler reconciler;
    private final DesiredPlanCache plans;
    /**
     * The machines as last scanned, shared by the incremental consumers below (the plan, the export, the conntrack
     * feed): one scan of the allocator per change serves them all.
     */
    private final MachineMirror mirror = new MachineMirror();
    /** The state to persist, kept up to date by what changed. */
    private final StateExport export = new StateExport(mirror);
    /** Reconciles until the next check of the incremental desired plan against a whole build. */
    private int untilPlanCheck = PLAN_CHECK_EVERY;
    private volatile long planMismatches;
    private final MonitorFeed monitor = new MonitorFeed(mirror);
    private final Ledger ledger;

    private EgressAllocator allocator;
    private DesiredState committed;
    /** The guest-interfaces pattern (a name, or a prefix ending in {@code *}): machines must use a matching one. */
    private volatile String guestInterfaces = DEFAULT_GUEST_INTERFACES;
    /** Whether {@link #initialSync} finished. Loop thread only. */
    private boolean synced;
    /**
     * Whether {@link #published} lags the allocator: set by every batch that changed something, cleared when the
     * snapshot is built again, which a reader on another thread asks of the loop ({@link #published()}) and the
     * reconcile does once a second; written on the loop thread only.
     */
    private volatile boolean publishStale;
    /** The thread that last ran a batch or a reconcile: the loop's. */
    private volatile Thread loopThread;
    /** When the kernel held the running mutation's change; -1 until it does. Loop thread only. */
    private long kernelHeldAt;
    /** When the running commit's pieces ended (System.nanoTime, 0: not reached), for {@link CommitEvent}. */
    private long allocatedAt;
    private long kernelAt;
    private long exportedAt;
    private long journaledAt;
    private long monitorNanos;
    /** The running batch's log line, written after its answers; null: none. Loop thread only. */
    private CommittedLine committedLine;

    // Published for readers on other threads (metrics): written on the loop thread only, each an immutable value.
    private volatile EgressAllocator.Snapshot published;
    private volatile ChangeObserver changeObserver = ChangeObserver.NONE;
    /** Why the state file cannot be written, or null; see {@link #stateProblem()}. */
    private volatile String stateProblem;
    private volatile long stateWriteFailures;
    /** The state the loop was built from (what an intact state file holds). */
    private final DesiredState loaded;

    private ControlLoop(final HostSettings settings, final DesiredState state, final EgressAllocator allocator,
        final Set<PlanElement> recovered, final Kernel kernel, final StateStore store, final Executor executor,
        final LongSupplier nanoTime, final LongSupplier wallMillis, final int drainSeconds,
        final DesiredState loaded, final Ledger ledger)
    {
        this.ledger = ledger;
        this.settings = settings;
        this.committed = state;
        this.allocator = allocator;
        this.recovered = new RecoveredElements(settings, recovered);
        this.kernel = kernel;
        this.store = store;
        this.executor = executor;
        this.nanoTime = nanoTime;
        this.draining = new DrainingAddresses(nanoTime, wallMillis, drainSeconds);
        this.reads = new KernelReads(kernel, nanoTime);
        this.plans = new DesiredPlanCache(settings.pairAddressDevice(), () -> this.allocator, this::extraElements,
            () -> this.recovered.holding(this.allocator), mirror);
        this.reconciler = new Reconciler(kernel, reads, plans, draining, nanoTime);
        this.published = allocator.snapshot();
        this.loaded = loaded;
    }

    /**
     * Builds a loop from a loaded state, without touching the kernel yet.
     *
     * @param settings     the host settings.
     * @param state        the state (an empty one for a fresh start).
     * @param kernel       the kernel.
     * @param store        the store.
     * @param executor     the loop's thread (tests pass a direct executor).
     * @param nanoTime     the clock for back-off and address draining.
     * @param drainSeconds how long a released egress address stays on the uplink.
     * @return the loop.
     */
    public static ControlLoop of(final HostSettings settings, final DesiredState state, final Kernel kernel,
        final StateStore store, final Executor executor, final LongSupplier nanoTime, final int drainSeconds)
    {
        return of(settings, state, kernel, store, executor, nanoTime, System::currentTimeMillis, drainSeconds);
    }

    /**
     * Builds a loop from a loaded state, without touching the kernel yet, with a given wall clock (the state
     * file keeps drain deadlines on it).
     *
     * @param settings     the host settings.
     * @param state        the state (an empty one for a fresh start).
     * @param kernel       the kernel.
     * @param store        the store.
     * @param executor     the loop's thread.
     * @param nanoTime     the clock.
     * @param wallMillis   the wall clock, milliseconds since the epoch.
     * @param drainSeconds the drain time.
     * @return the loop.
     */
    public static ControlLoop of(final HostSettings settings, final DesiredState state, final Kernel kernel,
        final StateStore store, final Executor executor, final LongSupplier nanoTime, final LongSupplier wallMillis,
        final int drainSeconds)
    {
        return of(settings, state, kernel, store, executor, nanoTime, wallMillis, drainSeconds, LocalLedger.INSTANCE);
    }

    /**
     * Builds a loop whose slots and region objects are owned by a ledger (the region's etcd in region mode).
     *
     * @param settings     the host settings.
     * @param state        the state.
     * @param kernel       the kernel.
     * @param store        the store.
     * @param executor     the loop's thread.
     * @param nanoTime     the clock.
     * @param wallMillis   the wall clock, milliseconds since the epoch.
     * @param drainSeconds the drain time.
     * @param ledger       the ledger.
     * @return the loop.
     */
    public static ControlLoop of(final HostSettings settings, final DesiredState state, final Kernel kernel,
        final StateStore store, final Executor executor, final LongSupplier nanoTime, final LongSupplier wallMillis,
        final int drainSeconds, final Ledger ledger)
    {
        final StateMapper.Rebuilt rebuilt = StateMapper.rebuild(settings, state, System.nanoTime(), ledger.slots());
        for (final String problem : rebuilt.problems())
        {
            LOG.warn("state: could not restore {}", problem);
        }
        ledger.attach(rebuilt.allocator());
        final Set<PlanElement> recovered = RecoveredElements.fromState(state.recovered());
        final ControlLoop loop = new ControlLoop(settings, StateMapper.export(rebuilt.allocator(), recovered),
            rebuilt.allocator(), recovered, kernel, store, executor, nanoTime, wallMillis, drainSeconds, state, ledger);
        loop.draining.restore(state.draining());
        return loop;
    }

    /**
     * Sets the guest-interfaces pattern (from the config, at start-up): a machine whose interface does not match
     * it is refused, because the ruleset only sees guests on matching interfaces (anti-spoofing, the destination
     * cap, fail-closed and the NAT would all miss it).
     *
     * @param pattern a name, or a prefix ending in {@code *}; null checks nothing.
     */
    public void guestInterfaces(final String pattern)
    {
        guestInterfaces = pattern;
    }

    /**
     * Whether an interface name matches a guest-interfaces pattern (nft wildcard: a trailing {@code *} matches
     * any rest, including none).
     *
     * @param pattern the pattern, or null (anything matches).
     * @param iface   the interface name.
     * @return true if it matches.
     */
    public static boolean matchesGuestInterfaces(final String pattern, final String iface)
    {
        if (pattern == null)
        {
            return true;
        }
        if (iface == null)
        {
            return false;
        }
        return pattern.endsWith("*") ? iface.startsWith(pattern.substring(0, pattern.length() - 1))
            : iface.equals(pattern);
    }

    /**
     * The host settings.
     *
     * @return the settings.
     */
    public HostSettings settings()
    {
        return settings;
    }

    /**
     * The allocator; only for mutations and queries running on the loop thread.
     *
     * @return the allocator.
     */
    public EgressAllocator allocator()
    {
        return allocator;
    }

    /**
     * Who owns the slots and region objects; only on the loop thread.
     *
     * @return the ledger.
     */
    public Ledger ledger()
    {
        return ledger;
    }

    /**
     * Once a second on the loop thread, in region mode: retries what waits on the region ledger (placements of
     * waiting machines, releases) and ends quarantines, as a mutation of its own when there is something to do.
     */
    public void regionTick()
    {
        if (ledger.wantsTick(allocator))
        {
            runBatch(List.of(new Pending(Operation.REGION_SYNC, "region retry", l -> l.ledger.tick(l.allocator), null,
                nanoTime.getAsLong(), new CompletableFuture<>())));
        }
    }

    /**
     * Recovered kernel elements not yet claimed; only on the loop thread.
     *
     * @return the live set.
     */
    public Set<PlanElement> recovered()
    {
        return recovered.elements();
    }

    /**
     * Attaches the conntrack monitor: after every committed change (and the initial sync) it is told the machines,
     * and every refusal goes to its refusal log. Call before {@link #initialSync()}.
     *
     * @param monitor the monitor.
     */
    public void attach(final ConntrackMonitor monitor)
    {
        this.monitor.attach(monitor);
    }

    /**
     * Moves the reconcile's reads and checks of the kernel off the loop thread, onto a reader with its own kernel
     * handle ({@link Kernel#reader()}, opened on that thread at its first read), so no change waits behind a read.
     * Call before the first {@link #reconcile()}. Without it they run on the loop thread, with the loop's handle.
     *
     * @param reader one thread in the loop's network namespace; shut down by {@link #closeReads()}.
     */
    public void readsOn(final java.util.concurrent.ExecutorService reader)
    {
        reads.onThread(reader, executor);
    }

    /** Closes the reader's kernel handle on its thread and stops it (at the daemon's stop). */
    public void closeReads()
    {
        reads.close();
    }

    /**
     * Changes how long released egress addresses stay on the uplink (SIGHUP).
     *
     * @param seconds the new drain time.
     */
    public void drainSeconds(final int seconds)
    {
        draining.drainSeconds(seconds);
    }

    /**
     * Runs a mutation on the loop thread.
     *
     * @param operation what it does, for the metrics.
     * @param what      a short description for logs (ids included).
     * @param mutation  the change.
     * @return the result, completed once the kernel holds the change and the state is on disk.
     */
    public CompletableFuture<MutationResult> mutate(final Operation operation, final String what,
        final Mutation mutation)
    {
        return mutate(operation, what, mutation, null);
    }

    /**
     * Runs a mutation on the loop thread and, if it succeeds, builds the answer's view in the same task, so the
     * view shows exactly this mutation's result (no other mutation can run in between).
     *
     * @param operation what it does, for the metrics.
     * @param what      a short description for logs (ids included).
     * @param mutation  the change.
     * @param view      builds the view from the loop after the change (on the loop thread), or null.
     * @return the result; an {@link MutationResult.Ok} carries the view.
     */
    public CompletableFuture<MutationResult> mutate(final Operation operation, final String what,
        final Mutation mutation, final Function<ControlLoop, ?> view)
    {
        Objects.requireNonNull(operation, "operation");
        final Pending p = new Pending(operation, what, mutation, view, nanoTime.getAsLong(), new CompletableFuture<>());
        pending.add(p);
        try
        {
            executor.execute(this::drain);
        }
        catch (final RuntimeException e)
        {
            pending.remove(p);
            throw e;
        }
        return p.answer();
    }

    /**
     * How many commits mutations went through (a group of several counts once).
     *
     * @return the count.
     */
    public long batches()
    {
        return batches;
    }

    /** On the loop thread: takes what queued (one task per mutation, so none is left behind) and runs it. */
    private void drain()
    {
        final int max = ledger.groupsMutations() ? MAX_BATCH : 1;
        final List<Pending> batch = new ArrayList<>();
        Pending p;
        while (batch.size() < max && (p = pending.poll()) != null)
        {
            batch.add(p);
        }
        if (batch.isEmpty())
        {
            return;
        }
        try
        {
            runBatch(batch);
        }
        catch (final RuntimeException e)
        {
            LOG.error("a batch of {} changes failed", batch.size(), e);
            for (final Pending q : batch)
            {
                q.answer().completeExceptionally(e);
            }
        }
    }

    /** Runs a batch, answers each of it, and keeps the metrics. */
    private void runBatch(final List<Pending> batch)
    {
        loopThread = Thread.currentThread();
        final long started = System.nanoTime();
        kernelHeldAt = -1;
        allocatedAt = 0;
        kernelAt = 0;
        exportedAt = 0;
        journaledAt = 0;
        monitorNanos = 0;
        committedLine = null;
        final MutationResult[] results = new MutationResult[batch.size()];
        run(batch, results);
        batches++;
        boolean changed = false;
        for (final MutationResult result : results)
        {
            changed |= !(result instanceof MutationResult.Refused);
        }
        if (changed)
        {
            // the snapshot walks every machine and pair: not once per change, but when a reader asks for it (a
            // metrics scrape) or the next reconcile comes (once a second), whichever is first
            publishStale = true;
        }
        for (int i = 0; i < batch.size(); i++)
        {
            final MutationResult result = results[i];
            final boolean done = result instanceof MutationResult.Ok;
            final ChangeObserver.Outcome outcome = done ? ChangeObserver.Outcome.OK
                : result instanceof MutationResult.Refused ? ChangeObserver.Outcome.REFUSED
                : ChangeObserver.Outcome.UNAVAILABLE;
            final long nanos = done && kernelHeldAt != -1 ? Math.max(0, kernelHeldAt - batch.get(i).queued()) : -1;
            try
            {
                changeObserver.changed(batch.get(i).operation(), outcome, nanos);
            }
            catch (final RuntimeException e)
            {
                LOG.warn("change observer failed", e);
            }
        }
        final long answering = System.nanoTime();
        for (int i = 0; i < batch.size(); i++)
        {
            batch.get(i).answer().complete(results[i]);
        }
        final long answered = System.nanoTime();
        final CommittedLine line = committedLine;
        if (line != null)
        {
            // After the answers: the line is a synchronous write to stderr (the journal under systemd, which can
            // be slow to take it), and the kernel and the disk hold the change already. A reader of the log still
            // finds it in the order of the changes: the loop writes it before it takes the next batch.
            committedLine = null;
            LOG.info("{}: {} kernel changes, machines changed {}", line.what(), line.kernelChanges(), line.changed());
        }
        final CommitEvent event = new CommitEvent();
        if (event.isEnabled())
        {
            timed(event, batch, started, answering, answered);
        }
    }

    /** Fills and commits a {@link CommitEvent} from the commit's stamps; a piece not reached counts 0. */
    private void timed(final CommitEvent event, final List<Pending> batch, final long started, final long answering,
        final long answered)
    {
        event.mutations = batch.size();
        event.handoff = Math.max(0, started - batch.get(0).queued());
        long at = started;
        if (allocatedAt != 0)
        {
            event.allocator = allocatedAt - at;
            at = allocatedAt;
        }
        if (kernelAt != 0)
        {
            event.kernel = kernelAt - at;
            at = kernelAt;
        }
        if (exportedAt != 0)
        {
            event.export = exportedAt - at;
            at = exportedAt;
        }
        if (journaledAt != 0)
        {
            event.journal = journaledAt - at;
            at = journaledAt;
        }
        event.after = answering - at;
        event.monitor = monitorNanos;
        event.answers = answered - answering;
        event.logged = System.nanoTime() - answered;
        event.commit();
    }

    /**
     * Runs a read-only query on the loop thread.
     *
     * @param query the query.
     * @param <T>   its result type.
     * @return its result.
     */
    public <T> CompletableFuture<T> query(final Function<ControlLoop, T> query)
    {
        return CompletableFuture.supplyAsync(() -> query.apply(this), executor);
    }

    /**
     * Creates or updates a machine. A new machine whose guest address the kernel still maps (found when the state
     * file was missing or corrupt) is put back on exactly that pair and block, so a lost state file moves nobody.
     *
     * @param machine the machine.
     * @return the outcome.
     */
    public Outcome putMachine(final Machine machine)
    {
        return putMachine(machine, null);
    }

    /**
     * Creates or updates a machine; with {@code fromHost}, takes it over from that host of the region keeping its
     * pair and block ({@link Ledger#handover}).
     *
     * @param machine  the machine.
     * @param fromHost the host it comes from, or null.
     * @return the outcome.
     */
    public Outcome putMachine(final Machine machine, final String fromHost)
    {
        final String pattern = guestInterfaces;
        if (!matchesGuestInterfaces(pattern, machine.iface()))
        {
            return new Outcome.Refusal(Outcome.Reason.INVALID, "interface", "interface " + machine.iface()
                + " does not match guest-interfaces " + pattern + ": its packets would bypass every guest rule "
                + "(anti-spoofing, destination cap, fail-closed) and leave un-NATed");
        }
        if (fromHost != null)
        {
            return ledger.handover(allocator, machine, fromHost);
        }
        if (allocator.machine(machine.id()).isEmpty())
        {
            final Outcome.Refusal elsewhere = ledger.admit(machine.id());
            if (elsewhere != null)
            {
                return elsewhere;
            }
        }
        if (allocator.machine(machine.id()).isEmpty() && !recovered.isEmpty())
        {
            final Outcome restored = recovered.restore(machine, allocator);
            if (restored != null)
            {
                return restored;
            }
        }
        return allocator.upsertMachine(machine);
    }

    /**
     * Forgets every recovered element (the operator says the orchestrator has re-sent all it still wants).
     *
     * @return the outcome.
     */
    public Outcome forgetRecovered()
    {
        return recovered.forget();
    }

    /**
     * Runs a batch: each mutation on the allocator, then one kernel sync and one write for all that were accepted.
     * Fills {@code results} (same order as {@code batch}).
     */
    private void run(final List<Pending> batch, final MutationResult[] results)
    {
        final List<Integer> accepted = new ArrayList<>();
        final Object[] views = new Object[batch.size()];
        final long[] revisions = new long[batch.size()];
        final List<List<String>> changes = new ArrayList<>(java.util.Collections.nCopies(batch.size(), List.of()));
        ledger.begin();
        for (int i = 0; i < batch.size(); i++)
        {
            final Pending p = batch.get(i);
            final String what = p.what();
            final Outcome outcome;
            try
            {
                ledger.takeRevision(); // a failed predecessor's writes are not this mutation's
                outcome = p.mutation().apply(this);
                revisions[i] = ledger.takeRevision();
            }
            catch (final LedgerException e)
            {
                LOG.warn("{}: {}; nothing changed", what, e.getMessage());
                results[i] = e.refusal() != null ? new MutationResult.Refused(e.refusal())
                    : new MutationResult.RegionUnavailable(e.getMessage());
                if (e.refusal() != null)
                {
                    monitor.refused(what, e.refusal());
                }
                undoAndRetryOthers(batch, results, accepted, i);
                return;
            }
            catch (final RuntimeException e)
            {
                LOG.error("{}: allocator failed; restoring the last committed state", what, e);
                results[i] = new MutationResult.Unavailable("internal error: " + e);
                undoAndRetryOthers(batch, results, accepted, i);
                return;
            }
            if (outcome instanceof Outcome.Refusal refusal)
            {
                if (accepted.isEmpty())
                {
                    // nothing of this batch to keep: what the ledger did for this mutation alone is undone
                    ledger.rolledBack();
                    ledger.begin();
                }
                monitor.refused(what, refusal);
                results[i] = new MutationResult.Refused(refusal);
                continue;
            }
            final List<String> reseated = recovered.reseat(allocator);
            if (!reseated.isEmpty())
            {
                LOG.info("{}: put back on their recovered pair and block: {}", what, reseated);
            }
            recovered.prune(allocator);
            accepted.add(i);
            changes.set(i, outcome instanceof Outcome.Done done ? done.changed() : List.of());
            if (p.view() != null)
            {
                // built now, so it shows exactly this mutation's result, as if the batch were run one by one
                try
                {
                    views[i] = p.view().apply(this);
                }
                catch (final RuntimeException e)
                {
                    LOG.error("{}: done, but building the answer failed", what, e);
                }
            }
        }
        allocatedAt = System.nanoTime();
        if (accepted.isEmpty())
        {
            return;
        }
        if (accepted.size() == 1 && ledger.localUnchanged())
        {
            // another host's slot changed in this host's view, nothing of this host's: no kernel or disk work
            ledger.committed();
            final int i = accepted.get(0);
            results[i] = new MutationResult.Ok(changes.get(i), views[i], revisions[i]);
            return;
        }
        final String what = accepted.size() == 1 ? batch.get(accepted.get(0)).what()
            : batch.get(accepted.get(0)).what() + " and " + (accepted.size() - 1) + " more";
        final List<PlanChange> applied;
        try
        {
            applied = reconciler.sync(true);
            kernelHeldAt = nanoTime.getAsLong();
            kernelAt = System.nanoTime();
        }
        catch (final KernelException e)
        {
            LOG.error("{}: the kernel refused the change, nothing changed: {}", what, e.getMessage());
            reconciler.failed(e);
            rollback();
            answerAll(accepted, results, new MutationResult.Unavailable("the kernel cannot be programmed: "
                + e.getMessage()));
            return;
        }
        final DesiredState next = exportState();
        final boolean same = StateChange.same(next, committed);
        exportedAt = System.nanoTime();
        if (!same)
        {
            try
            {
                store.write(next);
                journaledAt = System.nanoTime();
                stateWritten();
            }
            catch (final IOException e)
            {
                final String problem = stateFailed(e);
                LOG.error("{}: the state could not be written ({}), undoing the kernel change", what, problem);
                rollback();
                try
                {
                    reconciler.sync(false);
                }
                catch (final KernelException k)
                {
                    reconciler.failed(k);
                }
                answerAll(accepted, results, new MutationResult.StateUnwritable("the state could not be written: "
                    + problem));
                return;
            }
            commit(next);
        }
        ledger.committed();
        final long telling = System.nanoTime();
        machinesChanged();
        monitorNanos = System.nanoTime() - telling;
        final List<String> changed = new ArrayList<>();
        for (final int i : accepted)
        {
            changed.addAll(changes.get(i));
            results[i] = new MutationResult.Ok(changes.get(i), views[i], revisions[i]);
        }
        if (!applied.isEmpty() || !changed.isEmpty())
        {
            committedLine = new CommittedLine(what, applied.size(), changed);
        }
    }

    /** The log line of a committed batch, written after its answers left ({@link #runBatch}). */
    private record CommittedLine(String what, int kernelChanges, List<String> changed)
    {
    }

    private static void answerAll(final List<Integer> indexes, final MutationResult[] results,
        final MutationResult result)
    {
        for (final int i : indexes)
        {
            results[i] = result;
        }
    }

    /**
     * A mutation threw: the allocator may be half-changed, so the whole batch is undone, and the batch's other
     * mutations (none of them answered yet) run again without it.
     */
    private void undoAndRetryOthers(final List<Pending> batch, final MutationResult[] results,
        final List<Integer> accepted, final int failed)
    {
        rollback();
        final List<Integer> again = new ArrayList<>(accepted);
        for (int i = failed + 1; i < batch.size(); i++)
        {
            again.add(i);
        }
        if (again.isEmpty())
        {
            return;
        }
        final List<Pending> rest = new ArrayList<>();
        for (final int i : again)
        {
            rest.add(batch.get(i));
        }
        final MutationResult[] restResults = new MutationResult[rest.size()];
        run(rest, restResults);
        for (int k = 0; k < again.size(); k++)
        {
            results[again.get(k)] = restResults[k];
        }
    }

    private void commit(final DesiredState next)
    {
        committed = next;
        recovered.commit();
    }

    private void rollback()
    {
        ledger.rolledBack();
        final StateMapper.Rebuilt rebuilt = StateMapper.rebuild(settings, committed, System.nanoTime(),
            ledger.slots());
        for (final String problem : rebuilt.problems())
        {
            LOG.error("rollback: could not restore {}", problem);
        }
        allocator = rebuilt.allocator();
        ledger.attach(allocator);
        recovered.rollback();
    }

    /**
     * The state to persist: the allocator's, the recovered elements, and the addresses still draining.
     *
     * @return the state.
     */
    private DesiredState exportState()
    {
        final DesiredState state = export.export(allocator, recovered.elements());
        return draining.addresses().isEmpty() ? state : state.withDraining(draining.export());
    }

    private void machinesChanged()
    {
        monitor.machinesChanged(allocator, draining.addresses(), draining.drainNanos());
    }

    /**
     * The plan the kernel should hold: the allocator's, plus unclaimed recovered elements, plus released addresses
     * still draining. Built whole ({@link #fullDesiredPlan()}), for tests and benchmarks: the loop's own syncs use the
     * one kept up to date by what changed ({@link DesiredPlanCache}), which is the loop thread's alone.
     *
     * @return the plan.
     */
    public KernelPlan desiredPlan()
    {
        return fullDesiredPlan();
    }

    /** The elements kept besides the allocator's where it plans nothing: recovered ones, then draining addresses. */
    private java.util.Collection<PlanElement> extraElements()
    {
        if (draining.addresses().isEmpty())
        {
            return recovered.elements();
        }
        final List<PlanElement> extra = new ArrayList<>(recovered.elements());
        extra.addAll(draining.addresses());
        return extra;
    }

    /**
     * {@link #desiredPlan()} built whole, from the allocator, the recovered elements and the draining addresses:
     * what the incremental one is checked against.
     *
     * @return the plan.
     */
    public KernelPlan fullDesiredPlan()
    {
        return DesiredPlanCache.build(allocator, extraElements(), recovered.holding(allocator),
            settings.pairAddressDevice());
    }

    /**
     * One reconcile, on the loop thread: starts a read of the kernel (on the reader, see {@link #readsOn}); drift is
     * repaired and drained addresses expired when its result is back on the loop thread.
     */
    public void reconcile()
    {
        loopThread = Thread.currentThread();
        if (--untilPlanCheck <= 0)
        {
            checkDesiredPlan();
        }
        publish();
        reconciler.reconcile();
        if (stateProblem != null)
        {
            // so health clears (and changes are taken again) as soon as there is room, without a change to try
            try
            {
                store.snapshot(committed);
                LOG.info("the state directory is writable again; state written");
                stateWritten();
            }
            catch (final IOException e)
            {
                stateFailed(e);
            }
        }
    }

    /**
     * Checks the incremental desired plan against a whole build; a difference (a change it missed: a bug) is
     * logged, counted ({@link #desiredPlanMismatches()}) and repaired by taking the whole build's plan, which the
     * next sync or reconcile then puts in the kernel.
     *
     * @return true if they were equal.
     */
    boolean checkDesiredPlan()
    {
        untilPlanCheck = PLAN_CHECK_EVERY;
        final boolean same = plans.verify(fullDesiredPlan());
        if (!same)
        {
            planMismatches++;
        }
        return same;
    }

    @Override
    public long desiredPlanMismatches()
    {
        return planMismatches;
    }

    /**
     * Reconciles that found nothing changed (the kernel read as before, no change applied, the desired plan as
     * before) and skipped the plan build and the diff.
     *
     * @return the cumulative count.
     */
    public long idleReconciles()
    {
        return reconciler.idleSkips();
    }

    /**
     * On a clean stop, on the loop thread: the whole state as one snapshot, so {@code state.json} alone holds
     * everything (an egressd from before the journal reads only it) and the next start replays nothing.
     */
    public void snapshotOnStop()
    {
        if (!synced || stateProblem != null)
        {
            // before the first sync the state is not the disk's yet (a start that failed must not write one);
            // with the directory unwritable the files on disk are intact as they are
            return;
        }
        try
        {
            store.snapshotIfChanged(committed);
        }
        catch (final IOException e)
        {
            LOG.warn("stop: the snapshot could not be written ({}); the journal holds the state", e.getMessage());
        }
    }

    private void stateWritten()
    {
        stateProblem = null;
    }

    private String stateFailed(final IOException e)
    {
        final String problem = e instanceof StateStore.StateWriteException ? e.getMessage()
            : StateStore.describe(e, store.file());
        stateWriteFailures++;
        stateProblem = problem;
        return problem;
    }

    /**
     * Start-up: when the state file was missing or corrupt, keep everything the kernel holds as recovered
     * elements, so no running machine loses or changes its egress until the orchestrator re-sends it.
     *
     * @return how many elements were recovered.
     * @throws KernelException if the kernel cannot be read.
     */
    public int recoverFromKernel() throws KernelException
    {
        return recovered.recoverFromKernel(kernel, allocator);
    }

    /**
     * Brings the desired plan up to date with the allocator built from the state, ahead of the first sync: called on
     * the loop thread while the daemon wires the rest (its conntrack subscription), so that the first sync's
     * decision finds the plan built. Changes nothing: the plan follows the allocator, as at every sync.
     */
    public void preparePlan()
    {
        plans.version();
    }

    /**
     * The first sync at start-up (before the API serves): apply the desired plan, persist the state.
     *
     * @throws IOException if the kernel or the disk failed.
     */
    public void initialSync() throws IOException
    {
        initialSync(false);
    }

    /**
     * The first sync at start-up: apply the desired plan, persist the state unless the intact state file already
     * holds exactly it.
     *
     * @param intact whether the loop was built from an intact state file: then a start-up whose state cannot be
     *               written still serves (the file rebuilds the same placements) and changes are refused until it
     *               can be written.
     * @throws IOException if the kernel failed, or the disk failed and the state file was not intact.
     */
    public void initialSync(final boolean intact) throws IOException
    {
        initialSync(intact, null);
    }

    /**
     * The first sync at start-up, as {@link #initialSync(boolean)}; when the record the last clean stop left
     * ({@link #kernelSeen()}) matches the kernel, the boot, the namespace, the table's configuration and the state
     * as they are now, the table is trusted without being read (only the uplink addresses are), and the first
     * reconcile, which the caller then runs at once, reads it whole off the writer (docs/operations.md, "Start-up").
     *
     * @param intact whether the loop was built from an intact state file (see {@link #initialSync(boolean)}).
     * @param record what the last stop saw of the kernel, or null.
     * @return whether the table was trusted (not read).
     * @throws IOException if the kernel failed, or the disk failed and the state file was not intact.
     */
    public boolean initialSync(final boolean intact, final KernelSeen record) throws IOException
    {
        final long t0 = System.nanoTime();
        boolean trusted = false;
        if (record != null)
        {
            final KernelSeen now = kernelNow(kernel.generation());
            final String mismatch = record.mismatch(now);
            if (mismatch == null)
            {
                LOG.info("kernel: the table is as the last stop left it (ruleset generation {}): not read at start; "
                    + "the first reconcile reads it whole, now", record.generation());
                reconciler.initialSyncTrusting(record.generation());
                trusted = true;
            }
            else
            {
                LOG.info("kernel: read at start: {}", mismatch);
            }
        }
        final long t1 = System.nanoTime();
        if (!trusted)
        {
            reconciler.initialSync();
        }
        final long t2 = System.nanoTime();
        finishInitialSync(intact);
        LOG.debug("initial sync: record checked {} ms, kernel synced {} ms, state and feeds {} ms",
            (t1 - t0) / 1_000_000, (t2 - t1) / 1_000_000, (System.nanoTime() - t2) / 1_000_000);
        return trusted;
    }

    /**
     * What the stop leaves for the next start: the ruleset generation at which the kernel was last found holding
     * the desired plan, if nothing was applied since and the kernel's generation is still that one; with the boot,
     * the namespace and the fingerprints. Loop thread, after the last change.
     *
     * @return the record, or null when nothing vouches for the table now (the next start reads it).
     */
    public KernelSeen kernelSeen()
    {
        final long proven = synced ? reconciler.provenGeneration() : -1;
        if (proven < 0 || kernel.generation() != proven)
        {
            return null;
        }
        final KernelSeen seen = kernelNow(proven);
        return seen.table() == null ? null : seen;
    }

    /** The facts a record holds, as they are now, at a given generation. */
    private KernelSeen kernelNow(final long generation)
    {
        return new KernelSeen(Boot.bootId(), Boot.bootMillis(), Boot.netns(), generation, kernel.tableFingerprint(),
            planFingerprint(plans.plan()));
    }

    /**
     * A fingerprint of the table elements of a plan (its uplink addresses are read at every start anyway): a 64-bit
     * hash of each element's fields, summed and xor-ed in two differently mixed lanes (so the order does not
     * matter and nothing is sorted: the stop computes it over every element, interpreted code), and the count.
     * Stable across processes and versions as long as the elements are.
     */
    static String planFingerprint(final KernelPlan plan)
    {
        long sum = 0;
        long xor = 0;
        int n = 0;
        for (final PlanElement e : plan.elements())
        {
            final long h;
            if (e instanceof PlanElement.Snat4 s)
            {
                h = fold(fold(fold(fold(1, s.guest().bits()), s.egress().bits()), s.firstPort()), s.lastPort());
            }
            else if (e instanceof PlanElement.Snat6 s)
            {
                h = fold(fold(fold(fold(fold(fold(2, s.guest().high()), s.guest().low()), s.egress().high()),
                    s.egress().low()), s.firstPort()), s.lastPort());
            }
            else if (e instanceof PlanElement.Static4 s)
            {
                h = fold(3, s.guest().bits());
            }
            else if (e instanceof PlanElement.Static6 s)
            {
                h = fold(fold(4, s.guest().high()), s.guest().low());
            }
            else if (e instanceof PlanElement.Guest4 g)
            {
                h = fold(fold(5, text(g.iface())), g.address().bits());
            }
            else if (e instanceof PlanElement.Guest6 g)
            {
                h = fold(fold(fold(6, text(g.iface())), g.address().high()), g.address().low());
            }
            else if (e instanceof PlanElement.Uplink4 || e instanceof PlanElement.Uplink6)
            {
                continue;
            }
            else
            {
                h = fold(7, text(e.toString()));
            }
            sum += mix(h);
            xor ^= mix(h ^ 0x9E3779B97F4A7C15L);
            n++;
        }
        return Long.toHexString(sum) + "-" + Long.toHexString(xor) + "-" + n;
    }

    private static long fold(final long h, final long v)
    {
        return mix(h * 0x100000001B3L + v);
    }

    /** A text's 64-bit FNV-1a hash (String.hashCode is 32 bits). */
    private static long text(final String s)
    {
        long h = 0xCBF29CE484222325L;
        for (int i = 0; i < s.length(); i++)
        {
            h = (h ^ s.charAt(i)) * 0x100000001B3L;
        }
        return h;
    }

    /** SplitMix64's finaliser. */
    private static long mix(final long x)
    {
        long z = x;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    private void finishInitialSync(final boolean intact) throws IOException
    {
        final DesiredState next = exportState();
        if (!intact || !next.equals(loaded))
        {
            try
            {
                store.write(next);
            }
            catch (final IOException e)
            {
                if (!intact)
                {
                    throw e;
                }
                // The file on disk is intact and rebuilds the same placements: serve, refusing changes (they
                // must be persisted) until the state directory has room again (the reconcile loop retries).
                final String problem = stateFailed(e);
                LOG.error("STATE NOT WRITABLE: {}; serving from the intact state file, changes are refused until "
                    + "it can be written", problem);
            }
        }
        commit(next);
        synced = true;
        published = allocator.snapshot();
        reconciler.markInSync();
        machinesChanged();
    }

    @Override
    public Health health()
    {
        return reconciler.health();
    }

    /**
     * The ARP sysctls that pair addresses on {@code lo} need, as the kernel's last read found them
     * ({@link Kernel#arpSysctls()}).
     *
     * @return null when not checked (pair addresses on the uplink), {@code ok}, or the problem.
     */
    public String arpSysctls()
    {
        return reads.arpSysctls();
    }

    /**
     * The addresses the host holds or routes as its own, as the kernel's last read found them
     * ({@link Kernel#hostAddresses()}): the API refuses them as pair and guest addresses.
     *
     * @return the snapshot.
     */
    public HostAddresses hostAddresses()
    {
        return kernel.hostAddresses();
    }

    @Override
    public String stateProblem()
    {
        return stateProblem;
    }

    @Override
    public long stateWriteFailures()
    {
        return stateWriteFailures;
    }

    @Override
    public EgressAllocator.Snapshot published()
    {
        if (!publishStale)
        {
            return published;
        }
        if (Thread.currentThread() == loopThread)
        {
            return publish();
        }
        try
        {
            // built on the loop thread, which alone reads the allocator; the last one if the loop does not answer
            return query(ControlLoop::publish).get(1, java.util.concurrent.TimeUnit.SECONDS);
        }
        catch (final java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException
            | java.util.concurrent.RejectedExecutionException e)
        {
            return published;
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            return published;
        }
    }

    /** Builds the snapshot again if it lags the allocator; loop thread. */
    private EgressAllocator.Snapshot publish()
    {
        if (publishStale)
        {
            published = allocator.snapshot();
            publishStale = false; // after: a reader that finds it clear finds the new snapshot
        }
        return published;
    }

    @Override
    public Map<String, Long> kernelCounters()
    {
        return reconciler.counters();
    }

    @Override
    public long reconcileRuns()
    {
        return reconciler.runs();
    }

    @Override
    public long reconcileFailures()
    {
        return reconciler.failures();
    }

    @Override
    public long stuckReads()
    {
        return reconciler.stuckReads();
    }

    @Override
    public long reconcileTableReads()
    {
        return reconciler.tableReads();
    }

    @Override
    public long changeBatches()
    {
        return batches;
    }

    @Override
    public long lastReconcileSuccessMillis()
    {
        return reconciler.lastSuccessMillis();
    }

    @Override
    public void observeReconciles(final ReconcileObserver observer)
    {
        reconciler.observeReconciles(observer);
    }

    @Override
    public int destinationCap()
    {
        return settings.destinationCap();
    }

    @Override
    public void observeChanges(final ChangeObserver observer)
    {
        changeObserver = observer == null ? ChangeObserver.NONE : observer;
    }
}
