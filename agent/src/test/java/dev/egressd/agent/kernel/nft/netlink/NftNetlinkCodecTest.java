package dev.egressd.agent.kernel.nft.netlink;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressd.agent.netlink.NetlinkWriter;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * nf_tables message bodies against bytes laid out by hand from nf_tables.h: attribute headers host order
 * (little-endian here), nf_tables values network order. Element data as {@code nft --debug=netlink add element}
 * prints it (nft prints 32-bit words little-endian: {@code 017100cb 00000004 017100cb 0000ff07} is the bytes
 * {@code cb007101 04000000 cb007101 07ff0000}).
 */
class NftNetlinkCodecTest
{
    private static final HexFormat HEX = HexFormat.of();

    @BeforeAll
    static void littleEndianHost()
    {
        assumeTrue(ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN, "expected bytes are written for a little-endian host");
    }

    private static String body(final NftOp op)
    {
        final ByteBuffer b = ByteBuffer.allocate(512).order(ByteOrder.nativeOrder());
        final NetlinkWriter w = new NetlinkWriter(b).clear();
        w.append(NfTables.type(NftNetlink.messageType(op)), 1 | NftNetlink.flags(op), 1);
        NftNetlink.encodeOp(w, NfTables.NFPROTO_INET, "t", op);
        w.finish();
        return HEX.formatHex(b.array(), 16, b.limit());
    }

    @Test
    void elementLayoutsAreWhatNftStores()
    {
        assertThat(HEX.formatHex(NftElements.snat4(0xcb007101, 1024, 2047))).isEqualTo("cb007101" + "04000000" + "cb007101" + "07ff0000");
        // nft --debug=netlink: 000000fd ... : b80d0120 00000000 00000000 01000000 00000004 b80d0120 ... 0000ff07
        assertThat(HEX.formatHex(NftElements.snat6(0x20010db800000000L, 1, 1024, 2047))).isEqualTo(""
            + "20010db8000000000000000000000001" + "04000000" + "20010db8000000000000000000000001" + "07ff0000");
        // "tap0" . 10.0.0.2: 30706174 00000000 00000000 00000000 0200000a
        assertThat(HEX.formatHex(NftElements.ifnameIpv4("tap0", 0x0a000002))).isEqualTo("74617030" + "00".repeat(12) + "0a000002");
        assertThat(NftElements.ifnameIpv6("vm1", 0xfd00000000000000L, 2)).hasSize(32);
        assertThat(NftElements.getIfname(NftElements.ifnameIpv4("tap0", 1))).isEqualTo("tap0");
        final byte[] d = NftElements.snat6(0x20010db800000000L, 1, 1024, 2047);
        assertThat(NftElements.getPort(d, 16)).isEqualTo(1024);
        assertThat(NftElements.getPort(d, 36)).isEqualTo(2047);
        assertThat(NftElements.getLong(d, 20)).isEqualTo(0x20010db800000000L);
    }

    @Test
    void badElementsAreRefusedNamingTheField()
    {
        assertThatThrownBy(() -> NftElements.snat4(1, 2000, 1000)).hasMessageContaining("ports: 2000-1000");
        assertThatThrownBy(() -> NftElements.ifnameIpv4("a-name-too-long-x", 1)).hasMessageContaining("ifname");
        assertThatThrownBy(() -> NftElements.ifnameIpv4("", 1)).hasMessageContaining("ifname");
        assertThatThrownBy(() -> new NftOp.AddElement("snat4", new byte[0], null)).hasMessageContaining("key");
        assertThatThrownBy(() -> new NftOp.AddElement("bad name", new byte[4], null)).hasMessageContaining("set");
        assertThatThrownBy(() -> new NftOp.AddRule("postrouting", List.of(), null)).hasMessageContaining("exprs");
        assertThatThrownBy(() -> new NftOp.AddRule("postrouting", NftRules.snat6Map("snat6", 6), "\"quoted\"\n"))
            .hasMessageContaining("comment");
    }

    @Test
    void addElementOfAMap()
    {
        final NftOp op = new NftOp.AddElement("snat4", new byte[] {10, 0, 0, 2}, NftElements.snat4(0xcb007101, 1024, 2047));
        assertThat(NftNetlink.messageType(op)).isEqualTo(12);
        assertThat(NftNetlink.flags(op)).as("NLM_F_CREATE, no NLM_F_EXCL").isEqualTo(0x400);
        assertThat(body(op)).isEqualTo(""
            + "01000000"                                  // nfgenmsg: NFPROTO_INET, v0, res_id 0
            + "0600" + "0100" + "74000000"                // NFTA_SET_ELEM_LIST_TABLE "t"
            + "0a00" + "0200" + "736e61743400" + "0000"   // NFTA_SET_ELEM_LIST_SET "snat4"
            + "2c00" + "0380"                             // NFTA_SET_ELEM_LIST_ELEMENTS (nested), 44 bytes
            + "2800" + "0180"                             //  NFTA_LIST_ELEM, 40
            + "0c00" + "0180"                             //   NFTA_SET_ELEM_KEY, 12
            + "0800" + "0100" + "0a000002"                //    NFTA_DATA_VALUE 10.0.0.2
            + "1800" + "0280"                             //   NFTA_SET_ELEM_DATA, 24
            + "1400" + "0100" + "cb007101" + "04000000" + "cb007101" + "07ff0000");
    }

    @Test
    void deleteElementOfASetCarriesOnlyTheKey()
    {
        final NftOp op = new NftOp.DeleteElement("s", new byte[] {10, 0, 0, 2});
        assertThat(NftNetlink.messageType(op)).isEqualTo(14);
        assertThat(NftNetlink.flags(op)).isZero();
        assertThat(body(op)).isEqualTo("01000000" + "0600010074000000" + "0600020073000000"
            + "1400" + "0380" + "1000" + "0180" + "0c00" + "0180" + "0800" + "0100" + "0a000002");
    }

    @Test
    void theIpv6MapNatExpressionUsesTheRegistersOfTheMapsDataLayout()
    {
        final ByteBuffer b = ByteBuffer.allocate(128).order(ByteOrder.nativeOrder());
        final NetlinkWriter w = new NetlinkWriter(b).clear();
        w.append(1, 0, 1);
        final List<NftExpr> exprs = NftRules.snat6Map("snat6", NftRules.UDP);
        exprs.get(exprs.size() - 1).encode(w);
        w.finish();
        assertThat(HEX.formatHex(b.array(), 16, b.limit())).isEqualTo(""
            + "4800" + "0180"                             // NFTA_LIST_ELEM, 72 bytes
            + "0800" + "0100" + "6e617400"                // NFTA_EXPR_NAME "nat"
            + "3c00" + "0280"                             // NFTA_EXPR_DATA, 60
            + "0800" + "0100" + "00000000"                // NFTA_NAT_TYPE snat
            + "0800" + "0200" + "0000000a"                // NFTA_NAT_FAMILY NFPROTO_IPV6
            + "0800" + "0300" + "00000001"                // NFTA_NAT_REG_ADDR_MIN NFT_REG_1 (byte 0)
            + "0800" + "0400" + "0000000d"                // NFTA_NAT_REG_ADDR_MAX NFT_REG32_05 (byte 20)
            + "0800" + "0500" + "00000002"                // NFTA_NAT_REG_PROTO_MIN NFT_REG_2 (byte 16)
            + "0800" + "0600" + "00000011"                // NFTA_NAT_REG_PROTO_MAX NFT_REG32_09 (byte 36)
            + "0800" + "0700" + "00000003");              // NFTA_NAT_FLAGS MAP_IPS | PROTO_SPECIFIED
        assertThat(exprs).extracting(NftExpr::name)
            .containsExactly("meta", "cmp", "meta", "cmp", "payload", "lookup", "nat");
        assertThat(exprs.get(3)).isEqualTo(new NftExpr.CmpEq(NfTables.NFT_REG_1, new byte[] {17}));
        assertThat(exprs.get(4)).isEqualTo(new NftExpr.Payload(NfTables.NFT_PAYLOAD_NETWORK_HEADER, 8, 16, 1));
        assertThat(exprs.get(5)).isEqualTo(new NftExpr.Lookup("snat6", 1, 1));
    }

    @Test
    void aRuleCarriesItsExpressionsAndItsCommentAsLibnftnlUserData()
    {
        final NftOp op = new NftOp.AddRule("c", List.of(new NftExpr.Meta(NfTables.NFT_META_L4PROTO, 1)), "x y");
        assertThat(NftNetlink.messageType(op)).isEqualTo(6);
        assertThat(NftNetlink.flags(op)).as("NLM_F_CREATE | NLM_F_APPEND").isEqualTo(0xc00);
        assertThat(body(op)).isEqualTo("01000000" + "0600010074000000" + "0600020063000000"
            + "2800" + "0480"                             // NFTA_RULE_EXPRESSIONS, 40
            + "2400" + "0180"                             //  NFTA_LIST_ELEM, 36
            + "0900" + "0100" + "6d65746100" + "000000"   //   NFTA_EXPR_NAME "meta"
            + "1400" + "0280"                             //   NFTA_EXPR_DATA, 20
            + "0800" + "0200" + "00000010"                //    NFTA_META_KEY l4proto
            + "0800" + "0100" + "00000001"                //    NFTA_META_DREG NFT_REG_1
            + "0a00" + "0700" + "0004" + "78207900" + "0000"); // NFTA_RULE_USERDATA: comment TLV (type 0, len 4)
    }

    @Test
    void aDumpMessageIsParsedIntoKeysAndData() throws IOException
    {
        // An NFT_MSG_NEWSETELEM as the kernel dumps it: two elements of a map, one with a flags attribute.
        final String elem1 = "2800" + "0180" + "0c00" + "0180" + "0800" + "0100" + "0a000002"
            + "1800" + "0280" + "1400" + "0100" + "cb007101" + "04000000" + "cb007101" + "07ff0000";
        final String elem2 = "3000" + "0180" + "0800" + "0300" + "00000000" + "0c00" + "0180" + "0800" + "0100" + "0a000003"
            + "1800" + "0280" + "1400" + "0100" + "cb007102" + "08000000" + "cb007102" + "0bff0000";
        final String attrs = "0600010074000000" + "0a000200736e617434000000" + "5c00" + "0380" + elem1 + elem2;
        final int len = 16 + 4 + attrs.length() / 2;
        final String msg = String.format("%02x%02x0000", len & 0xFF, len >> 8) + "0c0a" + "0200" + "01000000"
            + "00000000" + "01000000" + attrs;
        final ByteBuffer b = ByteBuffer.wrap(HEX.parseHex(msg)).order(ByteOrder.nativeOrder());
        final List<String> seen = new ArrayList<>();
        NftNetlink.parseElements(b, 0, len, (buf, keyOff, keyLen, endOff, endLen, dataOff, dataLen) ->
        {
            assertThat(endOff).as("no interval end").isEqualTo(-1);
            final byte[] key = new byte[keyLen];
            buf.get(keyOff, key);
            final byte[] data = new byte[dataLen];
            buf.get(dataOff, data);
            seen.add(HEX.formatHex(key) + ":" + HEX.formatHex(data));
        });
        assertThat(seen).containsExactly("0a000002:cb00710104000000cb00710107ff0000",
            "0a000003:cb00710208000000cb0071020bff0000");
    }

    @Test
    void anIntervalElementOfAConcatenatedMapCarriesItsLastKey() throws IOException
    {
        // blk4 of the router: 203.0.113.5 . 1024-2047 : mark 1 (host order)
        final NftOp op = new NftOp.AddElement("blk4", HEX.parseHex("cb007105" + "04000000"), HEX.parseHex("01000000"),
            HEX.parseHex("cb007105" + "07ff0000"));
        assertThat(body(op)).isEqualTo("01000000" + "0600010074000000"
            + "0900" + "0200" + "626c6b3400" + "000000"    // NFTA_SET_ELEM_LIST_SET "blk4"
            + "3400" + "0380"                             // NFTA_SET_ELEM_LIST_ELEMENTS, 52
            + "3000" + "0180"                             //  NFTA_LIST_ELEM, 48
            + "1000" + "0180" + "0c00" + "0100" + "cb00710504000000"   // KEY
            + "1000" + "0a80" + "0c00" + "0100" + "cb00710507ff0000"   // KEY_END (10, nested)
            + "0c00" + "0280" + "0800" + "0100" + "01000000");         // DATA
        final NftOp delete = new NftOp.DeleteElement("blk4", HEX.parseHex("cb00710504000000"),
            HEX.parseHex("cb00710507ff0000"));
        assertThat(body(delete)).isEqualTo("01000000" + "0600010074000000" + "0900" + "0200" + "626c6b3400" + "000000"
            + "2800" + "0380" + "2400" + "0180"           // no data: 36 bytes of element
            + "1000" + "0180" + "0c00" + "0100" + "cb00710504000000"
            + "1000" + "0a80" + "0c00" + "0100" + "cb00710507ff0000");
        assertThat(delete.describe()).isEqualTo("delete element blk4 key cb00710504000000-cb00710507ff0000");
        assertThatThrownBy(() -> new NftOp.DeleteElement("blk4", new byte[8], new byte[4]))
            .hasMessageContaining("keyEnd");

        // and the same element as a dump carries it: the sink sees the last key
        final String elem = "3000" + "0180" + "1000" + "0180" + "0c00" + "0100" + "cb00710504000000"
            + "1000" + "0a80" + "0c00" + "0100" + "cb00710507ff0000" + "0c00" + "0280" + "0800" + "0100" + "01000000";
        final String attrs = "0600010074000000" + "0900" + "0200" + "626c6b3400" + "000000" + "3400" + "0380" + elem;
        final int len = 16 + 4 + attrs.length() / 2;
        final String msg = String.format("%02x%02x0000", len & 0xFF, len >> 8) + "0c0a" + "0200" + "01000000"
            + "00000000" + "01000000" + attrs;
        final ByteBuffer b = ByteBuffer.wrap(HEX.parseHex(msg)).order(ByteOrder.nativeOrder());
        final List<String> seen = new ArrayList<>();
        NftNetlink.parseElements(b, 0, len, (buf, keyOff, keyLen, endOff, endLen, dataOff, dataLen) ->
        {
            final byte[] key = new byte[keyLen];
            buf.get(keyOff, key);
            final byte[] end = new byte[endLen];
            buf.get(endOff, end);
            final byte[] data = new byte[dataLen];
            buf.get(dataOff, data);
            seen.add(HEX.formatHex(key) + "-" + HEX.formatHex(end) + ":" + HEX.formatHex(data));
        });
        assertThat(seen).containsExactly("cb00710504000000-cb00710507ff0000:01000000");
    }

    /** A NEWRULE message as the kernel dumps it: handle, then a counter with figures, then a meta expression. */
    private static ByteBuffer ruleDump(final long handle, final long packets, final int metaKey)
    {
        final String counter = "3000" + "0180" + "0c00" + "0100" + "636f756e74657200"   // NFTA_EXPR_NAME "counter"
            + "2000" + "0280" + "0c00" + "0100" + String.format("%016x", packets * 100)
            + "0c00" + "0200" + String.format("%016x", packets);
        final String meta = "2400" + "0180" + "0900" + "0100" + "6d65746100" + "000000"
            + "1400" + "0280" + "0800" + "0200" + String.format("%08x", metaKey) + "0800" + "0100" + "00000001";
        final String attrs = "0600010074000000" + "0600020063000000" + "0c00" + "0300" + String.format("%016x", handle)
            + String.format("%02x%02x", (4 + (counter.length() + meta.length()) / 2) & 0xFF,
                (4 + (counter.length() + meta.length()) / 2) >> 8) + "0480" + counter + meta;
        final int len = 16 + 4 + attrs.length() / 2;
        final String msg = String.format("%02x%02x0000", len & 0xFF, len >> 8) + "060a" + "0200" + "01000000"
            + "00000000" + "01000000" + attrs;
        return ByteBuffer.wrap(HEX.parseHex(msg)).order(ByteOrder.nativeOrder());
    }

    @Test
    void aChainFingerprintLeavesOutCountersFiguresAndHandlesButNotExpressions()
    {
        final java.io.ByteArrayOutputStream a = new java.io.ByteArrayOutputStream();
        final java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
        final java.io.ByteArrayOutputStream c = new java.io.ByteArrayOutputStream();
        final ByteBuffer first = ruleDump(4, 7, 16);
        NftNetlink.appendRule(first, 0, first.limit(), a);
        final ByteBuffer traffic = ruleDump(9, 123_456, 16);
        NftNetlink.appendRule(traffic, 0, traffic.limit(), b);
        final ByteBuffer changed = ruleDump(4, 7, 15);
        NftNetlink.appendRule(changed, 0, changed.limit(), c);
        assertThat(a.toByteArray()).isNotEmpty().isEqualTo(b.toByteArray());
        assertThat(a.toByteArray()).isNotEqualTo(c.toByteArray());
    }

    @Test
    void aCounterObjectIsParsed()
    {
        final String attrs = "0600010074000000" + "0900020068697473" + "00000000" + "0800" + "0300" + "00000001"
            + "2400" + "0480" + "0c00" + "0100" + "00000000000002bc" + "0c00" + "0200" + "0000000000000007"
            + "0800" + "0500" + "00000000";
        final int len = 16 + 4 + attrs.length() / 2;
        final String msg = String.format("%02x%02x0000", len & 0xFF, len >> 8) + "120a" + "0200" + "01000000"
            + "00000000" + "01000000" + attrs;
        final ByteBuffer b = ByteBuffer.wrap(HEX.parseHex(msg)).order(ByteOrder.nativeOrder());
        final Map<String, NftNetlink.Counter> out = new LinkedHashMap<>();
        NftNetlink.parseCounter(b, 0, len, out);
        assertThat(out).containsExactly(Map.entry("hits", new NftNetlink.Counter(7, 700)));
    }

    /** One nf_tables message by hand: nlmsghdr (host order), nfgenmsg, then attributes, each padded to 4. */
    private static ByteBuffer message(final int msg, final byte[]... attrs)
    {
        int len = 16 + 4;
        for (final byte[] a : attrs)
        {
            len += (a.length + 3) & ~3;
        }
        final ByteBuffer b = ByteBuffer.allocate(len).order(ByteOrder.nativeOrder());
        b.putInt(len).putShort((short)NfTables.type(msg)).putShort((short)0x2).putInt(1).putInt(0);
        b.put((byte)NfTables.NFPROTO_INET).put((byte)0).putShort((short)0);
        for (final byte[] a : attrs)
        {
            b.put(a);
            b.position((b.position() + 3) & ~3);
        }
        return b.flip();
    }

    private static byte[] attr(final int type, final byte[] payload)
    {
        final ByteBuffer a = ByteBuffer.allocate((4 + payload.length + 3) & ~3).order(ByteOrder.nativeOrder());
        a.putShort((short)(4 + payload.length)).putShort((short)type).put(payload);
        return a.array();
    }

    private static byte[] string(final String s)
    {
        return (s + "\0").getBytes(java.nio.charset.StandardCharsets.US_ASCII);
    }

    private static byte[] u32(final int v)
    {
        return ByteBuffer.allocate(4).putInt(v).array(); // nf_tables' network order
    }

    private static byte[] u64(final long v)
    {
        return ByteBuffer.allocate(8).putLong(v).array();
    }

    private static byte[] nested(final int type, final byte[]... inner)
    {
        final java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        for (final byte[] i : inner)
        {
            out.writeBytes(i);
        }
        return attr(type | 0x8000, out.toByteArray());
    }

    @Test
    void aDumpedBaseChainSaysItsTypeHookPriorityPolicyAndHandle()
    {
        final ByteBuffer b = message(NfTables.NFT_MSG_NEWCHAIN, attr(NfTables.NFTA_CHAIN_TABLE, string("egressd")),
            attr(NfTables.NFTA_CHAIN_HANDLE, u64(7)), attr(NfTables.NFTA_CHAIN_NAME, string("postrouting")),
            nested(NfTables.NFTA_CHAIN_HOOK, attr(NfTables.NFTA_HOOK_HOOKNUM, u32(NfTables.NF_INET_POST_ROUTING)),
                attr(NfTables.NFTA_HOOK_PRIORITY, u32(-100))),
            attr(NfTables.NFTA_CHAIN_POLICY, u32(NfTables.NF_ACCEPT)), attr(NfTables.NFTA_CHAIN_TYPE, string("nat")));
        final List<NftNetlink.ChainInfo> out = new java.util.ArrayList<>();
        NftNetlink.parseChain(b, 0, b.limit(), "other", out);
        assertThat(out).as("another table's chain").isEmpty();
        NftNetlink.parseChain(b, 0, b.limit(), "egressd", out);
        assertThat(out).containsExactly(new NftNetlink.ChainInfo("postrouting", 7, "nat", NfTables.NF_INET_POST_ROUTING,
            -100, NfTables.NF_ACCEPT, 0));
        final ByteBuffer regular = message(NfTables.NFT_MSG_NEWCHAIN,
            attr(NfTables.NFTA_CHAIN_TABLE, string("egressd")), attr(NfTables.NFTA_CHAIN_NAME, string("deny")));
        NftNetlink.parseChain(regular, 0, regular.limit(), "egressd", out);
        assertThat(out.get(1).base()).isFalse();
        assertThat(out.get(1).policy()).isEqualTo(-1);
    }

    @Test
    void aDumpedRuleSaysItsChainItsCommentAndItsExpressions()
    {
        final byte[] udata = NftNetlink.commentUserdata("egressd 0123456789abcdef");
        final byte[] expr = nested(NfTables.NFTA_LIST_ELEM, attr(NfTables.NFTA_EXPR_NAME, string("meta")));
        final ByteBuffer b = message(NfTables.NFT_MSG_NEWRULE, attr(NfTables.NFTA_RULE_TABLE, string("egressd")),
            attr(NfTables.NFTA_RULE_CHAIN, string("forward")), attr(NfTables.NFTA_RULE_HANDLE, u64(3)),
            nested(NfTables.NFTA_RULE_EXPRESSIONS, expr), attr(NfTables.NFTA_RULE_USERDATA, udata));
        final List<NftNetlink.RuleInfo> out = new java.util.ArrayList<>();
        NftNetlink.parseRule(b, 0, b.limit(), "egressd", out);
        assertThat(out).hasSize(1);
        assertThat(out.get(0).chain()).isEqualTo("forward");
        assertThat(out.get(0).comment()).isEqualTo("egressd 0123456789abcdef");
        assertThat(new String(out.get(0).expressions(), java.nio.charset.StandardCharsets.ISO_8859_1)).contains("meta");

        // user data with another TLV first, and one cut short: only a whole comment is read
        final byte[] two = {5, 2, 'x', 'y', 0, 3, 'a', 'b', 0};
        final ByteBuffer t = ByteBuffer.wrap(two);
        assertThat(NftNetlink.comment(t, 0, two.length)).isEqualTo("ab");
        assertThat(NftNetlink.comment(t, 0, two.length - 1)).isNull();
    }

    @Test
    void aDumpedMapSaysItIsAMapWithItsDataTypeAndAnonymousSetsAreLeftOut()
    {
        final ByteBuffer map = message(NfTables.NFT_MSG_NEWSET, attr(NfTables.NFTA_SET_TABLE, string("egressd")),
            attr(NfTables.NFTA_SET_NAME, string("snat6")), attr(NfTables.NFTA_SET_FLAGS, u32(NfTables.NFT_SET_MAP)),
            attr(NfTables.NFTA_SET_KEY_LEN, u32(16)), attr(NfTables.NFTA_SET_DATA_TYPE, u32(8 << 6 | 13)),
            attr(NfTables.NFTA_SET_DATA_LEN, u32(40)), attr(NfTables.NFTA_SET_HANDLE, u64(12)));
        final ByteBuffer anonymous = message(NfTables.NFT_MSG_NEWSET,
            attr(NfTables.NFTA_SET_TABLE, string("egressd")), attr(NfTables.NFTA_SET_NAME, string("__set0")),
            attr(NfTables.NFTA_SET_FLAGS, u32(NfTables.NFT_SET_ANONYMOUS)));
        final List<NftNetlink.SetInfo> out = new java.util.ArrayList<>();
        NftNetlink.parseSet(map, 0, map.limit(), "egressd", out);
        NftNetlink.parseSet(anonymous, 0, anonymous.limit(), "egressd", out);
        assertThat(out).containsExactly(new NftNetlink.SetInfo("snat6", 12, NfTables.NFT_SET_MAP, 16, 8 << 6 | 13, 40));
        assertThat(out.get(0).map()).isTrue();
    }

    @Test
    void objectsAreNamedAsNftDeletesThemAndKindsNftCannotNameAreLeftOut()
    {
        final ByteBuffer quota = message(NfTables.NFT_MSG_NEWOBJ, attr(NfTables.NFTA_OBJ_TABLE, string("egressd")),
            attr(NfTables.NFTA_OBJ_NAME, string("q")), attr(NfTables.NFTA_OBJ_TYPE, u32(NfTables.NFT_OBJECT_QUOTA)),
            attr(NfTables.NFTA_OBJ_HANDLE, u64(4)));
        final ByteBuffer tunnel = message(NfTables.NFT_MSG_NEWOBJ, attr(NfTables.NFTA_OBJ_TABLE, string("egressd")),
            attr(NfTables.NFTA_OBJ_NAME, string("t")), attr(NfTables.NFTA_OBJ_TYPE, u32(NfTables.NFT_OBJECT_TUNNEL)));
        final ByteBuffer flowtable = message(NfTables.NFT_MSG_NEWFLOWTABLE,
            attr(NfTables.NFTA_FLOWTABLE_TABLE, string("egressd")), attr(NfTables.NFTA_FLOWTABLE_NAME, string("f")),
            attr(NfTables.NFTA_FLOWTABLE_HANDLE, u64(9)));
        final List<NftNetlink.ObjectInfo> out = new java.util.ArrayList<>();
        NftNetlink.parseObject(quota, 0, quota.limit(), "egressd", out);
        NftNetlink.parseObject(tunnel, 0, tunnel.limit(), "egressd", out);
        NftNetlink.parseFlowtable(flowtable, 0, flowtable.limit(), "egressd", out);
        assertThat(out).containsExactly(new NftNetlink.ObjectInfo("quota", "q", 4),
            new NftNetlink.ObjectInfo("flowtable", "f", 9));
        assertThat(NftNetlink.objectKind(NfTables.NFT_OBJECT_CT_EXPECT)).isEqualTo("ct expectation");
    }
}
