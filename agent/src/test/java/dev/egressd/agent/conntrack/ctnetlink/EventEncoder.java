package dev.egressd.agent.conntrack.ctnetlink;

import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.netlink.NetlinkWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Lays a {@link ConntrackEvent} out as ctnetlink sends it ({@code ctnetlink_conntrack_event}: nlmsghdr, nfgenmsg,
 * CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_ID, CTA_STATUS, CTA_PROTOINFO for TCP when it carries a state), for tests
 * of the event filter; and parses such bytes back, so tests outside this package can run both.
 */
public final class EventEncoder
{
    private EventEncoder()
    {
    }

    /**
     * The message bytes of an event (NEW, UPDATE or DESTROY).
     *
     * @param e the event.
     * @return the message.
     */
    public static byte[] encode(final ConntrackEvent e)
    {
        final ByteBuffer b = ByteBuffer.allocate(512).order(ByteOrder.nativeOrder());
        final NetlinkWriter w = new NetlinkWriter(b);
        final int msg = e.type == ConntrackEvent.Type.DESTROY ? NetlinkConstants.IPCTNL_MSG_CT_DELETE
            : NetlinkConstants.IPCTNL_MSG_CT_NEW;
        final int flags = e.type == ConntrackEvent.Type.NEW ? NetlinkConstants.NLM_F_CREATE | NetlinkConstants.NLM_F_EXCL : 0;
        w.begin(NetlinkConstants.nfnlType(NetlinkConstants.NFNL_SUBSYS_CTNETLINK, msg), flags, 0);
        w.u8(e.family).u8(NetlinkConstants.NFNETLINK_V0).u16BE(0);
        tuple(w, NetlinkConstants.CTA_TUPLE_ORIG, e, e.origSrcV4, e.origDstV4, e.origSrcHigh, e.origSrcLow,
            e.origDstHigh, e.origDstLow, e.origSrcPort, e.origDstPort);
        tuple(w, NetlinkConstants.CTA_TUPLE_REPLY, e, e.replySrcV4, e.replyDstV4, e.replySrcHigh, e.replySrcLow,
            e.replyDstHigh, e.replyDstLow, e.replySrcPort, e.replyDstPort);
        w.attrU32BE(NetlinkConstants.CTA_ID, e.id);
        w.attrU32BE(NetlinkConstants.CTA_STATUS, e.status);
        if (e.l4proto == 6 && e.tcpState != 0)
        {
            final int info = w.beginNested(NetlinkConstants.CTA_PROTOINFO);
            final int tcp = w.beginNested(NetlinkConstants.CTA_PROTOINFO_TCP);
            w.attrU8(NetlinkConstants.CTA_PROTOINFO_TCP_STATE, e.tcpState);
            w.attrU8(2, 7).attrU8(3, 7);                           // window scales, as the kernel sends them
            w.endNested(tcp);
            w.endNested(info);
        }
        final int length = w.finish();
        final byte[] out = new byte[length];
        b.get(0, out);
        return out;
    }

    /**
     * Parses message bytes as the event reader does.
     *
     * @param message the message.
     * @param into    the event to fill.
     * @return false if it is not a conntrack message.
     */
    public static boolean parse(final byte[] message, final ConntrackEvent into)
    {
        final ByteBuffer b = ByteBuffer.wrap(message).order(ByteOrder.nativeOrder());
        return ConntrackEvents.parse(b, 0, message.length, into);
    }

    private static void tuple(final NetlinkWriter w, final int type, final ConntrackEvent e, final int src4,
        final int dst4, final long srcHigh, final long srcLow, final long dstHigh, final long dstLow, final int srcPort,
        final int dstPort)
    {
        final int tuple = w.beginNested(type);
        final int ip = w.beginNested(NetlinkConstants.CTA_TUPLE_IP);
        if (e.family == LibC.AF_INET)
        {
            w.attrU32BE(NetlinkConstants.CTA_IP_V4_SRC, src4).attrU32BE(NetlinkConstants.CTA_IP_V4_DST, dst4);
        }
        else
        {
            w.attrU128BE(NetlinkConstants.CTA_IP_V6_SRC, srcHigh, srcLow)
                .attrU128BE(NetlinkConstants.CTA_IP_V6_DST, dstHigh, dstLow);
        }
        w.endNested(ip);
        final int proto = w.beginNested(NetlinkConstants.CTA_TUPLE_PROTO);
        w.attrU8(NetlinkConstants.CTA_PROTO_NUM, e.l4proto);
        w.attrU16BE(NetlinkConstants.CTA_PROTO_SRC_PORT, srcPort).attrU16BE(NetlinkConstants.CTA_PROTO_DST_PORT, dstPort);
        w.endNested(proto);
        w.endNested(tuple);
    }
}
