package dev.egressd.agent.kernel.rtnetlink;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.natives.LibC;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;

/** The one reader of RTM_NEWROUTE messages both route parsers use (x86, little-endian messages). */
class RouteMessageTest
{
    private static final HexFormat HEX = HexFormat.of();

    private static ByteBuffer buffer(final String hex)
    {
        return ByteBuffer.wrap(HEX.parseHex(hex)).order(ByteOrder.nativeOrder());
    }

    @Test
    void theHeaderAndEveryAttributeAreRead()
    {
        // "198.51.100.0/24 via 192.0.2.254 dev if3 table 70001 proto boot src 203.0.113.55"
        final ByteBuffer b = buffer(""
            + "44000000" + "1800" + "0200" + "00000000" + "00000000"
            + "02180000" + "fc030001" + "00000000"                      // AF_INET /24, table 252 (u8), boot, unicast
            + "08000f0071110100"                                        // RTA_TABLE 70001
            + "08000100c6336400"                                        // RTA_DST 198.51.100.0
            + "08000500c00002fe"                                        // RTA_GATEWAY 192.0.2.254
            + "0800040003000000"                                        // RTA_OIF 3
            + "08000700cb007137");                                      // RTA_PREFSRC 203.0.113.55
        final RouteMessage m = RouteMessage.read(b, 0, b.getInt(0));
        assertThat(m).isNotNull();
        assertThat(m.family()).isEqualTo(LibC.AF_INET);
        assertThat(m.addressSize()).isEqualTo(4);
        assertThat(m.prefixLength()).isEqualTo(24);
        assertThat(m.table()).as("RTA_TABLE over the header's u8").isEqualTo(70001);
        assertThat(m.protocol()).isEqualTo(3);
        assertThat(m.type()).isEqualTo(1);
        assertThat(m.oif()).isEqualTo(3);
        assertThat(b.getInt(m.destination())).isEqualTo(Integer.reverseBytes(0xc6336400));
        assertThat(b.getInt(m.gateway())).isEqualTo(Integer.reverseBytes(0xc00002fe));
        assertThat(b.getInt(m.prefsrc())).isEqualTo(Integer.reverseBytes(0xcb007137));
    }

    @Test
    void absentAttributesAreMinusOneAndShortOnesAreIgnored()
    {
        // a default route of table 254 (header only), with an RTA_GATEWAY too short for an IPv6 address
        final ByteBuffer b = buffer(""
            + "24000000" + "1800" + "0200" + "00000000" + "00000000"
            + "0a000000" + "fe030001" + "00000000"
            + "0800050020010db8");
        final RouteMessage m = RouteMessage.read(b, 0, b.getInt(0));
        assertThat(m.table()).isEqualTo(254);
        assertThat(m.addressSize()).isEqualTo(16);
        assertThat(m.destination()).isEqualTo(-1);
        assertThat(m.gateway()).isEqualTo(-1);
        assertThat(m.prefsrc()).isEqualTo(-1);
        assertThat(m.oif()).isEqualTo(-1);
    }

    @Test
    void anotherMessageTypeOrATruncatedOneIsNotARoute()
    {
        final ByteBuffer link = buffer("1c000000" + "1000" + "0200" + "00000000" + "00000000" + "00".repeat(12));
        assertThat(RouteMessage.read(link, 0, link.getInt(0))).as("RTM_NEWLINK").isNull();
        final ByteBuffer shortRoute = buffer("18000000" + "1800" + "0200" + "00000000" + "00000000" + "02000000");
        assertThat(RouteMessage.read(shortRoute, 0, 20)).as("shorter than struct rtmsg").isNull();
    }
}
