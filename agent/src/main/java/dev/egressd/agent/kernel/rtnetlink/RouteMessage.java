package dev.egressd.agent.kernel.rtnetlink;

import static dev.egressd.agent.netlink.NetlinkConstants.NLMSG_HDRLEN;
import static dev.egressd.agent.netlink.NetlinkConstants.RTA_DST;
import static dev.egressd.agent.netlink.NetlinkConstants.RTA_GATEWAY;
import static dev.egressd.agent.netlink.NetlinkConstants.RTA_OIF;
import static dev.egressd.agent.netlink.NetlinkConstants.RTA_TABLE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTMSG_SIZE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_NEWROUTE;

import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.netlink.NetlinkMessages;
import java.nio.ByteBuffer;

/**
 * One RTM_NEWROUTE message of a dump, read once for every reader of routes in this package (the host's routes,
 * {@link RtnetlinkHost}, and the router's policy routing, {@link RtnetlinkPolicyRouting}): the struct rtmsg header
 * and the attributes they use. Addresses stay in the buffer: each is the offset of its bytes (network order,
 * {@link #addressSize()} of them), or -1 when the message has none, so each reader makes the form it needs.
 *
 * @param family       rtm_family.
 * @param prefixLength rtm_dst_len.
 * @param table        the table: RTA_TABLE (32 bits) when present, else the header's u8.
 * @param protocol     rtm_protocol.
 * @param type         rtm_type (e.g. RTN_UNICAST).
 * @param destination  where RTA_DST's address starts, or -1 (a default route).
 * @param gateway      where RTA_GATEWAY's address starts, or -1.
 * @param prefsrc      where RTA_PREFSRC's address starts, or -1.
 * @param oif          RTA_OIF's interface index, or -1 when absent.
 */
record RouteMessage(int family, int prefixLength, int table, int protocol, int type, int destination, int gateway,
                    int prefsrc, int oif)
{
    /** {@code <linux/rtnetlink.h>} RTA_PREFSRC: the route's preferred source address. */
    static final int RTA_PREFSRC = 7;

    /**
     * Reads one message.
     *
     * @param b   the buffer.
     * @param off the message's offset.
     * @param len nlmsg_len.
     * @return the route, or null for another message type or one too short for its header. An address attribute
     *         shorter than the family's address is ignored, as is a table or interface attribute shorter than 4.
     */
    static RouteMessage read(final ByteBuffer b, final int off, final int len)
    {
        if (NetlinkMessages.type(b, off) != RTM_NEWROUTE || len < NLMSG_HDRLEN + RTMSG_SIZE)
        {
            return null;
        }
        final int h = off + NLMSG_HDRLEN;
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags.
        final int family = b.get(h) & 0xFF;
        final int size = family == LibC.AF_INET ? 4 : 16;
        int table = b.get(h + 4) & 0xFF;
        int destination = -1;
        int gateway = -1;
        int prefsrc = -1;
        int oif = -1;
        final int end = off + len;
        for (int a = NetlinkMessages.firstAttr(b, h + RTMSG_SIZE, end); a >= 0; a = NetlinkMessages.nextAttr(b, a, end))
        {
            final int payloadLength = NetlinkMessages.attrLength(b, a) - NetlinkConstants.NLA_HDRLEN;
            final int p = NetlinkMessages.payload(a);
            switch (NetlinkMessages.attrType(b, a))
            {
                case RTA_TABLE -> table = payloadLength >= 4 ? b.getInt(p) : table;
                case RTA_DST -> destination = payloadLength >= size ? p : destination;
                case RTA_GATEWAY -> gateway = payloadLength >= size ? p : gateway;
                case RTA_PREFSRC -> prefsrc = payloadLength >= size ? p : prefsrc;
                case RTA_OIF -> oif = payloadLength >= 4 ? b.getInt(p) : oif;
                default ->
                {
                    // priority, cacheinfo, pref, multipath, ...: no reader needs them
                }
            }
        }
        return new RouteMessage(family, b.get(h + 1) & 0xFF, table, b.get(h + 5) & 0xFF, b.get(h + 7) & 0xFF,
            destination, gateway, prefsrc, oif);
    }

    /** @return the bytes of an address of this message's family: 4 for AF_INET, else 16. */
    int addressSize()
    {
        return family == LibC.AF_INET ? 4 : 16;
    }
}
