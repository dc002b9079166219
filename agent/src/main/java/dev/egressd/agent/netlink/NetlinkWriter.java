package dev.egressd.agent.netlink;

import static dev.egressd.agent.netlink.NetlinkConstants.NLA_F_NESTED;
import static dev.egressd.agent.netlink.NetlinkConstants.NLA_HDRLEN;
import static dev.egressd.agent.netlink.NetlinkConstants.align;

import java.nio.BufferOverflowException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Builds one netlink message at a time into a caller-owned buffer, so a socket can reuse one direct
 * buffer for every request. Header and struct fields are in host order (the buffer must be in
 * {@link ByteOrder#nativeOrder()}); the {@code *BE} methods write network order, as ctnetlink wants
 * addresses and ports.
 *
 * <p>Not thread-safe: one writer per socket, used by the thread that owns the socket.
 */
public final class NetlinkWriter
{
    private final ByteBuffer buffer;
    private int start;

    /**
     * A writer over a buffer.
     *
     * @param buffer where messages are built; must be in native byte order.
     */
    public NetlinkWriter(final ByteBuffer buffer)
    {
        if (buffer.order() != ByteOrder.nativeOrder())
        {
            throw new IllegalArgumentException("netlink headers are host order: the buffer must be native order");
        }
        this.buffer = buffer;
    }

    /**
     * Starts a message at offset 0: writes the nlmsghdr with a length fixed up by {@link #finish()}.
     *
     * @param type  nlmsg_type.
     * @param flags nlmsg_flags.
     * @param seq   nlmsg_seq.
     * @return this.
     */
    public NetlinkWriter begin(final int type, final int flags, final int seq)
    {
        buffer.clear();
        start = 0;
        buffer.putInt(0);                 // nlmsg_len, set by finish()
        buffer.putShort((short)type);
        buffer.putShort((short)flags);
        buffer.putInt(seq);
        buffer.putInt(0);                 // nlmsg_pid: 0 lets the kernel fill in our port id
        return this;
    }

    /**
     * Starts another message of a batch right after the one before it (or at offset 0 after
     * {@link #clear()}): several messages in one buffer go to the kernel in one datagram, as
     * nfnetlink batches must. End each with {@link #finish()}.
     *
     * @param type  nlmsg_type.
     * @param flags nlmsg_flags.
     * @param seq   nlmsg_seq.
     * @return this.
     */
    public NetlinkWriter append(final int type, final int flags, final int seq)
    {
        buffer.limit(buffer.capacity());
        start = buffer.position();
        if (buffer.remaining() < NetlinkConstants.NLMSG_HDRLEN)
        {
            throw new BufferOverflowException();
        }
        buffer.putInt(0);
        buffer.putShort((short)type);
        buffer.putShort((short)flags);
        buffer.putInt(seq);
        buffer.putInt(0);
        return this;
    }

    /**
     * Empties the buffer for a new batch ({@link #append}).
     *
     * @return this.
     */
    public NetlinkWriter clear()
    {
        buffer.clear();
        start = 0;
        return this;
    }

    /**
     * Writes a u8 struct field.
     *
     * @param value the value.
     * @return this.
     */
    public NetlinkWriter u8(final int value)
    {
        buffer.put((byte)value);
        return this;
    }

    /**
     * Writes a host-order u16 struct field.
     *
     * @param value the value.
     * @return this.
     */
    public NetlinkWriter u16(final int value)
    {
        buffer.putShort((short)value);
        return this;
    }

    /**
     * Writes a network-order u16 field (nfgenmsg.res_id).
     *
     * @param value the value.
     * @return this.
     */
    public NetlinkWriter u16BE(final int value)
    {
        buffer.put((byte)(value >>> 8)).put((byte)value);
        return this;
    }

    /**
     * Writes a host-order u32 struct field.
     *
     * @param value the value.
     * @return this.
     */
    public NetlinkWriter u32(final int value)
    {
        buffer.putInt(value);
        return this;
    }

    /**
     * Writes an attribute holding a host-order u32.
     *
     * @param type  the attribute type.
     * @param value the value.
     * @return this.
     */
    public NetlinkWriter attrU32(final int type, final int value)
    {
        header(type, 4);
        buffer.putInt(value);
        return this;
    }

    /**
     * Writes an attribute holding a u8 (padded to 4 bytes).
     *
     * @param type  the attribute type.
     * @param value the value.
     * @return this.
     */
    public NetlinkWriter attrU8(final int type, final int value)
    {
        header(type, 1);
        buffer.put((byte)value);
        return pad();
    }

    /**
     * Writes an attribute holding a network-order u16 (padded to 4 bytes).
     *
     * @param type  the attribute type.
     * @param value the value.
     * @return this.
     */
    public NetlinkWriter attrU16BE(final int type, final int value)
    {
        header(type, 2);
        u16BE(value);
        return pad();
    }

    /**
     * Writes an attribute holding a network-order u32 (an IPv4 address, a conntrack id).
     *
     * @param type  the attribute type.
     * @param value the value.
     * @return this.
     */
    public NetlinkWriter attrU32BE(final int type, final int value)
    {
        header(type, 4);
        u16BE(value >>> 16);
        u16BE(value);
        return this;
    }

    /**
     * Writes an attribute holding 16 network-order bytes (an IPv6 address).
     *
     * @param type the attribute type.
     * @param high the first 64 bits.
     * @param low  the last 64 bits.
     * @return this.
     */
    public NetlinkWriter attrU128BE(final int type, final long high, final long low)
    {
        header(type, 16);
        putLongBE(high);
        putLongBE(low);
        return this;
    }

    /**
     * Writes an attribute holding bytes as they are (nf_tables keys and data: already in the order the
     * kernel compares them), padded to 4 bytes.
     *
     * @param type   the attribute type.
     * @param bytes  the bytes.
     * @param offset where they start.
     * @param length how many.
     * @return this.
     */
    public NetlinkWriter attrBytes(final int type, final byte[] bytes, final int offset, final int length)
    {
        header(type, length);
        buffer.put(bytes, offset, length);
        return pad();
    }

    /**
     * Writes an attribute holding a NUL-terminated string (ASCII, as interface names are).
     *
     * @param type  the attribute type.
     * @param value the string.
     * @return this.
     */
    public NetlinkWriter attrString(final int type, final CharSequence value)
    {
        final int n = value.length();
        header(type, n + 1);
        for (int i = 0; i < n; i++)
        {
            buffer.put((byte)value.charAt(i));
        }
        buffer.put((byte)0);
        return pad();
    }

    /**
     * Writes an attribute holding a struct ifa_cacheinfo with the two lifetimes and zero timestamps.
     *
     * @param type      the attribute type (IFA_CACHEINFO).
     * @param preferred ifa_prefered, seconds.
     * @param valid     ifa_valid, seconds; {@link NetlinkConstants#INFINITY_LIFE_TIME} for ever.
     * @return this.
     */
    public NetlinkWriter attrCacheinfo(final int type, final int preferred, final int valid)
    {
        header(type, NetlinkConstants.IFA_CACHEINFO_SIZE);
        buffer.putInt(preferred).putInt(valid).putInt(0).putInt(0);
        return this;
    }

    /**
     * Opens a nested attribute; close it with {@link #endNested(int)}.
     *
     * @param type the attribute type; NLA_F_NESTED is added.
     * @return the nest's offset, for {@link #endNested(int)}.
     */
    public int beginNested(final int type)
    {
        final int at = buffer.position();
        header(type | NLA_F_NESTED, 0);
        return at;
    }

    /**
     * Closes a nested attribute by writing its length.
     *
     * @param at what {@link #beginNested(int)} returned.
     * @return this.
     */
    public NetlinkWriter endNested(final int at)
    {
        buffer.putShort(at, (short)(buffer.position() - at));
        return this;
    }

    /**
     * Ends the message: writes nlmsg_len and leaves the buffer's limit at the message end.
     *
     * @return the message length in bytes.
     */
    public int finish()
    {
        final int length = buffer.position() - start;
        if (length < NetlinkConstants.NLMSG_HDRLEN)
        {
            throw new IllegalStateException("finish() without a message begun");
        }
        buffer.putInt(start, length);
        buffer.limit(buffer.position());
        return length;
    }

    /**
     * The buffer messages are built in.
     *
     * @return the buffer.
     */
    public ByteBuffer buffer()
    {
        return buffer;
    }

    private void header(final int type, final int payload)
    {
        if (buffer.remaining() < NLA_HDRLEN + align(payload))
        {
            throw new BufferOverflowException();
        }
        buffer.putShort((short)(NLA_HDRLEN + payload));
        buffer.putShort((short)type);
    }

    private NetlinkWriter pad()
    {
        while ((buffer.position() & (NetlinkConstants.NLMSG_ALIGNTO - 1)) != 0)
        {
            buffer.put((byte)0);
        }
        return this;
    }

    private void putLongBE(final long v)
    {
        for (int shift = 56; shift >= 0; shift -= 8)
        {
            buffer.put((byte)(v >>> shift));
        }
    }

}
