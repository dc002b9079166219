package dev.egressd.agent.conntrack.ctnetlink;

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
 * ctnetlink messages laid out by hand from {@code <linux/netfilter/nfnetlink.h>} (struct nfgenmsg,
 * subsystem in the high byte of nlmsg_type) and {@code <linux/netfilter/nfnetlink_conntrack.h>}
 * (CTA_* attributes; addresses, ports, status and id in network order), shaped like the events the kernel
 * sends. Nests carry NLA_F_NESTED, as the kernel sends them.
 */
class ConntrackMessagesTest
{
    private static final HexFormat HEX = HexFormat.of();

    /** orig 192.0.2.2:34248 -> 198.51.100.10:80, TCP. */
    private static final String ORIG_V4 = "3400" + "0180"
        + "1400" + "0180" + "08000100c0000202" + "08000200c633640a"
        + "1c00" + "0280" + "0500010006000000" + "0600020085c80000" + "0600030000500000";
    /** reply 198.51.100.10:80 -> 203.0.113.5:1038: the SNAT source. */
    private static final String REPLY_V4 = "3400" + "0280"
        + "1400" + "0180" + "08000100c633640a" + "08000200cb007105"
        + "1c00" + "0280" + "0500010006000000" + "0600020000500000" + "06000300040e0000";
    private static final String STATUS = "0800" + "0300" + "00000198";
    private static final String ID = "0800" + "0c00" + "7b845030";
    private static final String TIMEOUT = "0800" + "0700" + "00000078";

    @BeforeAll
    static void littleEndianHost()
    {
        assumeTrue(ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN, "expected bytes are written for a little-endian host");
    }

    @Test
    void parsesANewIpv4EventWithTheTranslatedSourceInTheReplyTuple()
    {
        // nlmsg_type 0x0100 (CTNETLINK, IPCTNL_MSG_CT_NEW), flags 0x600 (CREATE|EXCL): 148 bytes.
        final ByteBuffer b = buffer("94000000" + "0001" + "0006" + "00000000" + "00000000"
            + "02000000" + ORIG_V4 + REPLY_V4 + STATUS + TIMEOUT + ID);
        final ConntrackEvent e = new ConntrackEvent();
        assertThat(ConntrackEvents.parse(b, 0, b.getInt(0), e)).isTrue();
        assertThat(e.type()).isEqualTo(ConntrackEvent.Type.NEW);
        assertThat(e.isIpv4()).isTrue();
        assertThat(e.l4proto()).isEqualTo(6);
        assertThat(e.id()).isEqualTo(0x7b845030);
        assertThat(e.status()).isEqualTo(0x198);
        assertThat(e.status() & NetlinkConstants.IPS_SRC_NAT).isNotZero();
        assertThat(new Ipv4Address(e.origSrcV4())).isEqualTo(Ipv4Address.parse("192.0.2.2"));
        assertThat(new Ipv4Address(e.origDstV4())).isEqualTo(Ipv4Address.parse("198.51.100.10"));
        assertThat(e.origSrcPort()).isEqualTo(34248);
        assertThat(e.origDstPort()).isEqualTo(80);
        assertThat(new Ipv4Address(e.replySrcV4())).isEqualTo(Ipv4Address.parse("198.51.100.10"));
        assertThat(new Ipv4Address(e.replyDstV4())).isEqualTo(Ipv4Address.parse("203.0.113.5"));
        assertThat(e.replySrcPort()).isEqualTo(80);
        assertThat(e.replyDstPort()).isEqualTo(1038);
    }

    @Test
    void anUpdateIsACtNewWithoutCreate()
    {
        final ByteBuffer b = buffer("3c000000" + "0001" + "0000" + "00000000" + "00000000" + "02000000" + ORIG_V4);
        final ConntrackEvent e = new ConntrackEvent();
        assertThat(ConntrackEvents.parse(b, 0, b.getInt(0), e)).isTrue();
        assertThat(e.type()).isEqualTo(ConntrackEvent.Type.UPDATE);
    }

    @Test
    void parsesADestroyIpv6EventAndResetsTheReusedEvent()
    {
        // nlmsg_type 0x0102 (IPCTNL_MSG_CT_DELETE), family AF_INET6: 172 bytes.
        final String origV6 = "4c00" + "0180"
            + "2c00" + "0180" + "14000300" + "20010db8000100000000000000000002"
            + "14000400" + "20010db8010000000000000000000010"
            + "1c00" + "0280" + "0500010006000000" + "06000200ab420000" + "0600030000500000";
        final String replyV6 = "4c00" + "0280"
            + "2c00" + "0180" + "14000300" + "20010db8010000000000000000000010"
            + "14000400" + "20010db8000500000000000000000005"
            + "1c00" + "0280" + "0500010006000000" + "0600020000500000" + "06000300090d0000";
        final ByteBuffer b = buffer("ac000000" + "0201" + "0000" + "00000000" + "00000000"
            + "0a000000" + origV6 + replyV6);
        final ConntrackEvent e = new ConntrackEvent();
        ConntrackEvents.parse(buffer("94000000" + "0001" + "0006" + "00000000" + "00000000"
            + "02000000" + ORIG_V4 + REPLY_V4 + STATUS + TIMEOUT + ID), 0, 0x94, e);
        assertThat(ConntrackEvents.parse(b, 0, b.getInt(0), e)).isTrue();
        assertThat(e.type()).isEqualTo(ConntrackEvent.Type.DESTROY);
        assertThat(e.isIpv4()).isFalse();
        assertThat(e.status()).isZero();          // not carried over from the previous message
        assertThat(e.origSrcV4()).isZero();
        assertThat(new Ipv6Address(e.origSrcHigh(), e.origSrcLow())).isEqualTo(Ipv6Address.parse("2001:db8:1::2"));
        assertThat(new Ipv6Address(e.origDstHigh(), e.origDstLow())).isEqualTo(Ipv6Address.parse("2001:db8:100::10"));
        assertThat(e.origSrcPort()).isEqualTo(0xab42);
        assertThat(new Ipv6Address(e.replyDstHigh(), e.replyDstLow())).isEqualTo(Ipv6Address.parse("2001:db8:5::5"));
        assertThat(e.replyDstPort()).isEqualTo(2317);
    }

    @Test
    void icmpEchoIdStandsInForThePorts()
    {
        // Proto nest: 4 + num 8 + id 8 + type 8 + code 8 = 36; tuple 4 + 20 + 36 = 60; message 16 + 4 + 2 * 60 = 140.
        // orig 192.0.2.2 -> 198.51.100.10 icmp id 6791 type 8 code 0; reply id 1680 (translated).
        final String orig = "3c00" + "0180"
            + "1400" + "0180" + "08000100c0000202" + "08000200c633640a"
            + "2400" + "0280" + "0500010001000000" + "06000400" + "1a870000" + "0500050008000000" + "0500060000000000";
        final String reply = "3c00" + "0280"
            + "1400" + "0180" + "08000100c633640a" + "08000200cb007105"
            + "2400" + "0280" + "0500010001000000" + "06000400" + "06900000" + "0500050000000000" + "0500060000000000";
        final ByteBuffer b = buffer("8c000000" + "0001" + "0006" + "00000000" + "00000000" + "02000000" + orig + reply);
        final ConntrackEvent e = new ConntrackEvent();
        assertThat(ConntrackEvents.parse(b, 0, b.getInt(0), e)).isTrue();
        assertThat(e.l4proto()).isEqualTo(1);
        assertThat(e.origSrcPort()).isEqualTo(6791);
        assertThat(e.icmpType()).isEqualTo(8);
        assertThat(e.replyDstPort()).isEqualTo(1680);
    }

    @Test
    void ignoresMessagesOfOtherSubsystems()
    {
        final ByteBuffer b = buffer("14000000" + "0002" + "0000" + "00000000" + "00000000" + "02000000");
        assertThat(ConntrackEvents.parse(b, 0, 20, new ConntrackEvent())).isFalse();
    }

    @Test
    void deleteRequestIsTheOriginalTupleAndId()
    {
        final ConntrackEvent e = new ConntrackEvent();
        ConntrackEvents.parse(buffer("94000000" + "0001" + "0006" + "00000000" + "00000000"
            + "02000000" + ORIG_V4 + REPLY_V4 + STATUS + TIMEOUT + ID), 0, 0x94, e);
        final NetlinkWriter w = new NetlinkWriter(ByteBuffer.allocate(256).order(ByteOrder.nativeOrder()))
            .begin(NetlinkConstants.nfnlType(NetlinkConstants.NFNL_SUBSYS_CTNETLINK, NetlinkConstants.IPCTNL_MSG_CT_DELETE),
                NetlinkConstants.NLM_F_REQUEST | NetlinkConstants.NLM_F_ACK, 9);
        ConntrackEvents.deleteRequest(w, e);
        final int length = w.finish();
        final byte[] out = new byte[length];
        w.buffer().get(0, out);
        assertThat(HEX.formatHex(out)).isEqualTo("50000000" + "0201" + "0500" + "09000000" + "00000000"
            + "02000000" + ORIG_V4 + ID);
    }

    @Test
    void parsingAllocatesNothing()
    {
        final java.lang.management.ThreadMXBean bean = java.lang.management.ManagementFactory.getThreadMXBean();
        assumeTrue(bean instanceof com.sun.management.ThreadMXBean, "needs per-thread allocation counters");
        final com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean)bean;
        final ByteBuffer b = ByteBuffer.allocateDirect(0x94).order(ByteOrder.nativeOrder());
        b.put(HEX.parseHex("94000000" + "0001" + "0006" + "00000000" + "00000000"
            + "02000000" + ORIG_V4 + REPLY_V4 + STATUS + TIMEOUT + ID)).flip();
        final ConntrackEvent e = new ConntrackEvent();
        long sum = 0;
        for (int i = 0; i < 20_000; i++)       // warm up, so the measured loop runs compiled code
        {
            ConntrackEvents.parse(b, 0, 0x94, e);
            sum += e.replyDstPort();
        }
        final long tid = Thread.currentThread().getId();
        final long before = threads.getThreadAllocatedBytes(tid);
        for (int i = 0; i < 100_000; i++)
        {
            ConntrackEvents.parse(b, 0, 0x94, e);
            sum += e.replyDstPort();
        }
        final long allocated = threads.getThreadAllocatedBytes(tid) - before;
        assertThat(sum).isEqualTo(120_000L * 1038);
        // 100,000 messages: anything per message would be megabytes; allow the counter call's own noise.
        assertThat(allocated).isLessThan(4096);
    }

    private static ByteBuffer buffer(final String hex)
    {
        return ByteBuffer.wrap(HEX.parseHex(hex)).order(ByteOrder.nativeOrder());
    }
}
