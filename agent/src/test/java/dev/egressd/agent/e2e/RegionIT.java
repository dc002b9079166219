package dev.egressd.agent.e2e;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.agent.testing.ApiClient;
import dev.egressd.agent.testing.DaemonProcess;
import dev.egressd.agent.testing.EtcdServer;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Shell;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Region mode through the built jar: two daemons ({@code --dry-run}: the kernel is in memory, packets are not the
 * point here) with {@code ledger = etcd} against a real etcd started by the test, driven over their API sockets and
 * with egressctl, as an orchestrator and an operator would.
 */
@Privileged
class RegionIT
{
    private static final String PAIR = "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}";

    @TempDir
    Path dir;

    private static String machine(final String iface, final String guest, final String fromHost)
    {
        return "{\"app\": \"shop\", \"interface\": \"" + iface + "\", \"ipv4\": \"" + guest + "\""
            + (fromHost == null ? "" : ", \"from_host\": \"" + fromHost + "\"") + "}";
    }

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void twoDaemonsShareOnePairThroughEtcdAndSurviveEtcdAndDaemonRestarts() throws Exception
    {
        final List<DaemonProcess> daemons = new ArrayList<>();
        try (EtcdServer etcd = EtcdServer.create())
        {
            for (final String id : List.of("h1", "h2"))
            {
                final DaemonProcess d = DaemonProcess.dryRun(dir.resolve(id), "--ledger", "etcd", "--etcd-endpoints",
                    etcd.endpoint(), "--etcd-prefix", "/region-it", "--host-id", id, "--region-host-addresses",
                    "h1".equals(id) ? "192.0.2.11" : "192.0.2.12");
                daemons.add(d);
                d.start();
            }
            final ApiClient h1 = daemons.get(0).api();
            final ApiClient h2 = daemons.get(1).api();
            for (final ApiClient api : List.of(h1, h2))
            {
                api.await("/v1/region", r -> r.path("available").asBoolean(), "the region ledger is available");
            }

            // a pair added on h1 is a region object: h2 sees it
            h1.post("/v1/apps/shop/pairs", PAIR).ok();
            h2.await("/v1/apps/shop", a -> a.path("pairs").size() == 1, "h2 sees the pair");
            final JsonNode m1 = h1.put("/v1/machines/m1", machine("tap-m1", "10.77.0.2", null)).ok().json();
            final JsonNode m2 = h2.put("/v1/machines/m2", machine("tap-m2", "10.77.0.2", null)).ok().json();
            assertThat(m1.at("/egress/ipv4").asText()).isEqualTo("203.0.113.10");
            assertThat(m2.at("/egress/ipv4").asText()).isEqualTo("203.0.113.10");
            assertThat(m1.at("/egress/block").asInt()).isNotEqualTo(m2.at("/egress/block").asInt());
            // no router in this region: answered at once, saying so, with the claim's revision
            assertThat(m1.at("/steering/state").asText()).isEqualTo("no_router");
            assertThat(m1.at("/steering/revision").asLong()).isPositive();
            assertThat(m1.at("/egress/reason").asText())
                .startsWith("slot " + m1.at("/egress/block").asInt() + " of app pair 203.0.113.10, region ord");

            // the region as each host sees it
            // alive is each host's lease as etcd holds it: awaited too, a renewal may be late on a loaded machine
            final JsonNode region = h1.await("/v1/region", r -> r.path("slots_by_host").path("h2").asInt() == 1
                && r.path("hosts").size() == 2 && r.path("hosts").findValues("alive").stream()
                    .allMatch(JsonNode::asBoolean), "h1 sees h2's slot and both hosts alive");
            assertThat(region.path("ledger").asText()).isEqualTo("etcd");
            assertThat(region.path("host").asText()).isEqualTo("h1");
            assertThat(region.path("hosts").findValuesAsText("id")).containsExactlyInAnyOrder("h1", "h2");
            assertThat(region.path("hosts").findValues("alive")).allMatch(JsonNode::asBoolean);
            assertThat(region.path("hosts").findValues("mark")).extracting(JsonNode::asInt).as("one mark each")
                .containsExactlyInAnyOrder(1, 2);
            assertThat(region.path("routers").size()).isZero();
            assertThat(region.path("hosts").findValues("addresses").toString()).contains("192.0.2.11", "192.0.2.12");
            assertThat(region.path("mismatches").size()).isZero();
            final JsonNode state = h2.await("/v1/state",
                s -> s.at("/apps/0/pairs/0/holders").size() == 2, "h2's state shows both holders");
            assertThat(state.at("/apps/0/pairs/0/holders").findValuesAsText("host")).containsExactlyInAnyOrder("h1", "h2");
            final Shell.Output shown = daemons.get(0).egressctl("region");
            assertThat(shown.exitCode()).as("%s", shown).isZero();
            assertThat(shown.stdout()).contains("ledger:    etcd, region ord, this host h1", "available: yes", "h2");
            final Shell.Output check = daemons.get(0).egressctl("check", "--skip-addresses");
            assertThat(check.stdout()).contains("region-slots");
            assertThat(check.stdout()).doesNotContain("FAIL");
            assertThat(h1.get("/metrics").text()).contains("egressd_region_available 1.0",
                "egressd_region_requests_total");

            // kill -9 of h2: its slot stays; it comes back on the same block
            daemons.get(1).kill9();
            assertThat(h1.get("/v1/region").json().path("slots_by_host").path("h2").asInt()).isEqualTo(1);
            daemons.get(1).start();
            assertThat(h2.get("/v1/machines/m2").ok().json().at("/egress/block").asInt())
                .isEqualTo(m2.at("/egress/block").asInt());

            // etcd down: a new machine waits, a region change is refused quickly, both answered
            etcd.kill();
            final long t0 = System.nanoTime();
            final JsonNode m3 = h1.put("/v1/machines/m3", machine("tap-m3", "10.77.0.3", null)).ok().json();
            assertThat((System.nanoTime() - t0) / 1e9).as("answered within the deadline").isLessThan(4.5);
            assertThat(m3.at("/egress/scope").asText()).isEqualTo("pending");
            assertThat(m3.at("/egress/reason").asText()).startsWith("region ledger unavailable");
            final ApiClient.Response refused = h1.post("/v1/apps/shop/pairs",
                "{\"ipv4\": \"203.0.113.11\", \"ipv6\": \"2001:db8::11\"}");
            assertThat(refused.status()).isEqualTo(503);
            assertThat(refused.json().at("/error/code").asText()).isEqualTo("region_unavailable");
            assertThat(h1.get("/v1/machines/m1").ok().json().at("/egress/scope").asText()).as("placed: unchanged")
                .isEqualTo("app");
            etcd.start();
            h1.await("/v1/machines/m3", m -> "app".equals(m.at("/egress/scope").asText()),
                "m3 placed once etcd is back");
            h2.await("/v1/region", r -> r.path("available").asBoolean(), "h2 read the region again");

            // a handover: m1 moves from h1 to h2 with its block
            final ApiClient.Response early = h2.put("/v1/machines/m1", machine("tap-m1", "10.77.0.5", "h1"));
            assertThat(early.status()).isEqualTo(409);
            assertThat(early.json().at("/error/field").asText()).isEqualTo("from_host");
            h1.delete("/v1/machines/m1?handover=true").ok();
            final JsonNode moved = h2.put("/v1/machines/m1", machine("tap-m1", "10.77.0.5", "h1")).ok().json();
            assertThat(moved.at("/egress/block").asInt()).isEqualTo(m1.at("/egress/block").asInt());
            assertThat(moved.at("/egress/ipv4").asText()).isEqualTo("203.0.113.10");

            // deleting a host needs the fencing confirmation
            final ApiClient.Response unconfirmed = h1.delete("/v1/hosts/h2");
            assertThat(unconfirmed.status()).isEqualTo(400);
            assertThat(unconfirmed.json().at("/error/field").asText()).isEqualTo("fenced");
        }
        finally
        {
            daemons.forEach(DaemonProcess::close);
        }
    }
}
