package dev.egressd.agent.netlink;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HexFormat;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The netlink codec (attributes, extended acks, the writer) against bytes laid out by hand from {@code <linux/netlink.h>}. */
class NetlinkCodecTest
{
    private static final HexFormat HEX = HexFormat.of();

    @BeforeAll
    static void littleEndianHost()
    {
        assumeTrue(ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN, "expected bytes are written for a little-endian host");
    }

    @Test
    void attributeWalkStopsAtATruncatedAttribute()
    {
        // Second attribute claims 32 bytes but only 8 remain: the walk must end, not overrun.
        final ByteBuffer b = buffer("08000100cb00710a" + "20000200cb00710a");
        final int end = b.limit();
        final int first = NetlinkMessages.firstAttr(b, 0, end);
        assertThat(first).isZero();
        assertThat(NetlinkMessages.attrType(b, first)).isEqualTo(1);
        assertThat(NetlinkMessages.u32BE(b, NetlinkMessages.payload(first))).isEqualTo(0xcb00710a);
        assertThat(NetlinkMessages.nextAttr(b, first, end)).isEqualTo(-1);
    }

    @Test
    void attributeTypeDropsTheNestedAndByteOrderBits()
    {
        final ByteBuffer b = buffer("0400" + "01c0");
        assertThat(NetlinkMessages.attrType(b, 0)).isEqualTo(1);
    }

    @Test
    void extendedAckTextIsReadFromACappedError()
    {
        // NLMSG_ERROR, flags CAPPED|ACK_TLVS; nlmsgerr { -17, the request's header only }; NLMSGERR_ATTR_MSG.
        // Text: 30 chars + NUL = 31, attribute 35 bytes (0x23) padded to 36; message 16+4+16+36 = 72 (0x48).
        final String text = "ipv4: Address already assigned";
        final ByteBuffer b = buffer(""
            + "48000000" + "0200" + "0003" + "07000000" + "99000000"
            + "efffffff"
            + "5c000000" + "1400" + "0505" + "07000000" + "00000000"
            + "2300" + "0100" + HEX.formatHex(text.getBytes(java.nio.charset.StandardCharsets.US_ASCII)) + "00"
            + "00");
        assertThat(NetlinkSocket.extackMessage(b, 0, 72)).isEqualTo(text);
    }

    @Test
    void extendedAckTextFollowsTheEchoedRequestWhenNotCapped()
    {
        // Flags ACK_TLVS only: the whole 20-byte request (header + 4 payload bytes) is echoed first.
        final ByteBuffer b = buffer(""
            + "34000000" + "0200" + "0002" + "07000000" + "99000000"
            + "feffffff"                                                    // -2 ENOENT
            + "14000000" + "1500" + "0500" + "07000000" + "00000000" + "0a800000"
            + "0800" + "0100" + "6e6f7000");                               // "nop"
        assertThat(NetlinkSocket.extackMessage(b, 0, 0x34)).isEqualTo("nop");
    }

    @Test
    void writerRejectsHeapBuffersInTheWrongByteOrder()
    {
        org.assertj.core.api.Assertions.assertThatThrownBy(
                () -> new NetlinkWriter(ByteBuffer.allocate(16).order(ByteOrder.BIG_ENDIAN)))
            .isInstanceOf(IllegalArgumentException.class);
    }

    private static ByteBuffer buffer(final String hex)
    {
        return ByteBuffer.wrap(HEX.parseHex(hex)).order(ByteOrder.nativeOrder());
    }

    @Test
    void appendedMessagesOfABatchFollowEachOtherWithTheirOwnLengths()
    {
        final ByteBuffer b = ByteBuffer.allocate(64).order(ByteOrder.nativeOrder());
        final NetlinkWriter w = new NetlinkWriter(b).clear();
        w.append(0x10, 0x01, 7).u8(0).u8(0).u16BE(10);
        assertThat(w.finish()).isEqualTo(20);
        w.append(0x0a0c, 0x401, 8).attrU8(1, 5);
        assertThat(w.finish()).isEqualTo(24);
        assertThat(HEX.formatHex(b.array(), 0, b.limit())).isEqualTo(""
            + "14000000" + "1000" + "0100" + "07000000" + "00000000" + "0000000a"
            + "18000000" + "0c0a" + "0104" + "08000000" + "00000000" + "05000100" + "05000000");
    }

    @Test
    void bytesAttributesArePaddedToFour()
    {
        final ByteBuffer b = ByteBuffer.allocate(32).order(ByteOrder.nativeOrder());
        final NetlinkWriter w = new NetlinkWriter(b).clear();
        w.append(1, 0, 1).attrBytes(7, new byte[] {0, 3, 'a', 'b', 0}, 0, 5);
        w.finish();
        assertThat(HEX.formatHex(b.array(), 16, b.limit())).isEqualTo("0900" + "0700" + "0003616200" + "000000");
    }
}
