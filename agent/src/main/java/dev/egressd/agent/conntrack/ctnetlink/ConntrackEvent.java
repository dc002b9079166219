package dev.egressd.agent.conntrack.ctnetlink;

import dev.egressd.agent.natives.LibC;

/**
 * One conntrack entry as ctnetlink reports it, held in primitives and reused for every message so
 * the event path allocates nothing. Valid only during the callback it is passed to; call
 * {@link #copy()} to keep one.
 *
 * <p>Addresses: IPv4 as an {@code int} (network order packed, as {@code Ipv4Address.bits()}), IPv6
 * as two longs (as {@code Ipv6Address.high()/low()}); which fields are meaningful follows
 * {@link #family()}. For SNAT the translated source is the reply tuple's destination:
 * {@link #replyDstV4()} / {@link #replyDstPort()}. For ICMP and ICMPv6 the echo id stands in for both
 * ports of a tuple, so {@code replyDstPort} is the translated id there too.
 */
public final class ConntrackEvent
{
    /** What happened to the entry. */
    public enum Type
    {
        /** A new entry (IPCTNL_MSG_CT_NEW with NLM_F_CREATE). */
        NEW,
        /** An existing entry changed (IPCTNL_MSG_CT_NEW without NLM_F_CREATE); only with the UPDATE group. */
        UPDATE,
        /** The entry is gone (IPCTNL_MSG_CT_DELETE). */
        DESTROY,
        /** Reported by a dump: the entry exists. */
        EXISTING
    }

    Type type;
    int family;
    int l4proto;
    int id;
    int status;
    boolean hasId;

    int origSrcV4;
    int origDstV4;
    long origSrcHigh;
    long origSrcLow;
    long origDstHigh;
    long origDstLow;
    int origSrcPort;
    int origDstPort;
    int icmpType;
    int icmpCode;
    int tcpState;

    int replySrcV4;
    int replyDstV4;
    long replySrcHigh;
    long replySrcLow;
    long replyDstHigh;
    long replyDstLow;
    int replySrcPort;
    int replyDstPort;

    /** An empty event, for a parser to fill. */
    public ConntrackEvent()
    {
        reset();
    }

    void reset()
    {
        type = null;
        family = 0;
        l4proto = 0;
        id = 0;
        status = 0;
        hasId = false;
        origSrcV4 = 0;
        origDstV4 = 0;
        origSrcHigh = 0;
        origSrcLow = 0;
        origDstHigh = 0;
        origDstLow = 0;
        origSrcPort = 0;
        origDstPort = 0;
        icmpType = 0;
        icmpCode = 0;
        tcpState = 0;
        replySrcV4 = 0;
        replyDstV4 = 0;
        replySrcHigh = 0;
        replySrcLow = 0;
        replyDstHigh = 0;
        replyDstLow = 0;
        replySrcPort = 0;
        replyDstPort = 0;
    }

    /**
     * A detached copy, for keeping an event beyond its callback (allocates).
     *
     * @return the copy.
     */
    public ConntrackEvent copy()
    {
        final ConntrackEvent c = new ConntrackEvent();
        c.type = type;
        c.family = family;
        c.l4proto = l4proto;
        c.id = id;
        c.status = status;
        c.hasId = hasId;
        c.origSrcV4 = origSrcV4;
        c.origDstV4 = origDstV4;
        c.origSrcHigh = origSrcHigh;
        c.origSrcLow = origSrcLow;
        c.origDstHigh = origDstHigh;
        c.origDstLow = origDstLow;
        c.origSrcPort = origSrcPort;
        c.origDstPort = origDstPort;
        c.icmpType = icmpType;
        c.icmpCode = icmpCode;
        c.tcpState = tcpState;
        c.replySrcV4 = replySrcV4;
        c.replyDstV4 = replyDstV4;
        c.replySrcHigh = replySrcHigh;
        c.replySrcLow = replySrcLow;
        c.replyDstHigh = replyDstHigh;
        c.replyDstLow = replyDstLow;
        c.replySrcPort = replySrcPort;
        c.replyDstPort = replyDstPort;
        return c;
    }

    /** @return NEW, UPDATE, DESTROY or EXISTING. */
    public Type type()
    {
        return type;
    }

    /** @return AF_INET (2) or AF_INET6 (10), from nfgenmsg. */
    public int family()
    {
        return family;
    }

    /** @return whether the entry is IPv4. */
    public boolean isIpv4()
    {
        return family == LibC.AF_INET;
    }

    /** @return the IP protocol number: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6. */
    public int l4proto()
    {
        return l4proto;
    }

    /** @return CTA_ID, the kernel's id for the entry (stable for its life). */
    public int id()
    {
        return id;
    }

    /** @return CTA_STATUS bits (IPS_*), e.g. {@link NetlinkConstants#IPS_SRC_NAT}. */
    public int status()
    {
        return status;
    }

    /** @return the original source, IPv4. */
    public int origSrcV4()
    {
        return origSrcV4;
    }

    /** @return the original destination, IPv4. */
    public int origDstV4()
    {
        return origDstV4;
    }

    /** @return the original source, IPv6, first 64 bits. */
    public long origSrcHigh()
    {
        return origSrcHigh;
    }

    /** @return the original source, IPv6, last 64 bits. */
    public long origSrcLow()
    {
        return origSrcLow;
    }

    /** @return the original destination, IPv6, first 64 bits. */
    public long origDstHigh()
    {
        return origDstHigh;
    }

    /** @return the original destination, IPv6, last 64 bits. */
    public long origDstLow()
    {
        return origDstLow;
    }

    /** @return the original source port (ICMP: the echo id). */
    public int origSrcPort()
    {
        return origSrcPort;
    }

    /** @return the original destination port (ICMP: the echo id). */
    public int origDstPort()
    {
        return origDstPort;
    }

    /** @return the ICMP/ICMPv6 type of the original tuple, 0 otherwise. */
    public int icmpType()
    {
        return icmpType;
    }

    /** @return the ICMP/ICMPv6 code of the original tuple, 0 otherwise. */
    public int icmpCode()
    {
        return icmpCode;
    }

    /**
     * The TCP conntrack state from CTA_PROTOINFO (TCP_CONNTRACK_*: 3 ESTABLISHED, 7 TIME_WAIT, 8 CLOSE), 0 when
     * the message carried none (not TCP, or an event without protocol info).
     *
     * @return the state.
     */
    public int tcpState()
    {
        return tcpState;
    }

    /**
     * Fills this event as an IPv4 entry, for tests, benchmarks and replay (the parser fills events itself).
     *
     * @param type        the event type.
     * @param id          CTA_ID.
     * @param l4proto     the protocol number.
     * @param status      CTA_STATUS bits.
     * @param tcpState    the TCP state, 0 if none.
     * @param origSrc     the original source (the guest).
     * @param origSrcPort the original source port.
     * @param origDst     the destination.
     * @param origDstPort the destination port.
     * @param replyDst    the translated source address.
     * @param replyDstPort the translated source port.
     * @return this event.
     */
    public ConntrackEvent fillIpv4(final Type type, final int id, final int l4proto, final int status,
        final int tcpState, final int origSrc, final int origSrcPort, final int origDst, final int origDstPort,
        final int replyDst, final int replyDstPort)
    {
        reset();
        this.type = type;
        this.family = LibC.AF_INET;
        this.id = id;
        this.hasId = true;
        this.l4proto = l4proto;
        this.status = status;
        this.tcpState = tcpState;
        this.origSrcV4 = origSrc;
        this.origSrcPort = origSrcPort;
        this.origDstV4 = origDst;
        this.origDstPort = origDstPort;
        this.replySrcV4 = origDst;
        this.replySrcPort = origDstPort;
        this.replyDstV4 = replyDst;
        this.replyDstPort = replyDstPort;
        return this;
    }

    /**
     * Fills this event as an IPv6 entry, for tests, benchmarks and replay.
     *
     * @param type         the event type.
     * @param id           CTA_ID.
     * @param l4proto      the protocol number.
     * @param status       CTA_STATUS bits.
     * @param tcpState     the TCP state, 0 if none.
     * @param srcHigh      the original source, first 64 bits.
     * @param srcLow       the original source, last 64 bits.
     * @param dstHigh      the destination, first 64 bits.
     * @param dstLow       the destination, last 64 bits.
     * @param replyDstHigh the translated source, first 64 bits.
     * @param replyDstLow  the translated source, last 64 bits.
     * @param replyDstPort the translated source port.
     * @return this event.
     */
    public ConntrackEvent fillIpv6(final Type type, final int id, final int l4proto, final int status,
        final int tcpState, final long srcHigh, final long srcLow, final long dstHigh, final long dstLow,
        final long replyDstHigh, final long replyDstLow, final int replyDstPort)
    {
        reset();
        this.type = type;
        this.family = LibC.AF_INET6;
        this.id = id;
        this.hasId = true;
        this.l4proto = l4proto;
        this.status = status;
        this.tcpState = tcpState;
        this.origSrcHigh = srcHigh;
        this.origSrcLow = srcLow;
        this.origDstHigh = dstHigh;
        this.origDstLow = dstLow;
        this.replySrcHigh = dstHigh;
        this.replySrcLow = dstLow;
        this.replyDstHigh = replyDstHigh;
        this.replyDstLow = replyDstLow;
        this.replyDstPort = replyDstPort;
        return this;
    }

    /** @return the reply source (the original destination, unless DNAT), IPv4. */
    public int replySrcV4()
    {
        return replySrcV4;
    }

    /** @return the reply destination = the translated source address, IPv4. */
    public int replyDstV4()
    {
        return replyDstV4;
    }

    /** @return the reply source, IPv6, first 64 bits. */
    public long replySrcHigh()
    {
        return replySrcHigh;
    }

    /** @return the reply source, IPv6, last 64 bits. */
    public long replySrcLow()
    {
        return replySrcLow;
    }

    /** @return the reply destination = the translated source, IPv6, first 64 bits. */
    public long replyDstHigh()
    {
        return replyDstHigh;
    }

    /** @return the reply destination = the translated source, IPv6, last 64 bits. */
    public long replyDstLow()
    {
        return replyDstLow;
    }

    /** @return the reply source port. */
    public int replySrcPort()
    {
        return replySrcPort;
    }

    /** @return the reply destination port = the translated source port (ICMP: the translated id). */
    public int replyDstPort()
    {
        return replyDstPort;
    }

    @Override
    public String toString()
    {
        return type + " " + (isIpv4() ? "ipv4" : "ipv6") + " proto " + l4proto + " id " + Integer.toUnsignedString(id)
            + " status 0x" + Integer.toHexString(status)
            + " orig " + addr(origSrcV4, origSrcHigh, origSrcLow) + ":" + origSrcPort
            + " -> " + addr(origDstV4, origDstHigh, origDstLow) + ":" + origDstPort
            + " reply " + addr(replySrcV4, replySrcHigh, replySrcLow) + ":" + replySrcPort
            + " -> " + addr(replyDstV4, replyDstHigh, replyDstLow) + ":" + replyDstPort;
    }

    private String addr(final int v4, final long high, final long low)
    {
        return isIpv4() ? new dev.egressd.core.model.Ipv4Address(v4).toString()
            : new dev.egressd.core.model.Ipv6Address(high, low).toString();
    }
}
