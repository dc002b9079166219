package dev.egressd.agent.router;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.kernel.rtnetlink.PolicyRouting;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Route;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Rule;
import dev.egressd.agent.metrics.RouterMetrics;
import dev.egressd.agent.region.MemoryRegionStore;
import dev.egressd.agent.region.RegionStore.HostRecord;
import dev.egressd.agent.region.RegionStore.RegionApp;
import dev.egressd.agent.region.RegionStore.RegionPair;
import dev.egressd.agent.region.RegionStore.SlotId;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The router's loop on a MemoryRegionStore, with an in-memory nft and policy routing. */
class RouterTest
{
    private static final String TABLE = "egressd_router";
    private static final Ipv4Address P1 = Ipv4Address.parse("203.0.113.5");
    private static final String V6 = SteeringPlan.address("2001:db8:5::5").getHostAddress();
    private static final Duration TTL = Duration.ofSeconds(10);

    private final MemoryRegionStore.Backend backend = new MemoryRegionStore.Backend();
    private final List<AutoCloseable> closing = new ArrayList<>();
    private final List<String> events = new CopyOnWriteArrayList<>();
    private final FakeSteeringNft nft = new FakeSteeringNft(events::add);
    private final FakePolicyRouting routing = new FakePolicyRouting(events::add);
    private MemoryRegionStore admin;
    private RecordingRegionStore routerStore;
    private Router router;

    @BeforeEach
    void setUp() throws Exception
    {
        admin = store();
        admin.putApp(new RegionApp("app", false));
        admin.createPair(new RegionPair("app", new EgressPair(P1, Ipv6Address.parse("2001:db8:5::5"), "ord"), false));
        routerStore = new RecordingRegionStore(store(), backend::revision);
        router = new Router(routerStore, new SteeringTable(nft, nft, TABLE), new PolicyTables(routing, 7000),
            new Router.Settings("r1", 1024, 7000), System::nanoTime);
    }

    @AfterEach
    void tearDown() throws Exception
    {
        router.close();
        for (final AutoCloseable c : closing)
        {
            c.close();
        }
        backend.close();
    }

    private MemoryRegionStore store()
    {
        final MemoryRegionStore s = new MemoryRegionStore(backend, "ord", TTL);
        closing.add(s);
        return s;
    }

    private MemoryRegionStore host(final String id, final String v4, final String v6) throws Exception
    {
        final MemoryRegionStore s = store();
        s.registerHost(new HostRecord(id, List.of(v4, v6), true));
        return s;
    }

    private static String key(final int block)
    {
        return "203.0.113.5 . " + block * 1024 + "-" + (block * 1024 + 1023);
    }

    private String mark(final String map, final String key)
    {
        final Map<String, String> elements = nft.elements(TABLE, map);
        return elements == null ? null : elements.get(key);
    }

    private static void await(final String what, final BooleanSupplier condition) throws InterruptedException
    {
        final long end = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        while (!condition.getAsBoolean())
        {
            if (System.nanoTime() - end > 0)
            {
                throw new AssertionError("timed out waiting for: " + what);
            }
            Thread.sleep(10);
        }
    }

    /** Waits until the router applied and published the backend's last change (or a later one). */
    private void settle() throws InterruptedException
    {
        final long revision = backend.revision();
        // the router's own publishes are revisions too, which it never applies: wait for the last other one
        await("router applied revision " + revision, () -> router.appliedRevision() >= routerStore.lastChange(revision)
            && !routerStore.published.isEmpty()
            && routerStore.published.get(routerStore.published.size() - 1) >= routerStore.lastChange(revision));
    }

    @Test
    void claimsHandoversAndQuarantinesMoveTheElements() throws Exception
    {
        final MemoryRegionStore h1 = host("h1", "192.0.2.1", "2001:db8:a::1");
        final MemoryRegionStore h2 = host("h2", "192.0.2.5", "2001:db8:b::1");
        h1.claim(new SlotId(P1, 1), "h1", "m1");
        router.start();
        settle();
        assertThat(mark("blk4", key(1))).isEqualTo("0x1");
        assertThat(mark("icmpid4", key(1))).isEqualTo("0x1");
        assertThat(mark("blk6", V6 + " . 1024-2047")).isEqualTo("0x1");
        assertThat(mark("icmpid6", V6 + " . 1024-2047")).isEqualTo("0x1");
        assertThat(nft.elements(TABLE, "shared4")).containsOnlyKeys("203.0.113.5");
        assertThat(routing.rules()).contains(new Rule(PolicyRouting.AF_INET, 1, 7001, 7001),
            new Rule(PolicyRouting.AF_INET6, 2, 7002, 7002));
        assertThat(routing.routes()).contains(new Route(PolicyRouting.AF_INET, 7002, SteeringPlan.address("203.0.113.5"),
            32, SteeringPlan.address("192.0.2.5")));
        assertThat(router.elements()).isEqualTo(4);

        // claim
        h2.claim(new SlotId(P1, 2), "h2", "m2");
        settle();
        assertThat(mark("blk4", key(2))).isEqualTo("0x2");

        // leaving keeps the element; the handover moves it
        h1.markLeaving(new SlotId(P1, 1), "h1", "m1");
        settle();
        assertThat(mark("blk4", key(1))).isEqualTo("0x1");
        h2.handover("m1", "h1", "h2");
        settle();
        assertThat(mark("blk4", key(1))).isEqualTo("0x2");
        assertThat(mark("icmpid6", V6 + " . 1024-2047")).isEqualTo("0x2");

        // quarantine: h2's blocks are refused, then its rules and routes go, in that order
        admin.quarantineHost("h2", System.currentTimeMillis() + 60_000);
        settle();
        assertThat(nft.elements(TABLE, "blk4")).isEmpty();
        assertThat(routing.rules()).extracting(Rule::mark).containsOnly(1);
        assertThat(routing.routes()).extracting(Route::table).containsOnly(7001);
        final int lastElementDelete = lastIndex("nft delete blk4 " + key(1));
        final int ruleDelete = events.indexOf("rule delete 2/" + PolicyRouting.AF_INET);
        assertThat(lastElementDelete).isGreaterThanOrEqualTo(0);
        assertThat(ruleDelete).as("the rule goes after the elements").isGreaterThan(lastElementDelete);

        // its own router key changes do not make it publish again
        final int published = routerStore.published.size();
        Thread.sleep(300);
        assertThat(routerStore.published).hasSize(published);
        assertThat(router.publishedRevision()).isEqualTo(router.appliedRevision());
    }

    @Test
    void aNewHostsRulesAndRoutesComeBeforeItsElements() throws Exception
    {
        // the store gives each host the lowest free mark: h3 gets 3
        host("h1", "192.0.2.1", "2001:db8:a::1");
        host("h2", "192.0.2.5", "2001:db8:b::1");
        router.start();
        settle();
        // one revision with both the host and its slot, as after an outage: one batch
        backend.setAvailable(false);
        await("router sees the outage", () -> !router.regionAvailable());
        backend.setAvailable(true);
        final MemoryRegionStore h3 = host("h3", "192.0.2.9", "2001:db8:c::1");
        h3.claim(new SlotId(P1, 3), "h3", "m3");
        settle();
        assertThat(mark("blk4", key(3))).isEqualTo("0x3");
        final int element = events.indexOf("nft add blk4 " + key(3) + " : 0x3");
        assertThat(element).isGreaterThan(events.indexOf("rule add 3/" + PolicyRouting.AF_INET))
            .isGreaterThan(events.indexOf("route add 7003 203.0.113.5"))
            .isGreaterThan(events.indexOf("rule add 3/" + PolicyRouting.AF_INET6));
        assertThat(events.indexOf("rule add 3/" + PolicyRouting.AF_INET)).isGreaterThanOrEqualTo(0);
    }

    @Test
    void whileTheRegionIsDownTheKernelKeepsItsSteering() throws Exception
    {
        final MemoryRegionStore h1 = host("h1", "192.0.2.1", "2001:db8:a::1");
        h1.claim(new SlotId(P1, 1), "h1", "m1");
        router.start();
        settle();
        final int transactions = nft.transactions();
        backend.setAvailable(false);
        await("unavailable", () -> !router.regionAvailable());
        Thread.sleep(1500); // a full read is retried and a drift check runs meanwhile
        assertThat(mark("blk4", key(1))).isEqualTo("0x1");
        assertThat(routing.rules()).isNotEmpty();
        assertThat(nft.transactions()).as("nothing was written while etcd was away").isEqualTo(transactions);
        backend.setAvailable(true);
        h1.claim(new SlotId(P1, 4), "h1", "m4");
        settle();
        assertThat(router.regionAvailable()).isTrue();
        assertThat(mark("blk4", key(4))).isEqualTo("0x1");
        assertThat(mark("blk4", key(1))).isEqualTo("0x1");
    }

    @Test
    void aCompactionMakesItReadEverythingAgain() throws Exception
    {
        final MemoryRegionStore h1 = host("h1", "192.0.2.1", "2001:db8:a::1");
        router.start();
        settle();
        final int reads = routerStore.reads.get();
        backend.compact(backend.revision() + 2);
        h1.claim(new SlotId(P1, 5), "h1", "m5");
        settle();
        assertThat(routerStore.reads.get()).isGreaterThan(reads);
        assertThat(mark("blk4", key(5))).isEqualTo("0x1");
    }

    @Test
    void anIdleRouterChecksTheGenerationIdAndDoesNotReadItsTable() throws Exception
    {
        final MemoryRegionStore h1 = host("h1", "192.0.2.1", "2001:db8:a::1");
        h1.claim(new SlotId(P1, 1), "h1", "m1");
        h1.claim(new SlotId(P1, 2), "h1", "m2");
        router.start();
        settle();
        final int dumps = nft.dumps();
        final long skipped = router.tableReadsSkipped();
        await("two idle drift checks", () -> router.tableReadsSkipped() >= skipped + 2);
        assertThat(nft.dumps()).as("no map or set was dumped while nothing changed").isEqualTo(dumps);
        // a hand edit moves the generation id: the next check reads the table, and puts the element back
        final long reads = router.tableReads();
        nft.handDelete(TABLE, "icmpid4", key(2));
        await("element put back", () -> "0x1".equals(mark("icmpid4", key(2))));
        assertThat(router.tableReads()).isGreaterThan(reads);
        assertThat(nft.dumps()).isGreaterThan(dumps);
    }

    @Test
    void driftIsRepairedWithinAboutASecond() throws Exception
    {
        final MemoryRegionStore h1 = host("h1", "192.0.2.1", "2001:db8:a::1");
        h1.claim(new SlotId(P1, 1), "h1", "m1");
        router.start();
        settle();
        nft.handDelete(TABLE, "blk4", key(1));
        await("element put back", () -> "0x1".equals(mark("blk4", key(1))));
        assertThat(router.repairs()).isGreaterThanOrEqualTo(1);

        final Rule rule = new Rule(PolicyRouting.AF_INET, 1, 7001, 7001);
        routing.handDelete(rule);
        await("rule put back", () -> routing.rules().contains(rule));

        // a stray rule in the owned range goes; one outside it is left alone
        final Rule stray = new Rule(PolicyRouting.AF_INET, 9, 7009, 7009);
        final Rule foreign = new Rule(PolicyRouting.AF_INET, 9, 100, 100);
        routing.handAdd(stray);
        routing.handAdd(foreign);
        await("stray rule removed", () -> !routing.rules().contains(stray));
        assertThat(routing.rules()).contains(foreign);

        final long before = router.repairs();
        nft.handDeleteChain(TABLE);
        await("table replaced and counted", () -> nft.hasChain(TABLE) && router.repairs() > before);
        assertThat(nft.runJson("list chain inet " + TABLE + " prerouting")).contains("fib saddr . mark . iif");
        assertThat(mark("blk4", key(1))).isEqualTo("0x1");
    }

    @Test
    void aFailedKernelChangeIsRetriedAndPublishedOnlyOnceApplied() throws Exception
    {
        final MemoryRegionStore h1 = host("h1", "192.0.2.1", "2001:db8:a::1");
        router.start();
        settle();
        routing.failNext(); // the rules of h2 are refused once
        final MemoryRegionStore h2 = host("h2", "192.0.2.5", "2001:db8:b::1");
        final long registered = backend.revision();
        await("the failure", () -> routing.failures() == 1);
        // the retry comes with the next drift check, a second later: until then the revision is not published
        assertThat(router.appliedRevision()).isLessThan(registered);
        assertThat(routerStore.published).allSatisfy(r -> assertThat(r).isLessThan(registered));
        settle();
        assertThat(routing.rules()).contains(new Rule(PolicyRouting.AF_INET, 2, 7002, 7002));
        h2.claim(new SlotId(P1, 6), "h2", "m6");
        settle();
        assertThat(mark("blk4", key(6))).isEqualTo("0x2");
        assertThat(routing.rules()).contains(new Rule(PolicyRouting.AF_INET, 2, 7002, 7002));
        h1.claim(new SlotId(P1, 7), "h1", "m7");
        settle();
        assertThat(mark("blk4", key(7))).isEqualTo("0x1");
    }

    @Test
    void aFailedFirstCreateIsRetried() throws Exception
    {
        final MemoryRegionStore h1 = host("h1", "192.0.2.1", "2001:db8:a::1");
        h1.claim(new SlotId(P1, 2), "h1", "m2");
        nft.failNextRun();
        router.start();
        settle(); // nothing else changes in the region: the retry comes from the loop itself
        assertThat(mark("blk4", key(2))).isEqualTo("0x1");
        assertThat(nft.hasChain(TABLE)).isTrue();
    }

    @Test
    void theMetricsShowTheRouter() throws Exception
    {
        final MemoryRegionStore h1 = host("h1", "192.0.2.1", "2001:db8:a::1");
        h1.claim(new SlotId(P1, 1), "h1", "m1");
        final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        new RouterMetrics(router).bindTo(registry);
        router.start();
        settle();
        final String scrape = registry.scrape();
        assertThat(scrape).contains("egressd_router_applied_revision " + (double) router.appliedRevision())
            .contains("egressd_router_elements 4.0").contains("egressd_router_region_available 1.0")
            .contains("egressd_router_repairs_total 0.0").containsPattern("egressd_router_apply_seconds_count [1-9]")
            .contains("egressd_router_table_reads_total").contains("egressd_router_table_reads_skipped_total")
            .contains("egressd_router_apply_seconds_sum");
    }

    private int lastIndex(final String event)
    {
        return events.lastIndexOf(event);
    }
}
