package dev.egressd.agent.metrics;

import dev.egressd.agent.reconcile.RegionLedger;
import dev.egressd.agent.reconcile.Steering;

import java.util.EnumMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.binder.MeterBinder;

/** Region mode's meters (docs/metrics.md): etcd's availability and round trips, claim races, conflicts, lag. */
public final class RegionMetrics implements MeterBinder
{
    private final RegionLedger ledger;

    /**
     * Creates the binder.
     *
     * @param ledger the region ledger it reads.
     */
    public RegionMetrics(final RegionLedger ledger)
    {
        this.ledger = ledger;
    }

    @Override
    public void bindTo(final MeterRegistry registry)
    {
        Gauge.builder("egressd.region.available", ledger, l -> l.available() ? 1 : 0)
            .description("1 while the region ledger (etcd) answers and new machines can be placed, else 0")
            .register(registry);
        FunctionCounter.builder("egressd.region.requests", ledger, l -> l.storeStats().requests())
            .description("Requests sent to the region ledger (etcd)").register(registry);
        FunctionCounter.builder("egressd.region.request.failures", ledger, l -> l.storeStats().failures())
            .description("Requests to the region ledger that failed or passed their deadline").register(registry);
        FunctionCounter.builder("egressd.region.request.seconds", ledger, l -> l.storeStats().nanos() / 1e9)
            .description("Total time of the requests to the region ledger (divide by requests for the mean round trip)")
            .register(registry);
        FunctionCounter.builder("egressd.region.claim.conflicts", ledger, l -> l.storeStats().conflicts())
            .description("Claims and handovers that found the slot held by another machine (lost races)")
            .register(registry);
        FunctionCounter.builder("egressd.region.slot.conflicts", ledger, RegionLedger::slotConflicts)
            .description("Slots the region ledger gives to another host while a machine of this host held them; "
                + "the machine was moved off (etcd wins)").register(registry);
        Gauge.builder("egressd.region.pending.releases", ledger, RegionLedger::pendingReleases)
            .description("Slot releases not yet accepted by the region ledger (retried)").register(registry);
        Gauge.builder("egressd.region.watch.lag", ledger, l -> Math.max(0, l.lastApplyNanos()) / 1e9)
            .description("Seconds between the arrival of the last watched region change and its application here")
            .baseUnit("seconds").register(registry);
        Gauge.builder("egressd.region.revision", ledger, RegionLedger::revision)
            .description("The last region ledger revision applied to this host's cache").register(registry);
        Gauge.builder("egressd.region.routers", ledger, l -> l.routers().applied().size())
            .description("The region's live routers (routers/<id> keys on their leases)").register(registry);
        // every state from the start, so a dashboard sees zeros rather than missing series; local never waits here
        final Map<Steering.State, Timer> waits = new EnumMap<>(Steering.State.class);
        for (final Steering.State state : new Steering.State[] {Steering.State.CONFIRMED, Steering.State.UNCONFIRMED,
            Steering.State.NO_ROUTER})
        {
            waits.put(state, Timer.builder("egressd.region.steering.wait").tag("state", state.text())
                .description("How long placement and host-deletion answers waited for the region's routers to "
                    + "steer by their revision, by how the wait ended")
                .publishPercentileHistogram()
                .minimumExpectedValue(java.time.Duration.ofMillis(1))
                .maximumExpectedValue(java.time.Duration.ofSeconds(60))
                .register(registry));
        }
        ledger.routers().observe((state, nanos) ->
        {
            final Timer t = waits.get(state);
            if (t != null)
            {
                t.record(Math.max(0, nanos), TimeUnit.NANOSECONDS);
            }
        });
    }
}
