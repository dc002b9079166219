package dev.egressd.agent.kernel.nft.netlink;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

import org.assertj.core.api.ThrowableAssert.ThrowingCallable;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.netlink.NetlinkException;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The nf_tables netlink client against the kernel, in a throw-away namespace; what it did is observed with
 * the nft command ({@code nft -j list ...}), independently of the client's own parser.
 */
@Privileged
class NftNetlinkPrivilegedTest
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String TABLE = """
        table inet t {
            counter hits {
            }
            set static4 {
                type ipv4_addr
            }
            set guests4 {
                type ifname . ipv4_addr
            }
            set guests6 {
                type ifname . ipv6_addr
            }
            map snat4 {
                type ipv4_addr : interval ipv4_addr . inet_service
            }
            map snat6 {
                type ipv6_addr : interval ipv6_addr . inet_service
            }
            chain postrouting {
                type nat hook postrouting priority srcnat; policy accept;
            }
        }
        """;

    private LabNamespace lab;
    private NetNamespace ns;
    private NftNetlink nft;

    @BeforeEach
    void setUp() throws Exception
    {
        Requirements.rootWithNftables();
        lab = LabNamespace.create();
        ns = NetNamespace.enter(lab.name());
        final Path file = Files.createTempFile("nfnl-table", ".nft");
        try
        {
            Files.writeString(file, TABLE);
            lab.exec("nft", "-f", file.toString());
        }
        finally
        {
            Files.delete(file);
        }
        nft = ns.call(() -> NftNetlink.open(NfTables.NFPROTO_INET, "t"));
    }

    @AfterEach
    void tearDown() throws Exception
    {
        LabNamespace.tearDown(lab, ns, nft);
    }

    private static <T extends Throwable> T thrown(final ThrowingCallable call, final Class<T> type)
    {
        final T t = catchThrowableOfType(type, call);
        assertThat(t).as("throws %s", type.getSimpleName()).isNotNull();
        return t;
    }

    private static int v4(final String a)
    {
        return Ipv4Address.parse(a).bits();
    }

    private static byte[] v6(final String a)
    {
        final Ipv6Address x = Ipv6Address.parse(a);
        return NftElements.ipv6(x.high(), x.low());
    }

    private static byte[] snat6(final String egress, final int lo, final int hi)
    {
        final Ipv6Address x = Ipv6Address.parse(egress);
        return NftElements.snat6(x.high(), x.low(), lo, hi);
    }

    private static NftOp.AddElement snat4(final String guest, final String egress, final int lo, final int hi)
    {
        return new NftOp.AddElement("snat4", NftElements.ipv4(v4(guest)), NftElements.snat4(v4(egress), lo, hi));
    }

    private void commit(final NftOp... ops) throws Exception
    {
        ns.call(() ->
        {
            nft.commit(List.of(ops));
            return null;
        });
    }

    /** What nft lists in a set or map, each element as text: {@code key} or {@code key : data}. */
    private List<String> nftList(final String kind, final String name) throws Exception
    {
        final JsonNode root = JSON.readTree(lab.exec("nft", "-j", "list", kind, "inet", "t", name));
        final List<String> out = new ArrayList<>();
        for (final JsonNode item : root.path("nftables"))
        {
            final JsonNode set = item.has("set") ? item.get("set") : item.get("map");
            if (set == null)
            {
                continue;
            }
            for (final JsonNode e : set.path("elem"))
            {
                out.add(text(e));
            }
        }
        out.sort(null);
        return out;
    }

    private static String text(final JsonNode n)
    {
        if (n.isArray())
        {
            // a map element: [key, data]
            return text(n.get(0)) + " : " + text(n.get(1));
        }
        if (n.has("concat"))
        {
            final List<String> parts = new ArrayList<>();
            n.get("concat").forEach(p -> parts.add(text(p)));
            return String.join(" . ", parts);
        }
        if (n.has("range"))
        {
            return text(n.get("range").get(0)) + "-" + text(n.get("range").get(1));
        }
        return n.asText();
    }

    /** The client's dump of a set, decoded to the same text as {@link #nftList}. */
    private List<String> dump(final String set) throws Exception
    {
        final List<NftNetlink.Element> elements = ns.call(() -> nft.elements(set));
        final List<String> out = new ArrayList<>();
        for (final NftNetlink.Element e : elements)
        {
            out.add(switch (set)
            {
                case "static4" -> ip4(e.key(), 0);
                case "guests4" -> NftElements.getIfname(e.key()) + " . " + ip4(e.key(), 16);
                case "guests6" -> NftElements.getIfname(e.key()) + " . " + ip6(e.key(), 16);
                case "snat4" -> ip4(e.key(), 0) + " : " + ip4(e.data(), 0) + " . " + NftElements.getPort(e.data(), 4)
                    + "-" + NftElements.getPort(e.data(), 12);
                case "snat6" -> ip6(e.key(), 0) + " : " + ip6(e.data(), 0) + " . " + NftElements.getPort(e.data(), 16)
                    + "-" + NftElements.getPort(e.data(), 36);
                default -> throw new AssertionError(set);
            });
        }
        out.sort(null);
        return out;
    }

    private static String ip4(final byte[] b, final int off)
    {
        return new Ipv4Address(NftElements.getInt(b, off)).toString();
    }

    private static String ip6(final byte[] b, final int off)
    {
        return new Ipv6Address(NftElements.getLong(b, off), NftElements.getLong(b, off + 8)).toString();
    }

    @Test
    void aBatchAddsAndRemovesElementsThatNftLists() throws Exception
    {
        commit(snat4("10.0.0.2", "203.0.113.1", 1024, 2047),
            snat4("10.0.0.3", "203.0.113.1", 2048, 3071),
            new NftOp.AddElement("static4", NftElements.ipv4(v4("10.0.0.2")), null),
            new NftOp.AddElement("guests4", NftElements.ifnameIpv4("tap0", v4("10.0.0.2")), null),
            new NftOp.AddElement("snat6", v6("fd00::2"), snat6("2001:db8::1", 4096, 8191)));
        assertThat(nftList("map", "snat4")).containsExactly("10.0.0.2 : 203.0.113.1 . 1024-2047",
            "10.0.0.3 : 203.0.113.1 . 2048-3071");
        assertThat(nftList("set", "static4")).containsExactly("10.0.0.2");
        assertThat(nftList("set", "guests4")).containsExactly("tap0 . 10.0.0.2");
        assertThat(nftList("map", "snat6")).containsExactly("fd00::2 : 2001:db8::1 . 4096-8191");

        // A remap: delete and add of one key in one batch.
        commit(new NftOp.DeleteElement("snat4", NftElements.ipv4(v4("10.0.0.2"))),
            snat4("10.0.0.2", "203.0.113.9", 5000, 5999),
            new NftOp.DeleteElement("static4", NftElements.ipv4(v4("10.0.0.2"))));
        assertThat(nftList("map", "snat4")).containsExactly("10.0.0.2 : 203.0.113.9 . 5000-5999",
            "10.0.0.3 : 203.0.113.1 . 2048-3071");
        assertThat(nftList("set", "static4")).isEmpty();
    }

    @Test
    void aRefusedBatchChangesNothingAndNamesTheChange() throws Exception
    {
        commit(snat4("10.0.0.2", "203.0.113.1", 1024, 2047));
        final int before = ns.call(nft::generation);
        final NftOp.AddElement clash = snat4("10.0.0.2", "203.0.113.5", 1024, 2047);
        final NftRefusedException e = thrown(() -> commit(
            snat4("10.0.0.7", "203.0.113.1", 3000, 3999),
            new NftOp.AddElement("static4", NftElements.ipv4(v4("10.0.0.7")), null),
            clash), NftRefusedException.class);
        assertThat(e).isNotNull();
        assertThat(e.isAlreadyExists()).isTrue();
        assertThat(e.errno()).isEqualTo(LibC.EEXIST);
        assertThat(e.index()).isEqualTo(2);
        assertThat(e.change()).isEqualTo(clash.describe());
        assertThat(e.getMessage()).contains("inet t").contains("snat4").contains("0a000002").contains("nothing changed");
        assertThat(nftList("map", "snat4")).containsExactly("10.0.0.2 : 203.0.113.1 . 1024-2047");
        assertThat(nftList("set", "static4")).as("the first changes of the refused batch").isEmpty();
        assertThat(ns.call(nft::generation)).as("an aborted transaction is no new generation").isEqualTo(before);

        // Deleting an absent element: ENOENT, named, nothing changed.
        final NftRefusedException missing = thrown(() -> commit(
            new NftOp.DeleteElement("snat4", NftElements.ipv4(v4("10.0.0.2"))),
            new NftOp.DeleteElement("snat4", NftElements.ipv4(v4("10.0.0.99")))), NftRefusedException.class);
        assertThat(missing.isNotFound()).isTrue();
        assertThat(missing.index()).isEqualTo(1);
        assertThat(nftList("map", "snat4")).containsExactly("10.0.0.2 : 203.0.113.1 . 1024-2047");

        // Adding the same element with the same data again is no error (idempotent add).
        commit(snat4("10.0.0.2", "203.0.113.1", 1024, 2047));
        assertThat(nftList("map", "snat4")).containsExactly("10.0.0.2 : 203.0.113.1 . 1024-2047");
    }

    @Test
    void dumpsEqualWhatNftLists() throws Exception
    {
        final List<NftOp> ops = new ArrayList<>();
        for (int i = 0; i < 700; i++)
        {
            final String guest = "10.1." + (i / 200) + "." + (i % 200 + 1);
            ops.add(snat4(guest, "203.0.113." + (i % 7 + 1), 1024 + i * 64, 1024 + i * 64 + 63));
            ops.add(new NftOp.AddElement("static4", NftElements.ipv4(v4(guest)), null));
            ops.add(new NftOp.AddElement("guests4", NftElements.ifnameIpv4("vm" + i, v4(guest)), null));
            final String guest6 = "fd00::" + Integer.toHexString(i + 1);
            ops.add(new NftOp.AddElement("guests6", NftElements.ifnameIpv6("vm" + i,
                Ipv6Address.parse(guest6).high(), Ipv6Address.parse(guest6).low()), null));
            ops.add(new NftOp.AddElement("snat6", v6(guest6), snat6("2001:db8::" + (i % 5 + 1), 1024 + i * 64,
                1024 + i * 64 + 63)));
        }
        ns.call(() ->
        {
            nft.commit(ops);
            return null;
        });
        for (final String[] set : new String[][] {{"map", "snat4"}, {"set", "static4"}, {"set", "guests4"},
            {"set", "guests6"}, {"map", "snat6"}})
        {
            final List<String> listed = nftList(set[0], set[1]);
            assertThat(listed).as(set[1]).hasSize(700);
            assertThat(dump(set[1])).as(set[1]).isEqualTo(listed);
        }
    }

    @Test
    void dumpOfAMissingSetIsNotFound() throws Exception
    {
        final NetlinkException e = thrown(() -> ns.call(() -> nft.elements("nope")),
            NetlinkException.class);
        assertThat(e.isNotFound()).isTrue();
    }

    @Test
    void theGenerationChangesOnACommitAndNotOtherwise() throws Exception
    {
        final int g0 = ns.call(nft::generation);
        assertThat(ns.call(nft::generation)).isEqualTo(g0);
        ns.call(() -> nft.elements("snat4"));
        ns.call(nft::counters);
        assertThat(ns.call(nft::generation)).as("reads are no commit").isEqualTo(g0);
        commit(new NftOp.AddElement("static4", NftElements.ipv4(v4("10.0.0.2")), null));
        final int g1 = ns.call(nft::generation);
        assertThat(g1).isNotEqualTo(g0);
        lab.exec("nft", "add", "element", "inet", "t", "static4", "{ 10.0.0.3 }");
        assertThat(ns.call(nft::generation)).as("a change by someone else").isNotEqualTo(g1);
    }

    @Test
    void setNamesAreTheTablesNamedSetsAndMapsAsNftListsThem() throws Exception
    {
        lab.exec("nft", "add", "chain", "inet", "t", "anon");
        lab.exec("nft", "add", "rule", "inet", "t", "anon", "ip", "daddr", "{", "10.1.1.1,", "10.1.1.2", "}", "accept");
        lab.exec("nft", "add", "table", "inet", "other");
        lab.exec("nft", "add", "set", "inet", "other", "elsewhere", "{", "type", "ipv4_addr", ";", "}");
        final java.util.Set<String> names = ns.call(nft::setNames);
        final TreeSet<String> listed = new TreeSet<>();
        for (final String[] list : new String[][] {{"list", "sets", "table", "inet", "t"}, {"list", "maps", "inet"}})
        {
            final String[] cmd = new String[list.length + 2];
            cmd[0] = "nft";
            cmd[1] = "-j";
            System.arraycopy(list, 0, cmd, 2, list.length);
            JSON.readTree(lab.exec(cmd)).path("nftables").forEach(i ->
            {
                final JsonNode set = i.has("set") ? i.path("set") : i.path("map");
                if ("t".equals(set.path("table").asText()))
                {
                    set.path("name").asText("").transform(listed::add);
                }
            });
        }
        listed.remove("");
        assertThat(listed).as("the fixture has sets and maps").contains("snat4", "static4");
        assertThat(names).as("no anonymous set, nothing of another table").containsExactlyInAnyOrderElementsOf(listed);
        final long before = ns.call(nft::generation);
        assertThat(ns.call(nft::generation)).as("a listing is no commit").isEqualTo(before);
    }

    @Test
    void setNamesOfAMissingTableIsNotFound() throws Exception
    {
        final NftNetlink other = ns.call(() -> NftNetlink.open(NfTables.NFPROTO_INET, "nope"));
        try
        {
            final NetlinkException e = thrown(() -> ns.call(other::setNames), NetlinkException.class);
            assertThat(e.isNotFound()).isTrue();
        }
        finally
        {
            ns.call(() ->
            {
                other.close();
                return null;
            });
        }
    }

    @Test
    void countersAreReadByName() throws Exception
    {
        lab.exec("nft", "add", "counter", "inet", "t", "other", "packets", "7", "bytes", "700");
        final Map<String, NftNetlink.Counter> counters = ns.call(nft::counters);
        assertThat(counters).containsEntry("hits", new NftNetlink.Counter(0, 0))
            .containsEntry("other", new NftNetlink.Counter(7, 700)).hasSize(2);
        final JsonNode listed = JSON.readTree(lab.exec("nft", "-j", "list", "counters", "table", "inet", "t"));
        final TreeSet<String> names = new TreeSet<>();
        listed.path("nftables").forEach(i -> i.path("counter").path("name").asText("").transform(names::add));
        names.remove("");
        assertThat(names).containsExactlyElementsOf(new TreeSet<>(counters.keySet()));
    }

    @Test
    void theIpv6MapSnatRuleIsAcceptedAndListedWithItsComment() throws Exception
    {
        final List<NftOp> rules = new ArrayList<>();
        for (final int proto : NftRules.SNAT6_PROTOCOLS)
        {
            rules.add(new NftOp.AddRule("postrouting", NftRules.snat6Map("snat6", proto), "egressd 0123456789abcdef"));
        }
        ns.call(() ->
        {
            nft.commit(rules);
            return null;
        });
        final String listing = lab.exec("nft", "list", "chain", "inet", "t", "postrouting");
        assertThat(listing).contains("meta l4proto tcp snat ip6 to ip6 saddr map @snat6 comment \"egressd 0123456789abcdef\"")
            .contains("meta l4proto udp snat ip6 to ip6 saddr map @snat6")
            .contains("meta l4proto ipv6-icmp snat ip6 to ip6 saddr map @snat6");
        // The layout nft 1.0.6 would use (registers 1, 2, 3, 4) is refused: the proof the registers matter.
        final NftRefusedException e = thrown(() -> commit(new NftOp.AddRule("postrouting", List.of(
            new NftExpr.Meta(NfTables.NFT_META_NFPROTO, NfTables.NFT_REG_1),
            new NftExpr.CmpEq(NfTables.NFT_REG_1, new byte[] {(byte)NfTables.NFPROTO_IPV6}),
            new NftExpr.Payload(NfTables.NFT_PAYLOAD_NETWORK_HEADER, 8, 16, NfTables.NFT_REG_1),
            new NftExpr.Lookup("snat6", NfTables.NFT_REG_1, NfTables.NFT_REG_1),
            new NftExpr.Nat(NfTables.NFT_NAT_SNAT, NfTables.NFPROTO_IPV6, 1, 3, 2, 4,
                NfTables.NF_NAT_RANGE_MAP_IPS | NfTables.NF_NAT_RANGE_PROTO_SPECIFIED)), null)), NftRefusedException.class);
        assertThat(e).isNotNull();
        assertThat(e.index()).isZero();
    }

    @Test
    void aBatchBiggerThanTheSocketBuffersGoesInOneTransaction() throws Exception
    {
        final List<NftOp> ops = new ArrayList<>();
        for (int i = 0; i < 20_000; i++)
        {
            ops.add(new NftOp.AddElement("static4", NftElements.ipv4(0x0A000000 | i + 1), null));
        }
        ns.call(() ->
        {
            nft.commit(ops);
            return null;
        });
        assertThat(ns.call(() -> nft.elements("static4"))).hasSize(20_000);
        // And refused at the very end: nothing of the 20,000 stays.
        final List<NftOp> refused = new ArrayList<>();
        for (int i = 0; i < 20_000; i++)
        {
            refused.add(new NftOp.AddElement("guests4", NftElements.ifnameIpv4("vm", 0x0A000000 | i + 1), null));
        }
        refused.add(new NftOp.DeleteElement("snat4", NftElements.ipv4(v4("10.9.9.9"))));
        final NftRefusedException e = thrown(() -> ns.call(() ->
        {
            nft.commit(refused);
            return null;
        }), NftRefusedException.class);
        assertThat(e.index()).isEqualTo(20_000);
        assertThat(ns.call(() -> nft.elements("guests4"))).isEmpty();
    }
}
