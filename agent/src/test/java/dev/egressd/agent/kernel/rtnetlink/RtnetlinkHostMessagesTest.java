package dev.egressd.agent.kernel.rtnetlink;

import dev.egressd.agent.natives.LibC;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HexFormat;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/** {@link RtnetlinkHost}'s route parsing on RTM_NEWROUTE messages as the kernel dumps them (x86, little-endian). */
class RtnetlinkHostMessagesTest
{
    private static final HexFormat HEX = HexFormat.of();
    private static final Map<Integer, String> NAMES = Map.of(3, "uplink");

    @Test
    void constantsAreTheHeadersValues()
    {
        // <linux/rtnetlink.h>: enum rtattr_type_t (RTA_PREFSRC is the 8th), RTPROT_KERNEL.
        assertThat(RtnetlinkHost.RTA_PREFSRC).isEqualTo(7);
        assertThat(RtnetlinkHost.RTPROT_KERNEL).isEqualTo(2);
        // RTMGRP_* (the legacy group bitmask of bind(2)): LINK 1, IPV4_IFADDR 0x10, IPV4_ROUTE 0x40,
        // IPV6_IFADDR 0x100, IPV6_ROUTE 0x400.
        assertThat(RtnetlinkHost.CHANGE_GROUPS).isEqualTo(0x1 | 0x10 | 0x40 | 0x100 | 0x400);
    }

    @Test
    void aUnicastRouteKeepsItsGatewaySourceDeviceAndProtocol()
    {
        // "default via 192.0.2.254 dev uplink proto boot src 203.0.113.55"
        final ByteBuffer b = buffer(""
            + "3c000000" + "1800" + "0200" + "00000000" + "00000000"
            + "02000000" + "fe030001" + "00000000"                      // AF_INET /0, main, boot, universe, unicast
            + "08000f00fe000000"                                        // RTA_TABLE 254
            + "08000500c00002fe"                                        // RTA_GATEWAY 192.0.2.254
            + "0800040003000000"                                        // RTA_OIF 3
            + "08000700cb007137");                                      // RTA_PREFSRC 203.0.113.55
        assertThat(RtnetlinkHost.parseRoute(b, 0, b.getInt(0), LibC.AF_INET, NAMES)).isEqualTo(
            new RtnetlinkHost.HostRoute("uplink", 254, 3, "0.0.0.0", 0, "192.0.2.254", "203.0.113.55"));
        assertThat(RtnetlinkHost.parseRoute(b, 0, b.getInt(0), LibC.AF_INET6, NAMES)).as("another family").isNull();
    }

    @Test
    void theKernelsPrefixRouteOfAnIpv6AddressIsAHostRouteOfProtocolKernel()
    {
        // "2001:db8:10::50 dev uplink proto kernel metric 256": what `ip -6 addr add 2001:db8:10::50/128` brings
        final ByteBuffer b = buffer(""
            + "40000000" + "1800" + "0200" + "00000000" + "00000000"
            + "0a800000" + "fe020001" + "00000000"
            + "08000f00fe000000"
            + "14000100" + "20010db8001000000000000000000050"
            + "0800040003000000");
        final RtnetlinkHost.HostRoute route = RtnetlinkHost.parseRoute(b, 0, b.getInt(0), LibC.AF_INET6, NAMES);
        assertThat(route).isEqualTo(new RtnetlinkHost.HostRoute("uplink", 254, RtnetlinkHost.RTPROT_KERNEL,
            "2001:db8:10::50", 128, null, null));
        assertThat(route.isHostRoute()).isTrue();
    }

    @Test
    void theLocalTableAndRoutesThatAreNotUnicastAreLeftOut()
    {
        // "local 203.0.113.50 dev uplink table local proto kernel scope host src 203.0.113.50"
        final ByteBuffer local = buffer(""
            + "34000000" + "1800" + "0200" + "00000000" + "00000000"
            + "02200000" + "ff02fe02" + "00000000"                      // RTN_LOCAL in table 255
            + "08000f00ff000000"
            + "08000100cb007132"
            + "08000700cb007132");
        assertThat(RtnetlinkHost.parseRoute(local, 0, local.getInt(0), LibC.AF_INET, NAMES)).isNull();
        // "unreachable 198.51.100.0/24" (RTN_UNREACHABLE 7) in main
        final ByteBuffer unreachable = buffer(""
            + "2c000000" + "1800" + "0200" + "00000000" + "00000000"
            + "02180000" + "fe030007" + "00000000"
            + "08000f00fe000000"
            + "08000100c6336400");
        assertThat(RtnetlinkHost.parseRoute(unreachable, 0, unreachable.getInt(0), LibC.AF_INET, NAMES)).isNull();
    }

    private static ByteBuffer buffer(final String hex)
    {
        return ByteBuffer.wrap(HEX.parseHex(hex)).order(ByteOrder.nativeOrder());
    }
}
