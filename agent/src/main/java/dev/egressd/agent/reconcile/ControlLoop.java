package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.KernelException;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.conntrack.ConntrackMonitor;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.function.Function;
import java.util.function.LongSupplier;

/**
 * The daemon's single writer: every mutation and every reconcile runs on one executor thread, so the allocator
 * needs no locks (STYLE guidance 3).
 *
 * <p>A mutation: apply it to the allocator (a refusal changes nothing) → plan → diff against what the kernel
 * actually holds → apply to the kernel → persist the state → answer. The answer leaves only after the kernel holds
 * the change (the readiness gate). If the kernel or the disk fails, the allocator is rebuilt from the last
 * persisted state and the kernel is put back, so nothing changes.
 *
 * <p>The reconcile loop ({@link #reconcile()}, every second) reads the kernel back, diffs it against the desired
 * plan, repairs the drift, logs what it repaired and backs off (1 s doubling to 30 s) on repeated kernel errors.
 * Following Cilium's egress gateway, the diff adds what is missing before it removes what is unused.
 */
public final class ControlLoop
{
    private static final Logger LOG = LoggerFactory.getLogger(ControlLoop.class);
    private static final long SECOND = 1_000_000_000L;
    private static final long MAX_BACKOFF = 30 * SECOND;
    private static final long MILLI = 1_000_000L;

    /** The guest-interfaces pattern assumed until {@link #guestInterfaces(String)} says otherwise (the default). */
    public static final String DEFAULT_GUEST_INTERFACES = "tap-*";

    /**
     * When a lingering address goes: on the loop's monotonic clock, and on the wall clock (what the state file
     * keeps, so a restart can convert it back).
     *
     * @param nanos      the deadline on the loop's clock.
     * @param wallMillis the same deadline in milliseconds since the epoch.
     */
    private record Linger(long nanos, long wallMillis)
    {
    }

    /** The kernel's status as {@code GET /v1/health} shows it. */
    public enum KernelStatus
    {
        /** Not read yet. */
        STARTING,
        /** The kernel holds the desired plan. */
        IN_SYNC,
        /** The last reconcile found and repaired drift. */
        REPAIRED_DRIFT,
        /** The kernel could not be read or programmed; retrying with back-off. */
        UNAVAILABLE;

        /**
         * The API's name.
         *
         * @return e.g. {@code in_sync}.
         */
        public String wireName()
        {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /**
     * Health as of the last reconcile or mutation.
     *
     * @param kernel              the kernel's status.
     * @param reconciles          reconcile runs so far.
     * @param repairs             reconciles that had to change the kernel.
     * @param consecutiveFailures kernel errors in a row.
     * @param lastError           the last kernel error, or null.
     * @param lastRepair          what the last repair changed, or null.
     */
    public record Health(KernelStatus kernel, long reconciles, long repairs, int consecutiveFailures, String lastError,
        String lastRepair)
    {
    }

    /** The result of a mutation. */
    public sealed interface Result
    {
    }

    /**
     * Done: the kernel holds the change and the state is on disk.
     *
     * @param changed the ids of machines whose egress changed.
     * @param view    what the mutation's view function returned, built in the same loop task right after the
     *                change (so no other mutation runs in between), or null when none was given or it failed.
     */
    public record Ok(List<String> changed, Object view) implements Result
    {
        /**
         * Done, without a view.
         *
         * @param changed the ids of machines whose egress changed.
         */
        public Ok(final List<String> changed)
        {
            this(changed, null);
        }
    }

    /**
     * Refused by the allocator: nothing changed.
     *
     * @param refusal the refusal.
     */
    public record Refused(Outcome.Refusal refusal) implements Result
    {
    }

    /**
     * The kernel or the disk failed: nothing changed.
     *
     * @param message why.
     */
    public record Unavailable(String message) implements Result
    {
    }

    /**
     * Told about every mutation once it is answered, on the loop thread: it must be quick and must not throw
     * (the metrics binder counts changes and records their latency).
     */
    @FunctionalInterface
    public interface ChangeObserver
    {
        /** Observes nothing. */
        ChangeObserver NONE = (operation, outcome, nanosToKernel) ->
        {
        };

        /**
         * A mutation was answered.
         *
         * @param operation     a bounded name, see {@link #operationOf(String)}.
         * @param outcome       {@code ok}, {@code refused} or {@code unavailable}.
         * @param nanosToKernel for {@code ok}: nanoseconds from the request being queued to the kernel holding
         *                      the change; otherwise -1.
         */
        void changed(String operation, String outcome, long nanosToKernel);
    }

    /** The bounded operation names {@link #operationOf(String)} returns, besides {@code other}. */
    public static final List<String> OPERATIONS = List.of("put_app", "add_pair", "release_pair", "drain_pair",
        "undrain_pair", "put_machine", "delete_machine", "set_machine_pair", "release_machine_pair",
        "promote_machine_pair", "forget_recovered");

    private static final List<String> OPERATION_PREFIXES = List.of("put app ", "add pair ", "release pair ",
        "drain pair ", "undrain pair ", "put machine ", "delete machine ", "set machine-scoped pair ",
        "release machine-scoped pair ", "promote machine-scoped pair ", "forget recovered");

    /**
     * The bounded name of a mutation, for metrics: its description ({@code what} of {@link #mutate}) starts with
     * the operation's words and goes on with ids, which must never become a tag.
     *
     * @param what the description, e.g. {@code "put machine m1"}.
     * @return one of {@link #OPERATIONS}, or {@code other}.
     */
    public static String operationOf(final String what)
    {
        for (int i = 0; i < OPERATION_PREFIXES.size(); i++)
        {
            if (what != null && (what.startsWith(OPERATION_PREFIXES.get(i))
                || what.equals(OPERATION_PREFIXES.get(i).strip())))
            {
                return OPERATIONS.get(i);
            }
        }
        return "other";
    }

    /** An operation on the allocator, run on the loop thread. */
    @FunctionalInterface
    public interface Operation
    {
        /**
         * Runs the operation.
         *
         * @param loop the loop, for its allocator and recovered elements.
         * @return the allocator's outcome; on a refusal the operation must have changed nothing.
         */
        Outcome apply(ControlLoop loop);
    }

    private final HostSettings settings;
    private final Kernel kernel;
    private final StateStore store;
    private final Executor executor;
    private final LongSupplier nanoTime;
    private volatile long drainNanos;

    private EgressAllocator allocator;
    private DesiredState committed;
    private final Set<PlanElement> recovered = new LinkedHashSet<>();
    private Set<PlanElement> committedRecovered = Set.of();
    /** Released uplink addresses kept until their drain deadline; persisted as the state's {@code draining}. */
    private final Map<PlanElement, Linger> lingering = new LinkedHashMap<>();
    /** Draining addresses restored from the state file: kept only if the kernel still holds them. */
    private final Set<PlanElement> restoredLingering = new HashSet<>();
    private LongSupplier wallMillis = System::currentTimeMillis;
    /** The guest-interfaces pattern (a name, or a prefix ending in {@code *}): machines must use a matching one. */
    private volatile String guestInterfaces = DEFAULT_GUEST_INTERFACES;
    private long nextAttempt;
    /** When the reconcile loop may read the kernel again (reads are paced by their cost). */
    private long nextRead;
    /** What the reconcile loop's last read cost. */
    private long lastReadNanos = Long.MAX_VALUE;
    /** What the kernel held after the last successful read or apply; null when unknown. Loop thread only. */
    private KernelPlan lastKnown;
    private volatile Health health = new Health(KernelStatus.STARTING, 0, 0, 0, null, null);
    private volatile ConntrackMonitor conntrack;

    // Published for readers on other threads (metrics): written on the loop thread only, each an immutable value.
    private volatile EgressAllocator.Snapshot published;
    private volatile Map<String, Long> kernelCounters = Map.of();
    private final Map<String, long[]> counterTotals = new LinkedHashMap<>();
    private volatile long reconcileRuns;
    private volatile long reconcileFailures;
    private volatile ChangeObserver changeObserver = ChangeObserver.NONE;
    private long kernelHeldAt;
    private boolean countersFailing;

    /**
     * Creates the loop around a rebuilt allocator.
     *
     * @param settings     the host settings.
     * @param state        the committed state to start from (already rebuilt into {@code allocator}).
     * @param allocator    the allocator.
     * @param recovered    recovered kernel elements to keep until claimed.
     * @param kernel       the kernel.
     * @param store        the state store.
     * @param executor     the single thread everything runs on (tests pass a direct executor).
     * @param nanoTime     the clock for back-off and address draining.
     * @param drainSeconds how long a released egress address stays on the uplink.
     */
    public ControlLoop(final HostSettings settings, final DesiredState state, final EgressAllocator allocator,
        final Set<PlanElement> recovered, final Kernel kernel, final StateStore store, final Executor executor,
        final LongSupplier nanoTime, final int drainSeconds)
    {
        this.settings = settings;
        this.committed = state;
        this.allocator = allocator;
        this.recovered.addAll(recovered);
        this.committedRecovered = Set.copyOf(recovered);
        this.kernel = kernel;
        this.store = store;
        this.executor = executor;
        this.nanoTime = nanoTime;
        this.nextRead = nanoTime.getAsLong();
        this.drainNanos = drainSeconds * SECOND;
        this.published = allocator.snapshot();
    }

    /**
     * Builds a loop from a loaded state, without touching the kernel yet.
     *
     * @param settings     the host settings.
     * @param state        the state (an empty one for a fresh start).
     * @param kernel       the kernel.
     * @param store        the store.
     * @param executor     the loop's thread.
     * @param nanoTime     the clock.
     * @param drainSeconds the drain time.
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
        final StateMapper.Rebuilt rebuilt = StateMapper.rebuild(settings, state, System.nanoTime());
        for (final String problem : rebuilt.problems())
        {
            LOG.warn("state: could not restore {}", problem);
        }
        final Set<PlanElement> recovered = new LinkedHashSet<>();
        for (final DesiredState.Element element : state.recovered())
        {
            try
            {
                recovered.add(StateMapper.fromData(element));
            }
            catch (final IllegalArgumentException e)
            {
                LOG.warn("state: skipping recovered element {}: {}", element, e.getMessage());
            }
        }
        final ControlLoop loop = new ControlLoop(settings, StateMapper.export(rebuilt.allocator(), recovered),
            rebuilt.allocator(), recovered, kernel, store, executor, nanoTime, drainSeconds);
        loop.wallMillis = wallMillis;
        loop.restoreDraining(state.draining());
        return loop;
    }

    /**
     * Puts back the released addresses that were draining when the state was written, converting each wall-clock
     * deadline to the loop's clock. One whose deadline passed while egressd was down is dropped (the first sync
     * then removes it); a deadline further away than the drain time (the wall clock moved back) is cut to it.
     */
    private void restoreDraining(final List<DesiredState.Draining> draining)
    {
        final long nowNanos = nanoTime.getAsLong();
        final long nowWall = wallMillis.getAsLong();
        for (final DesiredState.Draining entry : draining)
        {
            final PlanElement element;
            try
            {
                element = entry.element() == null ? null : StateMapper.fromData(entry.element());
            }
            catch (final IllegalArgumentException e)
            {
                LOG.warn("state: skipping draining element {}: {}", entry, e.getMessage());
                continue;
            }
            if (!(element instanceof PlanElement.Uplink4 || element instanceof PlanElement.Uplink6))
            {
                LOG.warn("state: skipping draining element {}: not an uplink address", entry);
                continue;
            }
            final long left = entry.untilEpochMillis() - nowWall;
            if (left <= 0)
            {
                LOG.info("state: the drain time of released {} ended while egressd was down", element);
                continue;
            }
            final long leftNanos = Math.min(left, drainNanos / MILLI) * MILLI;
            lingering.put(element, new Linger(nowNanos + leftNanos, nowWall + leftNanos / MILLI));
            restoredLingering.add(element);
            LOG.info("state: released {} keeps draining for {} s more", element, leftNanos / SECOND);
        }
    }

    /**
     * The state to persist: the allocator's, the recovered elements, and the addresses still draining.
     *
     * @return the state.
     */
    private DesiredState exportState()
    {
        final DesiredState state = StateMapper.export(allocator, recovered);
        if (lingering.isEmpty())
        {
            return state;
        }
        final List<DesiredState.Draining> draining = new ArrayList<>();
        lingering.forEach((element, linger) ->
            draining.add(new DesiredState.Draining(StateMapper.toData(element), linger.wallMillis())));
        return state.withDraining(draining);
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
     * The allocator; only for operations and queries running on the loop thread.
     *
     * @return the allocator.
     */
    public EgressAllocator allocator()
    {
        return allocator;
    }

    /**
     * Recovered kernel elements not yet claimed; only on the loop thread.
     *
     * @return the live set.
     */
    public Set<PlanElement> recovered()
    {
        return recovered;
    }

    /**
     * The health as of the last reconcile or mutation.
     *
     * @return the health.
     */
    public Health health()
    {
        return health;
    }

    /**
     * Attaches the conntrack monitor: after every committed change (and the initial sync) it is told the machines,
     * and every refusal goes to its refusal log. Call before {@link #initialSync()}.
     *
     * @param monitor the monitor.
     */
    public void attach(final ConntrackMonitor monitor)
    {
        this.conntrack = monitor;
    }

    /**
     * The attached conntrack monitor.
     *
     * @return the monitor, or null if none.
     */
    public ConntrackMonitor conntrack()
    {
        return conntrack;
    }

    /**
     * Tells the monitor the machines and every egress address egressd holds: app pairs, machine-scoped pairs, and
     * released addresses still draining (a machine that becomes static, or a static machine the monitor first learns
     * of, keeps its flows through any of them and loses the rest at once: DESIGN.md invariant 3, across a restart
     * too; flows through a draining address go when its drain time ends).
     */
    private void machinesChanged()
    {
        final ConntrackMonitor monitor = conntrack;
        if (monitor == null)
        {
            return;
        }
        final List<EgressAllocator.MachineView> machines = allocator.machines();
        final List<Ipv4Address> held4 = new ArrayList<>();
        final List<Ipv6Address> held6 = new ArrayList<>();
        for (final EgressAllocator.PairView view : allocator.pairs())
        {
            held4.add(view.pair().ipv4());
            held6.add(view.pair().ipv6());
        }
        for (final EgressAllocator.MachineView view : machines)
        {
            if (view.machineScopedPair() != null)
            {
                held4.add(view.machineScopedPair().ipv4());
                held6.add(view.machineScopedPair().ipv6());
            }
        }
        for (final PlanElement element : lingering.keySet())
        {
            if (element instanceof PlanElement.Uplink4 u)
            {
                held4.add(u.address());
            }
            else if (element instanceof PlanElement.Uplink6 u)
            {
                held6.add(u.address());
            }
        }
        monitor.machinesChanged(machines, held4, held6, drainNanos);
    }

    /**
     * Changes how long released egress addresses stay on the uplink (SIGHUP).
     *
     * @param seconds the new drain time.
     */
    public void drainSeconds(final int seconds)
    {
        drainNanos = seconds * SECOND;
    }

    /**
     * Runs a mutation on the loop thread.
     *
     * @param what      a short description for logs.
     * @param operation the operation.
     * @return the result, completed once the kernel holds the change and the state is on disk.
     */
    public CompletableFuture<Result> mutate(final String what, final Operation operation)
    {
        return mutate(what, operation, null);
    }

    /**
     * Runs a mutation on the loop thread and, if it succeeds, builds the answer's view in the same task, so the
     * view shows exactly this mutation's result (no other mutation can run in between).
     *
     * @param what      a short description for logs.
     * @param operation the operation.
     * @param view      builds the view from the loop after the change (on the loop thread), or null.
     * @return the result; an {@link Ok} carries the view.
     */
    public CompletableFuture<Result> mutate(final String what, final Operation operation,
        final Function<ControlLoop, ?> view)
    {
        final long queued = nanoTime.getAsLong();
        return CompletableFuture.supplyAsync(() -> observed(what, operation, queued, view), executor);
    }

    private Result observed(final String what, final Operation operation, final long queued,
        final Function<ControlLoop, ?> view)
    {
        kernelHeldAt = -1;
        Result result = run(what, operation);
        if (result instanceof Ok ok && view != null)
        {
            try
            {
                result = new Ok(ok.changed(), view.apply(this));
            }
            catch (final RuntimeException e)
            {
                LOG.error("{}: done, but building the answer failed", what, e);
            }
        }
        if (!(result instanceof Refused))
        {
            published = allocator.snapshot();
        }
        final String outcome = result instanceof Ok ? "ok" : result instanceof Refused ? "refused" : "unavailable";
        final long nanos = result instanceof Ok && kernelHeldAt != -1 ? Math.max(0, kernelHeldAt - queued) : -1;
        try
        {
            changeObserver.changed(operationOf(what), outcome, nanos);
        }
        catch (final RuntimeException e)
        {
            LOG.warn("change observer failed", e);
        }
        return result;
    }

    /**
     * Sets who is told about every answered mutation (the metrics binder).
     *
     * @param observer the observer, or null for none.
     */
    public void observeChanges(final ChangeObserver observer)
    {
        changeObserver = observer == null ? ChangeObserver.NONE : observer;
    }

    /**
     * The allocator's state as of the last mutation, for readers on any thread: an immutable value replaced
     * (never changed) after every mutation that may have changed the allocator.
     *
     * @return the snapshot.
     */
    public EgressAllocator.Snapshot published()
    {
        return published;
    }

    /**
     * The table's named counters as of the last reconcile (every second), for readers on any thread. Each value
     * never goes backwards: when the table is recreated and the kernel's counters restart from 0, the total
     * carries on from where it was.
     *
     * @return counter name to packets since this process first read it; empty until the first reconcile.
     */
    public Map<String, Long> kernelCounters()
    {
        return kernelCounters;
    }

    /**
     * Reconcile passes run so far (passes skipped while backing off are not counted), for any thread.
     *
     * @return the cumulative count.
     */
    public long reconcileRuns()
    {
        return reconcileRuns;
    }

    /**
     * Reconcile passes that failed (the kernel could not be read or programmed), for any thread.
     *
     * @return the cumulative count.
     */
    public long reconcileFailures()
    {
        return reconcileFailures;
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
        final String pattern = guestInterfaces;
        if (!matchesGuestInterfaces(pattern, machine.iface()))
        {
            return new Outcome.Refusal(Outcome.Reason.INVALID, "interface", "interface " + machine.iface()
                + " does not match guest-interfaces " + pattern + ": its packets would bypass every guest rule "
                + "(anti-spoofing, destination cap, fail-closed) and leave un-NATed");
        }
        if (allocator.machine(machine.id()).isEmpty() && !recovered.isEmpty())
        {
            final Outcome restored = restoreFromRecovered(machine);
            if (restored != null)
            {
                return restored;
            }
        }
        return allocator.upsertMachine(machine);
    }

    private Outcome restoreFromRecovered(final Machine machine)
    {
        PlanElement.Snat4 snat4 = null;
        PlanElement.Snat6 snat6 = null;
        for (final PlanElement element : recovered)
        {
            if (element instanceof PlanElement.Snat4 s && s.guest().equals(machine.ipv4()))
            {
                snat4 = s;
            }
            else if (element instanceof PlanElement.Snat6 s && s.guest().equals(machine.ipv6()))
            {
                snat6 = s;
            }
        }
        if (snat4 == null && snat6 == null)
        {
            return null;
        }
        final int first = snat4 != null ? snat4.firstPort() : snat6.firstPort();
        final int last = snat4 != null ? snat4.lastPort() : snat6.lastPort();
        Outcome outcome = null;
        if (first <= 1 && last == 65535 && snat4 != null && snat6 != null)
        {
            outcome = allocator.restoreMachineScoped(machine,
                new EgressPair(snat4.egress(), snat6.egress(), settings.region()));
        }
        else
        {
            Ipv4Address pair = snat4 != null ? snat4.egress() : null;
            if (pair == null)
            {
                for (final EgressAllocator.PairView view : allocator.pairs())
                {
                    if (view.pair().ipv6().equals(snat6.egress()))
                    {
                        pair = view.pair().ipv4();
                    }
                }
            }
            final int block = settings.layout().blockOf(first);
            if (pair != null && block >= 0)
            {
                outcome = allocator.restoreMachine(machine, pair, block);
            }
        }
        if (outcome == null || !outcome.ok())
        {
            LOG.warn("machine {}: the kernel had it on {} ports {}..{} but that cannot be restored ({}); placing anew",
                machine.id(), snat4 != null ? snat4.egress() : snat6.egress(), first, last, outcome);
            return null;
        }
        LOG.info("machine {}: restored from the kernel table on {} ports {}..{}", machine.id(),
            snat4 != null ? snat4.egress() : snat6.egress(), first, last);
        return outcome;
    }

    /**
     * Forgets every recovered element (the operator says the orchestrator has re-sent all it still wants).
     *
     * @return the outcome.
     */
    public Outcome forgetRecovered()
    {
        recovered.clear();
        return Outcome.Done.NOTHING;
    }

    private Result run(final String what, final Operation operation)
    {
        final Outcome outcome;
        try
        {
            outcome = operation.apply(this);
        }
        catch (final RuntimeException e)
        {
            LOG.error("{}: allocator failed; restoring the last committed state", what, e);
            rollback();
            return new Unavailable("internal error: " + e);
        }
        if (outcome instanceof Outcome.Refusal refusal)
        {
            final ConntrackMonitor monitor = conntrack;
            if (monitor != null)
            {
                monitor.refusals().refusal("api_" + refusal.code().name().toLowerCase(java.util.Locale.ROOT), null,
                    null, null, 1, what + ": " + refusal.message());
            }
            return new Refused(refusal);
        }
        pruneRecovered();
        final List<PlanChange> applied;
        try
        {
            applied = sync(true);
            kernelHeldAt = nanoTime.getAsLong();
        }
        catch (final KernelException e)
        {
            LOG.error("{}: the kernel refused the change, nothing changed: {}", what, e.getMessage());
            failed(e);
            rollback();
            return new Unavailable("the kernel cannot be programmed: " + e.getMessage());
        }
        final DesiredState next = exportState();
        if (!next.equals(committed))
        {
            try
            {
                store.write(next);
            }
            catch (final IOException e)
            {
                LOG.error("{}: the state could not be written, undoing the kernel change: {}", what, e.toString());
                rollback();
                try
                {
                    sync(false);
                }
                catch (final KernelException k)
                {
                    failed(k);
                }
                return new Unavailable("the state could not be written: " + e.getMessage());
            }
            committed = next;
            committedRecovered = Set.copyOf(recovered);
        }
        machinesChanged();
        final List<String> changed = outcome instanceof Outcome.Done done ? done.changed() : List.of();
        if (!applied.isEmpty() || !changed.isEmpty())
        {
            LOG.info("{}: {} kernel changes, machines changed {}", what, applied.size(), changed);
        }
        return new Ok(changed);
    }

    /**
     * Puts the kernel in line with the desired plan.
     *
     * <p>A mutation diffs against what the kernel held after the last read or apply ({@link #lastKnown}) rather
     * than reading it back: a read costs O(table) (measured by {@code scripts/bench-kernel}: a read of the sets
     * 14 ms at 100 machines and 0.15 s at 4,000, a deep read of the whole table 34 ms and 0.54 s, where applying
     * one change costs 3 and 10 ms). If the kernel was changed behind
     * egressd's back, the transaction fails atomically (nft refuses to delete what is missing or to add a key
     * that holds other data), and the change is retried once against a fresh read. Drift that a mutation does not
     * touch is the reconcile loop's to repair, as before.
     *
     * @param fromMutation whether a mutation asked (uplink addresses it stops using then linger for the drain
     *                     time) rather than the reconcile loop.
     * @return the changes applied.
     * @throws KernelException if the kernel failed.
     */
    private List<PlanChange> sync(final boolean fromMutation) throws KernelException
    {
        final KernelPlan known = lastKnown;
        if (fromMutation && known != null)
        {
            try
            {
                return syncFrom(known, true);
            }
            catch (final KernelException e)
            {
                LOG.info("the kernel differs from what egressd last saw ({}); reading it back", e.getMessage());
            }
        }
        kernel.ensureTable();
        return syncFrom(kernel.read(), fromMutation);
    }

    private List<PlanChange> syncFrom(final KernelPlan actual, final boolean fromMutation) throws KernelException
    {
        lastKnown = null; // unknown until the apply below succeeds
        KernelPlan desired = desiredPlan();
        if (fromMutation && drainNanos > 0)
        {
            final Linger until = new Linger(nanoTime.getAsLong() + drainNanos,
                wallMillis.getAsLong() + drainNanos / MILLI);
            boolean added = false;
            for (final String kind : List.of("uplink4", "uplink6"))
            {
                for (final PlanElement held : actual.elements(kind).values())
                {
                    if (!desired.contains(held) && !lingering.containsKey(held))
                    {
                        lingering.put(held, until);
                        added = true;
                    }
                }
            }
            if (added)
            {
                desired = desiredPlan();
            }
        }
        final List<PlanChange> changes = PlanDiff.between(actual, desired);
        if (!changes.isEmpty())
        {
            kernel.apply(changes);
        }
        lastKnown = desired;
        return changes;
    }

    /**
     * The plan the kernel should hold: the allocator's, plus unclaimed recovered elements, plus released addresses
     * still draining.
     *
     * @return the plan.
     */
    public KernelPlan desiredPlan()
    {
        if (lingering.isEmpty())
        {
            return StateMapper.plan(allocator, recovered);
        }
        final List<PlanElement> extra = new ArrayList<>(recovered);
        extra.addAll(lingering.keySet());
        return StateMapper.plan(allocator, extra);
    }

    /** One reconcile: read the kernel, repair drift, expire drained addresses. Runs on the loop thread. */
    public void reconcile()
    {
        final long now = nanoTime.getAsLong();
        if (health.consecutiveFailures() > 0 && now - nextAttempt < 0 || now - nextRead < 0)
        {
            return;
        }
        reconcileRuns++;
        final Map<PlanElement, Linger> expiredLingers = new LinkedHashMap<>();
        lingering.entrySet().removeIf(e ->
        {
            if (now - e.getValue().nanos() >= 0)
            {
                expiredLingers.put(e.getKey(), e.getValue());
                return true;
            }
            return false;
        });
        final List<PlanElement> expired = new ArrayList<>(expiredLingers.keySet());
        try
        {
            lastKnown = null;
            final boolean recreated = kernel.ensureTable();
            final KernelPlan desired = desiredPlan();
            final long readStart = nanoTime.getAsLong();
            final KernelPlan actual = kernel.read();
            // A read costs O(table) (at 4,000 machines 0.15 s, and 0.55 s when it is a deep one, at most one in five
            // reads there): pace the reads so they take about a quarter of the loop thread at most, which mutations
            // share. By the cheaper of the last two reads, so that one deep read (or the first read of a cold JVM)
            // does not hold the next shallow one back by four times its own cost. Small hosts read every second.
            final long readNanos = nanoTime.getAsLong() - readStart;
            nextRead = readStart + 4 * Math.min(readNanos, lastReadNanos);
            lastReadNanos = readNanos;
            final List<PlanChange> changes = PlanDiff.between(actual, desired);
            if (!changes.isEmpty())
            {
                kernel.apply(changes);
            }
            lastKnown = desired;
            final Set<PlanChange> drift = new LinkedHashSet<>(changes);
            drift.removeIf(c -> c.op() == PlanChange.Op.REMOVE && expired.contains(c.element()));
            if (changes.size() != drift.size())
            {
                LOG.info("released drained egress addresses: {}", expired);
            }
            final Health h = health;
            if (recreated || !drift.isEmpty())
            {
                final String repair = (recreated ? "created or repaired the table's fixed part; " : "")
                    + drift.size() + " changes: " + drift;
                LOG.warn("reconcile repaired drift: {}", repair);
                health = new Health(KernelStatus.REPAIRED_DRIFT, h.reconciles() + 1, h.repairs() + 1, 0, null,
                    repair);
            }
            else
            {
                if (h.kernel() == KernelStatus.UNAVAILABLE)
                {
                    LOG.info("the kernel is back after {} failures", h.consecutiveFailures());
                }
                health = new Health(KernelStatus.IN_SYNC, h.reconciles() + 1, h.repairs(), 0, null, h.lastRepair());
            }
        }
        catch (final KernelException e)
        {
            reconcileFailures++;
            lingering.putAll(expiredLingers); // already due: the next successful reconcile removes them
            failed(e);
            return;
        }
        catch (final RuntimeException e)
        {
            reconcileFailures++;
            LOG.error("reconcile failed", e);
            failed(new KernelException(e.toString(), e));
            return;
        }
        readCounters();
    }

    /**
     * Caches the kernel's named counters for the metrics and the refusal log (the one read of them: the kernel is
     * single-threaded), keeping each total monotonic across a table recreation. A failure keeps the last values: the
     * metrics must not fail a reconcile.
     */
    private void readCounters()
    {
        final Map<String, Long> raw;
        try
        {
            raw = kernel.counters();
        }
        catch (final KernelException | RuntimeException e)
        {
            if (!countersFailing)
            {
                LOG.warn("cannot read the table's counters, metrics keep the last values: {}", e.getMessage());
                countersFailing = true;
            }
            return;
        }
        countersFailing = false;
        boolean changed = false;
        for (final Map.Entry<String, Long> e : raw.entrySet())
        {
            final long value = e.getValue() == null ? 0 : e.getValue();
            final long[] t = counterTotals.computeIfAbsent(e.getKey(), k -> new long[2]); // {last raw, total}
            final long delta = value >= t[0] ? value - t[0] : value; // below the last value: the counter restarted
            t[0] = value;
            if (delta != 0)
            {
                t[1] += delta;
                changed = true;
            }
        }
        if (changed || kernelCounters.size() != counterTotals.size())
        {
            final Map<String, Long> next = new LinkedHashMap<>();
            counterTotals.forEach((k, t) -> next.put(k, t[1]));
            kernelCounters = java.util.Collections.unmodifiableMap(next);
        }
    }

    private void failed(final KernelException e)
    {
        final Health h = health;
        final int failures = h.consecutiveFailures() + 1;
        final long backoff = Math.min(MAX_BACKOFF, SECOND << Math.min(failures - 1, 5));
        nextAttempt = nanoTime.getAsLong() + backoff;
        if (failures == 1 || Integer.bitCount(failures) == 1)
        {
            LOG.error("kernel unavailable ({} in a row, next try in {} ms): {}", failures, backoff / 1_000_000,
                e.getMessage());
        }
        health = new Health(KernelStatus.UNAVAILABLE, h.reconciles() + 1, h.repairs(), failures, e.getMessage(),
            h.lastRepair());
    }

    private void rollback()
    {
        final StateMapper.Rebuilt rebuilt = StateMapper.rebuild(settings, committed, System.nanoTime());
        for (final String problem : rebuilt.problems())
        {
            LOG.error("rollback: could not restore {}", problem);
        }
        allocator = rebuilt.allocator();
        recovered.clear();
        recovered.addAll(committedRecovered);
    }

    /** Drops recovered elements that machines or pairs of the allocator now account for. */
    private void pruneRecovered()
    {
        if (recovered.isEmpty())
        {
            return;
        }
        final Set<Object> claimed = new HashSet<>();
        final Set<String> ifaces = new HashSet<>();
        for (final EgressAllocator.MachineView view : allocator.machines())
        {
            if (view.machine().ipv4() != null)
            {
                claimed.add(view.machine().ipv4());
            }
            if (view.machine().ipv6() != null)
            {
                claimed.add(view.machine().ipv6());
            }
            ifaces.add(view.machine().iface());
            if (view.machineScopedPair() != null)
            {
                claimed.add(view.machineScopedPair().ipv4());
                claimed.add(view.machineScopedPair().ipv6());
            }
        }
        for (final EgressAllocator.PairView view : allocator.pairs())
        {
            claimed.add(view.pair().ipv4());
            claimed.add(view.pair().ipv6());
        }
        recovered.removeIf(e -> isClaimed(e, claimed, ifaces));
    }

    private static boolean isClaimed(final PlanElement e, final Set<Object> claimed, final Set<String> ifaces)
    {
        if (e instanceof PlanElement.Guest4 g)
        {
            return claimed.contains(g.address()) || ifaces.contains(g.iface());
        }
        if (e instanceof PlanElement.Guest6 g)
        {
            return claimed.contains(g.address()) || ifaces.contains(g.iface());
        }
        return claimed.contains(addressOf(e));
    }

    private static Object addressOf(final PlanElement e)
    {
        if (e instanceof PlanElement.Static4 s)
        {
            return s.guest();
        }
        if (e instanceof PlanElement.Static6 s)
        {
            return s.guest();
        }
        if (e instanceof PlanElement.Snat4 s)
        {
            return s.guest();
        }
        if (e instanceof PlanElement.Snat6 s)
        {
            return s.guest();
        }
        if (e instanceof PlanElement.Uplink4 u)
        {
            return u.address();
        }
        if (e instanceof PlanElement.Uplink6 u)
        {
            return u.address();
        }
        return null;
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
        final KernelPlan raw = kernel.read();
        final KernelPlan own = StateMapper.plan(allocator, List.of());
        final Set<Object> egresses = new HashSet<>();
        for (final PlanElement element : raw.elements())
        {
            if (element instanceof PlanElement.Snat4 s)
            {
                egresses.add(s.egress());
            }
            else if (element instanceof PlanElement.Snat6 s)
            {
                egresses.add(s.egress());
            }
        }
        int count = 0;
        for (final PlanElement element : raw.elements())
        {
            final boolean uplink = element instanceof PlanElement.Uplink4 || element instanceof PlanElement.Uplink6;
            if (uplink && !egresses.contains(addressOf(element)))
            {
                continue; // an address on the uplink no guest leaves from: not provably egressd's, never touched
            }
            if (!own.elements(element.kind()).containsKey(element.key()) && recovered.add(element))
            {
                count++;
            }
        }
        return count;
    }

    /**
     * The first sync at start-up (before the API serves): apply the desired plan, persist the state.
     *
     * @throws IOException if the kernel or the disk failed.
     */
    public void initialSync() throws IOException
    {
        if (!restoredLingering.isEmpty())
        {
            // A draining address keeps the kernel from removing it; it never makes the kernel add one back (after
            // a reboot, say: the address may be in use elsewhere by now).
            kernel.ensureTable();
            final KernelPlan held = kernel.read();
            lingering.keySet().removeIf(e -> restoredLingering.contains(e) && !held.contains(e));
            restoredLingering.clear();
        }
        sync(false);
        final DesiredState next = exportState();
        store.write(next);
        committed = next;
        committedRecovered = Set.copyOf(recovered);
        published = allocator.snapshot();
        health = new Health(KernelStatus.IN_SYNC, 1, 0, 0, null, null);
        machinesChanged();
    }
}
