package dev.egressd.agent.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.agent.testing.ApiClient;
import dev.egressd.agent.testing.ClientResult;
import dev.egressd.agent.testing.ConntrackEntry;
import dev.egressd.agent.testing.DaemonLabTest;
import dev.egressd.agent.testing.Lab;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import dev.egressd.agent.testing.RunningClient;
import dev.egressd.agent.testing.Scrape;
import dev.egressd.agent.testing.Shell;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.stream.Collectors;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * What an operator sees, against the running daemon: the built {@code egressd.jar} in a
 * fresh lab's host namespace with a destination cap of {@value #CAP}, driven over its API socket, its ledger compared
 * with {@code conntrack -L}, its {@code /metrics} scrape (read through the API socket) checked by
 * {@code promtool check metrics}, and every {@code egressctl} command run from the jar inside the host namespace.
 * The lab is removed and the daemon killed also on failure. Figures are printed as {@code OBSERVABILITY-IT ...}
 * lines (they land in the failsafe report).
 */
@Privileged
class ObservabilityIT extends DaemonLabTest
{
    private static final int CAP = 10;
    private static final String DST4 = "198.51.100.10";
    private static final String DST11 = "198.51.100.11";
    private static final String[] A = {"203.0.113.10", "2001:db8:10::10"};
    private static final String G1 = "10.77.0.2";
    private static final String G2 = "10.77.0.3";
    private static final Duration BOUND = Duration.ofSeconds(15);

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void ledgerMetricsAndEgressctlShowWhatTheKernelHolds() throws Exception
    {
        final long t0 = System.nanoTime();
        start(Lab.create(2, "promtool", "conntrack"), "--destination-cap", Integer.toString(CAP));
        api.put("/v1/apps/shop", "{\"fail_closed\": true}").ok();
        api.post("/v1/apps/shop/pairs", "{\"ipv4\": \"" + A[0] + "\", \"ipv6\": \"" + A[1]
            + "\", \"region\": \"ord\"}").ok();
        final JsonNode m1 = putMachine("m1", 1).get("egress");
        final JsonNode m2 = putMachine("m2", 2).get("egress");
        assertThat(m1.get("scope").asText()).isEqualTo("app");
        assertThat(m2.get("scope").asText()).isEqualTo("app");

        ledgerEqualsConntrack();
        saturation();
        promtoolOnTheLiveScrape();
        everyEgressctlCommand();
        deletingAMachineRemovesItsConntrackEntries();
        report("whole test (lab, daemon, all checks) " + (System.nanoTime() - t0) / 1_000_000 + " ms");
    }

    // ---------------------------------------------------------------------------------------------- 1. the ledger

    private void ledgerEqualsConntrack() throws Exception
    {
        // One short connection first, closed at once: conntrack keeps its entry in TIME_WAIT for 120 s, but the
        // kernel's `ct count` (the cap) no longer counts it, and neither does egressd's ledger (it closes a flow on
        // the update to TIME_WAIT or CLOSE). So the comparison below leaves TIME_WAIT and CLOSE entries out.
        final ClientResult shortLived = lab.guest(1).client("tcp", DST11, 80, 1, 0, "--timeout", "2").get(0);
        assertThat(shortLived.seenIp()).isEqualTo(A[0]);
        final List<ClientResult> held = new ArrayList<>();
        held.addAll(hold(1, DST4, 6));
        held.addAll(hold(1, DST11, 3));
        held.addAll(hold(2, DST4, 2)); // m2's, kept through the deletion of m1
        assertThat(held).allSatisfy(r -> assertThat(r.seenIp()).isEqualTo(A[0]));

        final Map<String, Integer> expected = Map.of(DST4, 6, DST11, 3);
        final JsonNode ledger = poll("m1's ledger to show 6 + 3 connections", this::m1Connections,
            c -> perDestination(c).equals(expected));
        final Map<String, Integer> fromLedger = perDestination(ledger);

        // What conntrack shows for g1, restricted to the flows egressd (and `ct count`) counts: source-NATed
        // (they left through the uplink translated to the pair; replies go to the pair's address) and live, i.e.
        // not TIME_WAIT or CLOSE (a half-closed FIN_WAIT / CLOSE_WAIT / LAST_ACK entry still counts, for both).
        final List<ConntrackEntry> all = lab.hostConntrack().entries("ipv4", "-s", G1);
        final Map<String, Integer> fromConntrack = counted(all);
        report("1. ledger of m1 (GET /v1/machines/m1/connections): " + new TreeMap<>(fromLedger) + ", total "
            + ledger.get("total").asInt() + ", busiest " + ledger.get("busiest") + "; conntrack -L -s " + G1 + ": "
            + all.size() + " entries " + states(all) + ", counted (SNAT, not TIME_WAIT/CLOSE) "
            + new TreeMap<>(fromConntrack));
        assertThat(fromConntrack).as("conntrack's live SNATed flows of g1 per destination").isEqualTo(fromLedger);
        assertThat(all.stream().filter(e -> "TIME_WAIT".equals(e.tcpState()) || "CLOSE".equals(e.tcpState())))
            .as("the short connection's entry, left out by both").isNotEmpty();
        assertThat(ledger.get("total").asInt()).isEqualTo(9);
        assertThat(ledger.get("violations").asLong()).isZero();
    }

    // ---------------------------------------------------------------------------------------------- 2. saturation

    private void saturation() throws Exception
    {
        hold(1, DST4, 2); // 8 of 10: 80 %
        final Scrape at80 = pollMetrics("m1 at 80% in the metrics",
            s -> s.value("egressd_machines_saturated", "threshold", "0.8") >= 1
                && Math.abs(ratio(s) - 0.8) < 1e-9);
        final double crit80 = at80.value("egressd_machines_saturated", "threshold", "0.95");
        assertThat(crit80).as("nobody at 95% yet").isZero();
        final Shell.Output table80 = ctl("conns", "m1");
        final JsonNode json80 = json(ctl("conns", "m1", "--json"));
        assertThat(row(table80.stdout(), DST4)).contains(" 8 ").contains("80.0%").endsWith("high");
        assertThat(json80.get("busiest").get("destination").asText()).isEqualTo(DST4);
        assertThat(json80.get("busiest").get("connections").asInt()).isEqualTo(8);
        assertThat(json80.get("busiest").get("use").asDouble()).isCloseTo(0.8, within(1e-9));
        report("2a. 8 of " + CAP + " to " + DST4 + ": egressd_machines_saturated{0.8}="
            + at80.value("egressd_machines_saturated", "threshold", "0.8") + " {0.95}=" + crit80
            + ", egressd_machine_busiest_destination_ratio{m1}=" + ratio(at80) + "; egressctl conns m1:\n"
            + table80.stdout().strip() + "\n  --json busiest " + json80.get("busiest"));

        hold(1, DST4, 2); // 10 of 10: 100 % (>= 95 %)
        final Scrape at100 = pollMetrics("m1 at 100% in the metrics",
            s -> s.value("egressd_machines_saturated", "threshold", "0.95") >= 1
                && Math.abs(ratio(s) - 1.0) < 1e-9);
        assertThat(at100.value("egressd_machines_saturated", "threshold", "0.8")).isGreaterThanOrEqualTo(1);
        final Shell.Output table100 = ctl("conns", "m1");
        final JsonNode json100 = json(ctl("conns", "m1", "--json"));
        assertThat(row(table100.stdout(), DST4)).contains(" 10 ").contains("100.0%").endsWith("critical");
        assertThat(json100.get("busiest").get("connections").asInt()).isEqualTo(CAP);
        assertThat(json100.get("busiest").get("use").asDouble()).isCloseTo(1.0, within(1e-9));
        report("2b. 10 of " + CAP + " to " + DST4 + ": egressd_machines_saturated{0.8}="
            + at100.value("egressd_machines_saturated", "threshold", "0.8") + " {0.95}="
            + at100.value("egressd_machines_saturated", "threshold", "0.95")
            + ", egressd_machine_busiest_destination_ratio{m1}=" + ratio(at100) + "; egressctl conns m1:\n"
            + table100.stdout().strip() + "\n  --json busiest " + json100.get("busiest"));

        // the 11th is refused by the kernel (ct count over 10 -> reject with tcp reset) and counted
        final double refusedBefore = metrics().value("egressd_cap_refused_packets_total", "family", "ipv4");
        final ClientResult eleventh = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "2").get(0);
        assertThat(eleventh.ok()).as("the 11th connection to %s: %s", DST4, eleventh).isFalse();
        assertThat(eleventh.error()).isEqualTo("ECONNREFUSED");
        final Scrape refused = pollMetrics("egressd_cap_refused_packets_total{family=ipv4} to rise",
            s -> s.value("egressd_cap_refused_packets_total", "family", "ipv4") > refusedBefore);
        assertThat(perDestination(m1Connections())).as("the refused one is not in the ledger")
            .isEqualTo(Map.of(DST4, CAP, DST11, 3));
        report("2c. 11th connection: " + eleventh + "; egressd_cap_refused_packets_total{family=ipv4} "
            + refusedBefore + " -> " + refused.value("egressd_cap_refused_packets_total", "family", "ipv4")
            + "; nft counter cap4: " + lab.must("host", "nft", "list", "counter", "inet", "egressd", "cap4")
                .replaceAll("\\s+", " ").strip());
    }

    // ---------------------------------------------------------------------------------------------- 3. promtool

    private void promtoolOnTheLiveScrape() throws Exception
    {
        final String scrape = api.get("/metrics").ok().text();
        Files.writeString(workDir.resolve("scrape.txt"), scrape);
        final Process p = new ProcessBuilder(Requirements.findTool("promtool").toString(), "check", "metrics")
            .redirectErrorStream(true).start();
        try (OutputStream in = p.getOutputStream())
        {
            in.write(scrape.getBytes(StandardCharsets.UTF_8));
        }
        final String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).as("promtool finished").isTrue();
        final long egressd = Scrape.parse(scrape).samples().stream().filter(s -> s.name().startsWith("egressd_"))
            .count();
        report("3. promtool check metrics on the live scrape (" + scrape.length() + " bytes, "
            + Scrape.parse(scrape).samples().size() + " samples, " + egressd + " egressd_*): exit " + p.exitValue()
            + ", output " + (out.isEmpty() ? "(none)" : out));
        assertThat(out).as("promtool check metrics output").isEmpty();
        assertThat(p.exitValue()).as("promtool exit code").isZero();
    }

    // ---------------------------------------------------------------------------------------------- 4. egressctl

    private void everyEgressctlCommand() throws Exception
    {
        final List<List<String>> reads = List.of(List.of("status"), List.of("machines"), List.of("machine", "m1"),
            List.of("pairs"), List.of("apps"), List.of("app", "shop"), List.of("conns", "m1", "--top", "5"),
            List.of("check"));
        // the read-only commands, each with and without --json, two JVMs at a time
        final Map<String, Shell.Output> outputs = new LinkedHashMap<>();
        final ExecutorService pool = Executors.newFixedThreadPool(2);
        try
        {
            final Map<String, Future<Shell.Output>> futures = new LinkedHashMap<>();
            for (final List<String> read : reads)
            {
                for (final boolean asJson : new boolean[] {false, true})
                {
                    final List<String> args = new ArrayList<>(read);
                    if (asJson)
                    {
                        args.add("--json");
                    }
                    futures.put(String.join(" ", args), pool.submit(() -> ctlRaw(args.toArray(String[]::new))));
                }
            }
            for (final Map.Entry<String, Future<Shell.Output>> f : futures.entrySet())
            {
                outputs.put(f.getKey(), f.getValue().get(90, TimeUnit.SECONDS));
            }
        }
        finally
        {
            pool.shutdownNow();
        }
        // drain and undrain change the state: one after another, each twice (repeating is harmless)
        for (final String args : List.of("drain " + A[0], "drain " + A[0] + " --json", "undrain " + A[0],
            "undrain " + A[0] + " --json"))
        {
            outputs.put(args, ctlRaw(args.split(" ")));
            if (args.startsWith("drain "))
            {
                assertThat(api.get("/v1/apps/shop").ok().json().get("pairs").get(0).get("drained").asBoolean())
                    .as("after egressctl %s", args).isTrue();
            }
        }
        final StringBuilder figures = new StringBuilder("4. egressctl against the running daemon (in the host "
            + "namespace):");
        for (final Map.Entry<String, Shell.Output> e : outputs.entrySet())
        {
            final Shell.Output o = e.getValue();
            figures.append("\n  egressctl ").append(e.getKey()).append(" -> exit ").append(o.exitCode())
                .append(", ").append(o.stdout().length()).append(" bytes")
                .append(o.stderr().isBlank() ? "" : ", stderr: " + o.stderr().strip());
        }
        figures.append("\n  --- egressctl check:\n").append(outputs.get("check").stdout().strip());
        figures.append("\n  --- egressctl status:\n").append(outputs.get("status").stdout().strip());
        report(figures.toString());
        for (final Map.Entry<String, Shell.Output> e : outputs.entrySet())
        {
            assertThat(e.getValue().exitCode()).as("egressctl %s: %s", e.getKey(), e.getValue()).isZero();
            assertThat(e.getValue().stdout()).as("egressctl %s prints something", e.getKey()).isNotBlank();
        }

        // the tables
        assertThat(outputs.get("status").stdout()).contains("status       ok").contains("machines     2: 2 app");
        assertThat(outputs.get("machines").stdout()).contains("m1").contains("m2").contains(A[0]);
        assertThat(outputs.get("machine m1").stdout()).contains("scope        app").contains(A[0]);
        assertThat(outputs.get("pairs").stdout()).contains(A[0]).contains("shop");
        assertThat(outputs.get("apps").stdout()).contains("shop");
        assertThat(outputs.get("app shop").stdout()).contains("app          shop").contains(A[0]);
        assertThat(row(outputs.get("conns m1 --top 5").stdout(), DST4)).endsWith("critical");
        assertThat(outputs.get("check").stdout()).contains("address " + A[0]).contains("check:");
        assertThat(outputs.get("drain " + A[0]).stdout()).contains("drained " + A[0]);
        assertThat(outputs.get("undrain " + A[0]).stdout()).contains("undrained " + A[0]);

        // the JSON
        final JsonNode status = json(outputs.get("status --json"));
        assertThat(status.at("/summary/machines/total").asInt()).isEqualTo(2);
        assertThat(status.at("/summary/machines/app").asInt()).isEqualTo(2);
        assertThat(status.at("/summary/slots/used").asInt()).isEqualTo(2);
        assertThat(status.at("/health/status").asText()).isEqualTo("ok");
        final JsonNode machines = json(outputs.get("machines --json"));
        assertThat(machines.isArray()).isTrue();
        assertThat(ids(machines)).containsExactlyInAnyOrder("m1", "m2");
        assertThat(machines).allSatisfy(m -> assertThat(m.at("/egress/ipv4").asText()).isEqualTo(A[0]));
        final JsonNode machine = json(outputs.get("machine m1 --json"));
        assertThat(machine.at("/machine/id").asText()).isEqualTo("m1");
        assertThat(machine.at("/machine/egress/scope").asText()).isEqualTo("app");
        assertThat(machine.at("/machine/egress/ipv4").asText()).isEqualTo(A[0]);
        assertThat(machine.at("/machine/egress/ipv6").asText()).isEqualTo(A[1]);
        assertThat(machine.at("/kernel/holds").asBoolean()).isTrue();
        assertThat(machine.at("/connections/total").asInt()).isEqualTo(CAP + 3);
        final JsonNode pairs = json(outputs.get("pairs --json"));
        assertThat(pairs.size()).isEqualTo(1);
        assertThat(pairs.get(0).get("ipv4").asText()).isEqualTo(A[0]);
        assertThat(pairs.get(0).get("ipv6").asText()).isEqualTo(A[1]);
        assertThat(pairs.get(0).get("scope").asText()).isEqualTo("app");
        assertThat(pairs.get(0).at("/slots/used").asInt()).isEqualTo(2);
        assertThat(ids(json(outputs.get("apps --json")))).containsExactly("shop");
        final JsonNode app = json(outputs.get("app shop --json"));
        assertThat(app.get("id").asText()).isEqualTo("shop");
        assertThat(app.get("pairs").get(0).get("ipv4").asText()).isEqualTo(A[0]);
        final JsonNode conns = json(outputs.get("conns m1 --top 5 --json"));
        assertThat(conns.get("machine").asText()).isEqualTo("m1");
        assertThat(conns.get("cap").asInt()).isEqualTo(CAP);
        assertThat(conns.get("total").asInt()).isEqualTo(CAP + 3);
        assertThat(conns.at("/busiest/destination").asText()).isEqualTo(DST4);
        assertThat(conns.at("/busiest/use").asDouble()).isCloseTo(1.0, within(1e-9));
        final JsonNode check = json(outputs.get("check --json"));
        assertThat(check.get("ok").asBoolean()).as("check: %s", check).isTrue();
        assertThat(check.get("failures").asInt()).isZero();
        assertThat(check.get("checks").findValuesAsText("check")).contains("address " + A[0], "address " + A[1]);
        assertThat(json(outputs.get("drain " + A[0] + " --json")).get("drained").asBoolean()).isTrue();
        final JsonNode undrained = json(outputs.get("undrain " + A[0] + " --json"));
        assertThat(undrained.get("drained").asBoolean()).isFalse();
        assertThat(undrained.get("ipv4").asText()).isEqualTo(A[0]);
        assertThat(api.get("/v1/apps/shop").ok().json().get("pairs").get(0).get("drained").asBoolean()).isFalse();
    }

    // ---------------------------------------------------------------------------------------------- 5. deletion

    private void deletingAMachineRemovesItsConntrackEntries() throws Exception
    {
        final int before = lab.hostConntrack().entries("ipv4", "-s", G1).size();
        final Map<String, Integer> m2Before = counted(lab.hostConntrack().entries("ipv4", "-s", G2));
        final long t0 = System.nanoTime();
        api.delete("/v1/machines/m1").ok();
        final List<ConntrackEntry> left = poll("conntrack -L -s " + G1 + " to list nothing",
            () -> lab.hostConntrack().entries("ipv4", "-s", G1), List::isEmpty);
        final long ms = (System.nanoTime() - t0) / 1_000_000;
        final List<ConntrackEntry> m2After = lab.hostConntrack().entries("ipv4", "-s", G2);
        report("5. DELETE /v1/machines/m1: conntrack -L -s " + G1 + " " + before + " entries -> " + left.size()
            + " within " + ms + " ms; m2 (" + G2 + ") counted " + m2Before + " -> " + counted(m2After) + " "
            + states(m2After) + "; ledger of m2 " + perDestination(api.get("/v1/machines/m2/connections").ok()
                .json()));
        assertThat(before).isGreaterThanOrEqualTo(CAP + 3);
        assertThat(m2Before).isEqualTo(Map.of(DST4, 2));
        assertThat(counted(m2After)).as("m2's flows stay").isEqualTo(Map.of(DST4, 2));
    }

    // ---------------------------------------------------------------------------------------------- helpers

    private JsonNode putMachine(final String id, final int g) throws IOException
    {
        return api.put("/v1/machines/" + id, "{\"app\": \"shop\", \"interface\": \"tap-g" + g + "\", \"ipv4\": "
            + "\"10.77.0." + (g + 1) + "\", \"ipv6\": \"fd77::" + Integer.toHexString(g + 1) + "\"}").ok().json();
    }

    /** Opens {@code n} TCP connections from guest {@code g} to {@code dst} port 80 and holds them (closed in cleanup). */
    private List<ClientResult> hold(final int g, final String dst, final int n) throws Exception
    {
        final RunningClient client = lab.guest(g).startClient("tcp", dst, "80", Integer.toString(n), "600", "--timeout",
            "3");
        cleanup.add(client);
        final List<ClientResult> results = new ArrayList<>();
        for (int i = 0; i < n; i++)
        {
            final ClientResult r = client.next(Duration.ofSeconds(10));
            assertThat(r.ok()).as("g%d connection %d of %d to %s: %s", g, i + 1, n, dst, r).isTrue();
            results.add(r);
        }
        return results;
    }

    private JsonNode m1Connections() throws IOException
    {
        return api.get("/v1/machines/m1/connections?top=10").ok().json();
    }

    private static Map<String, Integer> perDestination(final JsonNode connections)
    {
        final Map<String, Integer> map = new LinkedHashMap<>();
        for (final JsonNode d : connections.get("destinations"))
        {
            map.put(d.get("destination").asText(), d.get("connections").asInt());
        }
        return map;
    }

    /** Per destination, the entries egressd and {@code ct count} count: source-NATed, not TIME_WAIT or CLOSE. */
    private static Map<String, Integer> counted(final List<ConntrackEntry> entries)
    {
        final Map<String, Integer> map = new LinkedHashMap<>();
        for (final ConntrackEntry e : entries)
        {
            final boolean gone = "TIME_WAIT".equals(e.tcpState()) || "CLOSE".equals(e.tcpState());
            if (e.snat() && !gone)
            {
                map.merge(e.origDst(), 1, Integer::sum);
            }
        }
        return map;
    }

    private static Map<String, Long> states(final List<ConntrackEntry> entries)
    {
        return entries.stream().collect(Collectors.groupingBy(e -> e.proto() + "/" + e.tcpState() + "->" + e.origDst()
            + (e.snat() ? " snat" : ""), TreeMap::new, Collectors.counting()));
    }

    private Scrape metrics() throws IOException
    {
        return Scrape.parse(api.get("/metrics").ok().text());
    }

    private Scrape pollMetrics(final String what, final Predicate<Scrape> done) throws Exception
    {
        return poll(what, this::metrics, done);
    }

    private static double ratio(final Scrape s)
    {
        return s.value("egressd_machine_busiest_destination_ratio", "machine", "m1");
    }

    /** Runs egressctl and fails unless it exits 0. */
    private Shell.Output ctl(final String... args)
    {
        final Shell.Output o = ctlRaw(args);
        assertThat(o.exitCode()).as("egressctl %s: %s", String.join(" ", args), o).isZero();
        return o;
    }

    private Shell.Output ctlRaw(final String... args)
    {
        return daemon.egressctl(args);
    }

    private static JsonNode json(final Shell.Output o) throws IOException
    {
        return ApiClient.JSON.readTree(o.stdout());
    }

    private static List<String> ids(final JsonNode array)
    {
        final List<String> ids = new ArrayList<>();
        array.forEach(n -> ids.add(n.get("id").asText()));
        return ids;
    }

    /** The table row of a destination, trimmed. */
    private static String row(final String table, final String destination)
    {
        for (final String line : table.split("\n"))
        {
            if (line.startsWith(destination + " "))
            {
                return line.strip();
            }
        }
        throw new AssertionError("no row for " + destination + " in:\n" + table);
    }

    @FunctionalInterface
    private interface Read<T>
    {
        T get() throws Exception;
    }

    /** Reads until {@code done} holds, for at most {@link #BOUND}; fails with the last value otherwise. */
    private static <T> T poll(final String what, final Read<T> read, final Predicate<T> done) throws Exception
    {
        final long deadline = System.nanoTime() + BOUND.toNanos();
        T last = read.get();
        while (!done.test(last))
        {
            if (System.nanoTime() > deadline)
            {
                throw new AssertionError("waited " + BOUND.toSeconds() + " s for " + what + "; last: " + last);
            }
            Thread.sleep(100);
            last = read.get();
        }
        return last;
    }

    private static void report(final String figures)
    {
        System.out.println("OBSERVABILITY-IT " + figures);
    }
}
