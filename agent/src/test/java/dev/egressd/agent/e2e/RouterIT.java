package dev.egressd.agent.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.agent.testing.ApiClient;
import dev.egressd.agent.testing.ClientResult;
import dev.egressd.agent.testing.DaemonProcess;
import dev.egressd.agent.testing.EtcdServer;
import dev.egressd.agent.testing.Guest;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.RegionLab;
import dev.egressd.agent.testing.RouterProcess;
import dev.egressd.agent.testing.RunningClient;
import dev.egressd.agent.testing.Shell;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Region mode end to end with real packets (docs/region.md): a {@link RegionLab} with etcd, the real router role
 * ({@code egressd router}) in the router namespace and three region-mode egressd hosts (the built jar, real kernel),
 * machines of one app on every host. It proves, IPv4 and IPv6, that the machines all leave from the one pair,
 * each inside its block, and that TCP, UDP, ICMP echo and ICMP errors come back to the right guest, bulk TCP too
 * across the 1280 link (path MTU); that the router refuses an unassigned block and drops a host that sends from
 * another host's block; that a handover keeps address and block and works from the new host at once; that
 * placed machines keep working with etcd down; how long replies are lost while the router restarts (SIGTERM and
 * kill -9), and that no reply ever reaches the wrong guest; that a router whose kernel state is gone (a reboot)
 * rebuilds the whole map from etcd, a handover made meanwhile included; and that the machine beyond the pair's
 * slots is pending and never leaves. A small layout (3 blocks of 1024 ports per pair) makes the "65th machine" the 4th.
 * Figures are printed as {@code ROUTER-IT ...}.
 */
@Privileged
class RouterIT
{
    private static final String PAIR4 = "203.0.113.10";
    private static final String PAIR6 = "2001:db8:10::10";
    private static final String DST4 = "198.51.100.10";
    private static final String DST6 = "2001:db8:100::10";
    private static final String[] LAYOUT = {"--block-count", "3", "--block-size", "1024"};
    /** The longest the router may lose replies while it restarts. */
    private static final long RESTART_GAP_LIMIT_MS = 10_000;

    @TempDir
    Path dir;

    private RegionLab lab;
    private final List<DaemonProcess> hosts = new ArrayList<>();
    private final Map<String, int[]> blocks = new LinkedHashMap<>();

    /** A machine of app shop on a guest of the lab. */
    private static String machine(final int guest, final String fromHost)
    {
        return "{\"app\": \"shop\", \"interface\": \"" + RegionLab.tap(guest) + "\", \"ipv4\": \""
            + RegionLab.guestAddress4(guest) + "\", \"ipv6\": \"" + RegionLab.guestAddress6(guest) + "\""
            + (fromHost == null ? "" : ", \"from_host\": \"" + fromHost + "\"") + "}";
    }

    private ApiClient api(final int host)
    {
        return hosts.get(host - 1).api();
    }

    /** PUTs a machine on a host; it must be placed on the pair and confirmed by the router. */
    private JsonNode place(final int host, final String id, final int guest, final String fromHost) throws Exception
    {
        final JsonNode m = api(host).put("/v1/machines/" + id, machine(guest, fromHost)).ok().json();
        assertThat(m.at("/egress/ipv4").asText()).as("%s: %s", id, m).isEqualTo(PAIR4);
        assertThat(m.at("/egress/ipv6").asText()).as("%s: %s", id, m).isEqualTo(PAIR6);
        assertThat(m.at("/steering/state").asText()).as("%s: the router applied it before the answer: %s", id, m)
            .isEqualTo("confirmed");
        blocks.put(id, new int[] {m.at("/egress/ports/first").asInt(), m.at("/egress/ports/last").asInt(),
            m.at("/egress/block").asInt()});
        return m;
    }

    private int first(final String id)
    {
        return blocks.get(id)[0];
    }

    private int last(final String id)
    {
        return blocks.get(id)[1];
    }

    /** TCP and UDP over both families from a guest: the pair, a port in the machine's block. */
    private void assertLeavesFromItsBlock(final String id, final int guest)
    {
        final Guest g = lab.guest(guest);
        for (final String[] to : List.of(new String[] {"tcp", DST4, PAIR4, "80"}, new String[] {"tcp", DST6, PAIR6,
            "80"}, new String[] {"udp", DST4, PAIR4, "5000"}, new String[] {"udp", DST6, PAIR6, "5000"}))
        {
            final ClientResult r = g.client(to[0], to[1], Integer.parseInt(to[3]), 1, 0, "--timeout", "2").get(0);
            assertThat(r.ok()).as("%s (g%d) %s to %s: %s", id, guest, to[0], to[1], r).isTrue();
            assertThat(r.seenIp()).as("%s %s to %s", id, to[0], to[1]).isEqualTo(to[2]);
            assertThat(r.seenPort()).as("%s %s to %s: a port of its block %d-%d", id, to[0], to[1], first(id),
                last(id)).isBetween(first(id), last(id));
        }
    }

    /** ICMP echo, ICMP port unreachable and a bulk transfer needing path MTU discovery, both families. */
    private void assertIcmpAndBulk(final String id, final int guest)
    {
        final Guest g = lab.guest(guest);
        assertThat(g.ping(DST4)).as("%s ping v4", id).isTrue();
        assertThat(g.ping(DST6)).as("%s ping v6", id).isTrue();
        assertThat(g.client("udp", DST4, 5999, 1, 0, "--timeout", "2").get(0).error()).as("%s udp v4 closed port", id)
            .isEqualTo("ECONNREFUSED");
        assertThat(g.client("udp", DST6, 5999, 1, 0, "--timeout", "2").get(0).error()).as("%s udp v6 closed port", id)
            .isEqualTo("ECONNREFUSED");
        for (final String dst : List.of(DST4, DST6))
        {
            final Shell.Exec bulk = lab.exec("g" + guest, "python3", lab.script("lab-client.py").toString(), "bulk",
                dst, "82", "200000", "--timeout", "5");
            assertThat(bulk.output()).as("%s: 200 KB echoed from %s", id, dst).startsWith("bulk 200000 ");
            assertThat(lab.must("g" + guest, "ip", dst.contains(":") ? "-6" : "-4", "route", "get", dst))
                .as("%s learnt the path MTU to %s", id, dst).contains("mtu 1280");
        }
    }

    /** A connection from the destination to the pair at a port: refused at the router, never answered. */
    private void assertRefusedAtTheRouter(final int port)
    {
        for (final String pair : List.of(PAIR4, PAIR6))
        {
            final Shell.Exec syn = lab.exec("dst", "python3", lab.script("lab-client.py").toString(), "tcp", pair,
                Integer.toString(port), "1", "0", "--timeout", "2");
            assertThat(syn.output()).as("a SYN to %s port %d (no slot)", pair, port).startsWith("fail ");
        }
    }

    @Test
    @Timeout(value = 900, unit = TimeUnit.SECONDS)
    void machinesOnThreeHostsLeaveFromOnePairAndTheirRepliesComeBackToTheRightGuest() throws Exception
    {
        final List<RouterProcess> routers = new ArrayList<>();
        lab = RegionLab.create(3, 2);
        try
        {
            final EtcdServer etcd = lab.startEtcd();
            final RouterProcess router = lab.router("r1", dir.resolve("r1"));
            routers.add(router);
            System.out.println("ROUTER-IT router r1 ready after " + router.start() + " ms");
            for (int h = 1; h <= 3; h++)
            {
                final DaemonProcess d = lab.hostDaemon(h, dir.resolve("h" + h), LAYOUT);
                hosts.add(d);
                d.start();
            }
            for (int h = 1; h <= 3; h++)
            {
                api(h).await("/v1/region", r -> r.path("available").asBoolean(), "h" + h + "'s ledger is available");
                // region mode: the pair goes on lo, and the host answers ARP only for its own addresses
                assertThat(arpSysctl(h, "arp_ignore")).as("h%d arp_ignore", h).isGreaterThanOrEqualTo(1);
                assertThat(arpSysctl(h, "arp_announce")).as("h%d arp_announce", h).isEqualTo(2);
            }

            api(1).put("/v1/apps/shop", "{\"fail_closed\": true}").ok();
            api(1).post("/v1/apps/shop/pairs", "{\"ipv4\": \"" + PAIR4 + "\", \"ipv6\": \"" + PAIR6 + "\"}").ok();
            for (int h = 2; h <= 3; h++)
            {
                api(h).await("/v1/apps/shop", a -> a.path("pairs").size() == 1, "h" + h + " sees the pair");
            }

            // web-1 on h1 (g1), web-2 on h2 (g3): one block of the three is still free
            place(1, "web-1", 1, null);
            place(2, "web-2", 3, null);
            for (int h = 1; h <= 2; h++)
            {
                assertThat(lab.must(RegionLab.hostNs(h), "ip", "-br", "addr", "show", "dev", "lo"))
                    .as("h%d holds the pair on lo", h).contains(PAIR4 + "/32");
                assertThat(lab.must(RegionLab.hostNs(h), "ip", "-br", "addr", "show", "dev", "uplink"))
                    .as("h%d: not on its uplink", h).doesNotContain(PAIR4);
            }
            int freeBlock = -1;
            for (int b = 0; b < 3; b++)
            {
                final int block = b;
                if (blocks.values().stream().noneMatch(v -> v[2] == block))
                {
                    freeBlock = block;
                }
            }
            final int freePort = freeBlock == 0 ? 1000 : freeBlock * 1024 + 500;
            assertRefusedAtTheRouter(freePort);
            assertRefusedAtTheRouter(40000);
            System.out.println("ROUTER-IT unassigned block " + freeBlock + " (port " + freePort + ") and port 40000:"
                + " refused at the router");

            // web-3 on h3 (g5): every host now holds one block of the pair
            place(3, "web-3", 5, null);
            final Map<String, Integer> guestOf = new LinkedHashMap<>(Map.of("web-1", 1, "web-2", 3, "web-3", 5));
            for (final Map.Entry<String, Integer> m : guestOf.entrySet())
            {
                assertLeavesFromItsBlock(m.getKey(), m.getValue());
                assertIcmpAndBulk(m.getKey(), m.getValue());
            }
            assertThat(blocks.values().stream().mapToInt(v -> v[2]).distinct().count()).as("three blocks").isEqualTo(3);
            System.out.println("ROUTER-IT 3 hosts, 1 pair: " + blocksText() + "; tcp, udp, icmp echo, port unreachable,"
                + " 200 KB bulk (PMTU) ok, v4 and v6");

            // the 65th machine: web-4 on h1 (g2) finds no slot; fail-closed, it is pending and never leaves
            final JsonNode web4 = api(1).put("/v1/machines/web-4", machine(2, null)).ok().json();
            assertThat(web4.at("/egress/scope").asText()).as("%s", web4).isEqualTo("pending");
            final Map<String, Long> beforeWeb4 = lab.destination().arrivals();
            for (final String dst : List.of(DST4, DST6))
            {
                final ClientResult r = lab.guest(2).client("tcp", dst, 80, 1, 0, "--timeout", "1").get(0);
                assertThat(r.ok()).as("web-4 (pending) to %s: %s", dst, r).isFalse();
                assertThat(r.error()).as("refused by its host, not lost on the way").isNotEqualTo("ETIMEDOUT");
            }
            assertThat(lab.guest(2).client("udp", DST4, 5000, 1, 0, "--timeout", "1").get(0).ok()).isFalse();
            assertThat(lab.destination().arrivalsSince(beforeWeb4)).as("the destination saw nothing of web-4")
                .isEmpty();

            // h2 sends from h1's block (a deliberate misconfiguration: an nft SNAT ahead of egressd's)
            lab.must("h2", "nft", "add table inet labmis { chain post { type nat hook postrouting priority srcnat - 20;"
                + " policy accept; }; }");
            lab.must("h2", "nft", "add rule inet labmis post oifname uplink ip saddr " + RegionLab.guestAddress4(3)
                + " meta l4proto { tcp, udp } snat ip to " + PAIR4 + ":" + first("web-1") + "-" + last("web-1"));
            lab.must("h2", "nft", "add rule inet labmis post oifname uplink ip6 saddr " + RegionLab.guestAddress6(3)
                + " meta l4proto { tcp, udp } snat ip6 to [" + PAIR6 + "]:" + first("web-1") + "-" + last("web-1"));
            final Map<String, Long> beforeMis = lab.destination().arrivals();
            int succeeded = 0;
            for (final String dst : List.of(DST4, DST6))
            {
                for (final ClientResult r : lab.guest(3).client("tcp", dst, 80, 3, 0, "--timeout", "1"))
                {
                    succeeded += r.ok() ? 1 : 0;
                }
                succeeded += lab.guest(3).client("udp", dst, 5000, 1, 0, "--timeout", "1").get(0).ok() ? 1 : 0;
            }
            final Map<String, Long> leaked = lab.destination().arrivalsSince(beforeMis);
            lab.must("h2", "nft", "delete table inet labmis");
            System.out.println("ROUTER-IT h2 sending from h1's block: " + succeeded + " of 8 connections succeeded, "
                + "destination saw " + leaked);
            assertThat(succeeded).as("no connection from another host's block").isZero();
            assertThat(leaked).as("the router dropped them before the destination").doesNotContainKeys(PAIR4, PAIR6);
            assertLeavesFromItsBlock("web-2", 3);

            // handover: web-1 moves from h1 to h2 with its block
            final int web1Block = blocks.get("web-1")[2];
            api(1).delete("/v1/machines/web-1?handover=true").ok();
            lab.moveGuest(1, 2);
            final long t0 = System.nanoTime();
            final JsonNode moved = place(2, "web-1", 1, "h1");
            final ClientResult atOnce = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "2").get(0);
            final long handoverMs = (System.nanoTime() - t0) / 1_000_000;
            assertThat(moved.at("/egress/block").asInt()).isEqualTo(web1Block);
            assertThat(atOnce.ok()).as("a new connection at once from the new host: %s", atOnce).isTrue();
            assertThat(atOnce.seenPort()).isBetween(first("web-1"), last("web-1"));
            assertLeavesFromItsBlock("web-1", 1);
            System.out.println("ROUTER-IT handover web-1 h1 -> h2: block " + web1Block + " kept; PUT and first connection "
                + handoverMs + " ms");

            // etcd down: placed machines keep their connections and open new ones
            try (RunningClient held = lab.guest(3).startClient("hold", DST4, "80", "12", "--timeout", "3"))
            {
                final ClientResult opened = held.next(Duration.ofSeconds(10));
                assertThat(opened.ok()).as("held connection: %s", opened).isTrue();
                etcd.stop();
                for (final Map.Entry<String, Integer> m : List.of(Map.entry("web-1", 1), Map.entry("web-2", 3),
                    Map.entry("web-3", 5)))
                {
                    assertLeavesFromItsBlock(m.getKey(), m.getValue());
                }
                final List<String> rest = held.awaitEnd(Duration.ofSeconds(30));
                assertThat(rest).as("the held connection through the etcd outage").last().isEqualTo("done");
                assertThat(rest).as("every echo answered").noneMatch(l -> l.startsWith("fail"));
                assertThat(rest.stream().filter(l -> l.startsWith("echo")).count()).isGreaterThan(20);
                System.out.println("ROUTER-IT etcd down: the held connection answered " + (rest.size() - 1)
                    + " echoes; new connections from 3 machines on 3 hosts ok");
            }
            finally
            {
                etcd.start();
            }
            for (int h = 1; h <= 3; h++)
            {
                api(h).await("/v1/region", r -> r.path("available").asBoolean(), "h" + h + " reads etcd again");
            }

            // router restarts: replies lost meanwhile, and never one to the wrong guest
            for (final boolean kill : List.of(false, true))
            {
                final long gap = restartWindow(router, kill);
                assertThat(gap).as("longest gap in replies across the restart (kill=%s)", kill)
                    .isLessThan(RESTART_GAP_LIMIT_MS);
            }
            assertLeavesFromItsBlock("web-3", 5);

            // the router's machine reboots (its kernel state is gone) while a handover happens: the new router
            // rebuilds the whole map from etcd
            // web-4 still waits on h1 (the app is full): the machine handed back gets its own block, not web-4
            router.kill9();
            lab.must("rtr", "nft", "delete", "table", "inet", RouterProcess.TABLE);
            final int rules = dropPolicyRouting();
            api(2).delete("/v1/machines/web-1?handover=true").ok();
            lab.moveGuest(1, 1);
            final JsonNode back = api(1).put("/v1/machines/web-1", machine(1, "h2")).ok().json();
            assertThat(back.at("/egress/block").asInt()).as("%s", back).isEqualTo(web1Block);
            final JsonNode stillWaiting = api(1).get("/v1/machines/web-4").ok().json();
            assertThat(stillWaiting.at("/egress/scope").asText()).as("%s", stillWaiting).isEqualTo("pending");
            assertThat(back.at("/steering/state").asText()).as("no router applied it: %s", back)
                .isIn("unconfirmed", "no_router");
            assertThat(lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "1").get(0).ok())
                .as("no steering, no way back").isFalse();
            final long t1 = System.nanoTime();
            final long readyMs = router.start();
            ClientResult first = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "1").get(0);
            while (!first.ok() && System.nanoTime() - t1 < TimeUnit.SECONDS.toNanos(30))
            {
                first = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "1").get(0);
            }
            final long rebuiltMs = (System.nanoTime() - t1) / 1_000_000;
            assertThat(first.ok()).as("web-1 on h1 once the router is back: %s", first).isTrue();
            final String blk4 = lab.must("rtr", "nft", "list", "map", "inet", RouterProcess.TABLE, "blk4");
            assertThat(java.util.regex.Pattern.compile("\\d+-\\d+ : 0x").matcher(blk4).results().count())
                .as("three blocks steered again: %s", blk4).isEqualTo(3);
            for (final Map.Entry<String, Integer> m : List.of(Map.entry("web-1", 1), Map.entry("web-2", 3),
                Map.entry("web-3", 5)))
            {
                assertLeavesFromItsBlock(m.getKey(), m.getValue());
            }
            System.out.println("ROUTER-IT router rebooted (table and " + rules + " rules gone) during a handover back"
                + " to h1: ready after " + readyMs + " ms, web-1 connected from h1 after " + rebuiltMs + " ms");
        }
        finally
        {
            hosts.forEach(DaemonProcess::close);
            routers.forEach(RouterProcess::close);
            lab.close();
        }
    }

    /**
     * Removes the router's ip rules and the routes of its tables, as a reboot of its machine would.
     *
     * @return the number of rules removed.
     */
    private int dropPolicyRouting()
    {
        int removed = 0;
        for (final String family : List.of("-4", "-6"))
        {
            for (final String line : lab.must("rtr", "ip", family, "rule", "show").split("\n"))
            {
                final java.util.regex.Matcher m = java.util.regex.Pattern.compile("^(\\d+):.*fwmark.*lookup (\\d+)")
                    .matcher(line.strip());
                if (m.find())
                {
                    lab.must("rtr", "ip", family, "rule", "del", "pref", m.group(1));
                    lab.exec("rtr", "ip", family, "route", "flush", "table", m.group(2));
                    removed++;
                }
            }
        }
        assertThat(lab.must("rtr", "ip", "rule", "show")).doesNotContain("fwmark");
        return removed;
    }

    /** The effective value of an ARP sysctl on a host's uplink: the kernel uses the larger of all and the link's. */
    private int arpSysctl(final int host, final String name)
    {
        return Math.max(Integer.parseInt(lab.sysctl(RegionLab.hostNs(host), "net.ipv4.conf.all." + name)),
            Integer.parseInt(lab.sysctl(RegionLab.hostNs(host), "net.ipv4.conf.uplink." + name)));
    }

    private String blocksText()
    {
        final StringBuilder sb = new StringBuilder();
        blocks.forEach((id, b) -> sb.append(sb.length() == 0 ? "" : ", ").append(id).append(" block ").append(b[2])
            .append(" (").append(b[0]).append('-').append(b[1]).append(')'));
        return sb.toString();
    }

    /**
     * Restarts the router while three guests on three hosts probe the destination over UDP every 20 ms.
     *
     * @param router the router.
     * @param kill   kill -9 instead of SIGTERM.
     * @return the longest time without a reply, over all guests, ms.
     */
    private long restartWindow(final RouterProcess router, final boolean kill) throws Exception
    {
        final Map<String, Integer> probes = new LinkedHashMap<>();
        probes.put("web-1", 1);
        probes.put("web-2", 3);
        probes.put("web-3", 5);
        final List<RunningClient> clients = new ArrayList<>();
        try
        {
            for (final Map.Entry<String, Integer> p : probes.entrySet())
            {
                final String dst = p.getValue() == 3 ? DST6 : DST4;
                clients.add(lab.guest(p.getValue()).startClient("probe", "udp", dst, "5000", "120", "20"));
            }
            Thread.sleep(1500);
            final long t0 = System.nanoTime();
            if (kill)
            {
                router.kill9();
            }
            else
            {
                router.stop();
            }
            final long readyMs = router.start();
            Thread.sleep(2000);
            final long total = (System.nanoTime() - t0) / 1_000_000;
            long worst = 0;
            int i = 0;
            for (final Map.Entry<String, Integer> p : probes.entrySet())
            {
                final RunningClient c = clients.get(i++);
                c.close();
                final List<String> lines = new ArrayList<>();
                String line;
                while ((line = c.nextLine(Duration.ofSeconds(5))) != null && !line.equals("<eof>"))
                {
                    lines.add(line);
                }
                long prev = -1;
                long gap = 0;
                int replies = 0;
                final String pair = p.getValue() == 3 ? PAIR6 : PAIR4;
                for (final String l : lines)
                {
                    final String[] f = l.trim().split("\\s+");
                    if (f.length == 4 && f[0].equals("done") && prev >= 0)
                    {
                        // the time from the last reply to the probe's end counts as a gap too
                        gap = Math.max(gap, Long.parseLong(f[3]) - prev);
                    }
                    if (f.length != 4 || !f[0].equals("r"))
                    {
                        continue;
                    }
                    replies++;
                    final long at = Long.parseLong(f[1]);
                    assertThat(f[2]).as("%s: a reply for its own address", p.getKey()).isEqualTo(pair);
                    assertThat(Integer.parseInt(f[3])).as("%s: a reply for its own block, never another's",
                        p.getKey()).isBetween(first(p.getKey()), last(p.getKey()));
                    if (prev >= 0)
                    {
                        gap = Math.max(gap, at - prev);
                    }
                    prev = at;
                }
                assertThat(replies).as("%s answered probes", p.getKey()).isGreaterThan(50);
                worst = Math.max(worst, gap);
                System.out.println("ROUTER-IT router " + (kill ? "kill -9" : "SIGTERM") + " + start (ready after "
                    + readyMs + " ms, " + total + " ms in all): " + p.getKey() + " " + replies + " replies, longest gap "
                    + gap + " ms");
            }
            return worst;
        }
        finally
        {
            clients.forEach(RunningClient::close);
        }
    }
}
