package dev.egressd.agent.conntrack.ctnetlink;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent.Type;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import java.nio.ByteOrder;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;

/**
 * The conntrack event filter run through {@link ClassicBpf.Program#run} (the kernel's semantics for the opcodes it
 * uses) over messages laid out as ctnetlink sends them: it keeps what the ledger acts on and drops the rest.
 */
class EventFilterTest
{
    private static final int NAT = NetlinkConstants.IPS_SRC_NAT | 0x188;  // SRC_NAT | CONFIRMED | SRC_NAT_DONE...
    private static final int NO_NAT = 0x188;
    private static final int TCP = 6;
    private static final int UDP = 17;
    private static final int G1 = Ipv4Address.parse("10.77.0.2").bits();
    private static final int G2 = Ipv4Address.parse("10.77.0.3").bits();
    private static final int OTHER = Ipv4Address.parse("192.0.2.50").bits();
    private static final int DST = Ipv4Address.parse("198.51.100.10").bits();
    private static final int EGRESS = Ipv4Address.parse("203.0.113.5").bits();
    private static final Ipv6Address G6 = Ipv6Address.parse("fd77::2");
    private static final Ipv6Address OTHER6 = Ipv6Address.parse("2001:db8:1::1");
    private static final Ipv6Address DST6 = Ipv6Address.parse("2001:db8:100::10");
    private static final Ipv6Address EGRESS6 = Ipv6Address.parse("2001:db8:10::5");

    private final ConntrackEvent e = new ConntrackEvent();
    private final ClassicBpf.Program program = EventFilter.program(
        GuestPrefixes.cover(new int[] {G1, G2}, 2, new long[] {G6.high(), G6.low()}, 1, GuestPrefixes.DEFAULT_MAX));

    private boolean keeps(final ConntrackEvent event)
    {
        final byte[] m = EventEncoder.encode(event);
        final ConntrackEvent back = new ConntrackEvent();
        assertThat(EventEncoder.parse(m, back)).isTrue();
        assertThat(back.toString()).isEqualTo(event.toString());     // the encoding is what the parser reads
        return program.run(m, m.length) != ClassicBpf.DROP;
    }

    private ConntrackEvent v4(final Type type, final int status, final int tcpState, final int src)
    {
        return e.fillIpv4(type, 7, TCP, status, tcpState, src, 40000, DST, 443, EGRESS, 1030);
    }

    private ConntrackEvent v6(final Type type, final int status, final int tcpState, final Ipv6Address src)
    {
        return e.fillIpv6(type, 7, TCP, status, tcpState, src.high(), src.low(), DST6.high(), DST6.low(),
            EGRESS6.high(), EGRESS6.low(), 1030);
    }

    @Test
    void keepsNewAndDestroyOfTranslatedGuestFlows()
    {
        assertThat(keeps(v4(Type.NEW, NAT, 1, G1))).isTrue();
        assertThat(keeps(v4(Type.NEW, NAT, 1, G2))).isTrue();
        assertThat(keeps(v4(Type.DESTROY, NAT, 0, G1))).isTrue();
        assertThat(keeps(e.fillIpv4(Type.NEW, 8, UDP, NAT, 0, G1, 5353, DST, 53, EGRESS, 1031))).isTrue();
        assertThat(keeps(v6(Type.NEW, NAT, 1, G6))).isTrue();
        assertThat(keeps(v6(Type.DESTROY, NAT, 0, G6))).isTrue();
    }

    @Test
    void dropsFlowsFromOtherSources()
    {
        assertThat(keeps(v4(Type.NEW, NAT, 1, OTHER))).isFalse();
        assertThat(keeps(v4(Type.DESTROY, NAT, 0, OTHER))).isFalse();
        assertThat(keeps(v4(Type.NEW, NAT, 1, G1 + 256))).isFalse();   // 10.77.1.2: outside the exact cover
        assertThat(keeps(v6(Type.NEW, NAT, 1, OTHER6))).isFalse();
        assertThat(keeps(v6(Type.DESTROY, NAT, 0, OTHER6))).isFalse();
    }

    @Test
    void dropsGuestFlowsThatWereNotTranslated()
    {
        assertThat(keeps(v4(Type.NEW, NO_NAT, 1, G1))).isFalse();
        assertThat(keeps(v4(Type.DESTROY, NO_NAT, 0, G1))).isFalse();
        assertThat(keeps(v6(Type.NEW, NO_NAT, 1, G6))).isFalse();
    }

    @Test
    void keepsOnlyTheUpdatesThatCloseATcpFlow()
    {
        assertThat(keeps(v4(Type.UPDATE, NAT, NetlinkConstants.TCP_CONNTRACK_TIME_WAIT, G1))).isTrue();
        assertThat(keeps(v4(Type.UPDATE, NAT, NetlinkConstants.TCP_CONNTRACK_CLOSE, G1))).isTrue();
        assertThat(keeps(v6(Type.UPDATE, NAT, NetlinkConstants.TCP_CONNTRACK_TIME_WAIT, G6))).isTrue();
        for (final int state : new int[] {1, 2, 3, 4, 5, 6, 9})    // SYN_SENT .. LAST_ACK, SYN_SENT2
        {
            assertThat(keeps(v4(Type.UPDATE, NAT, state, G1))).as("state %d", state).isFalse();
        }
        assertThat(keeps(v4(Type.UPDATE, NAT, 0, G1))).as("an update without protocol info").isFalse();
        assertThat(keeps(v4(Type.UPDATE, NAT, NetlinkConstants.TCP_CONNTRACK_TIME_WAIT, OTHER))).isFalse();
    }

    @Test
    void dropsTheDestroyOfATcpFlowAlreadyClosedByItsUpdate()
    {
        assertThat(keeps(v4(Type.DESTROY, NAT, NetlinkConstants.TCP_CONNTRACK_CLOSE, G1))).isFalse();
        assertThat(keeps(v4(Type.DESTROY, NAT, NetlinkConstants.TCP_CONNTRACK_TIME_WAIT, G1))).isFalse();
        assertThat(keeps(v6(Type.DESTROY, NAT, NetlinkConstants.TCP_CONNTRACK_CLOSE, G6))).isFalse();
        for (final int state : new int[] {1, 2, 3, 4, 5, 6, 9})    // never closed by an UPDATE: the DESTROY closes it
        {
            assertThat(keeps(v4(Type.DESTROY, NAT, state, G1))).as("state %d", state).isTrue();
            assertThat(keeps(v6(Type.DESTROY, NAT, state, G6))).as("v6 state %d", state).isTrue();
        }
        assertThat(keeps(e.fillIpv4(Type.DESTROY, 8, UDP, NAT, 0, G1, 5353, DST, 53, EGRESS, 1031))).isTrue();
    }

    @Test
    void keepsWhatItCannotJudge()
    {
        // no tuple at all: nlmsghdr + nfgenmsg + CTA_STATUS with SRC_NAT (a NEW from nowhere)
        final byte[] bare = EventEncoder.encode(v4(Type.NEW, NAT, 0, G1));
        final byte[] noTuple = java.util.Arrays.copyOf(bare, 20);
        java.nio.ByteBuffer.wrap(noTuple).order(ByteOrder.nativeOrder()).putInt(0, 20);
        assertThat(program.run(noTuple, noTuple.length)).isNotEqualTo(ClassicBpf.DROP);
        // another nfnetlink subsystem (e.g. NFNL_SUBSYS_CTNETLINK_EXP, 2)
        final byte[] other = bare.clone();
        other[EventFilter.SUBSYS_BYTE] = 2;
        assertThat(program.run(other, other.length)).isNotEqualTo(ClassicBpf.DROP);
        // an unknown family in nfgenmsg
        final byte[] family = EventEncoder.encode(v4(Type.NEW, NAT, 0, OTHER));
        family[EventFilter.FAMILY] = 7;
        assertThat(program.run(family, family.length)).isNotEqualTo(ClassicBpf.DROP);
    }

    @Test
    void anEmptyCoverDropsEveryFlowAndANewCoverTakesANewGuest()
    {
        final ClassicBpf.Program none = EventFilter.program(GuestPrefixes.EMPTY);
        final byte[] m = EventEncoder.encode(v4(Type.NEW, NAT, 1, G1));
        assertThat(none.run(m, m.length)).isEqualTo(ClassicBpf.DROP);
        final byte[] m6 = EventEncoder.encode(v6(Type.NEW, NAT, 1, G6));
        assertThat(none.run(m6, m6.length)).isEqualTo(ClassicBpf.DROP);
        final ClassicBpf.Program other = EventFilter.program(
            GuestPrefixes.cover(new int[] {OTHER}, 1, new long[0], 0, GuestPrefixes.DEFAULT_MAX));
        final byte[] o = EventEncoder.encode(v4(Type.NEW, NAT, 1, OTHER));
        assertThat(other.run(o, o.length)).isNotEqualTo(ClassicBpf.DROP);
        assertThat(other.run(m, m.length)).isEqualTo(ClassicBpf.DROP);
    }

    @Test
    void judgesTheKernelShapedMessageOfTheParserTest()
    {
        assumeTrue(ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN, "the bytes are written for a little-endian host");
        // ConntrackMessagesTest's NEW: 192.0.2.2:34248 -> 198.51.100.10:80, translated to 203.0.113.5:1038, status 0x198
        final byte[] m = HexFormat.of().parseHex("94000000" + "0001" + "0006" + "00000000" + "00000000" + "02000000"
            + "3400" + "0180" + "1400" + "0180" + "08000100c0000202" + "08000200c633640a"
            + "1c00" + "0280" + "0500010006000000" + "0600020085c80000" + "0600030000500000"
            + "3400" + "0280" + "1400" + "0180" + "08000100c633640a" + "08000200cb007105"
            + "1c00" + "0280" + "0500010006000000" + "0600020000500000" + "06000300040e0000"
            + "0800" + "0300" + "00000198" + "0800" + "0700" + "00000078" + "0800" + "0c00" + "7b845030");
        final int source = Ipv4Address.parse("192.0.2.2").bits();
        final ClassicBpf.Program guest = EventFilter.program(
            GuestPrefixes.cover(new int[] {source}, 1, new long[0], 0, GuestPrefixes.DEFAULT_MAX));
        assertThat(guest.run(m, m.length)).isNotEqualTo(ClassicBpf.DROP);
        assertThat(program.run(m, m.length)).isEqualTo(ClassicBpf.DROP);
    }

    @Test
    void aFullCoverFitsTheKernelsLimit()
    {
        final int[] v4 = new int[4000];
        final long[] v6 = new long[8000];
        final java.util.Random r = new java.util.Random(1);
        for (int i = 0; i < 4000; i++)
        {
            v4[i] = r.nextInt();                                   // scattered: the worst case for a cover
            v6[2 * i] = r.nextLong();
            v6[2 * i + 1] = r.nextLong();
        }
        final GuestPrefixes cover = GuestPrefixes.cover(v4, 4000, v6, 4000, GuestPrefixes.DEFAULT_MAX);
        final ClassicBpf.Program p = EventFilter.program(cover);
        assertThat(p.length()).isLessThanOrEqualTo(ClassicBpf.BPF_MAXINSNS);
        for (int i = 0; i < 4000; i++)
        {
            final byte[] m = EventEncoder.encode(v4(Type.NEW, NAT, 1, v4[i]));
            assertThat(p.run(m, m.length)).as("guest %d", i).isNotEqualTo(ClassicBpf.DROP);
            final byte[] m6 = EventEncoder.encode(v6(Type.NEW, NAT, 1, new Ipv6Address(v6[2 * i], v6[2 * i + 1])));
            assertThat(p.run(m6, m6.length)).as("guest6 %d", i).isNotEqualTo(ClassicBpf.DROP);
        }
    }
}
