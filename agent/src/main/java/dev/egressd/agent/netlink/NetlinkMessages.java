package dev.egressd.agent.netlink;

import static dev.egressd.agent.netlink.NetlinkConstants.NLA_HDRLEN;
import static dev.egressd.agent.netlink.NetlinkConstants.NLA_TYPE_MASK;
import static dev.egressd.agent.netlink.NetlinkConstants.align;

import java.nio.ByteBuffer;

/**
 * Reads netlink messages and attributes in place, by absolute offset, so parsing allocates nothing.
 * Header fields are host order (the buffer must be native order); {@code *BE} reads are network order.
 *
 * <p>Walking attributes: {@code for (int a = first; a >= 0; a = nextAttr(buf, a, end))}, where
 * {@code first = firstAttr(buf, payloadStart, end)}; every walk checks lengths against {@code end},
 * so a malformed message ends the walk instead of reading beyond it.
 */
public final class NetlinkMessages
{
    private NetlinkMessages()
    {
    }

    /**
     * nlmsg_len of the message at an offset.
     *
     * @param b      the buffer.
     * @param offset the message offset.
     * @return the length, header included.
     */
    public static int length(final ByteBuffer b, final int offset)
    {
        return b.getInt(offset);
    }

    /**
     * nlmsg_type.
     *
     * @param b      the buffer.
     * @param offset the message offset.
     * @return the type.
     */
    public static int type(final ByteBuffer b, final int offset)
    {
        return b.getShort(offset + 4) & 0xFFFF;
    }

    /**
     * nlmsg_flags.
     *
     * @param b      the buffer.
     * @param offset the message offset.
     * @return the flags.
     */
    public static int flags(final ByteBuffer b, final int offset)
    {
        return b.getShort(offset + 6) & 0xFFFF;
    }

    /**
     * nlmsg_seq.
     *
     * @param b      the buffer.
     * @param offset the message offset.
     * @return the sequence number.
     */
    public static int seq(final ByteBuffer b, final int offset)
    {
        return b.getInt(offset + 8);
    }

    /**
     * The first attribute in {@code [from, end)}.
     *
     * @param b    the buffer.
     * @param from where attributes start (aligned).
     * @param end  where they end.
     * @return the attribute offset, or -1 if there is none (or it is malformed).
     */
    public static int firstAttr(final ByteBuffer b, final int from, final int end)
    {
        return valid(b, from, end) ? from : -1;
    }

    /**
     * The attribute after the one at {@code at}.
     *
     * @param b   the buffer.
     * @param at  an attribute offset.
     * @param end where attributes end.
     * @return the next attribute's offset, or -1 at the end.
     */
    public static int nextAttr(final ByteBuffer b, final int at, final int end)
    {
        final int next = at + align(attrLength(b, at));
        return valid(b, next, end) ? next : -1;
    }

    /**
     * nla_len, header included.
     *
     * @param b  the buffer.
     * @param at the attribute offset.
     * @return the length.
     */
    public static int attrLength(final ByteBuffer b, final int at)
    {
        return b.getShort(at) & 0xFFFF;
    }

    /**
     * nla_type without the NESTED and NET_BYTEORDER bits.
     *
     * @param b  the buffer.
     * @param at the attribute offset.
     * @return the type.
     */
    public static int attrType(final ByteBuffer b, final int at)
    {
        return b.getShort(at + 2) & NLA_TYPE_MASK;
    }

    /**
     * Where an attribute's payload starts.
     *
     * @param at the attribute offset.
     * @return the payload offset.
     */
    public static int payload(final int at)
    {
        return at + NLA_HDRLEN;
    }

    /**
     * Where an attribute's payload ends (its nested attributes' {@code end}).
     *
     * @param b  the buffer.
     * @param at the attribute offset.
     * @return the end offset.
     */
    public static int attrEnd(final ByteBuffer b, final int at)
    {
        return at + attrLength(b, at);
    }

    /**
     * A network-order u16 at an offset.
     *
     * @param b the buffer.
     * @param p the offset.
     * @return the value, 0..65535.
     */
    public static int u16BE(final ByteBuffer b, final int p)
    {
        return ((b.get(p) & 0xFF) << 8) | (b.get(p + 1) & 0xFF);
    }

    /**
     * A network-order u32 at an offset.
     *
     * @param b the buffer.
     * @param p the offset.
     * @return the value.
     */
    public static int u32BE(final ByteBuffer b, final int p)
    {
        return (u16BE(b, p) << 16) | u16BE(b, p + 2);
    }

    /**
     * A network-order u64 at an offset.
     *
     * @param b the buffer.
     * @param p the offset.
     * @return the value.
     */
    public static long u64BE(final ByteBuffer b, final int p)
    {
        return ((long)u32BE(b, p) << 32) | (u32BE(b, p + 4) & 0xFFFFFFFFL);
    }

    /**
     * A NUL-terminated string attribute, for error texts and names (allocates: not for hot paths).
     *
     * @param b  the buffer.
     * @param at the attribute offset.
     * @return the string.
     */
    public static String attrString(final ByteBuffer b, final int at)
    {
        final int from = payload(at);
        int to = attrEnd(b, at);
        final StringBuilder s = new StringBuilder(to - from);
        for (int p = from; p < to; p++)
        {
            final byte c = b.get(p);
            if (c == 0)
            {
                break;
            }
            s.append((char)(c & 0xFF));
        }
        return s.toString();
    }

    private static boolean valid(final ByteBuffer b, final int at, final int end)
    {
        if (at + NLA_HDRLEN > end)
        {
            return false;
        }
        final int len = attrLength(b, at);
        return len >= NLA_HDRLEN && at + len <= end;
    }
}
