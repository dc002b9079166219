package dev.egressd.agent.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.agent.metrics.RegionMetrics;
import dev.egressd.agent.region.MemoryRegionStore;
import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.testing.ApiClient;
import dev.egressd.agent.testing.RegionHost;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Scope;

import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The steering gate (docs/region.md, "Steering"): a placement's answer in region mode waits, off the loop thread,
 * for every live router to publish the claim's revision, up to {@code router-confirm-ms}. The routers are fakes: a
 * test thread publishing {@code routers/<id>} through its own store, as the router role does.
 */
@Timeout(60)
class SteeringApiTest
{
    private static final HostSettings SETTINGS = new HostSettings("ord", new BlockLayout(4, 1024), 1024);
    private static final Duration SOON = Duration.ofSeconds(10);
    private static final int CONFIRM_MILLIS = 1500;

    @TempDir
    Path dir;

    private final MemoryRegionStore.Backend backend = new MemoryRegionStore.Backend();
    private final List<AutoCloseable> opened = new ArrayList<>();
    private final ExecutorService pool = Executors.newCachedThreadPool();
    private PrometheusMeterRegistry registry;

    @AfterEach
    void stop() throws Exception
    {
        pool.shutdownNow();
        for (int i = opened.size() - 1; i >= 0; i--)
        {
            opened.get(i).close();
        }
        backend.close();
    }

    private RegionHost host(final String id) throws Exception
    {
        final RegionHost h = new RegionHost(id, SETTINGS, dir.resolve(id),
            () -> new MemoryRegionStore(backend, SETTINGS.region(), Duration.ofSeconds(10)), 120, CONFIRM_MILLIS);
        opened.add(h);
        assertThat(h.awaitAvailable(SOON)).isTrue();
        return h;
    }

    /** An API server in front of a host's loop, and a client for it. */
    private ApiClient api(final RegionHost h) throws Exception
    {
        final int uid = (Integer)Files.getAttribute(Path.of("/proc/self"), "unix:uid");
        final int gid = (Integer)Files.getAttribute(Path.of("/proc/self"), "unix:gid");
        final ApiServer server = new ApiServer(new PeerPolicy(gid, Set.of(uid)));
        final Path socket = dir.resolve(h.id() + ".sock");
        server.start(socket, null, h.loop(), null, "test", null, Runnable::run);
        opened.add(server::close);
        registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        new RegionMetrics(h.ledger()).bindTo(registry);
        return new ApiClient(socket);
    }

    /** A fake router: its own client of the region, publishing what it "applied". */
    private RegionStore router()
    {
        final RegionStore store = new MemoryRegionStore(backend, SETTINGS.region(), Duration.ofSeconds(10));
        opened.add(store);
        return store;
    }

    private static void awaitTrue(final java.util.concurrent.Callable<Boolean> check) throws Exception
    {
        final long end = System.nanoTime() + SOON.toNanos();
        while (!check.call() && System.nanoTime() < end)
        {
            Thread.sleep(10);
        }
        assertThat(check.call()).isTrue();
    }

    private static String machine(final String id, final String guest)
    {
        return "{\"app\": \"shop\", \"interface\": \"tap-" + id + "\", \"ipv4\": \"" + guest + "\"}";
    }

    private long slotRevision(final String machine) throws Exception
    {
        try (RegionStore s = new MemoryRegionStore(backend, SETTINGS.region(), Duration.ofSeconds(10)))
        {
            return s.read().slots().values().stream().filter(r -> machine.equals(r.machine())).findFirst()
                .orElseThrow().modRevision();
        }
    }

    private static long millisSince(final long start)
    {
        return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    }

    @Test
    void withoutARouterThePlacementIsAnsweredAtOnceNoRouter() throws Exception
    {
        final RegionHost h1 = host("h1");
        final ApiClient api = api(h1);
        api.post("/v1/apps/shop/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}").ok();
        final long start = System.nanoTime();
        final JsonNode placed = api.put("/v1/machines/m1", machine("m1", "10.77.0.2")).ok().json();
        assertThat(millisSince(start)).isLessThan(CONFIRM_MILLIS);
        assertThat(placed.at("/egress/scope").asText()).isEqualTo("app");
        final JsonNode steering = placed.path("steering");
        assertThat(steering.path("state").asText()).isEqualTo("no_router");
        assertThat(steering.path("revision").asLong()).isEqualTo(slotRevision("m1")).isPositive();
        assertThat(steering.path("waiting_for")).isEmpty();
        assertThat(registry.scrape()).contains("egressd_region_steering_wait_seconds_count{state=\"no_router\"} 1");
        // the same request again claims nothing: the slot's current revision is the one to steer by
        final JsonNode again = api.put("/v1/machines/m1", machine("m1", "10.77.0.2")).ok().json();
        assertThat(again.at("/steering/revision").asLong()).isEqualTo(slotRevision("m1"));
    }

    @Test
    void aPlacementWaitsOffTheLoopUntilEveryLiveRouterAppliedItsClaim() throws Exception
    {
        final RegionHost h1 = host("h1");
        final ApiClient api = api(h1);
        api.post("/v1/apps/shop/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}").ok();
        final RegionStore r1 = router();
        final RegionStore r2 = router();
        r1.publishRouter("r1", backend.revision());
        r2.publishRouter("r2", backend.revision());
        awaitTrue(() -> h1.ledger().routers().applied().size() == 2);

        final long start = System.nanoTime();
        final Future<ApiClient.Response> waiting = pool.submit(() -> api.put("/v1/machines/m1",
            machine("m1", "10.77.0.2")));
        awaitTrue(() -> h1.ledger().routers().waiting() == 1);
        // the answer waits, the loop does not: the machine is placed, and other mutations go through meanwhile
        assertThat(h1.egress("m1").scope()).isEqualTo(Scope.APP);
        assertThat(api.put("/v1/apps/other", "{\"fail_closed\": false}").ok().json().path("id").asText())
            .isEqualTo("other");
        assertThat(api.get("/v1/region").ok().json().path("routers")).hasSize(2);
        assertThat(waiting).isNotDone();

        final long claim = slotRevision("m1");
        r1.publishRouter("r1", claim);
        Thread.sleep(100);
        assertThat(waiting).as("r2 is still behind").isNotDone();
        r2.publishRouter("r2", claim + 1);
        final JsonNode placed = waiting.get(10, TimeUnit.SECONDS).ok().json();
        assertThat(millisSince(start)).isLessThan(CONFIRM_MILLIS + 1000);
        assertThat(placed.path("id").asText()).isEqualTo("m1");
        assertThat(placed.at("/steering/state").asText()).isEqualTo("confirmed");
        assertThat(placed.at("/steering/revision").asLong()).isEqualTo(claim);
        assertThat(placed.at("/steering/waiting_for")).isEmpty();
        assertThat(registry.scrape()).contains("egressd_region_steering_wait_seconds_count{state=\"confirmed\"} 1");

        final JsonNode region = api.get("/v1/region").ok().json();
        assertThat(region.path("routers").toString()).isEqualTo("[{\"id\":\"r1\",\"applied\":" + claim
            + "},{\"id\":\"r2\",\"applied\":" + (claim + 1) + "}]");
        assertThat(region.path("hosts").get(0).path("mark").asInt()).isEqualTo(1);
    }

    @Test
    void aRouterThatDoesNotCatchUpIsNamedWhenTheDeadlinePasses() throws Exception
    {
        final RegionHost h1 = host("h1");
        final ApiClient api = api(h1);
        api.post("/v1/apps/shop/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}").ok();
        final RegionStore fast = router();
        final RegionStore stuck = router();
        stuck.publishRouter("stuck", 1);
        final AtomicBoolean follow = new AtomicBoolean(true);
        // a router that keeps up: publishes the region's revision as it moves
        pool.submit(() ->
        {
            while (follow.get())
            {
                fast.publishRouter("fast", backend.revision());
                Thread.sleep(20);
            }
            return null;
        });
        awaitTrue(() -> h1.ledger().routers().applied().size() == 2);

        final long start = System.nanoTime();
        final JsonNode placed = api.put("/v1/machines/m1", machine("m1", "10.77.0.2")).ok().json();
        final long took = millisSince(start);
        follow.set(false);
        assertThat(took).isGreaterThanOrEqualTo(CONFIRM_MILLIS - 50);
        assertThat(placed.at("/steering/state").asText()).isEqualTo("unconfirmed");
        assertThat(placed.at("/steering/revision").asLong()).isEqualTo(slotRevision("m1"));
        assertThat(placed.at("/steering/waiting_for").toString()).isEqualTo("[\"stuck\"]");
        assertThat(placed.at("/egress/scope").asText()).as("placed all the same").isEqualTo("app");
        assertThat(registry.scrape()).contains("egressd_region_steering_wait_seconds_count{state=\"unconfirmed\"} 1");
    }

    @Test
    void aHandoverAndAHostDeletionWaitForTheirOwnRevision() throws Exception
    {
        final RegionHost h1 = host("h1");
        final RegionHost h2 = host("h2");
        final RegionHost h3 = host("h3");
        final ApiClient api1 = api(h1);
        final ApiClient api2 = api(h2);
        api1.post("/v1/apps/shop/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}").ok();
        awaitTrue(() -> h2.pairs().size() == 1);
        final RegionStore router = router();
        final AtomicBoolean follow = new AtomicBoolean(true);
        pool.submit(() ->
        {
            while (follow.get())
            {
                router.publishRouter("r1", backend.revision());
                Thread.sleep(20);
            }
            return null;
        });
        awaitTrue(() -> h1.ledger().routers().applied().size() == 1 && h2.ledger().routers().applied().size() == 1);

        api1.put("/v1/machines/m1", machine("m1", "10.77.0.2")).ok();
        api1.delete("/v1/machines/m1?handover=true").ok();
        final JsonNode moved = api2.put("/v1/machines/m1", "{\"app\": \"shop\", \"interface\": \"tap-m1\", "
            + "\"ipv4\": \"10.77.0.2\", \"from_host\": \"h1\"}").ok().json();
        assertThat(moved.at("/steering/state").asText()).isEqualTo("confirmed");
        assertThat(moved.at("/steering/revision").asLong()).as("the handover's revision")
            .isEqualTo(slotRevision("m1"));

        h3.kill();
        awaitTrue(() -> h1.regionView().hosts().stream().anyMatch(h -> "h3".equals(h.id())));
        final long before = backend.revision();
        final JsonNode deleted = api1.call("DELETE", "/v1/hosts/h3", "{\"fenced\": true}").ok().json();
        follow.set(false);
        assertThat(deleted.path("ledger").asText()).isEqualTo("etcd");
        assertThat(deleted.at("/steering/state").asText()).isEqualTo("confirmed");
        assertThat(deleted.at("/steering/revision").asLong()).as("the quarantine's revision")
            .isGreaterThan(before);
    }
}
