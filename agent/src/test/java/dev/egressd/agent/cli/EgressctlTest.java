package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.agent.kernel.LoopbackArp;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/** Every egressctl command through picocli against a fake daemon on a unix socket. */
class EgressctlTest
{
    /** The connections endpoint's shape, as the daemon answers it. */
    static final String CONNECTIONS = """
        {"machine": "m1", "cap": 1024, "total": 1020, "busiest": {"destination": "198.51.100.10", "connections": 990,
         "use": 0.966796875}, "destinations": [
          {"destination": "198.51.100.10", "connections": 990, "use": 0.966796875, "ports_in_use": 990},
          {"destination": "198.51.100.11", "connections": 830, "use": 0.810546875, "ports_in_use": 830},
          {"destination": "2001:db8:100::10", "connections": 30, "use": 0.029296875, "ports_in_use": 30}],
         "violations": 2}
        """;

    @TempDir
    Path dir;

    private FakeDaemon daemon;
    private String socket;
    /** Every egress address of state.json is on eth0, but the machine-scoped IPv6. */
    private final Map<String, String> local = new LinkedHashMap<>();
    /** This namespace's sysctls as egressctl reads them. */
    private final Map<String, String> sysctls = new LinkedHashMap<>();

    /** What a run printed and returned. */
    record Run(int exit, String out, String err)
    {
        JsonNode json() throws Exception
        {
            return DaemonClient.MAPPER.readTree(out);
        }
    }

    @BeforeEach
    void setUp() throws Exception
    {
        socket = dir.resolve("api.sock").toString();
        daemon = new FakeDaemon(dir.resolve("api.sock"))
            .json("GET", "/v1/state", "state.json")
            .json("GET", "/v1/health", "health.json")
            .json("GET", "/v1/machines/m1", "machine-m1.json")
            .json("GET", "/v1/machines/m9", "machine-m9.json")
            .json("GET", "/v1/machines/legacy1", "machine-legacy1.json")
            .json("GET", "/v1/apps/shop", "app-shop.json")
            .json("GET", "/v1/apps/blog", "app-blog.json")
            .json("PUT", "/v1/apps/shop/pairs/203.0.113.11/drain", "drain.json")
            .json("DELETE", "/v1/apps/shop/pairs/203.0.113.11/drain", "undrain.json")
            .error("GET", "/v1/machines/nope", 404, "unknown_machine", "id", "machine nope is not known")
            .error("GET", "/v1/apps/nope", 404, "unknown_app", "app", "app nope is not known");
        for (final String a : List.of("203.0.113.10", "2001:db8:0:0:0:0:0:10", "203.0.113.11", "2001:db8::11",
            "203.0.113.50", "2001:db8::50"))
        {
            local.put(Addresses.canonical(a), "eth0");
        }
        local.put("127.0.0.1", "lo");
    }

    @AfterEach
    void tearDown()
    {
        daemon.close();
    }

    /** Runs egressctl with {@code --socket} after the command (an inherited option). */
    Run run(final String... args)
    {
        final List<String> all = new ArrayList<>(Arrays.asList(args));
        all.add("--socket");
        all.add(socket);
        return raw(all.toArray(String[]::new));
    }

    Run raw(final String... args)
    {
        final StringWriter out = new StringWriter();
        final StringWriter err = new StringWriter();
        final CommandLine cmd = Egressctl.commandLine(new Egressctl(() -> local, new LoopbackArp.Sysctls()
        {
            @Override
            public String read(final String key) throws java.io.IOException
            {
                final String v = sysctls.get(key);
                if (v == null)
                {
                    throw new java.io.IOException("sysctl " + key + ": no such key");
                }
                return v;
            }

            @Override
            public void write(final String key, final String value)
            {
                throw new AssertionError("egressctl never writes a sysctl");
            }
        }));
        cmd.setOut(new PrintWriter(out, true));
        cmd.setErr(new PrintWriter(err, true));
        final int exit = cmd.execute(args);
        return new Run(exit, out.toString(), err.toString());
    }

    @Test
    void regionShowsEachHostsMarkAndEachRoutersRevision() throws Exception
    {
        daemon.answer("GET", "/v1/region", 200, """
            {"ledger": "etcd", "host": "h1", "region": "ord", "available": true, "problem": null,
             "revision": 1843, "cache_lag_seconds": 0.0004,
             "hosts": [{"id": "h1", "alive": true, "mark": 1, "slots": 12, "addresses": ["192.0.2.11"]},
                       {"id": "h2", "alive": false, "mark": 0, "slots": 9, "addresses": []}],
             "routers": [{"id": "r1", "applied": 1843}, {"id": "r2", "applied": 1840}],
             "slots_by_host": {"h1": 12, "h2": 9}, "pending_releases": 0, "mismatches": [],
             "requests": {"total": 5120, "failures": 0, "conflicts": 3, "seconds": 9.84}, "slot_conflicts": 0}
            """);
        final Run r = run("region");
        assertThat(r.exit()).as(r.err()).isZero();
        assertThat(r.out()).containsPattern("HOST +ALIVE +MARK +SLOTS +ADDRESSES")
            .containsPattern("\\nh1 +yes +1 +12 +192\\.0\\.2\\.11\\n")
            .containsPattern("\\nh2 +no +- +9 +-\\n")
            .containsPattern("ROUTER +APPLIED +BEHIND")
            .containsPattern("\\nr1 +1843 +-\\n")
            .containsPattern("\\nr2 +1840 +3\\n");
        assertThat(run("region", "--json").json().path("routers").get(1).path("applied").asLong()).isEqualTo(1840);

        daemon.answer("GET", "/v1/region", 200, """
            {"ledger": "etcd", "host": "h1", "region": "ord", "available": true, "revision": 7,
             "hosts": [], "routers": [], "requests": {}}
            """);
        assertThat(run("region").out()).contains("routers:   none");
    }

    @Test
    void statusSummarisesHostAndHealth() throws Exception
    {
        final Run r = run("status");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).contains(
            "egressd      0.1.0-SNAPSHOT\n",
            "status       ok\n",
            "kernel       in_sync (347 reconciles, 0 repairs, 0 consecutive failures)\n",
            "layout       4 slots per pair x 16 ports; destination cap 1024\n",
            "pairs        3: 2 app-scoped (1 drained), 1 machine-scoped\n",
            "slots        8 used, 0 free of 8\n",
            "machines     11: 8 app, 1 machine, 1 host, 1 pending\n",
            "pending      m9 (traffic refused until a slot frees)\n");
        final JsonNode json = run("status", "--json").json();
        assertThat(json.path("health").path("kernel").asText()).isEqualTo("in_sync");
        assertThat(json.path("host").path("region").asText()).isEqualTo("ord");
        assertThat(json.path("summary").path("machines").path("pending").asInt()).isEqualTo(1);
        assertThat(json.path("summary").path("pairs").path("machine").asInt()).isEqualTo(1);
        assertThat(json.path("summary").path("pending").get(0).asText()).isEqualTo("m9");
    }

    @Test
    void statusOfADegradedDaemonExits1() throws Exception
    {
        daemon.answer("GET", "/v1/state", 200, FakeDaemon.resource("state.json")
            .replace("\"status\" : \"ok\"", "\"status\" : \"degraded\"")
            .replace("\"kernel\" : \"in_sync\"", "\"kernel\" : \"unavailable\""));
        final Run r = run("status");
        assertThat(r.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(r.out()).contains("status       degraded\n", "kernel       unavailable");
    }

    @Test
    void socketBeforeTheCommandWorksToo()
    {
        final Run r = raw("--socket", socket, "apps");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).startsWith("ID    FAIL-CLOSED  PAIRS  FREE-SLOTS  MACHINES  WAITING\n");
    }

    @Test
    void machinesTable() throws Exception
    {
        final Run r = run("machines");
        assertThat(r.exit()).isZero();
        final String[] lines = r.out().split("\n");
        assertThat(lines[0]).isEqualTo("ID       APP   INTERFACE  GUEST                 SCOPE    EGRESS"
            + "                      BLOCK  PORTS");
        assertThat(r.out()).contains(
            "m1       shop  tap-m1     10.77.0.2, fd77::2    app      203.0.113.10, 2001:db8::10  1      16-31\n",
            "m9       shop  tap-m9     10.77.0.10, fd77::10  pending  -                           -      -\n",
            "legacy1  blog  tap-l1     10.77.1.3             machine  203.0.113.50, 2001:db8::50  -      1-65535\n");
        assertThat(lines).hasSize(12);
        final JsonNode json = run("machines", "--json").json();
        assertThat(json.isArray()).isTrue();
        assertThat(json.size()).isEqualTo(11);
        assertThat(json.get(0).path("egress").has("scope")).isTrue();
        final JsonNode pending = run("machines", "--json", "--scope", "pending").json();
        assertThat(pending.size()).isEqualTo(1);
        assertThat(pending.get(0).path("id").asText()).isEqualTo("m9");
        assertThat(run("machines", "--app", "blog").out().split("\n")).hasSize(3);
    }

    @Test
    void machineExplainsItself() throws Exception
    {
        daemon.answer("GET", "/v1/machines/m1/connections?top=3", 200, CONNECTIONS)
            .text("GET", "/metrics", FakeDaemon.resource("metrics.txt")
                + "# HELP egressd_machine_cap_refusals_total Connections refused by the destination cap\n"
                + "# TYPE egressd_machine_cap_refusals_total counter\n"
                + "egressd_machine_cap_refusals_total{app=\"shop\",machine=\"m1\"} 7.0\n"
                + "egressd_machine_cap_refusals_total{app=\"shop\",machine=\"m10\"} 3.0\n");
        final Run r = run("machine", "m1");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).isEqualTo("""
            machine      m1
            app          shop (fail-closed: no slot means no traffic)
            interface    tap-m1
            guest        10.77.0.2, fd77::2
            pin          -
            scope        app
            egress       203.0.113.10, 2001:db8::10
            block        1 (ports 16-31)
            pair         203.0.113.10: 4 of 4 slots used
            reason       slot 1 on app pair 203.0.113.10 (most free slots)
            kernel       holds it: SNAT to 203.0.113.10, 2001:db8::10 ports 16-31 (the table is in sync with the state)
            connections  1020 open; cap 1024 per destination; busiest 198.51.100.10 with 990 (96.7%); 2 block violations
            counters     egressd_machine_cap_refusals_total{app="shop",machine="m1"} 7.0
            """);
        final JsonNode json = run("machine", "m1", "--json").json();
        assertThat(json.path("machine").path("egress").path("block").asInt()).isEqualTo(1);
        assertThat(json.path("kernel").path("holds").asBoolean()).isTrue();
        assertThat(json.path("connections").path("total").asInt()).isEqualTo(1020);
        assertThat(json.path("counters").path("egressd_machine_cap_refusals_total{app=\"shop\",machine=\"m1\"}")
            .asText()).isEqualTo("7.0");
        assertThat(json.path("app").path("id").asText()).isEqualTo("shop");
    }

    @Test
    void machineWithoutTheConnectionsEndpointSaysSo() throws Exception
    {
        final Run r = run("machine", "m9");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).contains(
            "scope        pending\n",
            "waiting      position 1 of 1 for a slot of app shop\n",
            "kernel       holds it: its traffic refused (fail-closed), never leaked from the host address",
            "connections  not served by this egressd (GET /v1/machines/{id}/connections)\n",
            "counters     none for this machine in /metrics\n");
        assertThat(run("machine", "m9", "--json").json().path("connections").isNull()).isTrue();
        assertThat(run("machine", "legacy1").out()).contains(
            "ports        1-65535 (machine-scoped: the whole range)\n",
            "kernel       holds it: SNAT to 203.0.113.50, 2001:db8::50, any port");
    }

    @Test
    void machineWhileTheKernelIsUnavailable()
    {
        daemon.answer("GET", "/v1/health", 503, FakeDaemon.resource("health.json")
            .replace("\"ok\"", "\"degraded\"").replace("in_sync", "unavailable")
            .replace("\"consecutive_failures\" : 0", "\"consecutive_failures\" : 3")
            .replace("\"last_error\" : null", "\"last_error\" : \"netlink: EPERM\""));
        // The daemon answers /v1/health with 503 and the health body: still explained, exit 0.
        final Run r = run("machine", "m1");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).contains("kernel       unknown: the kernel is unavailable (3 consecutive failures: "
            + "netlink: EPERM); the daemon retries with back-off\n");
        daemon.answer("GET", "/v1/health", 500, "oops");
        final Run broken = run("machine", "m1");
        assertThat(broken.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(broken.err()).contains("GET /v1/health: 500");
    }

    @Test
    void unknownMachineIs404Exit1() throws Exception
    {
        final Run r = run("machine", "nope");
        assertThat(r.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(r.out()).isEmpty();
        assertThat(r.err()).isEqualTo("egressctl: machine nope is not known (GET /v1/machines/nope: 404 "
            + "unknown_machine)\n");
        final Run json = run("machine", "nope", "--json");
        assertThat(json.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(json.json().path("error").path("code").asText()).isEqualTo("unknown_machine");
    }

    @Test
    void pairsAppScopedAndMachineScoped() throws Exception
    {
        final Run r = run("pairs");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).isEqualTo("""
            IPV4          IPV6          APP   SCOPE            DRAINED  USED  FREE  CAPACITY
            203.0.113.10  2001:db8::10  shop  app              no       4     0     4
            203.0.113.11  2001:db8::11  shop  app              yes      4     0     4
            203.0.113.50  2001:db8::50  blog  machine:legacy1  -        -     -     -
            """);
        assertThat(run("pairs", "--holders").out()).contains(
            "203.0.113.10  app      0      1-15     m8\n",
            "203.0.113.10  app      1      16-31    m1\n",
            "203.0.113.50  machine  -      1-65535  legacy1\n");
        final JsonNode json = run("pairs", "--json").json();
        assertThat(json.size()).isEqualTo(3);
        assertThat(json.get(0).path("scope").asText()).isEqualTo("app");
        assertThat(json.get(0).path("slots").path("capacity").asInt()).isEqualTo(4);
        assertThat(json.get(2).path("scope").asText()).isEqualTo("machine");
        assertThat(json.get(2).path("machine").asText()).isEqualTo("legacy1");
    }

    @Test
    void appsAndApp() throws Exception
    {
        assertThat(run("apps").out()).isEqualTo("""
            ID    FAIL-CLOSED  PAIRS  FREE-SLOTS  MACHINES  WAITING
            blog  no           0      0           2         b1
            shop  yes          2      0           9         m9
            """);
        final Run app = run("app", "shop");
        assertThat(app.exit()).isZero();
        assertThat(app.out()).contains("fail-closed  yes (no slot: traffic refused)\n",
            "machines     9: m1, m2, m3, m4, m5, m6, m7, m8, m9\n",
            "203.0.113.11  2001:db8::11  ord     yes      4     0     4\n");
        assertThat(run("app", "shop", "--json").json().path("waiting").get(0).asText()).isEqualTo("m9");
        assertThat(run("apps", "--json").json().size()).isEqualTo(2);
        final Run unknown = run("app", "nope");
        assertThat(unknown.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(unknown.err()).contains("app nope is not known");
    }

    @Test
    void connsShowsUseOfTheCap() throws Exception
    {
        daemon.answer("GET", "/v1/machines/m1/connections?top=3", 200, CONNECTIONS);
        final Run r = run("conns", "m1", "--top", "3");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).isEqualTo("""
            machine m1: 1020 connections, cap 1024 per destination, busiest 198.51.100.10 at 96.7%, 2 block violations
            DESTINATION       CONNECTIONS  USE    PORTS-IN-USE  LEVEL
            198.51.100.10     990          96.7%  990           critical
            198.51.100.11     830          81.1%  830           high
            2001:db8:100::10  30           2.9%   30            ok
            """);
        assertThat(daemon.requests).contains("GET /v1/machines/m1/connections?top=3");
        final JsonNode json = run("conns", "m1", "--top", "3", "--json").json();
        assertThat(json.path("busiest").path("destination").asText()).isEqualTo("198.51.100.10");
        assertThat(json.path("destinations").size()).isEqualTo(3);
    }

    @Test
    void connsLevelFollowsTheLedgersThresholdsNotTheRoundedUse() throws Exception
    {
        // 819 of 1024 is 79.98%: the daemon answers use 0.8 (three decimals), yet the ledger's warning threshold is
        // ceil(819.2) = 820, so egressd_machines_saturated{threshold="0.8"} does not count it: neither may LEVEL.
        daemon.answer("GET", "/v1/machines/m1/connections?top=10", 200, """
            {"machine": "m1", "cap": 1024, "total": 2791, "busiest": {"destination": "198.51.100.10", "connections": 973,
             "use": 0.95},
             "destinations": [
              {"destination": "198.51.100.10", "connections": 973, "use": 0.95, "ports_in_use": 973},
              {"destination": "198.51.100.11", "connections": 972, "use": 0.949, "ports_in_use": 972},
              {"destination": "198.51.100.12", "connections": 820, "use": 0.801, "ports_in_use": 820},
              {"destination": "198.51.100.13", "connections": 819, "use": 0.8, "ports_in_use": 819}],
             "violations": 0}""");
        final Run r = run("conns", "m1");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).contains(
            "198.51.100.10  973          95.0%  973           critical\n",
            "198.51.100.11  972          94.9%  972           high\n",
            "198.51.100.12  820          80.1%  820           high\n",
            "198.51.100.13  819          80.0%  819           ok\n");
        assertThat(ConnsCommand.level(8, 10, 0.8)).isEqualTo("high");
        assertThat(ConnsCommand.level(9, 10, 0.9)).isEqualTo("high");
        assertThat(ConnsCommand.level(10, 10, 1.0)).isEqualTo("critical");
        assertThat(ConnsCommand.level(7, 10, 0.7)).isEqualTo("ok");
        assertThat(ConnsCommand.level(819, 0, 0.8)).as("no cap in the answer: use decides").isEqualTo("high");
    }

    @Test
    void connsDefaultsToTop10AndHandles404() throws Exception
    {
        final Run missing = run("conns", "m1");
        assertThat(daemon.requests).contains("GET /v1/machines/m1/connections?top=10");
        assertThat(missing.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(missing.err()).contains("this egressd does not serve per-destination connections");
        daemon.error("GET", "/v1/machines/nope/connections?top=10", 404, "unknown_machine", "id",
            "machine nope is not known");
        final Run unknown = run("conns", "nope");
        assertThat(unknown.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(unknown.err()).contains("machine nope is not known", "404 unknown_machine");
        final Run json = run("conns", "nope", "--json");
        assertThat(json.json().path("error").path("code").asText()).isEqualTo("unknown_machine");
    }

    @Test
    void checkFindsEveryAddressAndExits0() throws Exception
    {
        local.put("2001:db8::50", "eth0");
        final Run r = run("check");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).contains(
            "kernel                OK      the table is in sync with the state (347 reconciles, 0 repairs)\n",
            "address 2001:db8::10  OK      on eth0\n",
            "machines              OK      9 machines leave from held pairs, inside their blocks, no block shared\n",
            "pending               WARN    1 machines wait for a slot, their traffic refused: m9 (app shop)\n",
            "check: 0 failed, 1 warnings\n");
        final Run strict = run("check", "--strict");
        assertThat(strict.exit()).isEqualTo(ExitCodes.ERROR);
        final JsonNode json = run("check", "--json").json();
        assertThat(json.path("ok").asBoolean()).isTrue();
        assertThat(json.path("warnings").asInt()).isEqualTo(1);
        assertThat(json.path("checks").get(0).path("check").asText()).isEqualTo("daemon");
        assertThat(json.path("checks").get(0).path("status").asText()).isEqualTo("ok");
    }

    @Test
    void checkFailsOnAMissingAddressOrKernel() throws Exception
    {
        local.remove("2001:db8::50");
        final Run r = run("check");
        assertThat(r.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(r.out()).contains("address 2001:db8::50  FAIL    not on any interface of this host",
            "check: 1 failed, 1 warnings -> exit 1\n");
        assertThat(run("check", "--skip-addresses").exit()).isZero();
        daemon.answer("GET", "/v1/state", 200, FakeDaemon.resource("state.json")
            .replace("\"kernel\" : \"in_sync\"", "\"kernel\" : \"unavailable\"")
            .replace("\"consecutive_failures\" : 0", "\"consecutive_failures\" : 4"));
        final Run kernel = run("check", "--skip-addresses", "--json");
        assertThat(kernel.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(kernel.json().path("ok").asBoolean()).isFalse();
        assertThat(kernel.json().path("checks").get(1).path("detail").asText())
            .startsWith("the kernel is unavailable (4 consecutive failures)");
    }

    @Test
    void checkAndStatusShowAnUnwritableStateDirectory() throws Exception
    {
        final String unwritable = FakeDaemon.resource("state.json").replace("\"kernel\" : \"in_sync\"",
            "\"kernel\" : \"in_sync\", \"state\" : \"unwritable: /var/lib/egressd/state.json.tmp: No space left on device\"");
        daemon.answer("GET", "/v1/state", 200, unwritable);
        final Run r = run("check", "--skip-addresses");
        assertThat(r.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(r.out()).contains("state", "FAIL", "No space left on device");
    }

    /** The canned state as a daemon reading a conntrack table of the given fill answers it. */
    private static String withConntrack(final long entries, final long max, final long drops) throws Exception
    {
        return FakeDaemon.resource("state.json").replace("\"conntrack\" : null", "\"conntrack\" : {\"entries\" : "
            + entries + ", \"max\" : " + max + ", \"percent\" : " + entries * 100 / max + ", \"drops\" : " + drops
            + ", \"insert_failed\" : 0}");
    }

    @Test
    void statusAndCheckShowTheConntrackTable() throws Exception
    {
        assertThat(run("status").out()).contains("conntrack    unknown (a dry run, or conntrack is not loaded)\n");
        assertThat(run("check", "--skip-addresses").out()).contains("conntrack", "OK", "table fill not known");
        daemon.answer("GET", "/v1/state", 200, withConntrack(1200, 262144, 0));
        assertThat(run("status").out()).contains("conntrack    1200 of 262144 entries (0%)\n");
        final Run ok = run("check", "--skip-addresses");
        assertThat(ok.exit()).isZero();
        assertThat(ok.out()).contains("conntrack", "OK", "1200 of 262144 entries (0%)");
    }

    @Test
    void checkFailsAtNinetyPercentOfTheConntrackTable() throws Exception
    {
        daemon.answer("GET", "/v1/state", 200, withConntrack(899, 1000, 0));
        assertThat(run("check", "--skip-addresses").exit()).isZero();
        daemon.answer("GET", "/v1/state", 200, withConntrack(900, 1000, 7));
        assertThat(run("status").out()).contains("conntrack    900 of 1000 entries (90%), nearly full: new "
            + "connections are dropped once full, 7 packets dropped while full\n");
        final Run r = run("check", "--skip-addresses", "--json");
        assertThat(r.exit()).isEqualTo(ExitCodes.ERROR);
        final JsonNode conntrack = r.json().path("checks").get(2);
        assertThat(conntrack.path("check").asText()).isEqualTo("conntrack");
        assertThat(conntrack.path("status").asText()).isEqualTo("fail");
        assertThat(conntrack.path("detail").asText()).contains("900 of 1000 entries (90%)", "nf_conntrack_max");
    }

    /** The canned state as a region daemon with its pair addresses on lo answers it. */
    private static String onLo(final String arpSysctls)
    {
        return FakeDaemon.resource("state.json")
            .replace("\"destination_cap\" : 1024", "\"destination_cap\" : 1024, \"pair_address_device\" : \"lo\"")
            .replace("\"conntrack\" : null", "\"conntrack\" : null, \"arp_sysctls\" : "
                + (arpSysctls == null ? "null" : "\"" + arpSysctls + "\""));
    }

    @Test
    void withPairAddressesOnLoCheckWantsTheAppPairsOnLoAndTheArpSysctlsRight() throws Exception
    {
        daemon.answer("GET", "/v1/state", 200, onLo("ok"));
        // the app pairs' addresses on lo, the machine-scoped pair's on the uplink
        for (final String a : List.of("203.0.113.10", "2001:db8::10", "203.0.113.11", "2001:db8::11"))
        {
            local.put(a, "lo");
        }
        local.put("2001:db8::50", "eth0");
        final Run ok = run("check", "--json");
        assertThat(ok.exit()).as(ok.out()).isZero();
        final Map<String, JsonNode> rows = rows(ok.json());
        assertThat(rows.get("address 203.0.113.10").path("detail").asText()).isEqualTo("on lo");
        assertThat(rows.get("address 203.0.113.50").path("detail").asText()).isEqualTo("on eth0");
        assertThat(rows.get("arp-sysctls").path("status").asText()).isEqualTo("ok");

        // an app pair's address on the uplink instead: this host answers ARP for a shared address
        local.put("203.0.113.11", "eth0");
        final Run onUplink = run("check", "--json");
        final JsonNode row = rows(onUplink.json()).get("address 203.0.113.11");
        assertThat(row.path("status").asText()).isEqualTo("warn");
        assertThat(row.path("detail").asText()).startsWith("on eth0, not on lo: this host answers ARP/ND");
        assertThat(run("check", "--strict").exit()).isEqualTo(ExitCodes.ERROR);

        // someone lowered a sysctl after the start: the daemon's health says so, check fails on it
        local.put("203.0.113.11", "lo");
        daemon.answer("GET", "/v1/state", 200, onLo("net.ipv4.conf.all.arp_ignore is 0, needs 1: this host answers"));
        final Run lowered = run("check");
        assertThat(lowered.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(lowered.out()).contains("arp-sysctls", "FAIL", "net.ipv4.conf.all.arp_ignore is 0, needs 1");

        // the daemon cannot read them (a unit hiding /proc/sys): egressctl, in its namespace, reads them itself
        daemon.answer("GET", "/v1/state", 200, onLo(LoopbackArp.UNREADABLE + "sysctl net.ipv4.conf.all.arp_ignore: "
            + "no such key"));
        sysctls.put(LoopbackArp.ARP_IGNORE, "1");
        sysctls.put(LoopbackArp.ARP_ANNOUNCE, "2");
        assertThat(rows(run("check", "--json").json()).get("arp-sysctls").path("status").asText()).isEqualTo("ok");
        sysctls.put(LoopbackArp.ARP_ANNOUNCE, "0");
        final JsonNode announce = rows(run("check", "--json").json()).get("arp-sysctls");
        assertThat(announce.path("status").asText()).isEqualTo("fail");
        assertThat(announce.path("detail").asText()).startsWith("net.ipv4.conf.all.arp_announce is 0, needs 2");
        // not in its namespace: only the daemon's word
        final JsonNode skipped = rows(run("check", "--skip-addresses", "--json").json()).get("arp-sysctls");
        assertThat(skipped.path("status").asText()).isEqualTo("fail");
        assertThat(skipped.path("detail").asText()).startsWith(LoopbackArp.UNREADABLE);

        // pair addresses on the uplink (the canned state): no arp row, and an app address on eth0 is fine
        daemon.answer("GET", "/v1/state", 200, FakeDaemon.resource("state.json"));
        local.put("203.0.113.11", "eth0");
        final Run uplink = run("check", "--json");
        assertThat(rows(uplink.json())).doesNotContainKey("arp-sysctls");
        assertThat(rows(uplink.json()).get("address 203.0.113.11").path("status").asText()).isEqualTo("ok");
    }

    private static Map<String, JsonNode> rows(final JsonNode check)
    {
        final Map<String, JsonNode> rows = new LinkedHashMap<>();
        check.path("checks").forEach(c -> rows.put(c.path("check").asText(), c));
        return rows;
    }

    @Test
    void checkCatchesASharedBlockAndAForeignPair()
    {
        // m3 claims m1's block, m4 a pair this host does not hold.
        final String state = FakeDaemon.resource("state.json");
        final int m3 = state.indexOf("\"id\" : \"m3\"");
        final int m4 = state.indexOf("\"id\" : \"m4\"");
        final String broken = state.substring(0, m3)
            + state.substring(m3, m4).replace("\"block\" : 2", "\"block\" : 1")
                .replace("\"first\" : 32", "\"first\" : 16").replace("\"last\" : 47", "\"last\" : 31")
            + state.substring(m4).replaceFirst("\"ipv4\" : \"203.0.113.11\"", "\"ipv4\" : \"198.18.0.1\"");
        daemon.answer("GET", "/v1/state", 200, broken);
        local.put("2001:db8::50", "eth0");
        final Run r = run("check");
        assertThat(r.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(r.out()).contains("machine m3", "holds block 1 of 203.0.113.10 as m1 does",
            "machine m4", "leaves from 198.18.0.1, which is not a pair held on this host");
    }

    @Test
    void drainAndUndrain() throws Exception
    {
        final Run drain = run("drain", "203.0.113.11", "--app", "shop");
        assertThat(drain.exit()).isZero();
        assertThat(drain.out()).isEqualTo("drained 203.0.113.11 (app shop): no new machines are placed on it; its 4 "
            + "machines keep their slots\n");
        assertThat(daemon.requests).containsExactly("PUT /v1/apps/shop/pairs/203.0.113.11/drain");
        final Run undrain = run("undrain", "203.0.113.11");
        assertThat(undrain.exit()).isZero();
        assertThat(undrain.out()).isEqualTo("undrained 203.0.113.11 (app shop): it takes new machines again (0 of 4 "
            + "slots free)\n");
        assertThat(daemon.requests).endsWith("GET /v1/state", "DELETE /v1/apps/shop/pairs/203.0.113.11/drain");
        assertThat(run("drain", "203.0.113.11", "--app", "shop", "--json").json().path("drained").asBoolean())
            .isTrue();
    }

    @Test
    void drainErrors()
    {
        daemon.error("PUT", "/v1/apps/shop/pairs/203.0.113.99/drain", 404, "unknown_pair", "ipv4",
            "ipv4 203.0.113.99 is not an egress pair of app shop");
        final Run r = run("drain", "203.0.113.99", "--app", "shop");
        assertThat(r.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(r.err()).isEqualTo("egressctl: ipv4 203.0.113.99 is not an egress pair of app shop (PUT "
            + "/v1/apps/shop/pairs/203.0.113.99/drain: 404 unknown_pair)\n");
        final Run notHere = run("drain", "203.0.113.99");
        assertThat(notHere.exit()).isEqualTo(ExitCodes.ERROR);
        assertThat(notHere.err()).contains("203.0.113.99 is not an app-scoped pair on this host");
        daemon.error("PUT", "/v1/apps/shop/pairs/203.0.113.10/drain", 503, "kernel_unavailable", null,
            "netlink: EPERM; nothing changed");
        assertThat(run("drain", "203.0.113.10", "--app", "shop").exit()).isEqualTo(ExitCodes.ERROR);
    }

    @Test
    void forbiddenIsExit4()
    {
        daemon.forbidAll();
        for (final String[] args : List.of(new String[] {"status"}, new String[] {"machine", "m1"},
            new String[] {"conns", "m1"}, new String[] {"drain", "203.0.113.11", "--app", "shop"}))
        {
            final Run r = run(args);
            assertThat(r.exit()).as(String.join(" ", args)).isEqualTo(ExitCodes.PERMISSION);
            assertThat(r.err()).contains("permission denied", "uid 1000 may not use the egressd API");
        }
    }

    @Test
    void noSocketIsExit3()
    {
        final Run r = raw("status", "--socket", dir.resolve("missing.sock").toString());
        assertThat(r.exit()).isEqualTo(ExitCodes.UNREACHABLE);
        assertThat(r.err()).contains("no socket at");
        assertThat(raw("check", "--socket", dir.resolve("missing.sock").toString()).exit())
            .isEqualTo(ExitCodes.UNREACHABLE);
    }

    @Test
    void staleSocketIsExit3() throws Exception
    {
        final Path stale = dir.resolve("stale.sock");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX))
        {
            server.bind(UnixDomainSocketAddress.of(stale));
        }
        assertThat(Files.exists(stale)).isTrue();
        final Run r = raw("machines", "--socket", stale.toString());
        assertThat(r.exit()).isEqualTo(ExitCodes.UNREACHABLE);
        assertThat(r.err()).contains("connection refused");
    }

    @Test
    void noAnswerInTimeIsExit3()
    {
        daemon.silent();
        final Run r = run("status", "--timeout", "0.3");
        assertThat(r.exit()).isEqualTo(ExitCodes.UNREACHABLE);
        assertThat(r.err()).contains("did not answer GET /v1/state within 300 ms");
    }

    @Test
    void usageErrorsAreExit2()
    {
        assertThat(run("bogus").exit()).isEqualTo(ExitCodes.USAGE);
        assertThat(run("machine").exit()).isEqualTo(ExitCodes.USAGE);
        assertThat(run("conns", "m1", "--top", "0").exit()).isEqualTo(ExitCodes.USAGE);
        assertThat(run("conns", "m1", "--top", "x").exit()).isEqualTo(ExitCodes.USAGE);
        assertThat(run("machines", "--frobnicate").exit()).isEqualTo(ExitCodes.USAGE);
        assertThat(raw().exit()).isEqualTo(ExitCodes.USAGE);
        assertThat(daemon.requests).isEmpty();
        final Run help = raw("--help");
        assertThat(help.exit()).isZero();
        assertThat(help.out()).contains("Exit codes:", "3   the daemon is unreachable", "EGRESSD_SOCKET")
            .doesNotContain("generate-completion");
    }

    /** The Netty transport is gone: a setting left from older docs (EGRESSCTL_JAVA_OPTS) changes nothing. */
    @Test
    void aLeftoverNettyTransportSettingIsIgnored()
    {
        System.setProperty("egressctl.transport", "netty");
        try
        {
            assertThat(run("pairs").out()).isEqualTo(run("pairs").out()).contains("machine:legacy1");
            assertThat(run("machine", "nope").exit()).isEqualTo(ExitCodes.ERROR);
            daemon.forbidAll();
            assertThat(run("status").exit()).isEqualTo(ExitCodes.PERMISSION);
            assertThat(raw("status", "--socket", dir.resolve("missing.sock").toString()).exit())
                .isEqualTo(ExitCodes.UNREACHABLE);
        }
        finally
        {
            System.clearProperty("egressctl.transport");
        }
    }

    @Test
    void completionAndManPageComeFromTheSameDefinitions()
    {
        final CommandLine cmd = Egressctl.commandLine(new Egressctl());
        final String bash = EgressctlGen.completion(cmd);
        assertThat(bash).contains("complete -F _complete_egressctl", "_picocli_egressctl_conns",
            "'--top'", "(\"app\" \"machine\" \"host\" \"pending\")");
        final String man = EgressctlGen.manPage(cmd, "2026-01-01");
        assertThat(man).startsWith(".\\\" Generated by").contains(".TH EGRESSCTL 1 \"2026-01-01\"", ".SH EXIT STATUS",
            ".SS conns", ".SS check", ".SS drain", "\\fB\\-\\-strict\\fR", ".B EGRESSD_SOCKET")
            .doesNotContain("generate\\-completion");
        for (final String command : cmd.getSubcommands().keySet())
        {
            if (!"generate-completion".equals(command))
            {
                assertThat(man).contains(".SS " + command + "\n");
            }
        }
    }

    @Test
    void versionPrintsEgressctlsAndTheDaemons() throws Exception
    {
        final Run r = run("version");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).isEqualTo(dev.egressd.agent.version.Version.line("egressctl") + "\n"
            + "egressd 0.1.0-SNAPSHOT (revision 9b33618c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a)\n");
        final JsonNode json = run("version", "--json").json();
        assertThat(json.path("egressctl").path("version").asText()).isEqualTo(
            dev.egressd.agent.version.Version.version());
        assertThat(json.path("egressctl").path("revision").asText()).isEqualTo(
            dev.egressd.agent.version.Version.revision());
        assertThat(json.path("egressd").path("revision").asText()).isEqualTo("9b33618c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a");
        assertThat(raw("--version").out()).isEqualTo(dev.egressd.agent.version.Version.line("egressctl") + "\n");
    }

    @Test
    void versionOfAnUnreachableDaemonStillPrintsEgressctlsAndExits3()
    {
        final Run r = raw("version", "--socket", dir.resolve("missing.sock").toString());
        assertThat(r.exit()).isEqualTo(ExitCodes.UNREACHABLE);
        assertThat(r.out()).isEqualTo(dev.egressd.agent.version.Version.line("egressctl") + "\n");
        assertThat(r.err()).contains("no socket at");
        final Run client = raw("version", "--client", "--socket", dir.resolve("missing.sock").toString());
        assertThat(client.exit()).isZero();
        assertThat(client.out()).startsWith("egressctl ");
    }

    @Test
    void versionOfAnOlderDaemonWithoutARevisionSaysUnknown() throws Exception
    {
        daemon.answer("GET", "/v1/health", 503, FakeDaemon.resource("health.json")
            .replaceAll("\\s*\"revision\" : \"[0-9a-f]+\",", ""));
        assertThat(run("version").out()).endsWith("egressd 0.1.0-SNAPSHOT (revision unknown)\n");
    }

    @Test
    void everyCommandAnswersHelpAndHelpCommandToo()
    {
        final CommandLine cmd = Egressctl.commandLine(new Egressctl());
        for (final String command : cmd.getSubcommands().keySet())
        {
            final Run own = raw(command, "--help");
            assertThat(own.exit()).as(command + " --help").isZero();
            assertThat(own.err()).as(command + " --help").isEmpty();
            assertThat(own.out()).as(command + " --help").contains("Usage: egressctl " + command + " [-h");
            final Run viaHelp = raw("help", command);
            assertThat(viaHelp.exit()).as("help " + command).isZero();
            assertThat(viaHelp.out()).as("help " + command).isEqualTo(own.out());
            assertThat(raw(command, "-h").out()).isEqualTo(own.out());
        }
        assertThat(raw("help").out()).isEqualTo(raw("--help").out()).contains("completion", "version", "help");
        assertThat(raw("help", "bogus").exit()).isEqualTo(ExitCodes.USAGE);
        assertThat(daemon.requests).isEmpty();
    }

    @Test
    void outputJsonIsJson() throws Exception
    {
        for (final String[] args : List.of(new String[] {"status"}, new String[] {"machines"},
            new String[] {"machine", "m1"}, new String[] {"pairs"}, new String[] {"apps"}, new String[] {"app", "shop"},
            new String[] {"version"}))
        {
            final List<String> json = new ArrayList<>(Arrays.asList(args));
            json.add("--json");
            final List<String> o = new ArrayList<>(Arrays.asList(args));
            o.addAll(List.of("-o", "json"));
            final List<String> output = new ArrayList<>(Arrays.asList(args));
            output.add("--output=json");
            final Run expected = run(json.toArray(String[]::new));
            assertThat(expected.json().isContainerNode()).isTrue();
            assertThat(run(o.toArray(String[]::new)).out()).as(String.join(" ", o)).isEqualTo(expected.out());
            assertThat(run(output.toArray(String[]::new)).out()).isEqualTo(expected.out());
        }
        assertThat(run("apps", "-o", "table").out()).isEqualTo(run("apps").out());
        final Run bad = run("apps", "-o", "yaml");
        assertThat(bad.exit()).isEqualTo(ExitCodes.USAGE);
        assertThat(bad.err()).contains("'--output': 'yaml' (expected one of: table, json)");
    }

    @Test
    void errorsNameWhatTheOperatorTypesNotJavaTypes()
    {
        final Run timeout = run("status", "--timeout", "soon");
        assertThat(timeout.exit()).isEqualTo(ExitCodes.USAGE);
        assertThat(timeout.err()).startsWith("Invalid value for option '--timeout': 'soon' is not a number\n");
        final Run top = run("conns", "m1", "--top", "x");
        assertThat(top.err()).startsWith("Invalid value for option '--top': 'x' is not a whole number\n");
        assertThat(run("machine").err()).startsWith("Missing required parameter: 'ID'\n");
        for (final String command : Egressctl.commandLine(new Egressctl()).getSubcommands().keySet())
        {
            // every option and parameter label as the operator types it: no Java field names
            assertThat(raw(command, "--help").out()).as(command).doesNotContain("timeoutSeconds", "clientOnly")
                .doesNotContainPattern("<[A-Za-z]+>");
        }
        assertThat(daemon.requests).isEmpty();
    }

    @Test
    void completionForBashAndZsh() throws Exception
    {
        final Run bash = raw("completion", "bash");
        assertThat(bash.exit()).isZero();
        assertThat(bash.out()).isEqualTo(EgressctlGen.completion(Egressctl.commandLine(new Egressctl())))
            .contains("complete -F _complete_egressctl", "local commands=\"status machines machine pairs apps app conns check drain undrain region version completion help\"",
                "(\"table\" \"json\") # --output values");
        final Run zsh = raw("completion", "zsh");
        assertThat(zsh.exit()).isZero();
        assertThat(zsh.out()).startsWith("# egressctl completion for zsh").contains("bashcompinit",
            "complete -F _complete_egressctl");
        assertThat(raw("completion", "fish").exit()).isEqualTo(ExitCodes.USAGE);
        assertThat(raw("completion").exit()).isEqualTo(ExitCodes.USAGE);
        // bash accepts it and registers the function for egressctl
        final Path script = dir.resolve("egressctl.bash");
        Files.writeString(script, bash.out());
        final Process p = new ProcessBuilder("bash", "-c", "source \"$1\" && complete -p egressctl", "-",
            script.toString()).redirectErrorStream(true).start();
        final String out = new String(p.getInputStream().readAllBytes());
        assertThat(p.waitFor()).as(out).isZero();
        assertThat(out).contains("-F _complete_egressctl egressctl");
    }

    @Test
    void manPageSaysTheJavaOptionsApplyToTheInstalledLauncher()
    {
        final String man = EgressctlGen.manPage(Egressctl.commandLine(new Egressctl()), "2026-01-01");
        assertThat(man).contains(".B EGRESSCTL_JAVA_OPTS\nextra JVM options for \\fB/usr/bin/egressctl\\fR",
            "\\fB\\-o json\\fR", ".SS completion\n", ".SS help\n", ".SS version\n", "\\fB\\-\\-output\\fR");
        assertThat(raw("--help").out()).contains("EGRESSCTL_JAVA_OPTS  JVM options for /usr/bin/egressctl");
    }
}
