package dev.egressd.agent.conntrack.ctnetlink;

import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.netlink.NetlinkException;
import dev.egressd.agent.netlink.NetlinkMessages;
import dev.egressd.agent.netlink.NetlinkSocket;
import dev.egressd.agent.netlink.NetlinkWriter;
import static dev.egressd.agent.netlink.NetlinkConstants.CTA_ID;
import static dev.egressd.agent.netlink.NetlinkConstants.CTA_STATUS;
import static dev.egressd.agent.netlink.NetlinkConstants.CTA_TUPLE_IP;
import static dev.egressd.agent.netlink.NetlinkConstants.CTA_TUPLE_ORIG;
import static dev.egressd.agent.netlink.NetlinkConstants.CTA_TUPLE_PROTO;
import static dev.egressd.agent.netlink.NetlinkConstants.CTA_TUPLE_REPLY;
import static dev.egressd.agent.netlink.NetlinkConstants.IPCTNL_MSG_CT_DELETE;
import static dev.egressd.agent.netlink.NetlinkConstants.IPCTNL_MSG_CT_GET;
import static dev.egressd.agent.netlink.NetlinkConstants.IPCTNL_MSG_CT_NEW;
import static dev.egressd.agent.netlink.NetlinkConstants.NFGENMSG_SIZE;
import static dev.egressd.agent.netlink.NetlinkConstants.NFNETLINK_V0;
import static dev.egressd.agent.netlink.NetlinkConstants.NFNL_SUBSYS_CTNETLINK;
import static dev.egressd.agent.netlink.NetlinkConstants.NLMSG_HDRLEN;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_CREATE;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_DUMP;
import static dev.egressd.agent.netlink.NetlinkConstants.nfnlType;

import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.natives.NativeException;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * Conntrack over ctnetlink (NETLINK_NETFILTER): NEW and DESTROY events, a full dump for resync, and
 * deletion of entries by original source address.
 *
 * <p>Implementation notes.
 * <ul>
 * <li>Two sockets, both opened by {@link #open} on the calling thread, so both live in its network
 *     namespace: one subscribed to NFNLGRP_CONNTRACK_NEW and _DESTROY with a large receive buffer
 *     (bursts of connection churn must not overrun it), one for requests, so dump replies and
 *     events never interleave on one socket.</li>
 * <li>{@link #poll} reads up to {@value #BATCH} datagrams per system call (recvmmsg: the kernel sends each event
 *     in its own datagram, so one recvmsg would return one event) and parses each message in place into one
 *     reused {@link ConntrackEvent}: no allocation per event. ENOBUFS means the kernel dropped events: it goes to
 *     {@link Listener#onOverrun()}, and the caller should resync with {@link #dump}.</li>
 * <li>{@link #filter} attaches a socket filter ({@link EventFilter}) so the kernel queues only the events the ledger
 *     acts on; without one every event is read.</li>
 * <li>Deleting by source is dump-then-delete-each (by exact original tuple and CTA_ID), as
 *     {@code conntrack -D -s} does: ctnetlink's DELETE takes one tuple, and without a tuple it
 *     flushes everything. An entry already gone (ENOENT) is not an error.</li>
 * </ul>
 *
 * <p>{@link #poll} belongs to one thread; {@link #dump} and the deletes to one thread (it may be
 * another). Deleting a live TCP flow's entry kills the flow (docs/design.md, pitfall 10): hygiene only.
 */
public final class ConntrackEvents implements AutoCloseable
{
    /** Default kernel receive buffer for the event socket. */
    public static final int DEFAULT_RECEIVE_BUFFER = 8 << 20;

    /**
     * Datagrams per read: a poll that returns fewer events than this emptied the socket. 64 slots of
     * {@value #SLOT_SIZE} bytes are a 512 KiB buffer, read once per wake-up of the monitor thread, which waits a
     * little between reads so that events arrive in batches (see ConntrackMonitor).
     */
    public static final int BATCH = 64;
    /** Room per datagram: an event is a few hundred bytes. */
    static final int SLOT_SIZE = 8192;

    private static final int TCP = 6;
    private static final int UDP = 17;
    private static final int ICMP = 1;
    private static final int ICMPV6 = 58;

    /** Receives conntrack events; the event object is reused after the call returns. */
    public interface Listener
    {
        /**
         * One event or dumped entry.
         *
         * @param event the entry; valid during the call only.
         */
        void onEvent(ConntrackEvent event);

        /** The kernel dropped events (the socket overran): state is unknown until a {@link #dump}. */
        void onOverrun();
    }

    private final NetlinkSocket events;
    private final NetlinkSocket requests;
    private final ConntrackEvent event = new ConntrackEvent();
    private final ConntrackEvent dumped = new ConntrackEvent();
    private final NetlinkSocket.MessageHandler eventHandler = this::onEventMessage;
    private Listener listener;

    private ConntrackEvents(final NetlinkSocket events, final NetlinkSocket requests)
    {
        this.events = events;
        this.requests = requests;
    }

    /**
     * Subscribes to NEW and DESTROY events in the calling thread's network namespace.
     *
     * @param receiveBufferBytes the event socket's kernel buffer (SO_RCVBUFFORCE, else SO_RCVBUF).
     * @param pollTimeoutMillis  how long {@link #poll} waits before returning 0; 0 for ever.
     * @return the subscription.
     * @throws NativeException if a socket cannot be opened, bound or subscribed (EPERM without
     *                         CAP_NET_ADMIN).
     */
    public static ConntrackEvents open(final int receiveBufferBytes, final long pollTimeoutMillis) throws NativeException
    {
        return open(receiveBufferBytes, pollTimeoutMillis, false);
    }

    /**
     * Subscribes to NEW and DESTROY events, and UPDATE events too if asked, in the calling thread's network
     * namespace. UPDATE carries every state change (TCP: SYN_RECV, ESTABLISHED, FIN_WAIT, ... TIME_WAIT), which
     * is what tells a listener that a TCP entry stopped counting for {@code ct count} (docs/design.md, pitfall 8).
     *
     * @param receiveBufferBytes the event socket's kernel buffer (SO_RCVBUFFORCE, else SO_RCVBUF).
     * @param pollTimeoutMillis  how long {@link #poll} waits before returning 0; 0 for ever.
     * @param updates            whether to join NFNLGRP_CONNTRACK_UPDATE as well.
     * @return the subscription.
     * @throws NativeException if a socket cannot be opened, bound or subscribed.
     */
    public static ConntrackEvents open(final int receiveBufferBytes, final long pollTimeoutMillis,
        final boolean updates) throws NativeException
    {
        final NetlinkSocket events = NetlinkSocket.open(LibC.NETLINK_NETFILTER);
        NetlinkSocket requests = null;
        try
        {
            events.receiveBufferSize(receiveBufferBytes);
            events.receiveTimeout(pollTimeoutMillis);
            events.bind(0);
            events.joinGroup(NetlinkConstants.NFNLGRP_CONNTRACK_NEW);
            events.joinGroup(NetlinkConstants.NFNLGRP_CONNTRACK_DESTROY);
            if (updates)
            {
                events.joinGroup(NetlinkConstants.NFNLGRP_CONNTRACK_UPDATE);
            }
            requests = NetlinkSocket.open(LibC.NETLINK_NETFILTER).bind(0);
            requests.receiveTimeout(10_000);
            return new ConntrackEvents(events, requests);
        }
        catch (final NativeException | RuntimeException e)
        {
            events.close();
            if (requests != null)
            {
                requests.close();
            }
            throw e;
        }
    }

    /**
     * Waits for the next batch of events (up to the poll timeout) and hands each to the listener.
     *
     * @param listener receives events, and overruns.
     * @return the number of events, 0 on timeout or overrun.
     * @throws IOException if the socket fails.
     */
    public int poll(final Listener listener) throws IOException
    {
        this.listener = listener;
        final int n = events.receiveBatch(eventHandler, BATCH, SLOT_SIZE);
        if (n == NetlinkSocket.OVERRUN)
        {
            listener.onOverrun();
            return 0;
        }
        return n;
    }

    /**
     * Lets through only the events the ledger acts on, for guests inside the cover (see {@link EventFilter});
     * replaces the filter attached before. Events already queued stay queued.
     *
     * @param guests the cover of the guest addresses.
     * @throws NativeException if the kernel refuses the program.
     */
    public void filter(final GuestPrefixes guests) throws NativeException
    {
        final ClassicBpf.Program program = EventFilter.program(guests);
        events.attachFilter(program.toNative(), program.length());
    }

    /**
     * Reads a batch as {@link #poll} does, handing the raw messages over; for tests that compare the kernel's filter
     * with {@link ClassicBpf.Program#run}.
     *
     * @param handler receives each message.
     * @return messages read, 0 on timeout, {@link NetlinkSocket#OVERRUN} on ENOBUFS.
     * @throws IOException if the socket fails.
     */
    int pollRaw(final NetlinkSocket.MessageHandler handler) throws IOException
    {
        return events.receiveBatch(handler, BATCH, SLOT_SIZE);
    }

    /**
     * Dumps every conntrack entry (both families), each reported with type EXISTING.
     *
     * @param listener receives the entries.
     * @throws IOException if the dump fails.
     */
    public void dump(final Listener listener) throws IOException
    {
        requests.request(nfnlType(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET), NLM_F_DUMP)
            .u8(0).u8(NFNETLINK_V0).u16BE(0);               // nfgenmsg: AF_UNSPEC = every family
        requests.execute("IPCTNL_MSG_CT_GET dump", (b, off, len) ->
        {
            if (parse(b, off, len, dumped))
            {
                dumped.type = ConntrackEvent.Type.EXISTING;
                listener.onEvent(dumped);
            }
        });
    }

    /**
     * Deletes every entry whose original source is the address.
     *
     * @param source the original source, e.g. a guest's address.
     * @return how many entries were deleted.
     * @throws IOException if the dump or a delete fails.
     */
    public int deleteByOrigSource(final Ipv4Address source) throws IOException
    {
        return deleteMatching(e -> e.isIpv4() && e.origSrcV4 == source.bits());
    }

    /**
     * Deletes every entry whose original source is the address.
     *
     * @param source the original source.
     * @return how many entries were deleted.
     * @throws IOException if the dump or a delete fails.
     */
    public int deleteByOrigSource(final Ipv6Address source) throws IOException
    {
        return deleteMatching(e -> !e.isIpv4() && e.origSrcHigh == source.high() && e.origSrcLow == source.low());
    }

    /**
     * Deletes every entry whose original source is the guest address and whose translated source (the reply
     * tuple's destination) is the given egress address: a guest's flows through an egress it no longer uses.
     *
     * @param source     the original source (the guest).
     * @param translated the old egress address.
     * @return how many entries were deleted.
     * @throws IOException if the dump or a delete fails.
     */
    public int deleteByOrigSourceAndTranslated(final Ipv4Address source, final Ipv4Address translated)
        throws IOException
    {
        return deleteMatching(e -> e.isIpv4() && e.origSrcV4 == source.bits() && e.replyDstV4 == translated.bits());
    }

    /**
     * Deletes every entry whose original source is the guest address and whose translated source is the given
     * egress address.
     *
     * @param source     the original source (the guest).
     * @param translated the old egress address.
     * @return how many entries were deleted.
     * @throws IOException if the dump or a delete fails.
     */
    public int deleteByOrigSourceAndTranslated(final Ipv6Address source, final Ipv6Address translated)
        throws IOException
    {
        return deleteMatching(e -> !e.isIpv4() && e.origSrcHigh == source.high() && e.origSrcLow == source.low()
            && e.replyDstHigh == translated.high() && e.replyDstLow == translated.low());
    }

    /**
     * Deletes one entry by its original tuple and id, e.g. one reported by an event or a dump.
     *
     * @param entry the entry.
     * @return true if deleted, false if it was already gone.
     * @throws IOException if the kernel refuses.
     */
    public boolean delete(final ConntrackEvent entry) throws IOException
    {
        deleteRequest(requests.request(nfnlType(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE), 0), entry);
        try
        {
            requests.execute("IPCTNL_MSG_CT_DELETE", null);
            return true;
        }
        catch (final NetlinkException e)
        {
            if (e.isNotFound())
            {
                return false;
            }
            throw e;
        }
    }

    @Override
    public void close()
    {
        events.close();
        requests.close();
    }

    private interface Match
    {
        boolean test(ConntrackEvent e);
    }

    private int deleteMatching(final Match match) throws IOException
    {
        final List<ConntrackEvent> victims = new ArrayList<>();
        dump(new Listener()
        {
            @Override
            public void onEvent(final ConntrackEvent e)
            {
                if (match.test(e))
                {
                    victims.add(e.copy());
                }
            }

            @Override
            public void onOverrun()
            {
                // the request socket has no groups: never called
            }
        });
        int deleted = 0;
        for (final ConntrackEvent v : victims)
        {
            if (delete(v))
            {
                deleted++;
            }
        }
        return deleted;
    }

    private void onEventMessage(final ByteBuffer b, final int off, final int len)
    {
        if (parse(b, off, len, event))
        {
            listener.onEvent(event);
        }
    }

    /**
     * Parses an IPCTNL_MSG_CT_NEW / _DELETE message into an event without allocating.
     *
     * @param b    the buffer (native order).
     * @param off  the message offset.
     * @param len  nlmsg_len.
     * @param into the event to fill (reset first).
     * @return false if it is not a ctnetlink conntrack message.
     */
    static boolean parse(final ByteBuffer b, final int off, final int len, final ConntrackEvent into)
    {
        final int type = NetlinkMessages.type(b, off);
        if ((type >>> 8) != NFNL_SUBSYS_CTNETLINK || len < NLMSG_HDRLEN + NFGENMSG_SIZE)
        {
            return false;
        }
        into.reset();
        final int msg = type & 0xFF;
        if (msg == IPCTNL_MSG_CT_NEW)
        {
            into.type = (NetlinkMessages.flags(b, off) & NLM_F_CREATE) != 0 ? ConntrackEvent.Type.NEW
                : ConntrackEvent.Type.UPDATE;
        }
        else if (msg == IPCTNL_MSG_CT_DELETE)
        {
            into.type = ConntrackEvent.Type.DESTROY;
        }
        else
        {
            return false;
        }
        into.family = b.get(off + NLMSG_HDRLEN) & 0xFF;
        final int end = off + len;
        for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            final int p = NetlinkMessages.payload(a);
            final int size = NetlinkMessages.attrLength(b, a) - NetlinkConstants.NLA_HDRLEN;
            switch (NetlinkMessages.attrType(b, a))
            {
                case CTA_TUPLE_ORIG -> tuple(b, p, NetlinkMessages.attrEnd(b, a), into, true);
                case CTA_TUPLE_REPLY -> tuple(b, p, NetlinkMessages.attrEnd(b, a), into, false);
                case NetlinkConstants.CTA_PROTOINFO -> protoinfo(b, p, NetlinkMessages.attrEnd(b, a), into);
                case CTA_STATUS -> into.status = size >= 4 ? NetlinkMessages.u32BE(b, p) : 0;
                case CTA_ID ->
                {
                    if (size >= 4)
                    {
                        into.id = NetlinkMessages.u32BE(b, p);
                        into.hasId = true;
                    }
                }
                default ->
                {
                    // timeouts, counters, marks, protoinfo: not needed
                }
            }
        }
        return true;
    }

    private static void protoinfo(final ByteBuffer b, final int from, final int end, final ConntrackEvent e)
    {
        for (int a = NetlinkMessages.firstAttr(b, from, end); a >= 0; a = NetlinkMessages.nextAttr(b, a, end))
        {
            if (NetlinkMessages.attrType(b, a) == NetlinkConstants.CTA_PROTOINFO_TCP)
            {
                final int tcpEnd = NetlinkMessages.attrEnd(b, a);
                for (int t = NetlinkMessages.firstAttr(b, NetlinkMessages.payload(a), tcpEnd); t >= 0;
                     t = NetlinkMessages.nextAttr(b, t, tcpEnd))
                {
                    if (NetlinkMessages.attrType(b, t) == NetlinkConstants.CTA_PROTOINFO_TCP_STATE
                        && NetlinkMessages.attrLength(b, t) > NetlinkConstants.NLA_HDRLEN)
                    {
                        e.tcpState = b.get(NetlinkMessages.payload(t)) & 0xFF;
                    }
                }
            }
        }
    }

    private static void tuple(final ByteBuffer b, final int from, final int end, final ConntrackEvent e,
                              final boolean orig)
    {
        for (int a = NetlinkMessages.firstAttr(b, from, end); a >= 0; a = NetlinkMessages.nextAttr(b, a, end))
        {
            final int type = NetlinkMessages.attrType(b, a);
            if (type == CTA_TUPLE_IP)
            {
                ip(b, NetlinkMessages.payload(a), NetlinkMessages.attrEnd(b, a), e, orig);
            }
            else if (type == CTA_TUPLE_PROTO)
            {
                proto(b, NetlinkMessages.payload(a), NetlinkMessages.attrEnd(b, a), e, orig);
            }
        }
    }

    private static void ip(final ByteBuffer b, final int from, final int end, final ConntrackEvent e, final boolean orig)
    {
        for (int a = NetlinkMessages.firstAttr(b, from, end); a >= 0; a = NetlinkMessages.nextAttr(b, a, end))
        {
            final int p = NetlinkMessages.payload(a);
            final int size = NetlinkMessages.attrLength(b, a) - NetlinkConstants.NLA_HDRLEN;
            switch (NetlinkMessages.attrType(b, a))
            {
                case NetlinkConstants.CTA_IP_V4_SRC ->
                {
                    if (size >= 4)
                    {
                        if (orig)
                        {
                            e.origSrcV4 = NetlinkMessages.u32BE(b, p);
                        }
                        else
                        {
                            e.replySrcV4 = NetlinkMessages.u32BE(b, p);
                        }
                    }
                }
                case NetlinkConstants.CTA_IP_V4_DST ->
                {
                    if (size >= 4)
                    {
                        if (orig)
                        {
                            e.origDstV4 = NetlinkMessages.u32BE(b, p);
                        }
                        else
                        {
                            e.replyDstV4 = NetlinkMessages.u32BE(b, p);
                        }
                    }
                }
                case NetlinkConstants.CTA_IP_V6_SRC ->
                {
                    if (size >= 16)
                    {
                        if (orig)
                        {
                            e.origSrcHigh = NetlinkMessages.u64BE(b, p);
                            e.origSrcLow = NetlinkMessages.u64BE(b, p + 8);
                        }
                        else
                        {
                            e.replySrcHigh = NetlinkMessages.u64BE(b, p);
                            e.replySrcLow = NetlinkMessages.u64BE(b, p + 8);
                        }
                    }
                }
                case NetlinkConstants.CTA_IP_V6_DST ->
                {
                    if (size >= 16)
                    {
                        if (orig)
                        {
                            e.origDstHigh = NetlinkMessages.u64BE(b, p);
                            e.origDstLow = NetlinkMessages.u64BE(b, p + 8);
                        }
                        else
                        {
                            e.replyDstHigh = NetlinkMessages.u64BE(b, p);
                            e.replyDstLow = NetlinkMessages.u64BE(b, p + 8);
                        }
                    }
                }
                default ->
                {
                    // unknown address attribute: ignore
                }
            }
        }
    }

    private static void proto(final ByteBuffer b, final int from, final int end, final ConntrackEvent e,
                              final boolean orig)
    {
        for (int a = NetlinkMessages.firstAttr(b, from, end); a >= 0; a = NetlinkMessages.nextAttr(b, a, end))
        {
            final int p = NetlinkMessages.payload(a);
            switch (NetlinkMessages.attrType(b, a))
            {
                case NetlinkConstants.CTA_PROTO_NUM -> e.l4proto = b.get(p) & 0xFF;
                case NetlinkConstants.CTA_PROTO_SRC_PORT ->
                {
                    if (orig)
                    {
                        e.origSrcPort = NetlinkMessages.u16BE(b, p);
                    }
                    else
                    {
                        e.replySrcPort = NetlinkMessages.u16BE(b, p);
                    }
                }
                case NetlinkConstants.CTA_PROTO_DST_PORT ->
                {
                    if (orig)
                    {
                        e.origDstPort = NetlinkMessages.u16BE(b, p);
                    }
                    else
                    {
                        e.replyDstPort = NetlinkMessages.u16BE(b, p);
                    }
                }
                case NetlinkConstants.CTA_PROTO_ICMP_ID, NetlinkConstants.CTA_PROTO_ICMPV6_ID ->
                {
                    final int icmpId = NetlinkMessages.u16BE(b, p);
                    if (orig)
                    {
                        e.origSrcPort = icmpId;
                        e.origDstPort = icmpId;
                    }
                    else
                    {
                        e.replySrcPort = icmpId;
                        e.replyDstPort = icmpId;
                    }
                }
                case NetlinkConstants.CTA_PROTO_ICMP_TYPE, NetlinkConstants.CTA_PROTO_ICMPV6_TYPE ->
                {
                    if (orig)
                    {
                        e.icmpType = b.get(p) & 0xFF;
                    }
                }
                case NetlinkConstants.CTA_PROTO_ICMP_CODE, NetlinkConstants.CTA_PROTO_ICMPV6_CODE ->
                {
                    if (orig)
                    {
                        e.icmpCode = b.get(p) & 0xFF;
                    }
                }
                default ->
                {
                    // unknown protocol attribute: ignore
                }
            }
        }
    }

    /**
     * The body of an IPCTNL_MSG_CT_DELETE for one entry: its original tuple and, when known, its id
     * (so a newer entry that reuses the tuple is not hit).
     *
     * @param w a writer after {@link NetlinkWriter#begin}.
     * @param e the entry.
     */
    static void deleteRequest(final NetlinkWriter w, final ConntrackEvent e)
    {
        w.u8(e.family).u8(NFNETLINK_V0).u16BE(0);
        final int tuple = w.beginNested(CTA_TUPLE_ORIG);
        final int ip = w.beginNested(CTA_TUPLE_IP);
        if (e.isIpv4())
        {
            w.attrU32BE(NetlinkConstants.CTA_IP_V4_SRC, e.origSrcV4).attrU32BE(NetlinkConstants.CTA_IP_V4_DST, e.origDstV4);
        }
        else
        {
            w.attrU128BE(NetlinkConstants.CTA_IP_V6_SRC, e.origSrcHigh, e.origSrcLow)
                .attrU128BE(NetlinkConstants.CTA_IP_V6_DST, e.origDstHigh, e.origDstLow);
        }
        w.endNested(ip);
        final int proto = w.beginNested(CTA_TUPLE_PROTO);
        w.attrU8(NetlinkConstants.CTA_PROTO_NUM, e.l4proto);
        if (e.l4proto == ICMP)
        {
            w.attrU16BE(NetlinkConstants.CTA_PROTO_ICMP_ID, e.origSrcPort)
                .attrU8(NetlinkConstants.CTA_PROTO_ICMP_TYPE, e.icmpType)
                .attrU8(NetlinkConstants.CTA_PROTO_ICMP_CODE, e.icmpCode);
        }
        else if (e.l4proto == ICMPV6)
        {
            w.attrU16BE(NetlinkConstants.CTA_PROTO_ICMPV6_ID, e.origSrcPort)
                .attrU8(NetlinkConstants.CTA_PROTO_ICMPV6_TYPE, e.icmpType)
                .attrU8(NetlinkConstants.CTA_PROTO_ICMPV6_CODE, e.icmpCode);
        }
        else if (e.l4proto == TCP || e.l4proto == UDP || e.origSrcPort != 0 || e.origDstPort != 0)
        {
            w.attrU16BE(NetlinkConstants.CTA_PROTO_SRC_PORT, e.origSrcPort)
                .attrU16BE(NetlinkConstants.CTA_PROTO_DST_PORT, e.origDstPort);
        }
        w.endNested(proto);
        w.endNested(tuple);
        if (e.hasId)
        {
            w.attrU32BE(CTA_ID, e.id);
        }
    }
}
