package dev.egressd.agent.kernel.rtnetlink;

import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.netlink.NetlinkWriter;
import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HexFormat;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * RTM_NEWADDR / RTM_DELADDR requests and RTM_NEWADDR replies against bytes laid out by hand from
 * {@code <linux/netlink.h>} (struct nlmsghdr, struct nlattr) and {@code <linux/if_addr.h>}
 * (struct ifaddrmsg, struct ifa_cacheinfo). Host-order fields are written little-endian here.
 */
class RtnetlinkMessagesTest
{
    private static final HexFormat HEX = HexFormat.of();

    @BeforeAll
    static void littleEndianHost()
    {
        assumeTrue(ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN, "expected bytes are written for a little-endian host");
    }

    @Test
    void newAddressIpv6IsA128WithNodadNoPrefixRoutePreferredZeroAndOurProto()
    {
        final NetlinkWriter w = writer().begin(NetlinkConstants.RTM_NEWADDR,
            NetlinkConstants.NLM_F_REQUEST | NetlinkConstants.NLM_F_ACK | RtnetlinkAddresses.ADD_FLAGS, 7);
        RtnetlinkAddresses.newAddress(w, 3, Ipv6Address.parse("2001:db8:10::10"));
        final String expected = ""
            + "64000000" + "1400" + "0506" + "07000000" + "00000000"   // nlmsghdr: len 100, RTM_NEWADDR, REQ|ACK|EXCL|CREATE, seq 7, pid 0
            + "0a" + "80" + "02" + "00" + "03000000"                    // ifaddrmsg: AF_INET6, /128, NODAD, universe, ifindex 3
            + "1400" + "0200" + "20010db8001000000000000000000010"      // IFA_LOCAL
            + "1400" + "0100" + "20010db8001000000000000000000010"      // IFA_ADDRESS
            + "0800" + "0800" + "02020000"                              // IFA_FLAGS = NODAD|NOPREFIXROUTE
            + "1400" + "0600" + "00000000" + "ffffffff" + "00000000" + "00000000" // IFA_CACHEINFO preferred 0, valid forever
            + "0500" + "0b00" + "e5000000";                             // IFA_PROTO = IFAPROT_EGRESSD (u8, padded to 4)
        assertThat(bytes(w)).isEqualTo(expected);
    }

    @Test
    void newAddressIpv4IsA32WithNoPrefixRouteAndOurProto()
    {
        final NetlinkWriter w = writer().begin(NetlinkConstants.RTM_NEWADDR,
            NetlinkConstants.NLM_F_REQUEST | NetlinkConstants.NLM_F_ACK | RtnetlinkAddresses.ADD_FLAGS, 1);
        RtnetlinkAddresses.newAddress(w, 2, Ipv4Address.parse("203.0.113.10"));
        final String expected = ""
            + "38000000" + "1400" + "0506" + "01000000" + "00000000"   // len 56, REQ|ACK|EXCL|CREATE
            + "02" + "20" + "00" + "00" + "02000000"                    // AF_INET, /32, ifa_flags low byte 0, ifindex 2
            + "0800" + "0200" + "cb00710a"                              // IFA_LOCAL 203.0.113.10
            + "0800" + "0100" + "cb00710a"                              // IFA_ADDRESS
            + "0800" + "0800" + "00020000"                              // IFA_FLAGS = NOPREFIXROUTE
            + "0500" + "0b00" + "e5000000";                             // IFA_PROTO = IFAPROT_EGRESSD
        assertThat(bytes(w)).isEqualTo(expected);
    }

    @Test
    void deleteAddressIpv4NamesBothLocalAndAddressSoThePrefixLengthMustMatch()
    {
        final NetlinkWriter w = writer().begin(NetlinkConstants.RTM_DELADDR,
            NetlinkConstants.NLM_F_REQUEST | NetlinkConstants.NLM_F_ACK, 2);
        RtnetlinkAddresses.deleteAddress(w, 2, Ipv4Address.parse("203.0.113.10"));
        assertThat(bytes(w)).isEqualTo("28000000" + "1500" + "0500" + "02000000" + "00000000"
            + "02200000" + "02000000" + "08000200cb00710a" + "08000100cb00710a");
    }

    @Test
    void deleteAddressIpv6()
    {
        final NetlinkWriter w = writer().begin(NetlinkConstants.RTM_DELADDR,
            NetlinkConstants.NLM_F_REQUEST | NetlinkConstants.NLM_F_ACK, 2);
        RtnetlinkAddresses.deleteAddress(w, 4, Ipv6Address.parse("2001:db8:10::10"));
        assertThat(bytes(w)).isEqualTo("2c000000" + "1500" + "0500" + "02000000" + "00000000"
            + "0a800000" + "04000000" + "14000100" + "20010db8001000000000000000000010");
    }

    @Test
    void parsesAnIpv6ReplyWithFlagsAttributeAndCacheinfo()
    {
        // What the kernel sends for "2001:db8:10::10/128 nodad preferred_lft 0" on ifindex 3.
        final ByteBuffer b = buffer(""
            + "58000000" + "1400" + "0200" + "09000000" + "00000000"   // len 88, RTM_NEWADDR, NLM_F_MULTI
            + "0a" + "80" + "a2" + "00" + "03000000"                    // ifa_flags u8 = PERMANENT|DEPRECATED|NODAD
            + "1400" + "0100" + "20010db8001000000000000000000010"      // IFA_ADDRESS
            + "1400" + "0600" + "00000000" + "ffffffff" + "10270000" + "10270000" // IFA_CACHEINFO
            + "0800" + "0800" + "a2020000"                              // IFA_FLAGS adds NOPREFIXROUTE
            + "0500" + "0b00" + "e5000000"                              // IFA_PROTO = IFAPROT_EGRESSD
            + "0800" + "0900" + "00000000");                            // IFA_RT_PRIORITY, ignored
        final InterfaceAddress a = RtnetlinkAddresses.parse(b, 0, b.getInt(0), 3);
        assertThat(a).isNotNull();
        assertThat(a.ipv6()).isEqualTo(Ipv6Address.parse("2001:db8:10::10"));
        assertThat(a.ipv4()).isNull();
        assertThat(a.prefixLength()).isEqualTo(128);
        assertThat(a.isHostPrefix()).isTrue();
        assertThat(a.flags()).isEqualTo(0x2a2);
        assertThat(a.hasFlag(NetlinkConstants.IFA_F_NODAD)).isTrue();
        assertThat(a.hasFlag(NetlinkConstants.IFA_F_NOPREFIXROUTE)).isTrue();
        assertThat(a.preferredLifetime()).isZero();
        assertThat(a.validLifetime()).isEqualTo(InterfaceAddress.FOREVER);
        assertThat(a.proto()).isEqualTo(NetlinkConstants.IFAPROT_EGRESSD);
        assertThat(a.isOwned()).isTrue();
    }

    @Test
    void parsePrefersIfaLocalForIpv4AndFiltersOtherInterfaces()
    {
        // A point-to-point style entry: IFA_ADDRESS is the peer, IFA_LOCAL is ours.
        final ByteBuffer b = buffer(""
            + "30000000" + "1400" + "0200" + "09000000" + "00000000"
            + "02" + "18" + "80" + "00" + "05000000"                    // AF_INET /24 PERMANENT, ifindex 5
            + "0800" + "0100" + "c0000202"                              // IFA_ADDRESS 192.0.2.2
            + "0800" + "0200" + "c0000201"                              // IFA_LOCAL 192.0.2.1
            + "0800" + "0300" + "75700000");                            // IFA_LABEL "up\0"
        final InterfaceAddress a = RtnetlinkAddresses.parse(b, 0, b.getInt(0), 5);
        assertThat(a.ipv4()).isEqualTo(Ipv4Address.parse("192.0.2.1"));
        assertThat(a.prefixLength()).isEqualTo(24);
        assertThat(a.isHostPrefix()).isFalse();
        assertThat(a.flags()).isEqualTo(0x80);
        assertThat(a.validLifetime()).isEqualTo(InterfaceAddress.FOREVER);
        assertThat(a.proto()).as("no IFA_PROTO: unspecified").isEqualTo(NetlinkConstants.IFAPROT_UNSPEC);
        assertThat(a.isOwned()).isFalse();
        assertThat(RtnetlinkAddresses.parse(b, 0, b.getInt(0), 6)).isNull();
    }

    @Test
    void aHostPrefixWithAnotherProtoOrOurProtoOnAWiderPrefixIsNotOwned()
    {
        // 203.0.113.10/32 marked by the kernel's RA protocol (2): someone else's.
        final ByteBuffer other = buffer(""
            + "28000000" + "1400" + "0200" + "09000000" + "00000000"
            + "02" + "20" + "80" + "00" + "05000000"
            + "0800" + "0200" + "cb00710a"
            + "0500" + "0b00" + "02000000");
        final InterfaceAddress a = RtnetlinkAddresses.parse(other, 0, other.getInt(0), 5);
        assertThat(a.proto()).isEqualTo(NetlinkConstants.IFAPROT_KERNEL_RA);
        assertThat(a.isOwned()).isFalse();
        // our mark on a /24: not the shape egressd adds, so never egressd's to remove.
        final ByteBuffer wide = buffer(""
            + "28000000" + "1400" + "0200" + "09000000" + "00000000"
            + "02" + "18" + "80" + "00" + "05000000"
            + "0800" + "0200" + "cb00710a"
            + "0500" + "0b00" + "e5000000");
        final InterfaceAddress w = RtnetlinkAddresses.parse(wide, 0, wide.getInt(0), 5);
        assertThat(w.proto()).isEqualTo(NetlinkConstants.IFAPROT_EGRESSD);
        assertThat(w.isOwned()).isFalse();
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
