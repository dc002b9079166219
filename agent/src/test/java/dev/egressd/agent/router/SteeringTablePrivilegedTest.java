package dev.egressd.agent.router;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.kernel.Sysctl;
import dev.egressd.agent.kernel.nft.LibNftablesClient;
import dev.egressd.agent.kernel.nft.netlink.NfTables;
import dev.egressd.agent.kernel.nft.netlink.NftNetlink;
import dev.egressd.agent.kernel.nft.netlink.NftRefusedException;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.router.SteeringPlan.Key;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import java.io.IOException;
import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The router's table against the real kernel (created through libnftables, changed and read back over nf_tables
 * netlink), in namespaces this test creates: created, changed by diffs in one batch, read back, repaired after hand
 * edits, a refused batch changing nothing; and the fencing rule proved with packets (a host sending
 * from another host's block, or from a block nobody holds, is dropped; from its own block it passes).
 */
@Privileged
class SteeringTablePrivilegedTest
{
    private static final String TABLE = "egressd_router";
    private static final InetAddress SHARED4 = SteeringPlan.address("203.0.113.5");
    private static final InetAddress SHARED6 = SteeringPlan.address("2001:db8:5::5");

    private LabNamespace router;
    private NetNamespace ns;
    private LibNftablesClient client;
    private NftNetlink netlink;
    private SteeringTable table;

    @BeforeEach
    void setUp() throws Exception
    {
        Requirements.rootWithNftables();
        router = LabNamespace.create();
        ns = NetNamespace.enter(router.name());
        client = ns.call(LibNftablesClient::open);
        netlink = ns.call(() -> NftNetlink.open(NfTables.NFPROTO_INET, TABLE));
        table = new SteeringTable(client, netlink, TABLE);
    }

    @AfterEach
    void tearDown() throws Exception
    {
        LabNamespace.tearDown(router, ns, netlink, client);
    }

    private static SteeringPlan plan(final Map<Key, Integer> elements)
    {
        return new SteeringPlan(elements, Set.of(), Set.of(), Set.of(SHARED4, SHARED6));
    }

    private static Map<Key, Integer> blocks(final int count, final int mark)
    {
        final Map<Key, Integer> elements = new HashMap<>();
        for (int b = 0; b < count; b++)
        {
            elements.put(new Key(SHARED4, b * 1024, b * 1024 + 1023), mark + b % 2);
            elements.put(new Key(SHARED6, b * 1024, b * 1024 + 1023), mark + b % 2);
        }
        return elements;
    }

    @Test
    void createApplyReadBackAndRepair() throws Exception
    {
        final SteeringPlan first = plan(blocks(8, 1));
        ns.call(() ->
        {
            table.create(first);
            return null;
        });
        assertThat(table.elements()).isEqualTo(8 * 4);
        final String listed = router.exec("nft", "list", "table", "inet", TABLE);
        assertThat(listed).contains("203.0.113.5 . 1024-2047 : 0x00000002").contains("2001:db8:5::5 . 0-1023 : 0x00000001")
            .contains("fib saddr . mark . iif oif missing");
        assertThat(ns.call(() -> table.repair(first))).as("a fresh table has no drift").isZero();

        // a handover (block 1 moves to mark 7), a release (block 2 goes), a claim (block 9 comes): one transaction
        final Map<Key, Integer> next = new HashMap<>(first.elements());
        next.put(new Key(SHARED4, 1024, 2047), 7);
        next.remove(new Key(SHARED4, 2048, 3071));
        next.remove(new Key(SHARED6, 2048, 3071));
        next.put(new Key(SHARED4, 9216, 10239), 3);
        final SteeringPlan second = plan(next);
        assertThat(ns.call(() -> table.apply(second))).isEqualTo(2 * 2 + 2 * 2 + 2);
        final String after = router.exec("nft", "list", "map", "inet", TABLE, "blk4");
        assertThat(after).contains("203.0.113.5 . 1024-2047 : 0x00000007").contains("203.0.113.5 . 9216-10239 : 0x00000003")
            .doesNotContain("2048-3071");
        assertThat(router.exec("nft", "list", "map", "inet", TABLE, "icmpid4")).contains("1024-2047 : 0x00000007");

        // hand edits: an element deleted, another changed, one added: repaired by one read-back
        router.exec("nft", "delete element inet " + TABLE + " blk4 { 203.0.113.5 . 0-1023 }");
        router.exec("nft", "delete element inet " + TABLE + " icmpid6 { 2001:db8:5::5 . 4096-5119 }");
        router.exec("nft", "add element inet " + TABLE + " blk6 { 2001:db8:5::5 . 30720-31743 : 0x9 }");
        assertThat(ns.call(() -> table.repair(second))).isEqualTo(3);
        assertThat(router.exec("nft", "list", "map", "inet", TABLE, "blk4")).contains("203.0.113.5 . 0-1023 : 0x00000001");
        assertThat(router.exec("nft", "list", "map", "inet", TABLE, "blk6")).doesNotContain("30720-31743");
        assertThat(ns.call(() -> table.repair(second))).isZero();

        // the chain deleted by hand (with its rules): the table is replaced whole, elements included
        router.exec("nft", "delete chain inet " + TABLE + " prerouting");
        assertThat(ns.call(() -> table.repair(second))).isEqualTo(1);
        assertThat(router.exec("nft", "list", "table", "inet", TABLE)).contains("fib saddr . mark . iif oif missing")
            .contains("203.0.113.5 . 9216-10239 : 0x00000003");
        // one rule changed by hand: replaced too
        final String handle = handleOfRule(router.exec("nft", "-a", "list", "chain", "inet", TABLE, "prerouting"),
            "fib saddr");
        router.exec("nft", "delete rule inet " + TABLE + " prerouting handle " + handle);
        assertThat(ns.call(() -> table.repair(second))).isEqualTo(1);
        assertThat(ruleCount(router.exec("nft", "list", "chain", "inet", TABLE, "prerouting")))
            .isEqualTo(SteeringTable.RULES.size());
        // the table deleted by hand: created again
        router.exec("nft", "delete table inet " + TABLE);
        assertThat(ns.call(() -> table.repair(second))).isEqualTo(1);
        assertThat(router.exec("nft", "list", "map", "inet", TABLE, "blk4")).contains("1024-2047 : 0x00000007");
        // counters changing with traffic are not drift
        assertThat(ns.call(() -> table.repair(second))).isZero();
    }

    @Test
    void aBatchOfSteeringChangesIsAppliedAndReadBackOverNetlink() throws Exception
    {
        final SteeringPlan first = plan(blocks(4, 1));
        ns.call(() ->
        {
            table.create(first);
            return null;
        });
        final Map<Key, Integer> next = new HashMap<>(first.elements());
        next.put(new Key(SHARED4, 0, 1023), 9);             // a handover
        next.put(new Key(SHARED6, 3072, 4095), 9);
        next.remove(new Key(SHARED4, 2048, 3071));          // a release
        next.put(new Key(SHARED6, 8192, 9215), 4);          // a claim
        final SteeringPlan second = new SteeringPlan(next, Set.of(), Set.of(), Set.of(SHARED6));
        // 2 handovers and a release in both maps of a family (delete + add, delete), a claim in both, shared4 gone
        assertThat(ns.call(() -> table.apply(second))).isEqualTo(2 * 2 * 2 + 2 + 2 + 1);

        // what the kernel holds, dumped over netlink, is the plan, map by map
        for (final String map : List.of("blk4", "icmpid4", "blk6", "icmpid6"))
        {
            final boolean v6 = map.endsWith("6");
            final Map<Key, Integer> expected = new HashMap<>();
            second.elements().forEach((k, m) ->
            {
                if (k.ipv6() == v6)
                {
                    expected.put(k, m);
                }
            });
            final Map<Key, Integer> dumped = new HashMap<>();
            for (final NftNetlink.Element e : ns.call(() -> netlink.elements(map)))
            {
                final int a = v6 ? 16 : 4;
                final InetAddress address = InetAddress.getByAddress(java.util.Arrays.copyOf(e.key(), a));
                dumped.put(new Key(address, (e.key()[a] & 0xFF) << 8 | e.key()[a + 1] & 0xFF,
                    (e.keyEnd()[a] & 0xFF) << 8 | e.keyEnd()[a + 1] & 0xFF),
                    java.nio.ByteBuffer.wrap(e.data()).order(java.nio.ByteOrder.nativeOrder()).getInt());
            }
            assertThat(dumped).as(map).isEqualTo(expected);
        }
        assertThat(ns.call(() -> netlink.elements("shared4"))).isEmpty();
        // and nft reads the same bytes as the same elements
        assertThat(router.exec("nft", "list", "map", "inet", TABLE, "blk4"))
            .contains("203.0.113.5 . 0-1023 : 0x00000009").doesNotContain("2048-3071");
        assertThat(router.exec("nft", "list", "map", "inet", TABLE, "icmpid6"))
            .contains("2001:db8:5::5 . 8192-9215 : 0x00000004").contains("2001:db8:5::5 . 3072-4095 : 0x00000009");

        // idle: the generation id has not moved since our own batch, so the read-back reads nothing
        final long reads = table.reads();
        final long skipped = table.readsSkipped();
        assertThat(ns.call(() -> table.repair(second))).isZero();
        assertThat(table.readsSkipped()).isEqualTo(skipped + 1);
        assertThat(table.reads()).isEqualTo(reads);
        // a hand edit moves it: the next read-back reads, and puts the element back
        router.exec("nft", "delete element inet " + TABLE + " icmpid4 { 203.0.113.5 . 0-1023 }");
        assertThat(ns.call(() -> table.repair(second))).isEqualTo(1);
        assertThat(table.reads()).isEqualTo(reads + 1);
        assertThat(router.exec("nft", "list", "map", "inet", TABLE, "icmpid4")).contains("203.0.113.5 . 0-1023 : 0x00000009");
    }

    @Test
    void aFailedTransactionChangesNothingAndTheNextApplyReadsBack() throws Exception
    {
        final SteeringPlan first = plan(blocks(2, 1));
        ns.call(() ->
        {
            table.create(first);
            return null;
        });
        // deleted by hand: the next diff's delete of it fails, the whole transaction with it
        router.exec("nft", "delete element inet " + TABLE + " blk4 { 203.0.113.5 . 0-1023 }");
        final Map<Key, Integer> next = new HashMap<>(first.elements());
        next.remove(new Key(SHARED4, 0, 1023));
        next.put(new Key(SHARED4, 5120, 6143), 5);
        final SteeringPlan second = plan(next);
        final Exception failed = ns.call(() ->
        {
            try
            {
                table.apply(second);
                return null;
            }
            catch (final IOException e)
            {
                return e;
            }
        });
        assertThat(failed).as("the kernel refused the delete of a missing element").isInstanceOf(NftRefusedException.class)
            .hasMessageContaining("nothing changed").hasMessageContaining("delete element blk4 { 203.0.113.5 . 0-1023 }")
            .hasMessageContaining("errno 2");
        assertThat(router.exec("nft", "list", "map", "inet", TABLE, "blk4")).doesNotContain("5120-6143");
        assertThat(table.elements()).as("unknown after a failure").isEqualTo(-1);
        ns.call(() -> table.apply(second));
        assertThat(router.exec("nft", "list", "map", "inet", TABLE, "blk4")).contains("5120-6143 : 0x00000005")
            .doesNotContain(" 0-1023");
        assertThat(router.exec("nft", "list", "map", "inet", TABLE, "icmpid4")).doesNotContain(" 0-1023");
    }

    /**
     * Fencing with packets. Router namespace R, point-to-point veths to hosts H1 (mark 1, block 1) and H2 (mark 2,
     * block 2), both with the shared addresses on lo; a local destination in R. UDP from each host, from each block
     * and from an unassigned one: only a host's own block arrives, IPv4 and IPv6 alike; the fencing counter counts
     * the rest.
     */
    @Test
    void theFibRuleDropsPacketsFromABlockThatIsNotTheSendersOwn() throws Exception
    {
        final LabNamespace h1 = LabNamespace.create();
        final LabNamespace h2 = LabNamespace.create();
        try
        {
            // only the nft fib rule fences here: the kernel's own reverse-path filter is off
            ns.call(() ->
            {
                Sysctl.write("net.ipv4.conf.all.rp_filter", "0");
                Sysctl.write("net.ipv4.conf.default.rp_filter", "0");
                return null;
            });
            router.addLink("dst");
            router.ip("addr", "add", "198.51.100.1/32", "dev", "dst");
            router.ip("-6", "addr", "add", "2001:db8:d::1/128", "dev", "dst", "nodad");
            wire(h1, "r1", "192.0.2.1", "192.0.2.2", "2001:db8:a::1", "2001:db8:a::2");
            wire(h2, "r2", "192.0.2.5", "192.0.2.6", "2001:db8:b::1", "2001:db8:b::2");
            for (final String[] host : new String[][] {{"1", "192.0.2.1", "2001:db8:a::1"},
                {"2", "192.0.2.5", "2001:db8:b::1"}})
            {
                final String t = String.valueOf(7000 + Integer.parseInt(host[0]));
                router.ip("rule", "add", "fwmark", host[0], "lookup", t, "pref", t);
                router.ip("-6", "rule", "add", "fwmark", host[0], "lookup", t, "pref", t);
                router.ip("route", "add", "203.0.113.5/32", "via", host[1], "table", t);
                router.ip("-6", "route", "add", "2001:db8:5::5/128", "via", host[2], "table", t);
            }
            final Map<Key, Integer> elements = new HashMap<>();
            elements.put(new Key(SHARED4, 1024, 2047), 1);
            elements.put(new Key(SHARED6, 1024, 2047), 1);
            elements.put(new Key(SHARED4, 2048, 3071), 2);
            elements.put(new Key(SHARED6, 2048, 3071), 2);
            ns.call(() ->
            {
                table.create(plan(elements));
                return null;
            });

            final List<String> arrived = new ArrayList<>();
            try (NetNamespace rns = NetNamespace.enter(router.name());
                 NetNamespace n1 = NetNamespace.enter(h1.name());
                 NetNamespace n2 = NetNamespace.enter(h2.name()))
            {
                final DatagramSocket in4 = rns.call(() -> bound("198.51.100.1", 9999));
                final DatagramSocket in6 = rns.call(() -> bound("2001:db8:d::1", 9999));
                try (in4; in6)
                {
                    // h1: own block 1 passes; block 2 (h2's) and block 5 (nobody's) are dropped; h2 the mirror
                    for (final int port : new int[] {1500, 2500, 5500})
                    {
                        send(n1, "203.0.113.5", port, "198.51.100.1", "h1-" + port);
                        send(n2, "203.0.113.5", port, "198.51.100.1", "h2-" + port);
                        send(n1, "2001:db8:5::5", port, "2001:db8:d::1", "h1-" + port);
                        send(n2, "2001:db8:5::5", port, "2001:db8:d::1", "h2-" + port);
                    }
                    arrived.addAll(receive(in4, "v4 "));
                    arrived.addAll(receive(in6, "v6 "));
                }
            }
            assertThat(arrived).containsExactlyInAnyOrder("v4 h1-1500", "v4 h2-2500", "v6 h1-1500", "v6 h2-2500");
            final String chain = router.exec("nft", "list", "chain", "inet", TABLE, "prerouting");
            final Matcher m = Pattern.compile("oif missing counter packets (\\d+)").matcher(chain);
            final List<Integer> drops = new ArrayList<>();
            while (m.find())
            {
                drops.add(Integer.parseInt(m.group(1)));
            }
            assertThat(drops).as("IPv4 and IPv6 fencing counters").containsExactly(4, 4);
        }
        finally
        {
            try
            {
                h1.close();
            }
            finally
            {
                h2.close();
            }
        }
    }

    private void wire(final LabNamespace host, final String link, final String hostV4, final String routerV4,
        final String hostV6, final String routerV6) throws IOException
    {
        router.ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", host.name());
        router.ip("addr", "add", routerV4 + "/30", "dev", link);
        router.ip("-6", "addr", "add", routerV6 + "/64", "dev", link, "nodad");
        router.ip("link", "set", link, "up");
        ns.call(() ->
        {
            Sysctl.write("net.ipv4.conf." + link + ".rp_filter", "0");
            assertThat(Sysctl.read("net.ipv4.conf." + link + ".rp_filter")).isEqualTo("0");
            return null;
        });
        host.ip("addr", "add", hostV4 + "/30", "dev", "eth0");
        host.ip("-6", "addr", "add", hostV6 + "/64", "dev", "eth0", "nodad");
        host.ip("link", "set", "eth0", "up");
        host.ip("addr", "add", "203.0.113.5/32", "dev", "lo");
        host.ip("-6", "addr", "add", "2001:db8:5::5/128", "dev", "lo", "nodad");
        host.ip("route", "add", "198.51.100.1/32", "via", routerV4);
        host.ip("-6", "route", "add", "2001:db8:d::1/128", "via", routerV6);
    }

    private static DatagramSocket bound(final String address, final int port) throws IOException
    {
        final DatagramSocket socket = new DatagramSocket(new InetSocketAddress(InetAddress.getByName(address), port));
        socket.setSoTimeout(1500);
        return socket;
    }

    private static void send(final NetNamespace in, final String from, final int port, final String to,
        final String text) throws IOException
    {
        in.call(() ->
        {
            try (DatagramSocket s = new DatagramSocket(new InetSocketAddress(InetAddress.getByName(from), port)))
            {
                final byte[] data = text.getBytes(java.nio.charset.StandardCharsets.US_ASCII);
                s.send(new DatagramPacket(data, data.length, new InetSocketAddress(InetAddress.getByName(to), 9999)));
            }
            return null;
        });
    }

    private static List<String> receive(final DatagramSocket socket, final String prefix) throws IOException
    {
        final List<String> got = new ArrayList<>();
        final byte[] buffer = new byte[100];
        while (true)
        {
            final DatagramPacket packet = new DatagramPacket(buffer, buffer.length);
            try
            {
                socket.receive(packet);
            }
            catch (final SocketTimeoutException e)
            {
                return got;
            }
            got.add(prefix + new String(packet.getData(), 0, packet.getLength(),
                java.nio.charset.StandardCharsets.US_ASCII));
        }
    }

    private static String handleOfRule(final String listing, final String containing)
    {
        for (final String line : listing.split("\n"))
        {
            if (line.contains(containing))
            {
                final Matcher m = Pattern.compile("# handle (\\d+)").matcher(line);
                if (m.find())
                {
                    return m.group(1);
                }
            }
        }
        throw new AssertionError("no rule with " + containing + " in " + listing);
    }

    private static int ruleCount(final String chain)
    {
        return (int) chain.lines().filter(l -> l.contains("meta mark set") || l.contains("fib saddr")).count();
    }
}
