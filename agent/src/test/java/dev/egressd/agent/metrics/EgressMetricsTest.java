package dev.egressd.agent.metrics;

import dev.egressd.agent.refusals.KernelCounterWatch;
import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.agent.reconcile.ChangeObserver;
import dev.egressd.agent.reconcile.MutationResult;
import dev.egressd.agent.reconcile.Operation;
import dev.egressd.agent.conntrack.ConntrackTable;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.kernel.nft.Ruleset;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.Tag;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

import static dev.egressd.agent.metrics.MetricsFixture.machine;
import static dev.egressd.agent.metrics.MetricsFixture.pair;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

class EgressMetricsTest
{
    private static final Pattern NAME = Pattern.compile("[a-z][a-z0-9]*(\\.[a-z][a-z0-9]*)*");
    private static final Set<String> TAG_KEYS = Set.of("app", "pair", "machine", "scope", "threshold", "family",
        "type", "operation", "outcome", "version", "revision");

    @TempDir
    Path dir;

    private MetricsFixture f;
    private SimpleMeterRegistry registry;
    private EgressMetrics metrics;
    private final FakeLedgerStats ledger = new FakeLedgerStats();

    @BeforeEach
    void bind() throws Exception
    {
        f = new MetricsFixture(dir);
        registry = new SimpleMeterRegistry();
        metrics = new EgressMetrics(f.loop);
        metrics.bindTo(registry);
    }

    private double gauge(final String name, final String... tags)
    {
        metrics.refresh();
        return registry.get(name).tags(tags).gauge().value();
    }

    private double counter(final String name, final String... tags)
    {
        return registry.get(name).tags(tags).functionCounter().count();
    }

    private List<Meter> meters(final String name)
    {
        metrics.refresh();
        return registry.find(name).meters().stream().toList();
    }

    @Test
    void everyMeterIsNamedTheMicrometerWayDescribedAndTaggedBoundedly() throws Exception
    {
        f.addPair("a1", 10);
        f.put(machine("m1", "a1", 2));
        metrics.refresh();
        assertThat(registry.getMeters()).hasSizeGreaterThan(40);
        for (final Meter meter : registry.getMeters())
        {
            final Meter.Id id = meter.getId();
            assertThat(id.getName()).as("name").matches(NAME).doesNotContain("total").startsWith("egressd.");
            assertThat(id.getDescription()).as("description of %s", id.getName()).isNotBlank();
            for (final Tag tag : id.getTags())
            {
                assertThat(TAG_KEYS).as("tag key of %s", id).contains(tag.getKey());
            }
        }
    }

    @Test
    void theConntrackTableFillIsReportedAndUnknownUntilRead()
    {
        metrics.ledger(ledger);
        assertThat(gauge("egressd.conntrack.entries")).isNaN();
        assertThat(gauge("egressd.conntrack.max")).isNaN();
        assertThat(counter("egressd.conntrack.drops")).isZero();
        ledger.table = new ConntrackTable.Fill(900, 1000, 7, 2);
        assertThat(gauge("egressd.conntrack.entries")).isEqualTo(900);
        assertThat(gauge("egressd.conntrack.max")).isEqualTo(1000);
        assertThat(counter("egressd.conntrack.drops")).isEqualTo(7);
        assertThat(counter("egressd.conntrack.insert.failed")).isEqualTo(2);
    }

    @Test
    void slotsUsedAndCapacityPerPairFollowThePairs() throws Exception
    {
        f.addPair("a1", 10);
        f.addPair("a1", 11);
        for (int i = 1; i <= 3; i++)
        {
            f.put(machine("m" + i, "a1", i + 1));
        }
        assertThat(gauge("egressd.pair.capacity", "app", "a1", "pair", "203.0.113.10")).isEqualTo(8);
        assertThat(gauge("egressd.pair.used", "app", "a1", "pair", "203.0.113.10")
            + gauge("egressd.pair.used", "app", "a1", "pair", "203.0.113.11")).isEqualTo(3);
        assertThat(meters("egressd.pair.used")).hasSize(2);

        f.releasePair("a1", 11);
        assertThat(meters("egressd.pair.used")).hasSize(1);
        assertThat(meters("egressd.pair.capacity")).hasSize(1);
        assertThat(gauge("egressd.pair.used", "app", "a1", "pair", "203.0.113.10")).isEqualTo(3);
        assertThat(registry.getMeters()).extracting(m -> m.getId().getBaseUnit())
            .contains("slots", "machines", "ratio", "packets", "connections");
    }

    @Test
    void machinesAreCountedByScopePerApp() throws Exception
    {
        f.addPair("a1", 10); // 8 slots, fail-closed by default
        for (int i = 1; i <= 10; i++)
        {
            f.put(machine("m" + i, "a1", i + 1));
        }
        f.app("a2", false); // falls back to the host address: no pair, so masqueraded
        f.put(machine("h1", "a2", 30));
        f.loop.mutate(Operation.SET_MACHINE_PAIR, "set machine-scoped pair of h2", l ->
        {
            l.putMachine(machine("h2", "a2", 31));
            return l.allocator().setMachineScopedPair("h2", pair("203.0.113.20", "2001:db8::20"));
        }).get();

        assertThat(gauge("egressd.machines", "app", "a1", "scope", "app")).isEqualTo(8);
        assertThat(gauge("egressd.machines", "app", "a1", "scope", "pending")).isEqualTo(2);
        assertThat(gauge("egressd.machines", "app", "a1", "scope", "host")).isEqualTo(0);
        assertThat(gauge("egressd.machines", "app", "a1", "scope", "machine")).isEqualTo(0);
        assertThat(gauge("egressd.machines", "app", "a2", "scope", "host")).isEqualTo(1);
        assertThat(gauge("egressd.machines", "app", "a2", "scope", "machine")).isEqualTo(1);
        assertThat(meters("egressd.machines")).hasSize(8); // 2 apps x 4 scopes, zeros included

        f.delete("m1"); // a pending machine takes the freed slot
        assertThat(gauge("egressd.machines", "app", "a1", "scope", "app")).isEqualTo(8);
        assertThat(gauge("egressd.machines", "app", "a1", "scope", "pending")).isEqualTo(1);
    }

    @Test
    void theBusiestDestinationRatioComesAndGoesWithItsMachine() throws Exception
    {
        metrics.ledger(ledger);
        f.addPair("a1", 10);
        f.put(machine("m1", "a1", 2));
        f.put(machine("m2", "a1", 3));
        ledger.busiest.put("m1", 8);
        assertThat(gauge("egressd.machine.busiest.destination", "machine", "m1", "app", "a1")).isEqualTo(0.8);
        assertThat(gauge("egressd.machine.busiest.destination", "machine", "m2", "app", "a1")).isEqualTo(0.0);
        assertThat(meters("egressd.machine.busiest.destination")).hasSize(2);

        f.delete("m1");
        assertThat(meters("egressd.machine.busiest.destination"))
            .extracting(m -> m.getId().getTag("machine")).containsExactly("m2");
        f.delete("m2");
        assertThat(meters("egressd.machine.busiest.destination")).isEmpty();
        assertThat(meters("egressd.machines")).hasSize(4); // the app stays, with zeros
    }

    @Test
    void saturationAndConntrackFiguresComeFromTheLedger()
    {
        metrics.ledger(ledger);
        ledger.warning = 3;
        ledger.critical = 1;
        ledger.live = 1234;
        ledger.violations = 2;
        ledger.resyncs = 1;
        ledger.events.put(ConntrackEvent.Type.NEW, 100L);
        ledger.events.put(ConntrackEvent.Type.DESTROY, 90L);
        ledger.events.put(ConntrackEvent.Type.EXISTING, 7L);
        assertThat(gauge("egressd.machines.saturated", "threshold", "0.8")).isEqualTo(3);
        assertThat(gauge("egressd.machines.saturated", "threshold", "0.95")).isEqualTo(1);
        assertThat(gauge("egressd.conntrack.connections")).isEqualTo(1234);
        assertThat(gauge("egressd.destination.cap")).isEqualTo(10);
        assertThat(counter("egressd.block.violations")).isEqualTo(2);
        assertThat(counter("egressd.conntrack.resyncs")).isEqualTo(1);
        assertThat(counter("egressd.conntrack.events", "type", "new")).isEqualTo(100);
        assertThat(counter("egressd.conntrack.events", "type", "destroy")).isEqualTo(90);
        assertThat(counter("egressd.conntrack.events", "type", "existing")).isEqualTo(7);
        assertThat(counter("egressd.conntrack.events", "type", "update")).isEqualTo(0);
    }

    @Test
    void withoutAConntrackFeedEveryLedgerMeterReportsZero() throws Exception
    {
        f.addPair("a1", 10);
        f.put(machine("m1", "a1", 2));
        assertThat(gauge("egressd.machine.busiest.destination", "machine", "m1", "app", "a1")).isEqualTo(0.0);
        assertThat(gauge("egressd.machines.saturated", "threshold", "0.8")).isEqualTo(0);
        assertThat(gauge("egressd.conntrack.connections")).isEqualTo(0);
        assertThat(gauge("egressd.destination.cap")).isEqualTo(10); // from the host settings
        assertThat(counter("egressd.block.violations")).isEqualTo(0);
        assertThat(counter("egressd.conntrack.resyncs")).isEqualTo(0);
        metrics.ledger(ledger);
        metrics.ledger(null);
        assertThat(counter("egressd.conntrack.events", "type", "new")).isEqualTo(0);
    }

    @Test
    void kernelCountersAreCachedOnReconcileAndNeverGoBackwards()
    {
        f.kernel.counters.put(Ruleset.COUNTER_CAP4, 5L);
        f.kernel.counters.put(Ruleset.COUNTER_CAP6, 1L);
        f.kernel.counters.put(Ruleset.COUNTER_SPOOF4, 7L);
        f.kernel.counters.put(Ruleset.COUNTER_UNMAPPED6, 3L);
        f.kernel.counters.put(Ruleset.COUNTER_BACKSTOP4, 0L);
        assertThat(counter("egressd.cap.refused", "family", "ipv4")).isEqualTo(0); // not read before a reconcile
        f.loop.reconcile();
        assertThat(counter("egressd.cap.refused", "family", "ipv4")).isEqualTo(5);
        assertThat(counter("egressd.cap.refused", "family", "ipv6")).isEqualTo(1);
        assertThat(counter("egressd.spoof.dropped", "family", "ipv4")).isEqualTo(7);
        assertThat(counter("egressd.spoof.dropped", "family", "ipv6")).isEqualTo(0);
        assertThat(counter("egressd.failclosed.refused", "family", "ipv6")).isEqualTo(3);
        assertThat(counter("egressd.backstop.dropped", "family", "ipv4")).isEqualTo(0);

        f.kernel.counters.put(Ruleset.COUNTER_CAP4, 9L);
        f.loop.reconcile();
        assertThat(counter("egressd.cap.refused", "family", "ipv4")).isEqualTo(9);
        // The table is recreated: the kernel's counter restarts from 0; ours carries on.
        f.kernel.counters.put(Ruleset.COUNTER_CAP4, 2L);
        f.loop.reconcile();
        assertThat(counter("egressd.cap.refused", "family", "ipv4")).isEqualTo(11);
        // A kernel failure keeps the last values.
        f.kernel.failing = "gone";
        f.loop.reconcile();
        assertThat(counter("egressd.cap.refused", "family", "ipv4")).isEqualTo(11);
    }

    @Test
    void refusalsCountedAfterATableRebuildAreLoggedFromTheCachedTotals()
    {
        // As the daemon wires it: the watch reads the loop's cached totals, never the kernel a second time.
        final List<String> lines = new ArrayList<>();
        final KernelCounterWatch watch = new KernelCounterWatch(new RefusalLog(RefusalLog.Format.TEXT, lines::add,
            f.clock::get));
        f.kernel.counters.put(Ruleset.COUNTER_CAP4, 40L);
        f.kernel.counters.put(Ruleset.COUNTER_SPOOF4, 2L);
        f.loop.reconcile();
        assertThat(watch.observe(f.loop.kernelCounters())).as("the first call is the baseline").isZero();
        f.kernel.counters.put(Ruleset.COUNTER_CAP4, 45L);
        f.loop.reconcile();
        assertThat(watch.observe(f.loop.kernelCounters())).isEqualTo(1);
        assertThat(lines).last().asString().startsWith("refusal reason=cap_refused count=5 ");
        // The table is rebuilt (the kernel's counters restart from 0), then 3 more connections are refused: raw
        // values 45 -> 3 would look like no refusal at all; the cached total goes 45 -> 48.
        f.kernel.counters.put(Ruleset.COUNTER_CAP4, 3L);
        f.kernel.counters.put(Ruleset.COUNTER_SPOOF4, 0L);
        f.loop.reconcile();
        assertThat(f.loop.kernelCounters()).containsEntry(Ruleset.COUNTER_CAP4, 48L)
            .containsEntry(Ruleset.COUNTER_SPOOF4, 2L);
        assertThat(watch.observe(f.loop.kernelCounters())).isEqualTo(1);
        assertThat(lines).hasSize(2).last().asString().startsWith("refusal reason=cap_refused count=3 ");
        // the raw reads would have missed them: a value below the last is only a new baseline
        final KernelCounterWatch raw = new KernelCounterWatch(new RefusalLog(RefusalLog.Format.TEXT, l -> { },
            f.clock::get));
        raw.observe(Map.of(Ruleset.COUNTER_CAP4, 45L));
        assertThat(raw.observe(Map.of(Ruleset.COUNTER_CAP4, 3L))).isZero();
        // and after the rebuild both go on counting from there
        f.kernel.counters.put(Ruleset.COUNTER_CAP4, 10L);
        f.kernel.counters.put(Ruleset.COUNTER_SPOOF4, 1L);
        f.loop.reconcile();
        assertThat(watch.observe(f.loop.kernelCounters())).isEqualTo(2);
        assertThat(lines).hasSize(4).anySatisfy(l -> assertThat(l).startsWith("refusal reason=cap_refused count=7 "))
            // a count of 1 is not written out
            .anySatisfy(l -> assertThat(l).startsWith("refusal reason=spoof_dropped detail=\"1 IPv4"));
    }

    @Test
    void reconcileRunsFailuresRepairsAndKernelUp()
    {
        f.loop.reconcile();
        f.kernel.deleteTable(); // drift
        f.loop.reconcile();
        assertThat(counter("egressd.reconcile.runs")).isEqualTo(2);
        assertThat(counter("egressd.reconcile.repairs")).isEqualTo(1);
        assertThat(counter("egressd.reconcile.failures")).isEqualTo(0);
        assertThat(gauge("egressd.kernel.up")).isEqualTo(1);

        f.kernel.failing = "nft: no such table";
        f.loop.reconcile();
        assertThat(counter("egressd.reconcile.failures")).isEqualTo(1);
        assertThat(gauge("egressd.kernel.up")).isEqualTo(0);
        assertThat(gauge("egressd.kernel.consecutive.failures")).isEqualTo(1);
        f.loop.reconcile(); // backing off: not a run
        assertThat(counter("egressd.reconcile.runs")).isEqualTo(3);

        f.kernel.failing = null;
        f.clock.addAndGet(TimeUnit.SECONDS.toNanos(2));
        f.loop.reconcile();
        assertThat(counter("egressd.reconcile.runs")).isEqualTo(4);
        assertThat(gauge("egressd.kernel.up")).isEqualTo(1);
        assertThat(gauge("egressd.kernel.consecutive.failures")).isEqualTo(0);
    }

    @Test
    void reconcilePassesAreTimedAndTheLastSuccessIsStamped()
    {
        assertThat(gauge("egressd.reconcile.last.success.timestamp")).isZero();
        final long before = System.currentTimeMillis();
        f.loop.reconcile();
        final Timer duration = registry.get("egressd.reconcile.duration").timer();
        assertThat(duration.count()).isEqualTo(1);
        final double stamped = gauge("egressd.reconcile.last.success.timestamp");
        assertThat(stamped).isBetween(before / 1000.0, System.currentTimeMillis() / 1000.0);

        f.kernel.failing = "nft: no such table";
        f.clock.addAndGet(TimeUnit.SECONDS.toNanos(2));
        f.loop.reconcile();
        assertThat(duration.count()).as("a failed pass is timed too").isEqualTo(2);
        assertThat(gauge("egressd.reconcile.last.success.timestamp")).as("not a success").isEqualTo(stamped);
        f.loop.reconcile(); // backing off: not a pass
        assertThat(duration.count()).isEqualTo(2);
    }

    @Test
    void changesAreCountedByOperationAndOutcomeAndTimedToTheKernel() throws Exception
    {
        final MutationResult ok = f.loop.mutate(Operation.ADD_PAIR, "add pair 203.0.113.10 to app a1", l ->
        {
            f.clock.addAndGet(TimeUnit.MILLISECONDS.toNanos(7)); // time spent before the kernel holds it
            return l.allocator().addPair("a1", pair("203.0.113.10", "2001:db8::10"));
        }).get();
        assertThat(ok).isInstanceOf(MutationResult.Ok.class);
        assertThat(f.releasePair("a1", 99)).isInstanceOf(MutationResult.Refused.class); // not a pair of a1
        f.kernel.failing = "nft: busy";
        assertThat(f.put(machine("m1", "a1", 2))).isInstanceOf(MutationResult.Unavailable.class);
        f.kernel.failing = null;
        assertThat(f.put(machine("m1", "a1", 2))).isInstanceOf(MutationResult.Ok.class);
        f.loop.mutate(Operation.OTHER, "something new", l -> l.forgetRecovered()).get();

        assertThat(registry.get("egressd.changes").tags("operation", "add_pair", "outcome", "ok").counter().count())
            .isEqualTo(1);
        assertThat(registry.get("egressd.changes").tags("operation", "release_pair", "outcome", "refused").counter()
            .count()).isEqualTo(1);
        assertThat(registry.get("egressd.changes").tags("operation", "put_machine", "outcome", "unavailable")
            .counter().count()).isEqualTo(1);
        assertThat(registry.get("egressd.changes").tags("operation", "put_machine", "outcome", "ok").counter()
            .count()).isEqualTo(1);
        assertThat(registry.get("egressd.changes").tags("operation", "other", "outcome", "ok").counter().count())
            .isEqualTo(1);
        assertThat(registry.get("egressd.changes").tags("operation", "delete_machine", "outcome", "ok").counter()
            .count()).isEqualTo(0); // pre-registered, so the first one shows as an increase

        final Timer latency = registry.get("egressd.change.latency").timer();
        assertThat(latency.count()).isEqualTo(3); // ok changes only
        assertThat(latency.max(TimeUnit.MILLISECONDS)).isCloseTo(7, within(0.001));
    }

    @Test
    void operationNamesAreBoundedWhateverTheIds()
    {
        // The tag values come from two fixed enums, spelled as the series have always been named; each pair of
        // them is registered up front, so the first change of a kind shows as an increase.
        assertThat(java.util.Arrays.stream(Operation.values()).map(Operation::label)).containsExactly("put_app",
            "add_pair", "release_pair", "drain_pair", "undrain_pair", "put_machine", "delete_machine",
            "set_machine_pair", "release_machine_pair", "promote_machine_pair", "forget_recovered", "delete_host",
            "region_sync", "other");
        assertThat(java.util.Arrays.stream(ChangeObserver.Outcome.values()).map(ChangeObserver.Outcome::label))
            .containsExactly("ok", "refused", "unavailable");
        assertThat(registry.find("egressd.changes").counters()).hasSize(14 * 3);
        for (final Operation operation : Operation.values())
        {
            for (final ChangeObserver.Outcome outcome : ChangeObserver.Outcome.values())
            {
                assertThat(registry.get("egressd.changes").tags("operation", operation.label(), "outcome",
                    outcome.label()).counter().count()).isEqualTo(0);
            }
        }
    }

    @Test
    void gaugesReadTheLatestSnapshotEvenBeforeARefresh() throws Exception
    {
        f.addPair("a1", 10);
        metrics.refresh();
        final Gauge used = registry.get("egressd.pair.used").gauge();
        f.put(machine("m1", "a1", 2));
        assertThat(used.value()).isEqualTo(1);
        final FunctionCounter runs = registry.get("egressd.reconcile.runs").functionCounter();
        f.loop.reconcile();
        assertThat(runs.count()).isEqualTo(1);
    }
}
