package dev.egressd.agent.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.agent.testing.ApiClient.Response;
import dev.egressd.agent.testing.ClientResult;
import dev.egressd.agent.testing.DaemonLabTest;
import dev.egressd.agent.testing.Lab;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Shell;

import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Faults against the running daemon (the built {@code egressd.jar} in a fresh lab's host namespace, one lab per
 * test, removed also on failure): {@code kill -9} under concurrent writers, hand-made changes to the kernel state
 * egressd owns, and a full conntrack table. The figures are printed as {@code CHAOS-IT ...} lines;
 * docs/reliability.md keeps those of the last run. The test shells out to nft, ip and conntrack to make the faults;
 * the daemon never does.
 */
@Privileged
class ChaosIT extends DaemonLabTest
{
    private static final String DST4 = "198.51.100.10";
    private static final String DST6 = "2001:db8:100::10";
    private static final String[] A = {"203.0.113.10", "2001:db8:10::10"};
    private static final String[] C = {"203.0.113.50", "2001:db8:10::50"};
    private static final int CYCLES = 20;
    private static final int WRITERS = 4;
    /** The longest a restart after kill -9 may take until the API answers (it takes about 1-2 s). */
    private static final long READY_BOUND_MS = 15_000;
    /** The longest a hand-made change may stay (the reconcile runs every second). */
    private static final long REPAIR_BOUND_MS = 5_000;

    // ------------------------------------------------------------------------------------------------
    // kill -9 under concurrent writers

    /** What a writer last sent after its last read of the state, and what came of it. */
    private enum Outcome
    {
        /** No answer: the daemon died under the request (or before it); the change may or may not be there. */
        IN_DOUBT,
        /** A 2xx answer: the change must be there, also after any number of kills. */
        ACKNOWLEDGED,
        /** A 4xx answer: nothing may have changed. */
        REFUSED
    }

    private enum Kind
    {
        PUT_MACHINE, DELETE_MACHINE, ADD_PAIR, DELETE_PAIR, DRAIN, UNDRAIN
    }

    /** One write: its target key in the writer's world ({@code m:ID} or {@code p:IPV4}), and its outcome. */
    private static final class Op
    {
        final Kind kind;
        final String key;
        Outcome outcome = Outcome.IN_DOUBT;
        /** For an acknowledged write: the key's value its answer gives (null = absent). */
        String value;
        /** For a pair deletion: the machines on that pair before it (they move to the app's other pair). */
        Set<String> moved = Set.of();

        Op(final Kind kind, final String key)
        {
            this.kind = kind;
            this.key = key;
        }

        @Override
        public String toString()
        {
            return kind + " " + key + " " + outcome + (value == null ? "" : " -> " + value);
        }
    }

    /**
     * One of the concurrent writers. It owns app {@code wN} (nothing else touches it): machines {@code wNm0..5}, a
     * pair P0 that always stays (so every machine has a slot and nothing waits) and a pair P1 it adds, drains,
     * undrains and deletes. After every write it reads the state, so at a kill at most its last write is not in its
     * last read: the expected state after the restart is that read, plus that write as its outcome allows.
     */
    private final class Writer implements Runnable
    {
        final int index;
        final String app;
        final String[] p0;
        final String[] p1;
        final Random random;
        /** The writer's world from its last read: "m:ID" -> placement, "p:IPV4" -> "drained=BOOL". */
        Map<String, String> world = new HashMap<>();
        Op last;
        volatile boolean stop;
        volatile Throwable error;
        /** Written by the writer's thread only; the main thread reads it to time the kill. */
        volatile int acknowledged;
        int refused;
        int inDoubt;
        int unread;

        Writer(final int index, final long seed)
        {
            this.index = index;
            this.app = "w" + index;
            this.p0 = new String[] {"203.0.113." + (100 + 10 * index), "2001:db8:10::" + (100 + 10 * index)};
            this.p1 = new String[] {"203.0.113." + (101 + 10 * index), "2001:db8:10::" + (101 + 10 * index)};
            this.random = new Random(seed);
        }

        @Override
        public void run()
        {
            try
            {
                while (!stop)
                {
                    final Op op = next();
                    last = op;
                    final Response r;
                    try
                    {
                        r = send(op);
                    }
                    catch (final IOException e)
                    {
                        return; // the daemon died under it: in doubt
                    }
                    if (r.status() >= 200 && r.status() < 300)
                    {
                        op.outcome = Outcome.ACKNOWLEDGED;
                        op.value = valueOf(op, r.json());
                        acknowledged = acknowledged + 1;
                    }
                    else if (r.status() >= 400 && r.status() < 500 && r.json() != null && r.json().has("error"))
                    {
                        op.outcome = Outcome.REFUSED;
                        refused++;
                    }
                    else
                    {
                        throw new AssertionError(app + ": " + op + " answered " + r);
                    }
                    final JsonNode state;
                    try
                    {
                        state = api.get("/v1/state").ok().json();
                    }
                    catch (final IOException e)
                    {
                        return; // the write's outcome is known, the read is not
                    }
                    world = world(state);
                    last = null;
                }
            }
            catch (final Throwable t)
            {
                error = t;
            }
        }

        private Op next()
        {
            final int dice = random.nextInt(100);
            final String machine = "m:" + app + "m" + random.nextInt(6);
            if (dice < 45)
            {
                return new Op(Kind.PUT_MACHINE, machine);
            }
            if (dice < 65)
            {
                return new Op(Kind.DELETE_MACHINE, machine);
            }
            final String pair = "p:" + p1[0];
            final Kind kind = dice < 75 ? Kind.ADD_PAIR : dice < 83 ? Kind.DELETE_PAIR : dice < 92 ? Kind.DRAIN
                : Kind.UNDRAIN;
            final Op op = new Op(kind, pair);
            if (kind == Kind.DELETE_PAIR)
            {
                final Set<String> on = new HashSet<>();
                world.forEach((k, v) -> {
                    if (k.startsWith("m:") && v.startsWith("app " + p1[0] + " "))
                    {
                        on.add(k);
                    }
                });
                op.moved = on;
            }
            return op;
        }

        private Response send(final Op op) throws IOException
        {
            final String id = op.key.substring(2);
            return switch (op.kind)
            {
                case PUT_MACHINE -> api.put("/v1/machines/" + id, machineBody(id));
                case DELETE_MACHINE -> api.delete("/v1/machines/" + id);
                case ADD_PAIR -> api.post("/v1/apps/" + app + "/pairs", DaemonIT.pair(p1));
                case DELETE_PAIR -> api.delete("/v1/apps/" + app + "/pairs/" + p1[0]);
                case DRAIN -> api.put("/v1/apps/" + app + "/pairs/" + p1[0] + "/drain", "");
                case UNDRAIN -> api.delete("/v1/apps/" + app + "/pairs/" + p1[0] + "/drain");
            };
        }

        /** Always the same body for one id, so a repeated PUT is a no-op that must not move the machine. */
        private String machineBody(final String id)
        {
            final int k = Integer.parseInt(id.substring(id.indexOf('m') + 1));
            return "{\"app\": \"" + app + "\", \"interface\": \"tap-" + id + "\", \"ipv4\": \"10.77." + (10 + index)
                + "." + (k + 2) + "\", \"ipv6\": \"fd77::" + (10 + index) + ":" + (k + 2) + "\"}";
        }

        private String valueOf(final Op op, final JsonNode answer)
        {
            return switch (op.kind)
            {
                case PUT_MACHINE -> DaemonIT.placement(answer.get("egress"));
                case DELETE_MACHINE, DELETE_PAIR -> null;
                case ADD_PAIR, DRAIN, UNDRAIN -> "drained=" + answer.get("drained").asBoolean();
            };
        }

        /** This writer's part of the state. */
        Map<String, String> world(final JsonNode state)
        {
            final Map<String, String> w = new HashMap<>();
            for (final JsonNode m : state.get("machines"))
            {
                if (m.get("app").asText().equals(app))
                {
                    w.put("m:" + m.get("id").asText(), DaemonIT.placement(m.get("egress")));
                }
            }
            for (final JsonNode a : state.get("apps"))
            {
                if (a.get("id").asText().equals(app))
                {
                    for (final JsonNode p : a.get("pairs"))
                    {
                        w.put("p:" + p.get("ipv4").asText(), "drained=" + p.get("drained").asBoolean());
                    }
                }
            }
            return w;
        }

        /**
         * Checks the state after a restart against the last read and the last write, then takes it as the new
         * last read.
         *
         * @param state the state after the restart.
         * @param cycle the cycle, for the messages.
         * @return how many acknowledged keys were checked.
         */
        int verify(final JsonNode state, final int cycle)
        {
            final Map<String, String> after = world(state);
            final Op op = last;
            if (op != null)
            {
                switch (op.outcome)
                {
                    case IN_DOUBT -> inDoubt++;
                    case ACKNOWLEDGED -> unread++;
                    default -> { }
                }
            }
            final Set<String> keys = new TreeSet<>(world.keySet());
            keys.addAll(after.keySet());
            if (op != null)
            {
                keys.add(op.key);
            }
            for (final String key : keys)
            {
                final String before = world.get(key);
                final String now = after.get(key);
                final String why = "cycle " + cycle + ", " + app + " " + key + " (last write: " + op + ", read before: "
                    + before + ")";
                if (op == null || op.outcome == Outcome.REFUSED || !key.equals(op.key) && !op.moved.contains(key))
                {
                    assertThat(now).as(why).isEqualTo(before);
                }
                else if (key.equals(op.key))
                {
                    final Set<String> allowed = new HashSet<>();
                    if (op.outcome == Outcome.ACKNOWLEDGED)
                    {
                        allowed.add(op.value);
                    }
                    else
                    {
                        allowed.add(before);
                        switch (op.kind)
                        {
                            case DELETE_MACHINE, DELETE_PAIR -> allowed.add(null);
                            case DRAIN -> allowed.add(before == null ? null : "drained=true");
                            case UNDRAIN -> allowed.add(before == null ? null : "drained=false");
                            case ADD_PAIR -> allowed.add(before == null ? "drained=false" : before);
                            // a new machine may be anywhere on the app's pairs; an existing one must stay put
                            case PUT_MACHINE -> allowed.add(before == null && now != null && now.startsWith("app ")
                                ? now : before);
                        }
                    }
                    assertThat(allowed).as(why + ": got " + now).contains(now);
                }
                else
                {
                    // on the pair the last write deleted: moved to P0 (acknowledged), or maybe still there (in doubt)
                    final boolean moved = now != null && now.startsWith("app " + p0[0] + " ");
                    assertThat(moved || op.outcome == Outcome.IN_DOUBT && Objects.equals(now, before))
                        .as(why + ": got " + now).isTrue();
                }
            }
            world = after;
            last = null;
            return (int)keys.stream().filter(after::containsKey).count();
        }
    }

    @Test
    @Timeout(value = 420, unit = TimeUnit.SECONDS) // about 2 min; a restart's JVM start is slow on a loaded machine
    void killDashNineUnderFourWritersLosesNoAcknowledgedChangeAndMovesNobody() throws Exception
    {
        final long t0 = System.nanoTime();
        final long firstStart = start(Lab.create(1), "--conntrack-drain-seconds", "0");
        final List<Writer> writers = new ArrayList<>();
        for (int w = 0; w < WRITERS; w++)
        {
            final Writer writer = new Writer(w, 1000 + w);
            api.put("/v1/apps/" + writer.app, "{\"fail_closed\": true}").ok();
            api.post("/v1/apps/" + writer.app + "/pairs", DaemonIT.pair(writer.p0)).ok();
            writer.world = writer.world(api.get("/v1/state").ok().json());
            writers.add(writer);
        }
        final Random random = new Random(99);
        final List<Long> readyMs = new ArrayList<>();
        final List<Long> loggedMs = new ArrayList<>();
        final List<Long> downMs = new ArrayList<>();
        final List<String> kernelStates = new ArrayList<>();
        final List<Thread> running = new ArrayList<>();
        cleanup.add(() -> {
            writers.forEach(w -> w.stop = true);
            for (final Thread t : running)
            {
                t.join(10_000);
            }
        });
        int checkedKeys = 0;
        int egressctlChecks = 0;
        int maxMachines = 0;
        for (int cycle = 1; cycle <= CYCLES; cycle++)
        {
            running.clear();
            for (final Writer writer : writers)
            {
                final Thread t = new Thread(writer, "writer-" + writer.app);
                running.add(t);
                t.start();
            }
            // the kill lands while every writer is at work: after a few acknowledged writes, at a random moment
            final int ackedBefore = writers.stream().mapToInt(w -> w.acknowledged).sum();
            final long waitStart = System.nanoTime();
            while (writers.stream().mapToInt(w -> w.acknowledged).sum() < ackedBefore + WRITERS
                && System.nanoTime() - waitStart < TimeUnit.SECONDS.toNanos(10))
            {
                Thread.sleep(5);
            }
            Thread.sleep(random.nextInt(300));
            daemon.kill9();
            final long killedAt = System.nanoTime();
            for (final Thread t : running)
            {
                t.join(20_000);
                assertThat(t.isAlive()).as(t.getName() + " ends once the daemon is gone").isFalse();
            }
            for (final Writer writer : writers)
            {
                if (writer.error != null)
                {
                    throw new AssertionError("cycle " + cycle + ": " + writer.app, writer.error);
                }
            }

            final long ready = daemon.start();
            downMs.add((System.nanoTime() - killedAt) / 1_000_000);
            readyMs.add(ready);
            loggedMs.add(daemon.loggedStartMillis());
            assertThat(ready).as("cycle %d: API answering after restart, ms", cycle).isLessThan(READY_BOUND_MS);

            final JsonNode state = api.get("/v1/state").ok().json();
            // 1. every acknowledged change is there, unchanged; nothing else changed
            for (final Writer writer : writers)
            {
                checkedKeys += writer.verify(state, cycle);
            }
            // 2. no (pair, block) held twice
            final Set<String> slots = new HashSet<>();
            int machines = 0;
            for (final JsonNode m : state.get("machines"))
            {
                machines++;
                final JsonNode e = m.get("egress");
                assertThat(e.get("scope").asText()).as("cycle %d: %s has a slot", cycle, m.get("id")).isEqualTo("app");
                assertThat(slots.add(e.get("ipv4").asText() + "#" + e.get("block").asInt()))
                    .as("cycle %d: slot of %s held once", cycle, m.get("id")).isTrue();
            }
            maxMachines = Math.max(maxMachines, machines);
            // 3. the kernel equals the state, and the health says so
            assertThat(snat4()).as("cycle %d: kernel snat4 vs the API's machines", cycle)
                .isEqualTo(DaemonIT.expectedSnat4(state));
            final Set<String> guests6 = new TreeSet<>();
            state.get("machines").forEach(m -> guests6.add(m.get("ipv6").asText()));
            assertThat(snat6Guests()).as("cycle %d: kernel snat6 vs the API's machines", cycle).isEqualTo(guests6);
            assertThat(state.get("recovered")).as("cycle %d: nothing recovered: the state file was intact", cycle)
                .isEmpty();
            final String uplink = lab.must("host", "ip", "-br", "addr", "show", "dev", "uplink");
            for (final JsonNode a : state.get("apps"))
            {
                for (final JsonNode p : a.get("pairs"))
                {
                    assertThat(uplink).as("cycle %d: pair address on the uplink", cycle)
                        .contains(" " + p.get("ipv4").asText() + "/", " " + p.get("ipv6").asText() + "/");
                }
            }
            final JsonNode health = state.get("health");
            assertThat(health.get("status").asText()).as("cycle %d: %s", cycle, health).isEqualTo("ok");
            assertThat(health.get("state").asText()).as("cycle %d", cycle).isEqualTo("ok");
            assertThat(health.get("kernel").asText()).as("cycle %d", cycle).isIn("in_sync", "repaired_drift");
            kernelStates.add(health.get("kernel").asText());
            if (cycle % 10 == 0)
            {
                final Shell.Output check = daemon.egressctl("check");
                assertThat(check.exitCode()).as("cycle %d: egressctl check:\n%s%s", cycle, check.stdout(),
                    check.stderr()).isZero();
                egressctlChecks++;
            }
        }
        final long totalMs = (System.nanoTime() - t0) / 1_000_000;
        int acknowledged = 0;
        int refused = 0;
        int inDoubt = 0;
        int unread = 0;
        for (final Writer w : writers)
        {
            acknowledged += w.acknowledged;
            refused += w.refused;
            inDoubt += w.inDoubt;
            unread += w.unread;
        }
        assertThat(acknowledged).as("the writers got work done").isGreaterThanOrEqualTo(CYCLES * WRITERS);
        report(String.format("kill -9: %d cycles x %d writers: %d acknowledged writes, %d refused (4xx), %d in "
                + "doubt at a kill, %d acknowledged but killed before the writer's read; every acknowledged change "
                + "there after every restart (%d key checks), nobody moved, no slot shared, up to %d machines; "
                + "kernel snat4 and snat6 = API every cycle (health kernel: %d in_sync, %d repaired_drift), egressctl check "
                + "ok %d times; first start %d ms; restart to API answering %s; the daemon's own start-up %s; "
                + "kill to API answering again %s; test %d ms",
            CYCLES, WRITERS, acknowledged, refused, inDoubt, unread, checkedKeys, maxMachines,
            kernelStates.stream().filter("in_sync"::equals).count(),
            kernelStates.stream().filter("repaired_drift"::equals).count(), egressctlChecks, firstStart,
            DaemonIT.stats(readyMs), DaemonIT.stats(loggedMs), DaemonIT.stats(downMs), totalMs));
    }

    // ------------------------------------------------------------------------------------------------
    // hand-made kernel changes

    /** A hand-made change: its name in the table of figures and the commands that make it in the host namespace. */
    private record Change(String name, Supplier<List<String>> command, boolean repaired)
    {
        static Change of(final String name, final String... nftScript)
        {
            return new Change(name, () -> nft(nftScript), true);
        }

        static Change of(final String name, final List<String> command, final boolean repaired)
        {
            return new Change(name, () -> command, repaired);
        }

        static List<String> nft(final String... script)
        {
            final List<String> cmd = new ArrayList<>(List.of("nft"));
            cmd.addAll(Arrays.asList(script));
            return cmd;
        }
    }

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void everyHandMadeChangeToTheOwnedTableAndAddressesIsRepaired() throws Exception
    {
        final long t0 = System.nanoTime();
        start(Lab.create(2));
        api.post("/v1/apps/shop/pairs", DaemonIT.pair(A)).ok();
        api.put("/v1/machines/m1", machine(1)).ok();
        api.put("/v1/machines/m2", machine(2)).ok();
        api.put("/v1/machines/m2/egress-ip", "{\"ipv4\": \"" + C[0] + "\", \"ipv6\": \"" + C[1] + "\"}").ok();
        final JsonNode m1 = api.get("/v1/machines/m1").ok().json().get("egress");
        final String block = m1.get("ports").get("first").asInt() + "-" + m1.get("ports").get("last").asInt();
        final String wrongBlock = (m1.get("ports").get("first").asInt() + 1024) + "-"
            + (m1.get("ports").get("last").asInt() + 1024);
        final List<String> baselineTable = tableTokens();
        final List<String> baselineUplink = uplinkTokens();
        assertThat(baselineTable).anyMatch(t -> t.startsWith("masquerade")).contains("chain nat6")
            .anyMatch(t -> t.startsWith("meta l4proto ipv6-icmp snat ip6 to ip6 saddr map @snat6 comment"));
        assertThat(baselineUplink).contains(A[0] + "/32", A[1] + "/128", C[0] + "/32", C[1] + "/128");
        final long repairsBefore = api.get("/v1/health").ok().json().get("repairs").asLong();

        final List<Change> catalogue = List.of(
            Change.of("delete an snat4 element (IPv4 mapping of a guest)", "delete element inet egressd snat4 { 10.77.0.2 }"),
            Change.of("point an snat4 element at another block",
                "delete element inet egressd snat4 { 10.77.0.2 } ; add element inet egressd snat4 { 10.77.0.2 : "
                    + A[0] + " . " + wrongBlock + " }"),
            Change.of("add a foreign snat4 element", "add element inet egressd snat4 { 10.77.9.9 : 203.0.113.99 . 1-1024 }"),
            Change.of("flush map snat4", "flush map inet egressd snat4"),
            Change.of("delete an snat6 element (IPv6 mapping of a guest)", "delete element inet egressd snat6 { fd77::2 }"),
            Change.of("flush map snat6", "flush map inet egressd snat6"),
            Change.of("delete a static4 element", "delete element inet egressd static4 { 10.77.0.2 }"),
            Change.of("delete a static6 element", "delete element inet egressd static6 { fd77::2 }"),
            Change.of("delete a guests4 element", "delete element inet egressd guests4 { \"tap-g1\" . 10.77.0.2 }"),
            Change.of("delete a guests6 element", "delete element inet egressd guests6 { \"tap-g1\" . fd77::2 }"),
            Change.of("flush set guests4 (every guest looks spoofed)", "flush set inet egressd guests4"),
            Change.of("add a foreign static4 element", "add element inet egressd static4 { 10.77.9.9 }"),
            Change.of("flush chain postrouting (no NAT at all)", "flush chain inet egressd postrouting"),
            // the handle as it is when the change is made: the repairs before may have re-created the rule
            new Change("delete one rule of chain forward", () -> Change.nft("delete rule inet egressd forward handle "
                + firstRuleHandle("forward")), true),
            Change.of("flush chain nat6 (the IPv6 SNAT rules built over netlink)", "flush chain inet egressd nat6"),
            new Change("delete one IPv6 SNAT rule of chain nat6", () -> Change.nft("delete rule inet egressd nat6 handle "
                + firstRuleHandle("nat6")), true),
            Change.of("append a foreign rule to postrouting",
                "add rule inet egressd postrouting ip saddr 10.77.0.2 accept comment \"chaos\""),
            Change.of("insert a foreign drop rule at the top of forward",
                "insert rule inet egressd forward drop comment \"chaos\""),
            Change.of("set chain forward's policy to drop",
                "add chain inet egressd forward { type filter hook forward priority filter ; policy drop ; }"),
            Change.of("add a foreign base chain (forward hook, policy drop)",
                "add chain inet egressd x { type filter hook forward priority -300 ; policy drop ; }"),
            Change.of("add a foreign regular chain", "add chain inet egressd chaos"),
            Change.of("add a foreign set", "add set inet egressd chaos { type ipv4_addr ; }"),
            Change.of("add a foreign counter", "add counter inet egressd chaos"),
            Change.of("delete the whole table", "delete table inet egressd"),
            Change.of("remove an app pair's IPv4 address from the uplink",
                List.of("ip", "addr", "del", A[0] + "/32", "dev", "uplink"), true),
            Change.of("remove an app pair's IPv6 address from the uplink",
                List.of("ip", "-6", "addr", "del", A[1] + "/128", "dev", "uplink"), true),
            Change.of("remove a machine-scoped pair's IPv4 address from the uplink",
                List.of("ip", "addr", "del", C[0] + "/32", "dev", "uplink"), true),
            Change.of("add a foreign table beside egressd's (not egressd's: left alone)",
                Change.nft("add table inet chaos ; add chain inet chaos c { type filter hook forward priority 10 ;"
                    + " policy accept ; }"), false));

        final Random random = new Random(7);
        final Map<String, Long> repairMs = new LinkedHashMap<>();
        for (final Change change : catalogue)
        {
            Thread.sleep(random.nextInt(1000)); // land anywhere in the reconcile period
            lab.must("host", change.command().get().toArray(String[]::new));
            final long c0 = System.nanoTime(); // the command returned: the change is in the kernel
            if (change.repaired())
            {
                final long ms = waitFor(() -> tableTokens().equals(baselineTable)
                    && uplinkTokens().equals(baselineUplink), change.name());
                repairMs.put(change.name(), ms);
            }
            else
            {
                Thread.sleep(2500); // two reconciles and more
                assertThat(lab.exec("host", "nft", "list", "table", "inet", "chaos").ok())
                    .as("%s: still there", change.name()).isTrue();
                assertThat(tableTokens()).as(change.name()).isEqualTo(baselineTable);
                repairMs.put(change.name(), -1L);
                lab.must("host", "nft", "delete", "table", "inet", "chaos");
            }
        }
        // the repaired kernel works: both guests leave from their pairs, over IPv4 and IPv6
        final ClientResult g1v4 = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "2").get(0);
        final ClientResult g1v6 = lab.guest(1).client("tcp", DST6, 80, 1, 0, "--timeout", "2").get(0);
        final ClientResult g2v4 = lab.guest(2).client("tcp", DST4, 80, 1, 0, "--timeout", "2").get(0);
        assertThat(g1v4.seenIp()).isEqualTo(A[0]);
        assertThat(g1v4.seenPort()).isBetween(m1.get("ports").get("first").asInt(), m1.get("ports").get("last").asInt());
        assertThat(g1v6.seenIp()).isEqualTo(A[1]);
        assertThat(g2v4.seenIp()).isEqualTo(C[0]);
        final JsonNode health = api.get("/v1/health").ok().json();
        final long repaired = repairMs.values().stream().filter(ms -> ms >= 0).count();
        assertThat(health.get("repairs").asLong() - repairsBefore).as("each repair is counted")
            .isGreaterThanOrEqualTo(repaired);
        assertThat(health.get("status").asText()).isEqualTo("ok");

        final StringBuilder table = new StringBuilder("hand-made kernel changes (m1 on block " + block
            + " of " + A[0] + ", m2 on machine-scoped " + C[0] + "; made at a random point of the 1 s reconcile "
            + "period, polled every ~10 ms until the table and the uplink equal what egressd had put there):\n");
        table.append(String.format("  %-66s %s%n", "change", "repaired after"));
        for (final Map.Entry<String, Long> e : repairMs.entrySet())
        {
            table.append(String.format("  %-66s %s%n", e.getKey(), e.getValue() < 0 ? "left alone (not egressd's)"
                : e.getValue() + " ms"));
        }
        final List<Long> all = repairMs.values().stream().filter(ms -> ms >= 0).toList();
        table.append("  all: ").append(DaemonIT.stats(all)).append("; health repairs +")
            .append(health.get("repairs").asLong() - repairsBefore).append("; afterwards g1 ").append(g1v4)
            .append(" / ").append(g1v6).append(", g2 ").append(g2v4).append("; test ")
            .append((System.nanoTime() - t0) / 1_000_000).append(" ms");
        report(table.toString());
        final List<Long> sorted = all.stream().sorted().toList();
        // the reconcile runs every second: a change waits up to 1 s to be seen, then the read and the repair
        assertThat(sorted.get(sorted.size() / 2)).as("median repair time, ms").isLessThanOrEqualTo(1500L);
    }

    // ------------------------------------------------------------------------------------------------
    // conntrack table full

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void aFullConntrackTableIsReportedWhileTheApiServesAndClearsWhenItEmpties() throws Exception
    {
        final long t0 = System.nanoTime();
        start(Lab.create(1));
        api.post("/v1/apps/shop/pairs", DaemonIT.pair(A)).ok();
        api.put("/v1/machines/m1", machine(1)).ok();
        // nf_conntrack_max is one value for all namespaces, read-only outside the root namespace (checked below): the
        // lab cannot lower it, so it fills the host namespace's own table (its count is per namespace) up to it.
        // (A kernel that lets a namespace lower it gets a small table here and a quick fill.)
        final Shell.Exec lower = lab.exec("host", "sh", "-c", "echo 4096 > /proc/sys/net/netfilter/nf_conntrack_max");
        final long max = Long.parseLong(lab.must("host", "cat", "/proc/sys/net/netfilter/nf_conntrack_max").strip());
        final JsonNode before = waitForConntrack(ct -> ct.get("max").asLong() == max, "max read");
        assertThat(before.get("max").asLong()).as("the daemon reads the whole nf_conntrack_max").isEqualTo(max);
        assertThat(before.get("percent").asInt()).isLessThan(90);

        // fill: UDP from a guest to the host's own address, a new flow per (source port, destination port)
        final long fill0 = System.nanoTime();
        final Shell.Exec filled = lab.execWithin(Duration.ofSeconds(90), "g1", "python3", "-c", FILL, "169.254.1.1",
            Long.toString(max + max / 16));
        assertThat(filled.ok()).as(filled.output()).isTrue();
        final long fillMs = (System.nanoTime() - fill0) / 1_000_000;
        final long entries = Long.parseLong(lab.must("host", "cat", "/proc/sys/net/netfilter/nf_conntrack_count")
            .strip());
        assertThat(entries * 100).as("the host namespace's table is full").isGreaterThanOrEqualTo(max * 90);
        final long seen0 = System.nanoTime();
        final JsonNode full = waitForConntrack(ct -> ct.get("percent").asInt() >= 90, "reported full");
        final long reportedMs = (System.nanoTime() - seen0) / 1_000_000;

        // the API keeps serving, reads and writes
        final long w0 = System.nanoTime();
        api.put("/v1/machines/m9", "{\"app\": \"shop\", \"interface\": \"tap-m9\", \"ipv4\": \"10.77.1.9\", "
            + "\"ipv6\": \"fd77::1:9\"}").ok();
        final long writeMicros = (System.nanoTime() - w0) / 1000;
        final long r0 = System.nanoTime();
        final JsonNode state = api.get("/v1/state").ok().json();
        final long readMicros = (System.nanoTime() - r0) / 1000;
        assertThat(state.get("machines")).hasSize(2);
        final Shell.Output check = daemon.egressctl("check");
        assertThat(check.exitCode()).as(check.stdout() + check.stderr()).isEqualTo(1);
        assertThat(check.stdout()).contains("conntrack").contains("nf_conntrack_max");
        final Shell.Output status = daemon.egressctl("status");
        assertThat(status.stdout()).contains(" of " + max + " entries");
        // a guest's new connection while the table is full (the kernel evicts an unanswered flow for it)
        final ClientResult during = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "2").get(0);

        // it empties: the report clears
        lab.must("host", "conntrack", "-F");
        final long e0 = System.nanoTime();
        final JsonNode emptied = waitForConntrack(ct -> ct.get("percent").asInt() < 90, "reported back below 90%");
        final long clearedMs = (System.nanoTime() - e0) / 1_000_000;
        final Shell.Output checkAfter = daemon.egressctl("check");
        assertThat(checkAfter.exitCode()).as(checkAfter.stdout() + checkAfter.stderr()).isZero();
        final JsonNode health = api.get("/v1/health").ok().json();
        assertThat(health.get("status").asText()).isEqualTo("ok");
        assertThat(health.get("kernel").asText()).isIn("in_sync", "repaired_drift");
        final ClientResult after = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "2").get(0);
        assertThat(after.seenIp()).isEqualTo(A[0]);
        report(String.format("conntrack full: nf_conntrack_max %d (%s in the lab's namespace); %d flows sent "
                + "from g1 in %d ms, host table %d entries; health said %s within %d ms; meanwhile machine PUT %.1f ms, "
                + "GET /v1/state %.1f ms, egressctl check exit 1, a guest's new connection %s; after conntrack -F: "
                + "%s within %d ms, egressctl check exit 0, guest %s; test %d ms",
            max, lower.ok() ? "lowered" : "global, read-only", max + max / 16, fillMs, entries, full, reportedMs, writeMicros / 1000.0, readMicros / 1000.0, during,
            emptied, clearedMs, after, (System.nanoTime() - t0) / 1_000_000));
    }

    // ------------------------------------------------------------------------------------------------
    // state directory full, then unwritable

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void aFullOrUnwritableStateDirectoryRefusesChangesSurvivesAKillAndRecoversWhenThereIsRoom() throws Exception
    {
        final long t0 = System.nanoTime();
        lab = Lab.create(1);
        workDir = java.nio.file.Files.createTempDirectory("egressd-ChaosIT-" + lab.prefix());
        final java.nio.file.Path stateDir = java.nio.file.Files.createDirectories(workDir.resolve("state"));
        // a small filesystem of its own for the state directory (a mount, no network change; the daemon's mount
        // namespace from ip netns exec copies it at start, and both see the same filesystem, its files and flags)
        Shell.must(Lab.EXEC_TIMEOUT, List.of("mount", "-t", "tmpfs", "-o", "size=1m", "egressd-chaos",
            stateDir.toString()));
        cleanup.add(() -> Shell.run(Lab.EXEC_TIMEOUT, List.of("umount", "-l", stateDir.toString())));
        daemon = new dev.egressd.agent.testing.DaemonProcess(lab, workDir);
        daemon.start();
        api = daemon.api();
        api.post("/v1/apps/shop/pairs", DaemonIT.pair(A)).ok();
        final String placed = DaemonIT.placement(api.put("/v1/machines/m1", machine(1)).ok().json().get("egress"));

        // 1. full
        final java.nio.file.Path filler = stateDir.resolve("filler");
        Shell.run(Duration.ofSeconds(20), List.of("dd", "if=/dev/zero", "of=" + filler, "bs=4k"));
        assertThat(Shell.must(Lab.EXEC_TIMEOUT, List.of("df", "--output=avail", stateDir.toString())))
            .as("the state directory's filesystem is full").contains(" 0");
        // A change is a small journal record: the first few may still fit in the space the journal file already
        // has (they are on disk, rightly accepted); keep changing until the disk refuses one.
        int accepted = 0;
        String refusedId = null;
        String m2 = null;
        Response refused = null;
        for (int i = 2; i < 250 && refusedId == null; i++)
        {
            final String id = "m" + i;
            final String body = "{\"app\": \"shop\", \"interface\": \"tap-" + id + "\", \"ipv4\": \"10.77.1." + i
                + "\", \"ipv6\": \"fd77::1:" + Integer.toHexString(i) + "\"}";
            final Response r = api.put("/v1/machines/" + id, body);
            if (r.status() == 200)
            {
                accepted++;
                continue;
            }
            refusedId = id;
            m2 = body;
            refused = r;
        }
        assertThat(refusedId).as("the full disk refused a change").isNotNull();
        final String refusedIp = "10.77.1." + refusedId.substring(1);
        assertThat(refused.status()).as(refused.toString()).isEqualTo(503);
        assertThat(refused.json().at("/error/code").asText()).isEqualTo("state_unwritable");
        assertThat(refused.json().at("/error/message").asText()).contains("No space left on device");
        assertThat(api.get("/v1/machines/" + refusedId).status()).as("nothing changed").isEqualTo(404);
        assertThat(lab.exec("host", "nft", "get", "element", "inet", "egressd", "snat4", "{ " + refusedIp + " }").ok())
            .as("the kernel change is undone").isFalse();
        final JsonNode fullHealth = api.get("/v1/health").ok().json();
        assertThat(fullHealth.get("status").asText()).isEqualTo("degraded");
        assertThat(fullHealth.get("state").asText()).startsWith("unwritable: ").contains("No space left on device");
        final Shell.Output check = daemon.egressctl("check");
        assertThat(check.exitCode()).as(check.stdout()).isEqualTo(1);
        assertThat(check.stdout()).contains("No space left on device");
        assertThat(lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "2").get(0).seenIp())
            .as("traffic flows with what is programmed").isEqualTo(A[0]);

        // 2. kill -9 with the disk still full: it comes up from the intact state and serves, refusing changes
        daemon.kill9();
        final long restartMs = daemon.start();
        assertThat(restartMs).isLessThan(READY_BOUND_MS);
        assertThat(DaemonIT.placement(api.get("/v1/machines/m1").ok().json().get("egress"))).isEqualTo(placed);
        final Response refusedAgain = api.put("/v1/machines/" + refusedId, m2);
        assertThat(refusedAgain.status()).as(refusedAgain.toString()).isEqualTo(503);
        assertThat(refusedAgain.json().at("/error/code").asText()).isEqualTo("state_unwritable");

        // 3. room again: the next change goes through, the health clears
        java.nio.file.Files.delete(filler);
        final long r0 = System.nanoTime();
        waitFor(() -> healthState().equals("ok"), "state ok after the filler went");
        final long clearedMs = (System.nanoTime() - r0) / 1_000_000;
        api.put("/v1/machines/" + refusedId, m2).ok();

        // 4. unwritable: an immutable directory (a read-only remount is refused while the daemon holds its lock file
        // open for writing; root passes any permission bits)
        // (the journal file too: changes append to it, which an immutable directory alone still allows)
        final java.nio.file.Path journal = stateDir.resolve("journal");
        Shell.must(Lab.EXEC_TIMEOUT, List.of("chattr", "+i", stateDir.toString()));
        cleanup.add(() -> Shell.run(Lab.EXEC_TIMEOUT, List.of("chattr", "-i", stateDir.toString())));
        if (java.nio.file.Files.exists(journal))
        {
            Shell.must(Lab.EXEC_TIMEOUT, List.of("chattr", "+i", journal.toString()));
            cleanup.add(() -> Shell.run(Lab.EXEC_TIMEOUT, List.of("chattr", "-i", journal.toString())));
        }
        final Response readOnly = api.put("/v1/machines/ro", "{\"app\": \"shop\", \"interface\": \"tap-ro\", "
            + "\"ipv4\": \"10.77.2.2\", \"ipv6\": \"fd77::2:2\"}");
        assertThat(readOnly.status()).as(readOnly.toString()).isEqualTo(503);
        assertThat(readOnly.json().at("/error/code").asText()).isEqualTo("state_unwritable");
        assertThat(readOnly.json().at("/error/message").asText()).contains("Operation not permitted");
        assertThat(api.get("/v1/health").ok().json().get("state").asText()).contains("Operation not permitted");
        Shell.must(Lab.EXEC_TIMEOUT, List.of("chattr", "-i", stateDir.toString()));
        if (java.nio.file.Files.exists(journal))
        {
            Shell.must(Lab.EXEC_TIMEOUT, List.of("chattr", "-i", journal.toString()));
        }
        final long w0 = System.nanoTime();
        waitFor(() -> healthState().equals("ok"), "state ok once writable again");
        final long rwMs = (System.nanoTime() - w0) / 1_000_000;
        final JsonNode state = api.get("/v1/state").ok().json();
        assertThat(state.get("machines")).hasSize(2 + accepted);
        assertThat(snat4()).isEqualTo(DaemonIT.expectedSnat4(state));
        report(String.format("state directory (1 MB tmpfs): full -> " + accepted + " small journal records still fit, "
                + "then PUT %d %s, health state \"%s\", egressctl check "
                + "exit %d; kill -9 and restart on the full disk: API answering after %d ms, m1 unmoved, PUT %d; "
                + "filler removed -> health state ok after %d ms, PUT 200; directory made immutable (chattr +i) -> "
                + "PUT %d %s; writable again -> ok after %d ms; test %d ms",
            refused.status(), refused.json().at("/error/code").asText(), fullHealth.get("state").asText(),
            check.exitCode(), restartMs, refusedAgain.status(), clearedMs, readOnly.status(),
            readOnly.json().at("/error/message").asText(), rwMs, (System.nanoTime() - t0) / 1_000_000));
    }

    private String healthState()
    {
        try
        {
            return api.get("/v1/health").json().get("state").asText();
        }
        catch (final IOException e)
        {
            return e.toString();
        }
    }

    /** UDP datagrams to closed ports of a target, each (source port, destination port) a new conntrack entry. */
    private static final String FILL = """
        import socket, sys
        target, total = sys.argv[1], int(sys.argv[2])
        sent = 0
        while sent < total:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for port in range(1, 65536):
                if sent >= total:
                    break
                try:
                    s.sendto(b"x", (target, port))
                except OSError:
                    pass
                sent += 1
        print("sent", sent)
        """;

    private JsonNode waitForConntrack(final java.util.function.Predicate<JsonNode> condition, final String what)
        throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        JsonNode ct = null;
        while (System.nanoTime() < deadline)
        {
            ct = api.get("/v1/health").ok().json().get("conntrack");
            if (ct != null && !ct.isNull() && condition.test(ct))
            {
                return ct;
            }
            Thread.sleep(50);
        }
        return fail("conntrack " + what + " not within 10 s; last health conntrack " + ct);
    }

    // ------------------------------------------------------------------------------------------------

    /** A machine on lab guest {@code g}: interface tap-g<g>, 10.77.0.<g+1>, fd77::<g+1>. */
    private static String machine(final int g)
    {
        return "{\"app\": \"shop\", \"interface\": \"tap-g" + g + "\", \"ipv4\": \"10.77.0." + (g + 1)
            + "\", \"ipv6\": \"fd77::" + Integer.toHexString(g + 1) + "\"}";
    }

    private long waitFor(final BooleanSupplier repaired, final String what) throws InterruptedException
    {
        final long c0 = System.nanoTime();
        while (!repaired.getAsBoolean())
        {
            if (System.nanoTime() - c0 > TimeUnit.MILLISECONDS.toNanos(REPAIR_BOUND_MS))
            {
                fail(what + ": not repaired within " + REPAIR_BOUND_MS + " ms; table now:\n"
                    + lab.exec("host", "nft", "list", "table", "inet", "egressd").output() + "\nuplink: "
                    + uplinkTokens() + "\nhealth: " + healthText() + "\n" + daemon.tail());
            }
            Thread.sleep(5);
        }
        return (System.nanoTime() - c0) / 1_000_000;
    }

    private String healthText()
    {
        try
        {
            return api.get("/v1/health").toString();
        }
        catch (final IOException e)
        {
            return e.toString();
        }
    }

    /**
     * egressd's table as a sorted list of tokens: counter values dropped, split at braces, commas, semicolons and
     * line ends, so that the order nft lists a set's elements in does not matter while any element, rule, chain,
     * set, object or policy more or less does.
     */
    private List<String> tableTokens()
    {
        final Shell.Exec list = lab.exec("host", "nft", "list", "table", "inet", "egressd");
        if (!list.ok())
        {
            return List.of("(no table)");
        }
        final String text = list.output().replaceAll("packets \\d+ bytes \\d+", "");
        final List<String> tokens = new ArrayList<>();
        for (final String t : text.split("[{},;\\n]"))
        {
            if (!t.isBlank())
            {
                tokens.add(t.strip());
            }
        }
        tokens.sort(null);
        return tokens;
    }

    /** The uplink's addresses, sorted. */
    private List<String> uplinkTokens()
    {
        final String[] fields = lab.must("host", "ip", "-br", "addr", "show", "dev", "uplink").strip().split("\\s+");
        final List<String> addresses = new ArrayList<>(Arrays.asList(fields).subList(2, fields.length));
        addresses.sort(null);
        return addresses;
    }

    private String firstRuleHandle(final String chain)
    {
        final Matcher m = Pattern.compile("comment \"egressd [0-9a-f]+\" # handle (\\d+)")
            .matcher(lab.must("host", "nft", "-a", "list", "chain", "inet", "egressd", chain));
        assertThat(m.find()).as("a rule in " + chain).isTrue();
        return m.group(1);
    }

    /** The guest addresses of the kernel's snat6 map. */
    private Set<String> snat6Guests()
    {
        final Set<String> guests = new TreeSet<>();
        final Matcher m = Pattern.compile("([0-9a-f:]+) : [0-9a-f:]+ \\. \\d+")
            .matcher(lab.must("host", "nft", "list", "map", "inet", "egressd", "snat6"));
        while (m.find())
        {
            guests.add(m.group(1));
        }
        return guests;
    }

    /** The kernel's snat4 map: guest -> "egress first-last". */
    private Map<String, String> snat4()
    {
        final Map<String, String> map = new HashMap<>();
        final Matcher m = DaemonIT.SNAT4.matcher(lab.must("host", "nft", "list", "map", "inet", "egressd", "snat4"));
        while (m.find())
        {
            map.put(m.group(1), m.group(2) + " " + m.group(3) + "-" + (m.group(4) == null ? m.group(3) : m.group(4)));
        }
        return map;
    }

    private static void report(final String figures)
    {
        System.out.println("CHAOS-IT " + figures);
    }
}
