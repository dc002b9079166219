package dev.egressd.agent.metrics;

import dev.egressd.agent.router.Router;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.FunctionTimer;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.binder.MeterBinder;

import java.util.concurrent.TimeUnit;

/** The router role's meters (docs/metrics.md, "Router"). */
public final class RouterMetrics implements MeterBinder
{
    private final Router router;

    /**
     * Creates the binder.
     *
     * @param router the router it reads.
     */
    public RouterMetrics(final Router router)
    {
        this.router = router;
    }

    @Override
    public void bindTo(final MeterRegistry registry)
    {
        Gauge.builder("egressd.router.applied.revision", router, Router::appliedRevision)
            .description("The last region revision whose slots and hosts this router's kernel steers")
            .register(registry);
        Gauge.builder("egressd.router.elements", router, Router::elements)
            .description("Elements of the router's nft maps (each held block: ports and ICMP ids, per family)")
            .register(registry);
        FunctionTimer.builder("egressd.router.apply", router, Router::applies, Router::applyNanos,
            TimeUnit.NANOSECONDS)
            .description("Changes applied to the router's kernel (full reads and watched batches) and their time")
            .register(registry);
        FunctionCounter.builder("egressd.router.table.reads", router, Router::tableReads)
            .description("Drift checks that read the router's nft table back over netlink (its generation id moved)")
            .register(registry);
        FunctionCounter.builder("egressd.router.table.reads.skipped", router, Router::tableReadsSkipped)
            .description("Drift checks that did not read the table: the ruleset's generation id had not moved")
            .register(registry);
        FunctionCounter.builder("egressd.router.repairs", router, Router::repairs)
            .description("Drift repaired: elements, rules and routes put right, tables replaced").register(registry);
        Gauge.builder("egressd.router.region.available", router, r -> r.regionAvailable() ? 1 : 0)
            .description("1 while the region (etcd) answers this router, else 0 (the kernel keeps its steering)")
            .register(registry);
    }
}
