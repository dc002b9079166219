package dev.egressd.agent.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.egressd.agent.kernel.KernelException;
import dev.egressd.agent.kernel.NftKernel;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.kernel.nft.NftException;
import dev.egressd.agent.kernel.nft.Ruleset;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.KernelPlanner;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import dev.egressd.core.plan.PlannedMachine;
import dev.egressd.agent.testing.AddressProtocols;
import dev.egressd.agent.testing.ClientResult;
import dev.egressd.agent.testing.ConntrackEntry;
import dev.egressd.agent.testing.Destination.Seen;
import dev.egressd.agent.testing.Lab;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.RunningClient;

import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * End-to-end: plans built by {@link KernelPlanner} applied through the real {@link NftKernel}
 * (libnftables and rtnetlink, in-process, on the host namespace's thread) to a fresh routed lab, and what
 * guests and the destination then see. The plans' uplink addresses are put on by NftKernel itself
 * and checked with {@code ip -j addr}. Each test builds its own lab and removes it.
 */
@Privileged
class DataplaneE2ETest
{
    private static final BlockLayout L = BlockLayout.STANDARD;
    private static final String TABLE = "egressd";
    private static final String DST4 = "198.51.100.10";
    private static final String DST4B = "198.51.100.11";
    private static final String DST6 = "2001:db8:100::10";
    private static final String HOST4 = "192.0.2.1";
    private static final String HOST6 = "2001:db8:1::1";
    private static final EgressPair A = pair("203.0.113.10", "2001:db8:10::10");
    private static final EgressPair B = pair("203.0.113.20", "2001:db8:10::20");
    private static final EgressPair C = pair("203.0.113.30", "2001:db8:10::30");

    private static final ObjectMapper JSON = new ObjectMapper();

    private Lab lab;
    private NftKernel kernel;

    @AfterEach
    void tearDown() throws IOException
    {
        Lab.tearDown(lab, kernel);
    }

    // ---------------------------------------------------------------------------------------------

    @Test
    void twoMachinesOfOneAppLeaveFromThePairInsideTheirBlocks() throws Exception
    {
        start(2, 1024);
        final List<PlannedMachine> machines = List.of(app(1, A, 1), app(2, A, 2));
        apply(machines, List.of(A));

        final StringBuilder figures = new StringBuilder("twoMachines:");
        for (final int g : new int[] {1, 2})
        {
            final int first = L.firstPort(g);
            final int last = L.lastPort(g);
            final List<ClientResult> all = new ArrayList<>();
            all.addAll(expectOk(lab.guest(g).client("tcp", DST4, 80, 3, 0), A.ipv4().toString(), first, last));
            all.addAll(expectOk(lab.guest(g).client("udp", DST4, 5000, 2, 0), A.ipv4().toString(), first, last));
            all.addAll(expectOk(lab.guest(g).client("tcp", DST6, 80, 3, 0), A.ipv6().toString(), first, last));
            all.addAll(expectOk(lab.guest(g).client("udp", DST6, 5000, 2, 0), A.ipv6().toString(), first, last));
            // ICMP echo: dst answers only the static ranges, so an answer means it was translated;
            // conntrack shows the translated echo id inside the block
            assertThat(lab.guest(g).ping(DST4)).as("g%d ping v4", g).isTrue();
            assertThat(lab.guest(g).ping(DST6)).as("g%d ping v6", g).isTrue();
            final ConntrackEntry icmp4 = onlyIcmp(lab.hostConntrack().entries("ipv4"), guest4(g));
            final ConntrackEntry icmp6 = onlyIcmp(lab.hostConntrack().entries("ipv6"), guest6(g));
            assertThat(icmp4.replyDst()).isEqualTo(A.ipv4().toString());
            assertThat(icmp6.replyDst()).isEqualTo(A.ipv6().toString());
            assertThat(icmp4.replyPort()).isBetween(first, last);
            assertThat(icmp6.replyPort()).isBetween(first, last);
            figures.append(String.format(" g%d[%d-%d] tcp/udp ports %s icmp ids v4 %d v6 %d;", g, first, last,
                all.stream().map(ClientResult::seenPort).collect(Collectors.toList()), icmp4.replyPort(),
                icmp6.replyPort()));
        }
        // everything the destination saw came from the pair, every port inside one of the two blocks
        final List<Seen> seen = lab.destination().log();
        assertThat(seen).hasSize(20);
        assertThat(seen).allSatisfy(s ->
        {
            assertThat(s.ip()).isIn(A.ipv4().toString(), A.ipv6().toString());
            assertThat(L.blockOf(s.port())).isIn(1, 2);
        });
        assertThat(readKernel()).isEqualTo(KernelPlanner.plan(machines, List.of(A)));
        report(figures + " dst saw " + seen.size() + " flows, all from " + A.ipv4() + "/" + A.ipv6());
    }

    @Test
    void twoPairsMachineScopedAndMasqueradedMachines() throws Exception
    {
        start(4, 1024);
        final List<PlannedMachine> machines = List.of(app(1, A, 1), app(2, B, 1),
            new PlannedMachine(machine(3), new Egress(Scope.MACHINE, C, -1, BlockLayout.ANY_FIRST_PORT,
                BlockLayout.ANY_LAST_PORT, "machine-scoped")),
            new PlannedMachine(machine(4), new Egress(Scope.HOST, null, -1, -1, -1, "no static egress")));
        apply(machines, List.of(A, B, C));

        final StringBuilder figures = new StringBuilder("twoPairs:");
        final Object[][] expect = {
            {1, A.ipv4().toString(), A.ipv6().toString(), L.firstPort(1), L.lastPort(1)},
            {2, B.ipv4().toString(), B.ipv6().toString(), L.firstPort(1), L.lastPort(1)},
            {3, C.ipv4().toString(), C.ipv6().toString(), 1, 65535},
            {4, HOST4, HOST6, 1, 65535},
        };
        for (final Object[] e : expect)
        {
            final int g = (int)e[0];
            final List<ClientResult> r4 = expectOk(lab.guest(g).client("tcp", DST4, 80, 2, 0), (String)e[1], (int)e[3], (int)e[4]);
            final List<ClientResult> u4 = expectOk(lab.guest(g).client("udp", DST4, 5000, 1, 0), (String)e[1], (int)e[3], (int)e[4]);
            final List<ClientResult> r6 = expectOk(lab.guest(g).client("tcp", DST6, 80, 2, 0), (String)e[2], (int)e[3], (int)e[4]);
            figures.append(String.format(" g%d tcp4 %s udp4 %s tcp6 %s;", g, r4, u4, r6));
        }
        final List<Seen> seen = lab.destination().log();
        assertThat(seen).hasSize(20);
        assertThat(seen.stream().filter(s -> s.ip().equals(HOST4) || s.ip().equals(HOST6)))
            .as("only g4 is masqueraded").hasSize(5);
        assertThat(readKernel()).isEqualTo(KernelPlanner.plan(machines, List.of(A, B, C)));
        report(figures.toString());
    }

    @Test
    void aPendingStaticMachineIsRefusedAndReachesNothing() throws Exception
    {
        start(2, 1024);
        final List<PlannedMachine> machines = List.of(
            new PlannedMachine(machine(1), new Egress(Scope.PENDING, null, -1, -1, -1, "every pair is full")),
            app(2, A, 1));
        apply(machines, List.of(A));
        final Map<String, Long> before = counters();
        final Map<String, Long> arrivedBefore = lab.destination().arrivals();

        final long synsAgain = synRetransmissions("g1");
        final long t0 = System.nanoTime();
        final List<ClientResult> tcp4 = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "2");
        final long tcp4Millis = (System.nanoTime() - t0) / 1_000_000;
        final List<ClientResult> tcp6 = lab.guest(1).client("tcp", DST6, 80, 1, 0, "--timeout", "2");
        final long synsSentAgain = synRetransmissions("g1") - synsAgain;
        final List<ClientResult> udp4 = lab.guest(1).client("udp", DST4, 5000, 1, 0, "--timeout", "0.5");
        final List<ClientResult> udp6 = lab.guest(1).client("udp", DST6, 5000, 1, 0, "--timeout", "0.5");
        assertThat(tcp4).extracting(ClientResult::error).containsExactly("ECONNREFUSED");
        assertThat(tcp6).extracting(ClientResult::error).containsExactly("ECONNREFUSED");
        // refused at once: the reset answered the first SYN of each, none was sent again (a wall-clock bound here
        // timed the client process's start too, which a loaded machine stretches past any fixed limit)
        assertThat(synsSentAgain).as("SYNs the guest had to send again").isZero();
        assertThat(udp4).allSatisfy(r -> assertThat(r.ok()).isFalse());
        assertThat(udp6).allSatisfy(r -> assertThat(r.ok()).isFalse());
        assertThat(lab.guest(1).ping(DST4)).isFalse();
        assertThat(lab.guest(1).ping(DST6)).isFalse();
        assertThat(lab.destination().log()).as("nothing from the pending machine, from any address").isEmpty();
        // the log only shows connections that completed; the capture at dst shows every packet that arrived
        final Map<String, Long> arrived = lab.destination().arrivalsSince(arrivedBefore);
        assertThat(arrived).as("no packet reached dst: not raw, not masqueraded, not translated")
            .doesNotContainKeys(guest4(1), guest6(1), HOST4, HOST6).isEmpty();

        final Map<String, Long> after = counters();
        assertThat(after.get(Ruleset.COUNTER_UNMAPPED4)).isGreaterThan(before.get(Ruleset.COUNTER_UNMAPPED4));
        assertThat(after.get(Ruleset.COUNTER_UNMAPPED6)).isGreaterThan(before.get(Ruleset.COUNTER_UNMAPPED6));
        assertThat(after.get(Ruleset.COUNTER_BACKSTOP4)).isEqualTo(before.get(Ruleset.COUNTER_BACKSTOP4));
        // the mapped neighbour is unaffected
        expectOk(lab.guest(2).client("tcp", DST4, 80, 1, 0), A.ipv4().toString(), L.firstPort(1), L.lastPort(1));
        assertThat(lab.destination().arrivalsSince(arrivedBefore)).as("the capture does see traffic").containsOnlyKeys(
            A.ipv4().toString());
        report(String.format("pending: tcp4 %s in %d ms (the client process included), tcp6 %s, udp4 %s, udp6 %s, ping refused; dst log empty; "
            + "dst capture %s; unmapped4 %d->%d unmapped6 %d->%d", tcp4, tcp4Millis, tcp6, udp4, udp6, arrived,
            before.get(Ruleset.COUNTER_UNMAPPED4), after.get(Ruleset.COUNTER_UNMAPPED4),
            before.get(Ruleset.COUNTER_UNMAPPED6), after.get(Ruleset.COUNTER_UNMAPPED6)));
    }

    /** The guest namespace's TCP SYN retransmissions so far (nstat's TcpExtTCPSynRetrans, both families). */
    private long synRetransmissions(final String ns) throws IOException
    {
        for (final String line : lab.must(ns, "nstat", "-asz", "TcpExtTCPSynRetrans").split("\n"))
        {
            final String[] f = line.trim().split("\\s+");
            if (f.length >= 2 && f[0].equals("TcpExtTCPSynRetrans"))
            {
                return Long.parseLong(f[1]);
            }
        }
        throw new AssertionError("nstat printed no TcpExtTCPSynRetrans in " + ns);
    }

    @Test
    void aGuestUsingAnotherGuestsAddressReachesNothingAndIsCounted() throws Exception
    {
        start(2, 1024);
        apply(List.of(app(1, A, 1), app(2, A, 2)), List.of(A));
        // g2 takes g1's addresses (g1 is mapped: without anti-spoofing these would leave as g1, from A)
        lab.must("g2", "ip", "addr", "add", guest4(1) + "/32", "dev", "eth0");
        lab.must("g2", "ip", "-6", "addr", "add", guest6(1) + "/128", "dev", "eth0", "nodad");
        final Map<String, Long> before = counters();
        final Map<String, Long> arrivedBefore = lab.destination().arrivals();

        final List<ClientResult> tcp4 = lab.guest(2).client("tcp", DST4, 80, 1, 0, "--bind", guest4(1), "--timeout", "0.5");
        final List<ClientResult> udp4 = lab.guest(2).client("udp", DST4, 5000, 1, 0, "--bind", guest4(1), "--timeout", "0.5");
        final List<ClientResult> tcp6 = lab.guest(2).client("tcp", DST6, 80, 1, 0, "--bind", guest6(1), "--timeout", "0.5");
        assertThat(tcp4).extracting(ClientResult::error).containsExactly("ETIMEDOUT");
        assertThat(udp4).extracting(ClientResult::ok).containsExactly(false);
        assertThat(tcp6).extracting(ClientResult::error).containsExactly("ETIMEDOUT");
        assertThat(lab.destination().log()).as("nothing reached the destination").isEmpty();
        final Map<String, Long> arrived = lab.destination().arrivalsSince(arrivedBefore);
        assertThat(arrived).as("no packet at dst: not as g1's pair, not raw, not masqueraded")
            .doesNotContainKeys(A.ipv4().toString(), A.ipv6().toString(), guest4(1), guest6(1), HOST4, HOST6)
            .isEmpty();

        final Map<String, Long> after = counters();
        assertThat(after.get(Ruleset.COUNTER_SPOOF4)).isGreaterThanOrEqualTo(before.get(Ruleset.COUNTER_SPOOF4) + 2);
        assertThat(after.get(Ruleset.COUNTER_SPOOF6)).isGreaterThanOrEqualTo(before.get(Ruleset.COUNTER_SPOOF6) + 1);
        // both guests still work from their own addresses
        expectOk(lab.guest(1).client("tcp", DST4, 80, 1, 0), A.ipv4().toString(), L.firstPort(1), L.lastPort(1));
        expectOk(lab.guest(2).client("tcp", DST4, 80, 1, 0, "--bind", guest4(2)), A.ipv4().toString(), L.firstPort(2),
            L.lastPort(2));
        report(String.format("spoof: g2 as %s tcp4 %s udp4 %s, as %s tcp6 %s; dst log empty; spoof4 %d->%d spoof6 %d->%d",
            guest4(1), tcp4, udp4, guest6(1), tcp6, before.get(Ruleset.COUNTER_SPOOF4), after.get(Ruleset.COUNTER_SPOOF4),
            before.get(Ruleset.COUNTER_SPOOF6), after.get(Ruleset.COUNTER_SPOOF6)));
    }

    /**
     * Anti-spoofing holds for every packet of a flow, not only its first: a guest that sends with another guest's
     * address and exactly that guest's tuple, which conntrack classifies as the other guest's established flow
     * (the forward chain only sends a flow's first packet on to guest_new), is still dropped and counted.
     */
    @Test
    void aGuestInjectingIntoAnotherGuestsEstablishedFlowIsDroppedAsSpoof() throws Exception
    {
        start(2, 1024);
        apply(List.of(app(1, A, 1), app(2, A, 2)), List.of(A));
        final String sport = "40000";
        // g1's own UDP flows to the destination, answered: conntrack holds them as established
        final String own4 = udpFrom("g1", guest4(1), DST4, 2.0);
        final String own6 = udpFrom("g1", guest6(1), DST6, 2.0);
        assertThat(own4).startsWith("ok " + A.ipv4() + " ");
        assertThat(own6).startsWith("ok " + A.ipv6() + " ");
        final String flows = lab.must("host", "conntrack", "-L", "-f", "ipv4", "-p", "udp", "--sport", sport)
            + lab.must("host", "conntrack", "-L", "-f", "ipv6", "-p", "udp", "--sport", sport);
        assertThat(flows).as("g1's flows are in conntrack, answered").contains("src=" + guest4(1))
            .contains("src=" + guest6(1)).doesNotContain("UNREPLIED");

        // g2 takes g1's addresses and sends on g1's tuples
        lab.must("g2", "ip", "addr", "add", guest4(1) + "/32", "dev", "eth0");
        lab.must("g2", "ip", "-6", "addr", "add", guest6(1) + "/128", "dev", "eth0", "nodad");
        final Map<String, Long> before = counters();
        final Map<String, Long> arrivedBefore = lab.destination().arrivals();
        assertThat(udpFrom("g2", guest4(1), DST4, 0.5)).isEqualTo("fail ETIMEDOUT");
        assertThat(udpFrom("g2", guest6(1), DST6, 0.5)).isEqualTo("fail ETIMEDOUT");
        final Map<String, Long> after = counters();
        assertThat(lab.destination().arrivalsSince(arrivedBefore)).as("nothing of g2's reached the destination")
            .isEmpty();
        assertThat(after.get(Ruleset.COUNTER_SPOOF4)).isGreaterThanOrEqualTo(before.get(Ruleset.COUNTER_SPOOF4) + 1);
        assertThat(after.get(Ruleset.COUNTER_SPOOF6)).isGreaterThanOrEqualTo(before.get(Ruleset.COUNTER_SPOOF6) + 1);

        // g1's flows are untouched and still carry its datagrams
        lab.must("g2", "ip", "addr", "del", guest4(1) + "/32", "dev", "eth0");
        lab.must("g2", "ip", "-6", "addr", "del", guest6(1) + "/128", "dev", "eth0");
        assertThat(udpFrom("g1", guest4(1), DST4, 2.0)).isEqualTo(own4);
        assertThat(udpFrom("g1", guest6(1), DST6, 2.0)).isEqualTo(own6);
        report(String.format("spoof on an established tuple: g1 %s / %s; g2 on g1's tuples dropped, spoof4 %d->%d "
                + "spoof6 %d->%d", own4, own6, before.get(Ruleset.COUNTER_SPOOF4), after.get(Ruleset.COUNTER_SPOOF4),
            before.get(Ruleset.COUNTER_SPOOF6), after.get(Ruleset.COUNTER_SPOOF6)));
    }

    /** One datagram from SRC port 40000 to the destination's UDP service: "ok SEEN_IP SEEN_PORT" or "fail ETIMEDOUT". */
    private String udpFrom(final String guest, final String src, final String dst, final double timeout)
        throws IOException
    {
        final String py = "import socket, sys\n"
            + "s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)\n"
            + "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            + "s.bind((sys.argv[1], 40000)); s.settimeout(float(sys.argv[3]))\n"
            + "s.sendto(b'hello\\n', (sys.argv[2], 5000))\n"
            + "try:\n    d = s.recv(512).decode().split()\n    print('ok', d[-2], d[-1])\n"
            + "except socket.timeout:\n    print('fail ETIMEDOUT')\n";
        return lab.must(guest, "python3", "-c", py, src, dst, Double.toString(timeout)).strip();
    }

    @Test
    void theConnectionOverTheDestinationCapIsResetAtOnce() throws Exception
    {
        final int cap = 8;
        start(1, cap);
        apply(List.of(app(1, A, 1)), List.of(A));
        final Map<String, Long> before = counters();

        try (RunningClient held = lab.guest(1).startClient("tcp", DST4, "80", Integer.toString(cap), "5", "--timeout", "2"))
        {
            final List<ClientResult> first = new ArrayList<>();
            for (int i = 0; i < cap; i++)
            {
                first.add(held.next(Duration.ofSeconds(5)));
            }
            // the 9th, while the 8 are held: a reset arrives at once (a dropped SYN would be retried after
            // 1 s and time out after 2 s): the guest sends no SYN again
            final long synsBefore = synRetransmissions("g1");
            final long t0 = System.nanoTime();
            final ClientResult over = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "2").get(0);
            final long overMillis = (System.nanoTime() - t0) / 1_000_000;
            final long synsSentAgain = synRetransmissions("g1") - synsBefore;
            assertThat(first).allSatisfy(r ->
            {
                assertThat(r.ok()).as(r.toString()).isTrue();
                assertThat(r.seenIp()).isEqualTo(A.ipv4().toString());
            });
            assertThat(over.error()).isEqualTo("ECONNREFUSED");
            // the reset answered the first SYN (the client's time, its process's start included, only reported)
            assertThat(synsSentAgain).as("reset at once, not a retried SYN (client took " + overMillis + " ms)")
                .isZero();
            // another destination IP is a different key: still fine while the 8 are held
            final List<ClientResult> other = lab.guest(1).client("tcp", DST4B, 80, 1, 0);
            assertThat(other).extracting(ClientResult::seenIp).containsExactly(A.ipv4().toString());
            // and IPv6 to the same destination host is counted separately
            final List<ClientResult> v6 = lab.guest(1).client("tcp", DST6, 80, 1, 0);
            assertThat(v6).extracting(ClientResult::seenIp).containsExactly(A.ipv6().toString());
            final Map<String, Long> after = counters();
            assertThat(after.get(Ruleset.COUNTER_CAP4)).isGreaterThan(before.get(Ruleset.COUNTER_CAP4));
            assertThat(lab.destination().log().stream().filter(s -> s.localIp().equals(DST4))).hasSize(cap);
            report(String.format("cap %d: first %d ok %s; #%d %s after %d ms; to %s %s; cap4 %d->%d", cap, cap, first,
                cap + 1, over, overMillis, DST4B, other, before.get(Ruleset.COUNTER_CAP4),
                after.get(Ruleset.COUNTER_CAP4)));
        }
    }

    @Test
    void theIpv6ConnectionOverTheDestinationCapIsResetAtOnce() throws Exception
    {
        final int cap = 8;
        start(1, cap);
        apply(List.of(app(1, A, 1)), List.of(A));
        final Map<String, Long> before = counters();

        try (RunningClient held = lab.guest(1).startClient("tcp", DST6, "80", Integer.toString(cap), "5", "--timeout", "2"))
        {
            final List<ClientResult> first = new ArrayList<>();
            for (int i = 0; i < cap; i++)
            {
                first.add(held.next(Duration.ofSeconds(5)));
            }
            final long synsBefore = synRetransmissions("g1");
            final long t0 = System.nanoTime();
            final ClientResult over = lab.guest(1).client("tcp", DST6, 80, 1, 0, "--timeout", "2").get(0);
            final long overMillis = (System.nanoTime() - t0) / 1_000_000;
            final long synsSentAgain = synRetransmissions("g1") - synsBefore;
            assertThat(first).allSatisfy(r ->
            {
                assertThat(r.ok()).as(r.toString()).isTrue();
                assertThat(r.seenIp()).isEqualTo(A.ipv6().toString());
                assertThat(r.seenPort()).isBetween(L.firstPort(1), L.lastPort(1));
            });
            assertThat(over.error()).isEqualTo("ECONNREFUSED");
            // the reset answered the first SYN (the client's time, its process's start included, only reported)
            assertThat(synsSentAgain).as("reset at once, not a retried SYN (client took " + overMillis + " ms)")
                .isZero();
            // IPv4 to the same destination host is another key: still fine while the 8 are held
            assertThat(lab.guest(1).client("tcp", DST4, 80, 1, 0)).extracting(ClientResult::seenIp)
                .containsExactly(A.ipv4().toString());
            final Map<String, Long> after = counters();
            assertThat(after.get(Ruleset.COUNTER_CAP6)).isGreaterThan(before.get(Ruleset.COUNTER_CAP6));
            assertThat(after.get(Ruleset.COUNTER_CAP4)).isEqualTo(before.get(Ruleset.COUNTER_CAP4));
            assertThat(lab.destination().log().stream().filter(s -> s.localIp().equals(DST6))).hasSize(cap);
            report(String.format("cap6 %d: first %d ok %s; #%d %s after %d ms; cap6 %d->%d", cap, cap, first, cap + 1,
                over, overMillis, before.get(Ruleset.COUNTER_CAP6), after.get(Ruleset.COUNTER_CAP6)));
        }
    }

    @Test
    void anIpv4OnlyStaticGuestSendingIpv6ReachesNothingAndIsCountedAsSpoof() throws Exception
    {
        start(1, 1024);
        // the machine has no IPv6; its namespace still has fd77::2 configured (the lab gives every guest one)
        final Machine v4only = new Machine("m1", "app1", "tap-g1", Ipv4Address.parse(guest4(1)), null, null);
        final List<PlannedMachine> machines = List.of(new PlannedMachine(v4only,
            new Egress(Scope.APP, A, 1, L.firstPort(1), L.lastPort(1), "slot 1, IPv4 only")));
        apply(machines, List.of(A));
        assertThat(readKernel().elements()).noneMatch(e -> e.toString().contains(guest6(1)));
        final Map<String, Long> before = counters();
        final Map<String, Long> arrivedBefore = lab.destination().arrivals();

        final List<ClientResult> tcp6 = lab.guest(1).client("tcp", DST6, 80, 1, 0, "--timeout", "1");
        final List<ClientResult> udp6 = lab.guest(1).client("udp", DST6, 5000, 1, 0, "--timeout", "0.5");
        assertThat(tcp6).extracting(ClientResult::ok).containsExactly(false);
        assertThat(udp6).extracting(ClientResult::ok).containsExactly(false);
        assertThat(lab.guest(1).ping(DST6)).isFalse();
        final Map<String, Long> arrived = lab.destination().arrivalsSince(arrivedBefore);
        assertThat(arrived).as("no IPv6 packet at dst: not raw, not masqueraded, not translated")
            .doesNotContainKeys(guest6(1), HOST6, A.ipv6().toString()).isEmpty();
        final Map<String, Long> after = counters();
        assertThat(after.get(Ruleset.COUNTER_SPOOF6)).isGreaterThanOrEqualTo(before.get(Ruleset.COUNTER_SPOOF6) + 3);
        assertThat(after.get(Ruleset.COUNTER_BACKSTOP6)).isEqualTo(before.get(Ruleset.COUNTER_BACKSTOP6));

        // its IPv4 works, from the pair, inside its block
        final List<ClientResult> tcp4 = expectOk(lab.guest(1).client("tcp", DST4, 80, 2, 0), A.ipv4().toString(),
            L.firstPort(1), L.lastPort(1));
        assertThat(lab.destination().arrivalsSince(arrivedBefore)).containsOnlyKeys(A.ipv4().toString());
        report(String.format("v4-only guest: tcp6 %s udp6 %s ping6 refused; dst capture %s; spoof6 %d->%d; tcp4 %s",
            tcp6, udp6, arrived, before.get(Ruleset.COUNTER_SPOOF6), after.get(Ruleset.COUNTER_SPOOF6), tcp4));
    }

    @Test
    void aForeignChainDroppingEveryGuestIsRemovedByOneEnsureTableAndTrafficFlowsAgain() throws Exception
    {
        start(1, 1024);
        apply(List.of(app(1, A, 1)), List.of(A));
        expectOk(lab.guest(1).client("tcp", DST4, 80, 1, 0), A.ipv4().toString(), L.firstPort(1), L.lastPort(1));
        // someone adds a base chain to egressd's table that drops everything forwarded
        lab.must("host", "nft", "add chain inet " + TABLE
            + " x { type filter hook forward priority -300; policy drop; }");
        assertThat(lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "1").get(0).ok())
            .as("dropped while the foreign chain is there").isFalse();
        assertThat(lab.host().call(kernel::ensureTable)).as("the reconcile's ensureTable removes it").isTrue();
        assertThat(lab.host().call(kernel::ensureTable)).isFalse();
        assertThat(lab.must("host", "nft", "list", "table", "inet", TABLE)).doesNotContain("chain x ");
        expectOk(lab.guest(1).client("tcp", DST4, 80, 1, 0), A.ipv4().toString(), L.firstPort(1), L.lastPort(1));
    }

    @Test
    void repairingTheFixedPartKeepsTheMeterCountingHeldConnections() throws Exception
    {
        final int cap = 4;
        start(1, cap);
        apply(List.of(app(1, A, 1)), List.of(A));
        try (RunningClient held = lab.guest(1).startClient("tcp", DST4, "80", Integer.toString(cap), "6", "--timeout", "2"))
        {
            for (int i = 0; i < cap; i++)
            {
                assertThat(held.next(Duration.ofSeconds(5)).ok()).isTrue();
            }
            final String meter = lab.must("host", "nft", "list", "set", "inet", TABLE, "cc4");
            assertThat(meter).contains(guest4(1) + " . " + DST4);
            // someone flushes the fixed chains by hand: no anti-spoofing, no cap
            lab.must("host", "nft", "flush chain inet " + TABLE + " forward; flush chain inet " + TABLE + " guest_new");
            assertThat(lab.host().call(kernel::ensureTable)).as("the reconcile's ensureTable repairs it").isTrue();
            assertThat(lab.host().call(kernel::ensureTable)).isFalse();
            // the meter still counts the 4 held connections: the 5th is refused at once (a reset meter would let
            // it through, and 4 more after it)
            final long synsBefore = synRetransmissions("g1");
            final long t0 = System.nanoTime();
            final ClientResult over = lab.guest(1).client("tcp", DST4, 80, 1, 0, "--timeout", "2").get(0);
            final long overMillis = (System.nanoTime() - t0) / 1_000_000;
            final long synsSentAgain = synRetransmissions("g1") - synsBefore;
            assertThat(over.error()).isEqualTo("ECONNREFUSED");
            assertThat(synsSentAgain).as("refused at the first SYN (client took " + overMillis + " ms)").isZero();
            assertThat(lab.must("host", "nft", "list", "set", "inet", TABLE, "cc4"))
                .contains(guest4(1) + " . " + DST4);
            report(String.format("repair keeps the meter: cap %d held, after flushing forward+guest_new and "
                + "ensureTable the #%d is %s after %d ms; meter %s", cap, cap + 1, over, overMillis,
                meter.lines().filter(l -> l.contains(DST4)).map(String::strip).findFirst().orElse("?")));
        }
    }

    @Test
    void remappingAppliesToNewConnectionsWhileAnEstablishedOneKeepsWorking() throws Exception
    {
        start(1, 1024);
        apply(List.of(app(1, A, 1)), List.of(A, B));
        try (RunningClient held = lab.guest(1).startClient("hold", DST4B, "80", "4", "--timeout", "1"))
        {
            final ClientResult established = held.next(Duration.ofSeconds(5));
            assertThat(established.seenIp()).isEqualTo(A.ipv4().toString());
            assertThat(established.seenPort()).isBetween(L.firstPort(1), L.lastPort(1));
            assertThat(held.nextLine(Duration.ofSeconds(2))).as("an echo before the remap")
                .isEqualTo("echo " + established.seenIp() + " " + established.seenPort());

            final List<PlanChange> changes = apply(List.of(app(1, B, 2)), List.of(A, B));
            assertThat(changes).filteredOn(c -> c.op() == PlanChange.Op.REPLACE)
                .extracting(c -> c.element().kind()).containsExactlyInAnyOrder("snat4", "snat6");
            held.drain();

            final List<ClientResult> fresh4 = expectOk(lab.guest(1).client("tcp", DST4, 80, 2, 0), B.ipv4().toString(),
                L.firstPort(2), L.lastPort(2));
            final List<ClientResult> fresh6 = expectOk(lab.guest(1).client("tcp", DST6, 80, 2, 0), B.ipv6().toString(),
                L.firstPort(2), L.lastPort(2));
            final List<String> rest = held.awaitEnd(Duration.ofSeconds(6));
            assertThat(rest).last().isEqualTo("done");
            final List<String> echoes = rest.subList(0, rest.size() - 1);
            assertThat(echoes).hasSizeGreaterThanOrEqualTo(3)
                .allSatisfy(line -> assertThat(line).isEqualTo("echo " + established.seenIp() + " " + established.seenPort()));
            report(String.format("remap: established %s kept (%d echoes after the remap, same ip:port); new v4 %s v6 %s",
                established, echoes.size(), fresh4, fresh6));
        }
    }

    @Test
    void aTransactionWithOneBadElementChangesNothing() throws Exception
    {
        start(2, 1024);
        final List<PlannedMachine> machines = List.of(app(1, A, 1),
            new PlannedMachine(machine(2), new Egress(Scope.HOST, null, -1, -1, -1, "masquerade")));
        apply(machines, List.of(A, B));
        final KernelPlan before = readKernel();

        // C's addresses would go on first, then g2 becomes static on B (valid), and g1 is re-added with other
        // data as an ADD (the kernel says "File exists"): C must come off again
        final List<PlanChange> exists = List.of(
            PlanChange.add(new PlanElement.Uplink4(C.ipv4())),
            PlanChange.add(new PlanElement.Uplink6(C.ipv6())),
            PlanChange.add(new PlanElement.Static4(Ipv4Address.parse(guest4(2)))),
            PlanChange.add(new PlanElement.Snat4(Ipv4Address.parse(guest4(2)), B.ipv4(), L.firstPort(3), L.lastPort(3))),
            PlanChange.add(new PlanElement.Snat4(Ipv4Address.parse(guest4(1)), B.ipv4(), L.firstPort(4), L.lastPort(4))));
        // ... and a removal of an element that is not there (the kernel says "No such file or directory")
        final List<PlanChange> missing = List.of(
            PlanChange.add(new PlanElement.Static4(Ipv4Address.parse(guest4(2)))),
            PlanChange.remove(new PlanElement.Snat4(Ipv4Address.parse("10.77.0.99"), A.ipv4(), 1024, 2047)));
        final List<String> errors = new ArrayList<>();
        for (final List<PlanChange> bad : List.of(exists, missing))
        {
            assertThatThrownBy(() -> lab.host().call(() ->
            {
                kernel.apply(bad);
                return null;
            })).isInstanceOf(KernelException.class).hasMessageStartingWith("nft: ").hasCauseInstanceOf(NftException.class)
                .satisfies(e -> errors.add(e.getMessage()));
            assertThat(readKernel()).isEqualTo(before);
            assertThat(uplinkAddresses()).extracting(a -> a.get("local").asText())
                .doesNotContain(C.ipv4().toString(), C.ipv6().toString());
        }
        // traffic is as before: g1 from A, g2 masqueraded
        expectOk(lab.guest(1).client("tcp", DST4, 80, 1, 0), A.ipv4().toString(), L.firstPort(1), L.lastPort(1));
        expectOk(lab.guest(2).client("tcp", DST4, 80, 1, 0), HOST4, 1, 65535);
        report("bad transaction: read() unchanged after " + errors);
    }

    @Test
    void readIsTheAppliedPlanAndDriftIsSeenAndRepaired() throws Exception
    {
        start(2, 1024);
        final List<PlannedMachine> machines = List.of(app(1, A, 1), app(2, A, 2));
        final KernelPlan desired = KernelPlanner.plan(machines, List.of(A));
        apply(machines, List.of(A));
        assertThat(readKernel()).isEqualTo(desired);

        // someone deletes elements and an egress address by hand
        lab.must("host", "nft", "delete element inet " + TABLE + " snat4 { " + guest4(1) + " }");
        lab.must("host", "nft", "delete element inet " + TABLE + " guests6 { \"tap-g2\" . " + guest6(2) + " }");
        lab.must("host", "ip", "-6", "addr", "del", A.ipv6() + "/128", "dev", "uplink");
        final KernelPlan drifted = readKernel();
        assertThat(drifted.contains(new PlanElement.Uplink6(A.ipv6()))).as("read() sees the address gone").isFalse();
        assertThat(drifted.contains(new PlanElement.Uplink4(A.ipv4()))).isTrue();
        final List<PlanChange> repair = PlanDiff.between(drifted, desired);
        // in PlanDiff's order: the address first
        assertThat(repair).containsExactly(
            PlanChange.add(new PlanElement.Uplink6(A.ipv6())),
            PlanChange.add(new PlanElement.Guest6("tap-g2", Ipv6Address.parse(guest6(2)))),
            PlanChange.add(new PlanElement.Snat4(Ipv4Address.parse(guest4(1)), A.ipv4(), L.firstPort(1), L.lastPort(1))));
        // the drift shows: g1 (static, now unmapped) is refused, g2's IPv6 is dropped as foreign
        assertThat(lab.guest(1).client("tcp", DST4, 80, 1, 0)).extracting(ClientResult::error).containsExactly("ECONNREFUSED");
        assertThat(lab.guest(2).client("tcp", DST6, 80, 1, 0, "--timeout", "0.5")).extracting(ClientResult::error)
            .containsExactly("ETIMEDOUT");

        lab.host().call(() ->
        {
            kernel.apply(repair);
            return null;
        });
        assertThat(readKernel()).isEqualTo(desired);
        assertUplinkHolds(List.of(A));
        final List<ClientResult> g1 = expectOk(lab.guest(1).client("tcp", DST4, 80, 1, 0), A.ipv4().toString(),
            L.firstPort(1), L.lastPort(1));
        final List<ClientResult> g2 = expectOk(lab.guest(2).client("tcp", DST6, 80, 1, 0), A.ipv6().toString(),
            L.firstPort(2), L.lastPort(2));
        report("drift: " + desired.size() + " elements round-trip; repair " + repair
            + "; after repair g1 " + g1 + " g2 " + g2);
    }

    // ---------------------------------------------------------------------------------------------

    private void start(final int guests, final int cap) throws IOException
    {
        lab = Lab.create(guests);
        final DataplaneConfig config = new DataplaneConfig(TABLE, "uplink", "tap-*", cap);
        // Opened on the host namespace's thread: the nft context and the rtnetlink socket live there.
        kernel = lab.host().call(() -> NftKernel.open(config));
        lab.host().call(kernel::ensureTable);
    }

    /**
     * Plans and applies the diff from what the kernel holds, as the daemon's reconcile will: the pairs'
     * addresses go on the uplink through NftKernel (rtnetlink), then the transaction.
     */
    private List<PlanChange> apply(final Collection<PlannedMachine> machines, final Collection<EgressPair> pairs)
        throws IOException
    {
        final KernelPlan desired = KernelPlanner.plan(machines, pairs);
        final List<PlanChange> changes = lab.host().call(() ->
        {
            final List<PlanChange> diff = PlanDiff.between(kernel.read(), desired);
            kernel.apply(diff);
            return diff;
        });
        assertUplinkHolds(pairs);
        return changes;
    }

    /**
     * Checks with {@code ip -j addr} that each pair is on the uplink as egressd puts it there: the IPv4 as
     * a /32, the IPv6 as a /128 with preferred_lft 0 (never a source for masquerade, docs/design.md, pitfall 7),
     * both marked with egressd's IFA_PROTO (read by a raw dump: iproute2 6.1 does not print it).
     */
    private void assertUplinkHolds(final Collection<EgressPair> pairs) throws IOException
    {
        final List<JsonNode> addresses = uplinkAddresses();
        final Map<String, Integer> protocols = AddressProtocols.parse(
            lab.must("host", AddressProtocols.command("uplink").toArray(String[]::new)));
        for (final EgressPair p : pairs)
        {
            final JsonNode v4 = find(addresses, p.ipv4().toString());
            final JsonNode v6 = find(addresses, p.ipv6().toString());
            assertThat(v4.get("prefixlen").asInt()).as("%s", v4).isEqualTo(32);
            assertThat(v6.get("prefixlen").asInt()).as("%s", v6).isEqualTo(128);
            assertThat(v6.get("preferred_life_time").asLong()).as("%s", v6).isZero();
            assertThat(protocols).containsEntry(p.ipv4() + "/32", NetlinkConstants.IFAPROT_EGRESSD)
                .containsEntry(p.ipv6() + "/128", NetlinkConstants.IFAPROT_EGRESSD);
        }
    }

    private List<JsonNode> uplinkAddresses() throws IOException
    {
        final List<JsonNode> out = new ArrayList<>();
        JSON.readTree(lab.must("host", "ip", "-j", "addr", "show", "dev", "uplink")).get(0).get("addr_info")
            .forEach(out::add);
        return out;
    }

    private static JsonNode find(final List<JsonNode> addresses, final String local)
    {
        return addresses.stream().filter(a -> local.equals(a.get("local").asText())).findFirst()
            .orElseThrow(() -> new AssertionError(local + " is not on the uplink: " + addresses));
    }

    private KernelPlan readKernel() throws IOException
    {
        return lab.host().call(kernel::read);
    }

    private Map<String, Long> counters() throws IOException
    {
        return lab.host().call(kernel::counters);
    }

    private static List<ClientResult> expectOk(final List<ClientResult> results, final String ip, final int first,
        final int last)
    {
        assertThat(results).isNotEmpty().allSatisfy(r ->
        {
            assertThat(r.ok()).as("connection failed: %s", results).isTrue();
            assertThat(r.seenIp()).isEqualTo(ip);
            assertThat(r.seenPort()).isBetween(first, last);
        });
        return results;
    }

    private static ConntrackEntry onlyIcmp(final List<ConntrackEntry> entries, final String guest)
    {
        final List<ConntrackEntry> icmp = entries.stream()
            .filter(e -> e.proto().startsWith("icmp") && guest.equals(e.origSrc())).collect(Collectors.toList());
        assertThat(icmp).as("icmp conntrack entries of %s in %s", guest, entries).hasSize(1);
        return icmp.get(0);
    }

    private static EgressPair pair(final String v4, final String v6)
    {
        return new EgressPair(Ipv4Address.parse(v4), Ipv6Address.parse(v6), "lab");
    }

    private static String guest4(final int g)
    {
        return "10.77.0." + (g + 1);
    }

    private static String guest6(final int g)
    {
        return "fd77::" + Integer.toHexString(g + 1);
    }

    private static Machine machine(final int g)
    {
        return new Machine("m" + g, "app1", "tap-g" + g, Ipv4Address.parse(guest4(g)), Ipv6Address.parse(guest6(g)),
            null);
    }

    private static PlannedMachine app(final int g, final EgressPair pair, final int block)
    {
        return new PlannedMachine(machine(g), new Egress(Scope.APP, pair, block, L.firstPort(block), L.lastPort(block),
            "slot " + block + " on " + pair.ipv4()));
    }

    private static void report(final String figures)
    {
        System.out.println("E2E " + figures);
    }
}
