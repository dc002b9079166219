package dev.egressd.agent.testing;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The region lab's own self-check, without egressd: fixture SNATs on the hosts (the pair on {@code lo}, one guest
 * per host into its own block) and the {@link StandInRouter} loading the verified steering recipe. It proves the
 * topology is what the router role's tests need: without steering nothing comes back (the router has no route to
 * the shared address); with it, TCP, UDP, ICMP echo, ICMP port-unreachable and a bulk transfer needing path MTU
 * discovery reach the right guest on every host, IPv4 and IPv6; an unassigned block is refused; a host sending
 * from another host's block is dropped by the router's reverse-path check; a guest that moves to another host
 * works from there once its block is steered there.
 */
@Privileged
class RegionLabTest
{
    private static final String PAIR4 = "203.0.113.10";
    private static final String PAIR6 = "2001:db8:10::10";
    private static final String DST4 = "198.51.100.10";
    private static final String DST6 = "2001:db8:100::10";

    private static int first(final int block)
    {
        return block * 1024;
    }

    private static int last(final int block)
    {
        return block * 1024 + 1023;
    }

    private static void assertLeavesFromItsBlock(final RegionLab lab, final int guest, final int block)
    {
        final Guest g = lab.guest(guest);
        for (final String[] to : List.of(new String[] {"tcp", DST4, PAIR4, "80"}, new String[] {"tcp", DST6, PAIR6,
            "80"}, new String[] {"udp", DST4, PAIR4, "5000"}, new String[] {"udp", DST6, PAIR6, "5000"}))
        {
            final ClientResult r = g.client(to[0], to[1], Integer.parseInt(to[3]), 1, 0, "--timeout", "2").get(0);
            assertThat(r.ok()).as("g%d %s to %s: %s", guest, to[0], to[1], r).isTrue();
            assertThat(r.seenIp()).as("g%d %s to %s", guest, to[0], to[1]).isEqualTo(to[2]);
            assertThat(r.seenPort()).as("g%d %s to %s: port in block %d", guest, to[0], to[1], block)
                .isBetween(first(block), last(block));
        }
        // ICMP port unreachable about a UDP datagram is steered by the quoted source port
        assertThat(g.client("udp", DST4, 5999, 1, 0, "--timeout", "2").get(0).error()).isEqualTo("ECONNREFUSED");
        assertThat(g.client("udp", DST6, 5999, 1, 0, "--timeout", "2").get(0).error()).isEqualTo("ECONNREFUSED");
        // ICMP echo: the host maps the echo id into the block, the reply is steered by it
        assertThat(g.ping(DST4)).as("g%d ping v4", guest).isTrue();
        assertThat(g.ping(DST6)).as("g%d ping v6", guest).isTrue();
        // 200 KB echoed: the guest's full-size segments meet the router's 1280 link; only the router's ICMP
        // error, steered back by the mark it reflects, makes this work
        for (final String dst : List.of(DST4, DST6))
        {
            final String bulk = lab.must("g" + guest, "python3", lab.script("lab-client.py").toString(), "bulk", dst,
                "82", "200000", "--timeout", "5");
            assertThat(bulk).as("g%d bulk to %s", guest, dst).startsWith("bulk 200000 ");
            assertThat(lab.must("g" + guest, "ip", dst.contains(":") ? "-6" : "-4", "route", "get", dst))
                .as("g%d learnt the path MTU to %s", guest, dst).contains("mtu 1280");
        }
    }

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void theTopologyCarriesSteeredRepliesToTheRightHostAndFencesTheWrongOne() throws Exception
    {
        try (RegionLab lab = RegionLab.create(3, 2))
        {
            // g1 on h1 -> block 1, g3 on h2 -> block 2, g5 on h3 -> block 3
            final int[][] guests = {{1, 1, 1}, {3, 2, 2}, {5, 3, 3}};
            for (final int[] g : guests)
            {
                assertThat(lab.hostOf(g[0])).isEqualTo(g[1]);
                lab.staticHostSnat(g[1], g[0], PAIR4, PAIR6, first(g[2]), last(g[2]));
            }

            // T0: no steering. The SYN leaves h1 from the pair; the router has no way back to the pair, so its
            // strict reverse-path check drops it (and would drop the answer for want of a route)
            final Map<String, Long> before = lab.destination().arrivals();
            final long rpBefore = lab.routerReversePathDrops();
            final ClientResult t0 = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "1").get(0);
            assertThat(t0.ok()).as("T0: %s", t0).isFalse();
            assertThat(lab.destination().arrivalsSince(before)).doesNotContainKey(PAIR4);
            assertThat(lab.routerReversePathDrops()).isGreaterThan(rpBefore);
            final Shell.Exec noRoute = lab.exec("rtr", "ip", "route", "get", PAIR4);
            assertThat(noRoute.ok()).as("no route to a shared address in the router's main table: %s",
                noRoute.output()).isFalse();

            // T1: the recipe's steering
            final StandInRouter router = lab.standInRouter();
            for (final int[] g : guests)
            {
                router.steer(PAIR4, PAIR6, g[1], first(g[2]), last(g[2]));
            }
            for (final int[] g : guests)
            {
                assertLeavesFromItsBlock(lab, g[0], g[2]);
            }

            // an unassigned block (4) is refused at the router: a connection from the destination fails at once
            final Shell.Exec unassigned = lab.exec("dst", "python3", lab.script("lab-client.py").toString(), "tcp",
                PAIR4, Integer.toString(first(4) + 7), "1", "0", "--timeout", "2");
            assertThat(unassigned.output()).startsWith("fail ").doesNotContain("ETIMEDOUT");

            // h2 SNATs its guest g4 into h1's block: the router's reverse-path check drops it
            final long dropsBefore = lab.routerReversePathDrops();
            lab.must("h2", "nft", "add table inet labmis { chain post { type nat hook postrouting priority srcnat - 20;"
                + " policy accept; }; }");
            lab.must("h2", "nft", "add rule inet labmis post oifname uplink ip saddr " + RegionLab.guestAddress4(4)
                + " meta l4proto { tcp, udp } snat ip to " + PAIR4 + ":" + first(1) + "-" + last(1));
            final Map<String, Long> beforeMis = lab.destination().arrivals();
            final List<ClientResult> spoofed = lab.guest(4).client("tcp", DST4, 80, 3, 0, "--timeout", "1");
            assertThat(spoofed).as("a host sending from another host's block").noneMatch(ClientResult::ok);
            assertThat(lab.destination().arrivalsSince(beforeMis)).doesNotContainKey(PAIR4);
            assertThat(lab.routerReversePathDrops() - dropsBefore).isGreaterThanOrEqualTo(3);
            lab.must("h2", "nft", "delete table inet labmis");
            // g1 on h1 is not disturbed by it
            assertThat(lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "2").get(0).ok()).isTrue();

            // g1 moves from h1 to h2 with its block
            lab.must("h1", "nft", "delete table inet labsnat");
            router.unsteer(PAIR4, PAIR6, first(1), last(1));
            lab.moveGuest(1, 2);
            lab.staticHostSnat(2, 1, PAIR4, PAIR6, first(1), last(1));
            router.steer(PAIR4, PAIR6, 2, first(1), last(1));
            assertThat(lab.hostOf(1)).isEqualTo(2);
            final ClientResult moved = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "2").get(0);
            assertThat(moved.ok()).as("moved: %s", moved).isTrue();
            assertThat(moved.seenPort()).isBetween(first(1), last(1));
            // g3 still on h2 in its own block
            assertThat(lab.guest(3).client("tcp", DST6, 80, 1, 0, "--timeout", "2").get(0).seenPort())
                .isBetween(first(2), last(2));
        }
    }
}
