package dev.egressd.agent.kernel.rtnetlink;

import static dev.egressd.agent.kernel.rtnetlink.PolicyRouting.AF_INET;
import static dev.egressd.agent.kernel.rtnetlink.PolicyRouting.AF_INET6;
import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Route;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Rule;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.netlink.NetlinkWriter;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HexFormat;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * RTM_NEWRULE / RTM_DELRULE / RTM_NEWROUTE / RTM_DELROUTE requests and dump replies against bytes laid out by hand
 * from {@code <linux/netlink.h>}, {@code <linux/fib_rules.h>} (struct fib_rule_hdr) and {@code <linux/rtnetlink.h>}
 * (struct rtmsg). Host-order fields are written little-endian here; addresses are network order.
 */
class PolicyRoutingMessagesTest
{
    private static final HexFormat HEX = HexFormat.of();
    private static final int REQUEST_ACK = NetlinkConstants.NLM_F_REQUEST | NetlinkConstants.NLM_F_ACK;

    @BeforeAll
    static void littleEndianHost()
    {
        assumeTrue(ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN, "expected bytes are written for a little-endian host");
    }

    @Test
    void newRuleForATableAbove255PutsItInFraTableOnlyWithFullMaskAndOurProtocol()
    {
        final NetlinkWriter w = writer().begin(NetlinkConstants.RTM_NEWRULE,
            REQUEST_ACK | RtnetlinkPolicyRouting.RULE_ADD_FLAGS, 7);
        RtnetlinkPolicyRouting.newRule(w, new Rule(AF_INET, 1, 1001, 1001));
        assertThat(bytes(w)).isEqualTo(""
            + "44000000" + "2000" + "0506" + "07000000" + "00000000"   // len 68, RTM_NEWRULE, REQ|ACK|EXCL|CREATE, seq 7
            + "02" + "00" + "00" + "00" + "00" + "0000" + "01" + "00000000" // AF_INET, table u8 UNSPEC, FR_ACT_TO_TBL
            + "0800" + "0600" + "e9030000"                              // FRA_PRIORITY 1001
            + "0800" + "0a00" + "01000000"                              // FRA_FWMARK 1
            + "0800" + "1000" + "ffffffff"                              // FRA_FWMASK full
            + "0800" + "0f00" + "e9030000"                              // FRA_TABLE 1001
            + "0500" + "1500" + "e5000000");                            // FRA_PROTOCOL 0xE5 (u8, padded)
    }

    @Test
    void newRuleForASmallTablePutsItInTheHeaderToo()
    {
        final NetlinkWriter w = writer().begin(NetlinkConstants.RTM_NEWRULE,
            REQUEST_ACK | RtnetlinkPolicyRouting.RULE_ADD_FLAGS, 1);
        RtnetlinkPolicyRouting.newRule(w, new Rule(AF_INET6, 0x2A, 100, 2000));
        assertThat(bytes(w)).isEqualTo(""
            + "44000000" + "2000" + "0506" + "01000000" + "00000000"
            + "0a" + "00" + "00" + "00" + "64" + "0000" + "01" + "00000000" // AF_INET6, table 100
            + "0800" + "0600" + "d0070000"
            + "0800" + "0a00" + "2a000000"
            + "0800" + "1000" + "ffffffff"
            + "0800" + "0f00" + "64000000"
            + "0500" + "1500" + "e5000000");
    }

    @Test
    void deleteRuleNamesTheSelectorsButNotTheProtocol()
    {
        final NetlinkWriter w = writer().begin(NetlinkConstants.RTM_DELRULE, REQUEST_ACK, 2);
        RtnetlinkPolicyRouting.deleteRule(w, new Rule(AF_INET, 1, 1001, 1001));
        assertThat(bytes(w)).isEqualTo(""
            + "3c000000" + "2100" + "0500" + "02000000" + "00000000"   // len 60, RTM_DELRULE, REQ|ACK
            + "020000000000000100000000"
            + "08000600e9030000" + "08000a0001000000"
            + "08001000ffffffff" + "08000f00e9030000");
    }

    @Test
    void newRouteIpv4IsAReplaceWithRtaTableDstGatewayAndOurProtocol()
    {
        final NetlinkWriter w = writer().begin(NetlinkConstants.RTM_NEWROUTE,
            REQUEST_ACK | RtnetlinkPolicyRouting.ROUTE_REPLACE_FLAGS, 3);
        RtnetlinkPolicyRouting.newRoute(w, new Route(AF_INET, 1001, ip("203.0.113.5"), 32, ip("192.0.2.1")));
        assertThat(bytes(w)).isEqualTo(""
            + "34000000" + "1800" + "0505" + "03000000" + "00000000"   // len 52, RTM_NEWROUTE, REQ|ACK|REPLACE|CREATE
            + "02" + "20" + "00" + "00" + "00" + "e5" + "00" + "01" + "00000000" // /32, table UNSPEC, proto 0xE5, universe, unicast
            + "0800" + "0f00" + "e9030000"                              // RTA_TABLE 1001
            + "0800" + "0100" + "cb007105"                              // RTA_DST 203.0.113.5
            + "0800" + "0500" + "c0000201");                            // RTA_GATEWAY 192.0.2.1
    }

    @Test
    void newRouteIpv6WithAGlobalGateway()
    {
        final NetlinkWriter w = writer().begin(NetlinkConstants.RTM_NEWROUTE,
            REQUEST_ACK | RtnetlinkPolicyRouting.ROUTE_REPLACE_FLAGS, 4);
        RtnetlinkPolicyRouting.newRoute(w, new Route(AF_INET6, 300, ip("2001:db8:5::5"), 128, ip("2001:db8:1:1::1")));
        assertThat(bytes(w)).isEqualTo(""
            + "4c000000" + "1800" + "0505" + "04000000" + "00000000"   // len 76
            + "0a" + "80" + "00" + "00" + "00" + "e5" + "00" + "01" + "00000000"
            + "0800" + "0f00" + "2c010000"                              // RTA_TABLE 300
            + "1400" + "0100" + "20010db8000500000000000000000005"      // RTA_DST
            + "1400" + "0500" + "20010db8000100010000000000000001");    // RTA_GATEWAY
    }

    @Test
    void deleteRouteMatchesAnyProtocolScopeAndTypeButTheGivenGateway()
    {
        final NetlinkWriter w = writer().begin(NetlinkConstants.RTM_DELROUTE, REQUEST_ACK, 5);
        RtnetlinkPolicyRouting.deleteRoute(w, new Route(AF_INET, 100, ip("203.0.113.5"), 32, ip("192.0.2.1")));
        assertThat(bytes(w)).isEqualTo(""
            + "34000000" + "1900" + "0500" + "05000000" + "00000000"   // RTM_DELROUTE, REQ|ACK
            + "02" + "20" + "00" + "00" + "64" + "00" + "ff" + "00" + "00000000" // table 100 in the header too, RT_SCOPE_NOWHERE
            + "08000f0064000000" + "08000100cb007105" + "08000500c0000201");
    }

    @Test
    void parsesARuleReplyTakingTheTableFromFraTable()
    {
        // What the kernel sends for "1001: from all fwmark 0x1 lookup 1001 proto 229": header table RT_TABLE_COMPAT.
        final ByteBuffer b = buffer(""
            + "54000000" + "2000" + "0200" + "09000000" + "00000000"   // len 84, RTM_NEWRULE, NLM_F_MULTI
            + "02000000" + "fc000001" + "00000000"                      // AF_INET, table 252, FR_ACT_TO_TBL
            + "08000f00e9030000"                                        // FRA_TABLE 1001
            + "08000e00ffffffff"                                        // FRA_SUPPRESS_PREFIXLEN
            + "05001500e5000000"                                        // FRA_PROTOCOL
            + "08000600e9030000"                                        // FRA_PRIORITY
            + "08000a0001000000"                                        // FRA_FWMARK
            + "08001000ffffffff"                                        // FRA_FWMASK
            + "0500" + "1600" + "00000000");                            // FRA_IP_PROTO
        assertThat(RtnetlinkPolicyRouting.parseRule(b, 0, b.getInt(0), AF_INET)).isEqualTo(new Rule(AF_INET, 1, 1001, 1001));
        assertThat(RtnetlinkPolicyRouting.parseRule(b, 0, b.getInt(0), AF_INET6)).as("other family").isNull();
    }

    @Test
    void onlyARuleWithTheWholeMarkAndNoOtherSelectorSelectsOnlyTheMark()
    {
        final String header = "44000000" + "2000" + "0200" + "09000000" + "00000000";   // len 68, RTM_NEWRULE
        final String attributes = "08000f00e9030000" + "08000600e9030000" + "08000a0001000000"; // table, pref, mark
        // fwmark 0x1 lookup 1001: full mask, no selector, then FRA_PROTOCOL.
        final ByteBuffer ok = buffer(header + "02000000" + "00000001" + "00000000" + attributes + "08001000ffffffff"
            + "05001500e5000000");
        assertThat(RtnetlinkPolicyRouting.selectsOnlyTheMark(ok, 0, ok.getInt(0))).isTrue();
        // FRA_IIFNAME "r0" (type 3)
        final ByteBuffer iif = buffer(header + "02000000" + "00000001" + "00000000" + attributes + "08001000ffffffff"
            + "07000300" + "72300000");
        assertThat(RtnetlinkPolicyRouting.selectsOnlyTheMark(iif, 0, iif.getInt(0))).isFalse();
        // mask 0xff
        final ByteBuffer mask = buffer(header + "02000000" + "00000001" + "00000000" + attributes + "08001000ff000000"
            + "08000600e9030000");
        assertThat(RtnetlinkPolicyRouting.selectsOnlyTheMark(mask, 0, mask.getInt(0))).isFalse();
        // from 10.0.0.0/8: src_len 8
        final ByteBuffer src = buffer(header + "02000800" + "00000001" + "00000000" + attributes + "08001000ffffffff"
            + "08000600e9030000");
        assertThat(RtnetlinkPolicyRouting.selectsOnlyTheMark(src, 0, src.getInt(0))).isFalse();
        // not fwmark 1: FIB_RULE_INVERT in flags
        final ByteBuffer inverted = buffer(header + "02000000" + "00000001" + "02000000" + attributes + "08001000ffffffff"
            + "08000600e9030000");
        assertThat(RtnetlinkPolicyRouting.selectsOnlyTheMark(inverted, 0, inverted.getInt(0))).isFalse();
    }

    @Test
    void parsesTheLocalRuleAndSkipsRulesThatLookUpNoTable()
    {
        // "0: from all lookup local": table in the header only, no mark, no priority attribute (pref 0).
        final ByteBuffer local = buffer(""
            + "24000000" + "2000" + "0200" + "09000000" + "00000000"
            + "0a000000" + "ff000001" + "00000000"
            + "08000f00ff000000");
        assertThat(RtnetlinkPolicyRouting.parseRule(local, 0, local.getInt(0), AF_INET6))
            .isEqualTo(new Rule(AF_INET6, 0, 255, 0));
        // "1000: from all fwmark 0x5 blackhole": FR_ACT_BLACKHOLE (6).
        final ByteBuffer blackhole = buffer(""
            + "2c000000" + "2000" + "0200" + "09000000" + "00000000"
            + "02000000" + "00000006" + "00000000"
            + "08000600e8030000" + "08000a0005000000");
        assertThat(RtnetlinkPolicyRouting.parseRule(blackhole, 0, blackhole.getInt(0), AF_INET)).isNull();
    }

    @Test
    void parsesRouteReplies()
    {
        // "203.0.113.5 via 192.0.2.1 dev r0 table 1001 proto 229"
        final ByteBuffer v4 = buffer(""
            + "3c000000" + "1800" + "0200" + "09000000" + "00000000"
            + "02200000" + "fce50001" + "00000000"                      // /32, table 252 (compat), proto 0xE5
            + "08000f00e9030000" + "08000100cb007105" + "08000500c0000201"
            + "0800040003000000");                                      // RTA_OIF 3
        assertThat(RtnetlinkPolicyRouting.parseRoute(v4, 0, v4.getInt(0), AF_INET))
            .isEqualTo(new Route(AF_INET, 1001, ip("203.0.113.5"), 32, ip("192.0.2.1")));
        assertThat(RtnetlinkPolicyRouting.parseRoute(v4, 0, v4.getInt(0), AF_INET6)).isNull();

        // "2001:db8:5::5 via 2001:db8:1:1::1 metric 1024 pref medium table 300"
        final ByteBuffer v6 = buffer(""
            + "5c000000" + "1800" + "0200" + "09000000" + "00000000"
            + "0a800000" + "fce50001" + "00000000"
            + "08000f002c010000"
            + "14000100" + "20010db8000500000000000000000005"
            + "0800060000040000"                                        // RTA_PRIORITY 1024
            + "14000500" + "20010db8000100010000000000000001"
            + "0500140000000000");                                      // RTA_PREF
        assertThat(RtnetlinkPolicyRouting.parseRoute(v6, 0, v6.getInt(0), AF_INET6))
            .isEqualTo(new Route(AF_INET6, 300, ip("2001:db8:5::5"), 128, ip("2001:db8:1:1::1")));

        // "default dev r0 table 100": no RTA_DST, no gateway; the header's table when there is no RTA_TABLE.
        final ByteBuffer device = buffer(""
            + "24000000" + "1800" + "0200" + "09000000" + "00000000"
            + "02000000" + "6403fd01" + "00000000"                      // table 100, proto boot, scope link
            + "0800040003000000");
        assertThat(RtnetlinkPolicyRouting.parseRoute(device, 0, device.getInt(0), AF_INET))
            .isEqualTo(new Route(AF_INET, 100, ip("0.0.0.0"), 0, null));
    }

    @Test
    void describeReadsLikeIp()
    {
        assertThat(RtnetlinkPolicyRouting.describe(new Rule(AF_INET6, 0x2A, 1042, 1042)))
            .isEqualTo("-6 fwmark 0x2a lookup 1042 pref 1042");
        assertThat(RtnetlinkPolicyRouting.describe(new Route(AF_INET6, 1001, ip("2001:db8:5::5"), 128, ip("2001:db8:1:1::1"))))
            .isEqualTo("2001:db8:5::5/128 via 2001:db8:1:1::1 table 1001");
        assertThat(RtnetlinkPolicyRouting.describe(new Route(AF_INET, 1001, ip("203.0.113.5"), 32, ip("192.0.2.1"))))
            .isEqualTo("203.0.113.5/32 via 192.0.2.1 table 1001");
    }

    private static InetAddress ip(final String literal)
    {
        try
        {
            return InetAddress.getByName(literal);
        }
        catch (final UnknownHostException e)
        {
            throw new IllegalArgumentException(literal, e);
        }
    }

    private static NetlinkWriter writer()
    {
        return new NetlinkWriter(ByteBuffer.allocate(512).order(ByteOrder.nativeOrder()));
    }

    private static String bytes(final NetlinkWriter w)
    {
        final int length = w.finish();
        final byte[] out = new byte[length];
        w.buffer().get(0, out);
        return HEX.formatHex(out);
    }

    private static ByteBuffer buffer(final String hex)
    {
        return ByteBuffer.wrap(HEX.parseHex(hex)).order(ByteOrder.nativeOrder());
    }
}
