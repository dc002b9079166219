package dev.egressd.agent.metrics;

import dev.egressd.agent.conntrack.ConntrackStats;
import dev.egressd.agent.conntrack.ConntrackTable;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.kernel.nft.Ruleset;
import dev.egressd.agent.reconcile.ChangeObserver;
import dev.egressd.agent.reconcile.KernelStatus;
import dev.egressd.agent.reconcile.LoopStats;
import dev.egressd.agent.reconcile.Operation;
import dev.egressd.agent.version.Version;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.model.Scope;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.MultiGauge;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.binder.MeterBinder;
import io.micrometer.core.instrument.config.MeterFilter;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.system.FileDescriptorMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;

import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.TimeUnit;

/**
 * egressd's meters: what an operator alerts on (docs/metrics.md lists them, docs/operations.md says what to do).
 *
 * <h2>Implementation notes</h2>
 *
 * <b>Nothing here runs in a hot path.</b> Every meter reads state someone else already keeps, through narrow
 * stats interfaces (as Micrometer's own binders read an MXBean):
 * <ul>
 *     <li>Pairs and machines come from {@link LoopStats#published()}, an immutable allocator snapshot the loop
 *     replaces after each mutation; the live allocator (single writer) is never touched from here.</li>
 *     <li>The kernel's named counters come from {@link LoopStats#kernelCounters()}, cached by the loop on each
 *     reconcile because the dataplane may only be used from the loop's thread.</li>
 *     <li>Conntrack and ledger figures come from a {@link ConntrackStats} (plain counters of the single-writer ledger,
 *     read with possible staleness); {@link ConntrackStats#NONE} until the conntrack feed is wired.</li>
 *     <li>Changes are counted and timed by a {@link ChangeObserver}, once per answered mutation, tagged by its
 *     {@link Operation} and {@link ChangeObserver.Outcome}.</li>
 * </ul>
 *
 * <b>Series that come and go.</b> Per-pair, per-machine and per-app series are {@link MultiGauge} rows.
 * {@link #refresh()} brings the rows in line with the latest snapshot (rows of deleted machines, released pairs
 * and gone apps are removed from the registry); the daemon calls it before each scrape, and it costs a reference
 * comparison when nothing changed. The rows' values always read the latest snapshot, so a scrape that skipped
 * {@link #refresh()} still sees current values, only not new or removed series.
 *
 * <b>Tags are bounded</b>: an app id, a pair's IPv4, a machine id (a host holds few), a scope, a family, an
 * event type, an operation and an outcome from fixed lists. Never a destination address or a port.
 *
 * <p>Bind it to one registry; keep a reference to it for as long as the registry lives (function counters
 * hold it weakly).
 */
public final class EgressMetrics implements MeterBinder
{
    private final LoopStats loop;
    private volatile ConntrackStats ledger = ConntrackStats.NONE;
    private volatile View view;

    private MeterRegistry registry;
    private MultiGauge pairUsed;
    private MultiGauge pairCapacity;
    private MultiGauge machinesByScope;
    private MultiGauge machineBusiest;
    private EgressAllocator.Snapshot rowsOf;
    private Timer changeLatency;
    private final Map<Operation, Map<ChangeObserver.Outcome, Counter>> changes = new EnumMap<>(Operation.class);

    /**
     * Creates the binder; nothing is registered until {@link #bindTo(MeterRegistry)}.
     *
     * @param loop what the control loop publishes.
     */
    public EgressMetrics(final LoopStats loop)
    {
        this.loop = Objects.requireNonNull(loop);
    }

    /**
     * Wires the conntrack feed (or unwires it with null): from now on its figures are reported.
     *
     * @param stats the feed's figures, or null for none (every figure 0).
     */
    public void ledger(final ConntrackStats stats)
    {
        ledger = stats == null ? ConntrackStats.NONE : stats;
    }

    /**
     * Binds Micrometer's JVM and process meters the daemon serves next to egressd's own (memory, threads, CPU,
     * uptime), so a test can scrape exactly what the daemon serves. Call it before binding anything else: it adds
     * a meter filter.
     *
     * @param registry the registry.
     */
    public static void bindProcessMeters(final MeterRegistry registry)
    {
        // promtool check metrics objects to these two names (an abbreviated unit, a _count suffix on a gauge).
        registry.config().meterFilter(MeterFilter.deny(id ->
            "process.cpu.time".equals(id.getName()) || "system.cpu.count".equals(id.getName())));
        new JvmMemoryMetrics().bindTo(registry);
        new JvmThreadMetrics().bindTo(registry);
        new ProcessorMetrics().bindTo(registry);
        new UptimeMetrics().bindTo(registry);
        new FileDescriptorMetrics().bindTo(registry);
        // Lives as long as the daemon: its GC notification listeners are never removed.
        new JvmGcMetrics().bindTo(registry);
    }

    @Override
    public synchronized void bindTo(final MeterRegistry registry)
    {
        if (this.registry != null)
        {
            throw new IllegalStateException("already bound to a registry");
        }
        this.registry = registry;
        // The build_info convention of Prometheus' own exporters: join it on instance to label any series.
        Gauge.builder("egressd.build.info", () -> 1)
            .description("Always 1; the version and git revision egressd was built from are its tags")
            .tag("version", Version.version()).tag("revision", Version.revision())
            .strongReference(true).register(registry);
        bindAllocator(registry);
        bindLedger(registry);
        bindKernel(registry);
        bindLoop(registry);
        refresh();
        loop.observeChanges(this::changed);
    }

    private void bindAllocator(final MeterRegistry r)
    {
        pairUsed = MultiGauge.builder("egressd.pair.used")
            .description("Slots (port blocks) held by machines on an app-scoped egress pair")
            .baseUnit("slots").register(r);
        pairCapacity = MultiGauge.builder("egressd.pair.capacity")
            .description("Slots (port blocks) an app-scoped egress pair has in all")
            .baseUnit("slots").register(r);
        machinesByScope = MultiGauge.builder("egressd.machines")
            .description("Machines on this host by the rule deciding their egress address: machine (own pair), "
                + "app (a slot on an app pair), host (masqueraded), pending (no slot, refused: fail-closed)")
            .baseUnit("machines").register(r);
        machineBusiest = MultiGauge.builder("egressd.machine.busiest.destination")
            .description("Connections from the machine to its busiest destination IP, as a fraction of the "
                + "per-destination cap (1 = new connections to it are refused)")
            .baseUnit("ratio").register(r);
    }

    private void bindLedger(final MeterRegistry r)
    {
        Gauge.builder("egressd.destination.cap", this, m -> m.cap())
            .description("The most concurrent connections one machine may hold to one destination IP")
            .baseUnit("connections").strongReference(true).register(r);
        Gauge.builder("egressd.machines.saturated", this, m -> m.ledger.machinesAtWarning())
            .tag("threshold", "0.8")
            .description("Machines whose busiest destination IP holds at least the threshold's share of the cap")
            .strongReference(true).register(r);
        Gauge.builder("egressd.machines.saturated", this, m -> m.ledger.machinesAtCritical())
            .tag("threshold", "0.95")
            .description("Machines whose busiest destination IP holds at least the threshold's share of the cap")
            .strongReference(true).register(r);
        Gauge.builder("egressd.conntrack.connections", this, m -> m.ledger.liveConnections())
            .description("Live guest connections the destination ledger tracks, from conntrack")
            .baseUnit("connections").strongReference(true).register(r);
        FunctionCounter.builder("egressd.block.violations", this, m -> m.ledger.violations())
            .description("Connections whose translated source port lay outside the machine's port block")
            .register(r);
        for (final ConntrackEvent.Type type : ConntrackEvent.Type.values())
        {
            FunctionCounter.builder("egressd.conntrack.events", this, m -> m.ledger.events(type))
                .tag("type", type.name().toLowerCase(Locale.ROOT))
                .description("Conntrack messages received: new, update and destroy events, and existing entries "
                    + "read by dumps")
                .baseUnit("events").register(r);
        }
        Gauge.builder("egressd.conntrack.entries", this, m -> tableFigure(m.ledger.table(), 0))
            .description("Entries in the kernel's conntrack table of egressd's namespace (nf_conntrack_count); "
                + "NaN when conntrack is not loaded")
            .strongReference(true).register(r);
        Gauge.builder("egressd.conntrack.max", this, m -> tableFigure(m.ledger.table(), 1))
            .description("The most entries the kernel's conntrack table holds (nf_conntrack_max); once full, new "
                + "connections are dropped")
            .strongReference(true).register(r);
        FunctionCounter.builder("egressd.conntrack.drops", this, m -> tableFigure(m.ledger.table(), 2))
            .description("Packets the kernel dropped because its conntrack table was full (statistic drop, all CPUs)")
            .register(r);
        FunctionCounter.builder("egressd.conntrack.insert.failed", this, m -> tableFigure(m.ledger.table(), 3))
            .description("Conntrack entries the kernel failed to insert (statistic insert_failed, all CPUs)")
            .register(r);
        FunctionCounter.builder("egressd.conntrack.resyncs", this, m -> m.ledger.resyncs())
            .description("Times the ledger was rebuilt from a full conntrack dump because events were lost")
            .register(r);
    }

    private void bindKernel(final MeterRegistry r)
    {
        kernelCounter(r, "egressd.cap.refused", Ruleset.COUNTER_CAP4, Ruleset.COUNTER_CAP6,
            "New connections refused because the machine already held the cap to that destination IP");
        kernelCounter(r, "egressd.spoof.dropped", Ruleset.COUNTER_SPOOF4, Ruleset.COUNTER_SPOOF6,
            "Packets from a guest interface with a source address not assigned to that interface, dropped");
        kernelCounter(r, "egressd.failclosed.refused", Ruleset.COUNTER_UNMAPPED4, Ruleset.COUNTER_UNMAPPED6,
            "New connections of a machine without an egress mapping (pending, fail-closed), refused");
        kernelCounter(r, "egressd.backstop.dropped", Ruleset.COUNTER_BACKSTOP4, Ruleset.COUNTER_BACKSTOP6,
            "Packets of a static guest that reached the uplink untranslated, dropped (never masqueraded)");
    }

    private void kernelCounter(final MeterRegistry r, final String name, final String v4, final String v6,
        final String description)
    {
        for (final String[] family : new String[][] {{"ipv4", v4}, {"ipv6", v6}})
        {
            final String counter = family[1];
            FunctionCounter.builder(name, this, m -> m.loop.kernelCounters().getOrDefault(counter, 0L))
                .tag("family", family[0])
                .description(description + " (nft counter " + v4 + "/" + v6 + ")")
                .baseUnit("packets").register(r);
        }
    }

    private void bindLoop(final MeterRegistry r)
    {
        FunctionCounter.builder("egressd.reconcile.runs", this, m -> m.loop.reconcileRuns())
            .description("Reconcile passes run (read the kernel, diff against the desired plan, repair)")
            .register(r);
        FunctionCounter.builder("egressd.reconcile.failures", this, m -> m.loop.reconcileFailures())
            .description("Reconcile passes that failed because the kernel could not be read or programmed")
            .register(r);
        FunctionCounter.builder("egressd.reconcile.reads.stuck", this, m -> m.loop.stuckReads())
            .description("Kernel reads of the reconcile abandoned as stuck (out past their deadline): each made the "
                + "kernel unavailable and the next read use a fresh reader handle")
            .register(r);
        FunctionCounter.builder("egressd.reconcile.table.reads", this, m -> m.loop.reconcileTableReads())
            .description("Reconcile reads that read egressd's table whole: the ruleset's generation was not the one "
                + "the kernel was last proven to hold the plan at (the others read only the uplink addresses)")
            .register(r);
        FunctionCounter.builder("egressd.change.batches", this, m -> m.loop.changeBatches())
            .description("Batches of changes the control loop ran: the changes that queued together, each batch one "
                + "kernel transaction and one journal write (group commit)")
            .register(r);
        FunctionCounter.builder("egressd.reconcile.repairs", this, m -> m.loop.health().repairs())
            .description("Reconcile passes that found the kernel drifted from the desired plan and repaired it")
            .register(r);
        final Timer reconcileDuration = Timer.builder("egressd.reconcile.duration")
            .description("Time a reconcile pass took (ensure the table, read it, diff, repair, read the counters), "
                + "failed passes included")
            .publishPercentileHistogram()
            .minimumExpectedValue(Duration.ofMillis(1))
            .maximumExpectedValue(Duration.ofSeconds(10))
            .register(r);
        loop.observeReconciles((nanos, ok) -> reconcileDuration.record(nanos, TimeUnit.NANOSECONDS));
        Gauge.builder("egressd.reconcile.last.success.timestamp", this,
                m -> m.loop.lastReconcileSuccessMillis() / 1000.0)
            .description("When the last successful reconcile pass ended, in seconds since the epoch (0 before the "
                + "first)")
            .baseUnit("seconds").strongReference(true).register(r);
        Gauge.builder("egressd.kernel.up", this,
                m -> m.loop.health().kernel() == KernelStatus.UNAVAILABLE ? 0 : 1)
            .description("1 when the last kernel operation succeeded, 0 while the kernel cannot be programmed")
            .strongReference(true).register(r);
        FunctionCounter.builder("egressd.state.write.failures", this, m -> m.loop.stateWriteFailures())
            .description("Writes of the state file that failed (a full, read-only or unwritable state directory); "
                + "each refused a change")
            .register(r);
        FunctionCounter.builder("egressd.desired.plan.mismatches", this, m -> m.loop.desiredPlanMismatches())
            .description("Checks (once a minute) of the incrementally kept desired plan against a whole build that "
                + "found them different; each was repaired by taking the whole build")
            .register(r);
        Gauge.builder("egressd.kernel.consecutive.failures", this, m -> m.loop.health().consecutiveFailures())
            .description("Kernel errors in a row (0 when the last kernel operation succeeded)")
            .baseUnit("failures").strongReference(true).register(r);
        changeLatency = Timer.builder("egressd.change.latency")
            .description("Time from a change request being queued to the kernel holding the change (successful "
                + "changes only)")
            .publishPercentileHistogram()
            .minimumExpectedValue(Duration.ofMillis(1))
            .maximumExpectedValue(Duration.ofSeconds(10))
            .register(r);
        for (final Operation operation : Operation.values())
        {
            final Map<ChangeObserver.Outcome, Counter> byOutcome = new EnumMap<>(ChangeObserver.Outcome.class);
            changes.put(operation, byOutcome);
            for (final ChangeObserver.Outcome outcome : ChangeObserver.Outcome.values())
            {
                byOutcome.put(outcome, Counter.builder("egressd.changes")
                    .tag("operation", operation.label()).tag("outcome", outcome.label())
                    .description("Changes requested through the API, by operation and outcome (ok: the kernel holds "
                        + "it and the state is on disk; refused: invalid or impossible, nothing changed; "
                        + "unavailable: the kernel or the disk failed, nothing changed)")
                    .register(r));
            }
        }
    }

    private void changed(final Operation operation, final ChangeObserver.Outcome outcome, final long nanosToKernel)
    {
        final Map<ChangeObserver.Outcome, Counter> byOutcome = changes.get(operation);
        final Counter counter = byOutcome == null ? null : byOutcome.get(outcome);
        if (counter != null)
        {
            counter.increment();
        }
        if (nanosToKernel >= 0)
        {
            changeLatency.record(nanosToKernel, TimeUnit.NANOSECONDS);
        }
    }

    /**
     * Brings the per-pair, per-machine and per-app series in line with the loop's latest snapshot: adds rows for
     * new ones, removes the rows of those gone. Cheap when nothing changed; call it before each scrape.
     */
    public synchronized void refresh()
    {
        if (registry == null)
        {
            return;
        }
        final View v = view();
        if (v.snapshot == rowsOf)
        {
            return;
        }
        final List<MultiGauge.Row<?>> used = new ArrayList<>();
        final List<MultiGauge.Row<?>> capacity = new ArrayList<>();
        for (final String key : v.pairs.keySet())
        {
            final EgressAllocator.PairView p = v.pairs.get(key);
            final Tags tags = Tags.of("app", p.app(), "pair", p.pair().ipv4().toString());
            used.add(MultiGauge.Row.of(tags, () -> pairFigure(key, true)));
            capacity.add(MultiGauge.Row.of(tags, () -> pairFigure(key, false)));
        }
        final List<MultiGauge.Row<?>> scopes = new ArrayList<>();
        for (final String app : v.scopes.keySet())
        {
            for (final Scope scope : Scope.values())
            {
                scopes.add(MultiGauge.Row.of(Tags.of("app", app, "scope", scope.wireName()),
                    () -> scopeCount(app, scope)));
            }
        }
        final List<MultiGauge.Row<?>> busiest = new ArrayList<>();
        for (final EgressAllocator.MachineView m : v.machines.values())
        {
            final String id = m.machine().id();
            busiest.add(MultiGauge.Row.of(Tags.of("machine", id, "app", m.machine().app()), () -> busiest(id)));
        }
        pairUsed.register(used, false);
        pairCapacity.register(capacity, false);
        machinesByScope.register(scopes, false);
        machineBusiest.register(busiest, false);
        rowsOf = v.snapshot;
    }

    private static double tableFigure(final ConntrackTable.Fill fill, final int which)
    {
        if (fill == null)
        {
            // unknown gauges read NaN; counters must not: they read 0 until the table is first read
            return which < 2 ? Double.NaN : 0;
        }
        return switch (which)
        {
            case 0 -> fill.entries();
            case 1 -> fill.max();
            case 2 -> fill.drops();
            default -> fill.insertFailed();
        };
    }

    private double cap()
    {
        final int cap = ledger.destinationCap();
        return cap > 0 ? cap : loop.destinationCap();
    }

    private Number pairFigure(final String key, final boolean used)
    {
        final EgressAllocator.PairView p = view().pairs.get(key);
        if (p == null)
        {
            return Double.NaN;
        }
        return used ? p.used() : p.capacity();
    }

    private Number scopeCount(final String app, final Scope scope)
    {
        final int[] counts = view().scopes.get(app);
        return counts == null ? Double.NaN : counts[scope.ordinal()];
    }

    private Number busiest(final String machine)
    {
        final EgressAllocator.MachineView m = view().machines.get(machine);
        if (m == null)
        {
            return Double.NaN;
        }
        final ConntrackStats stats = ledger;
        final int cap = stats.destinationCap();
        return cap > 0 ? (double)stats.busiestCount(machine) / cap : 0.0;
    }

    private View view()
    {
        final EgressAllocator.Snapshot snapshot = loop.published();
        View v = view;
        if (v == null || v.snapshot != snapshot)
        {
            v = new View(snapshot);
            view = v; // a race builds the same view twice; either is right
        }
        return v;
    }

    /** The published snapshot indexed for the meters: pairs by "app ipv4", machines by id, scope counts by app. */
    private static final class View
    {
        final EgressAllocator.Snapshot snapshot;
        final Map<String, EgressAllocator.PairView> pairs = new HashMap<>();
        final Map<String, EgressAllocator.MachineView> machines = new HashMap<>();
        final Map<String, int[]> scopes = new HashMap<>();

        View(final EgressAllocator.Snapshot snapshot)
        {
            this.snapshot = snapshot;
            if (snapshot == null)
            {
                return;
            }
            for (final EgressAllocator.PairView p : snapshot.pairs())
            {
                pairs.put(p.app() + ' ' + p.pair().ipv4(), p);
            }
            for (final EgressAllocator.AppView a : snapshot.apps())
            {
                scopes.put(a.id(), new int[Scope.values().length]);
            }
            for (final EgressAllocator.MachineView m : snapshot.machines())
            {
                machines.put(m.machine().id(), m);
                scopes.computeIfAbsent(m.machine().app(), k -> new int[Scope.values().length])
                    [m.egress().scope().ordinal()]++;
            }
        }
    }
}
