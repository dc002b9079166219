package dev.egressd.agent.kernel.rtnetlink;

import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.natives.NativeException;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.netlink.NetlinkException;
import dev.egressd.agent.netlink.NetlinkMessages;
import dev.egressd.agent.netlink.NetlinkSocket;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;

import static dev.egressd.agent.netlink.NetlinkConstants.IFLA_IFNAME;
import static dev.egressd.agent.netlink.NetlinkConstants.NLMSG_HDRLEN;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_DUMP;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_GETADDR;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_GETLINK;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_GETROUTE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_NEWLINK;
import static dev.egressd.agent.netlink.NetlinkConstants.RTN_UNICAST;
import static dev.egressd.agent.netlink.NetlinkConstants.RT_TABLE_LOCAL;

/**
 * Reads what the host holds and routes as its own, over rtnetlink (RTM_GETLINK, RTM_GETADDR and RTM_GETROUTE dumps
 * of every interface and table), in the network namespace of the thread that opened it: the facts behind refusing a
 * pair address or a guest address that is the host's (docs/api.md, "Addresses that are the host's"). Read only.
 *
 * <p>Routes: only unicast routes outside the local table are kept (the local table holds a host route for every
 * address the host has, egress addresses included, and broadcast routes; those are addresses, read as such).
 * A multipath route's next hops are not read (its gateway is null).
 *
 * <p>Cost. A dump of a host with thousands of guest interfaces takes a while (2,000 taps with their routes: median
 * 34 ms, up to 284 ms, on a 2-core machine loaded by other builds), so {@link #readIfChanged()} dumps only when the kernel announced a change of links, addresses or
 * routes since the last dump: a second socket, opened in the same namespace and subscribed to those groups, is read
 * by a thread of its own, which notes that something arrived (or that the kernel dropped messages: an overrun).
 * A quiet host costs no dump at all, and the caller never waits for the notices.
 *
 * <p>Not thread-safe; use it from one thread (the one that opened it; the notice thread touches only its own
 * socket and a flag).
 */
public final class RtnetlinkHost implements AutoCloseable
{
    /** {@code <linux/rtnetlink.h>} RTMGRP_LINK: link changes. */
    static final int RTMGRP_LINK = 0x1;
    /** {@code <linux/rtnetlink.h>} RTMGRP_IPV4_IFADDR. */
    static final int RTMGRP_IPV4_IFADDR = 0x10;
    /** {@code <linux/rtnetlink.h>} RTMGRP_IPV4_ROUTE. */
    static final int RTMGRP_IPV4_ROUTE = 0x40;
    /** {@code <linux/rtnetlink.h>} RTMGRP_IPV6_IFADDR. */
    static final int RTMGRP_IPV6_IFADDR = 0x100;
    /** {@code <linux/rtnetlink.h>} RTMGRP_IPV6_ROUTE. */
    static final int RTMGRP_IPV6_ROUTE = 0x400;
    /** The groups whose messages say the host's addresses or routes may have changed. */
    static final int CHANGE_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR
        | RTMGRP_IPV6_ROUTE;
    /** How long the notice thread waits in one receive: how soon it sees {@link #close()}. */
    private static final int NOTICE_TIMEOUT_MS = 500;
    private static final NetlinkSocket.MessageHandler IGNORE = (b, off, len) ->
    {
        // only the arrival matters
    };
    /** {@code <linux/rtnetlink.h>} RTA_PREFSRC: the route's preferred source address. */
    static final int RTA_PREFSRC = RouteMessage.RTA_PREFSRC;
    /** {@code <linux/rtnetlink.h>} RTPROT_KERNEL: a route the kernel made (an address's prefix route). */
    public static final int RTPROT_KERNEL = 2;
    private static final int DUMP_ATTEMPTS = 5;

    /**
     * One address the host holds.
     *
     * @param iface   the interface's name.
     * @param address the address as RTM_GETADDR reports it.
     */
    public record HeldAddress(String iface, InterfaceAddress address)
    {
    }

    /**
     * One unicast route, its addresses in the model's text form (IPv6 compressed), so both families compare as text.
     *
     * @param iface        the output interface's name, or null (multipath).
     * @param table        the routing table.
     * @param protocol     rtm_protocol: who made the route ({@link #RTPROT_KERNEL} for the prefix route the kernel
     *                     adds with an address).
     * @param destination  the destination (the family's any-address for a default route).
     * @param prefixLength the destination's prefix length.
     * @param gateway      the next hop, or null for a route to a link.
     * @param prefsrc      the preferred source address, or null.
     */
    public record HostRoute(String iface, int table, int protocol, String destination, int prefixLength,
                            String gateway, String prefsrc)
    {
        /**
         * Whether the route leads to one address (/32 or /128).
         *
         * @return true for a host route.
         */
        public boolean isHostRoute()
        {
            return prefixLength == (destination.indexOf(':') >= 0 ? 128 : 32);
        }
    }

    /**
     * What one read found.
     *
     * @param addresses every address of every interface.
     * @param routes    the unicast routes of every table but the local one.
     */
    public record Snapshot(List<HeldAddress> addresses, List<HostRoute> routes)
    {
    }

    private final NetlinkSocket socket;
    /** Subscribed to {@link #CHANGE_GROUPS}: what arrives there says a new dump is due. Read by {@link #notices}. */
    private final NetlinkSocket events;
    private final Thread notices;
    /** Set by the notice thread when something arrived; also while it cannot read (every call dumps then). */
    private final AtomicBoolean changed = new AtomicBoolean();
    /** The notice thread could not read: every call dumps from then on. */
    private volatile boolean failed;
    private volatile boolean closing;
    private boolean dumped;

    private RtnetlinkHost(final NetlinkSocket socket, final NetlinkSocket events)
    {
        this.socket = socket;
        this.events = events;
        this.notices = new Thread(this::watch, "egressd-host-addresses");
        notices.setDaemon(true);
    }

    private void watch()
    {
        try
        {
            while (!closing)
            {
                if (events.receive(IGNORE) != 0)
                {
                    changed.set(true);
                }
            }
        }
        catch (final IOException | RuntimeException e)
        {
            // Without notices nothing says the host is unchanged: every call dumps from now on.
            failed = true;
            changed.set(true);
        }
    }

    /**
     * Opens a NETLINK_ROUTE request socket and a notice socket in the calling thread's network namespace, and starts
     * the thread that reads the notices.
     *
     * @return the reader; close it.
     * @throws NativeException if the socket cannot be opened or bound.
     */
    public static RtnetlinkHost open() throws NativeException
    {
        final NetlinkSocket socket = RtnetlinkAddresses.openRouteSocket();
        final NetlinkSocket events;
        try
        {
            events = NetlinkSocket.open(LibC.NETLINK_ROUTE);
        }
        catch (final NativeException e)
        {
            socket.close();
            throw e;
        }
        try
        {
            events.bind(CHANGE_GROUPS);
            events.receiveTimeout(NOTICE_TIMEOUT_MS);
        }
        catch (final NativeException e)
        {
            events.close();
            socket.close();
            throw e;
        }
        final RtnetlinkHost host = new RtnetlinkHost(socket, events);
        host.notices.start();
        return host;
    }

    /**
     * Dumps again only if the kernel announced a change since the last dump (the first call always dumps).
     *
     * @return the new snapshot, or null when nothing changed.
     * @throws IOException if a dump or the change socket fails.
     */
    public Snapshot readIfChanged() throws IOException
    {
        // Cleared before the dump: a change that comes during the dump is seen by the next call, which dumps again.
        final boolean noticed = changed.getAndSet(false);
        return noticed || !dumped || failed ? read() : null;
    }

    /**
     * Dumps the interfaces, their addresses and the routes.
     *
     * @return the snapshot.
     * @throws IOException if a dump fails.
     */
    public Snapshot read() throws IOException
    {
        dumped = false;
        final Map<Integer, String> names = new HashMap<>();
        dump(RTM_GETLINK, "RTM_GETLINK (dump)", () -> socket.request(RTM_GETLINK, NLM_F_DUMP)
            .u8(0).u8(0).u16(0).u32(0).u32(0).u32(0), (b, off, len) ->
        {
            if (NetlinkMessages.type(b, off) == RTM_NEWLINK)
            {
                final int end = off + len;
                for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NetlinkConstants.IFINFOMSG_SIZE, end);
                     a >= 0; a = NetlinkMessages.nextAttr(b, a, end))
                {
                    if (NetlinkMessages.attrType(b, a) == IFLA_IFNAME)
                    {
                        names.put(b.getInt(off + NLMSG_HDRLEN + 4), NetlinkMessages.attrString(b, a));
                    }
                }
            }
        }, names::clear);
        final List<HeldAddress> addresses = new ArrayList<>();
        dump(RTM_GETADDR, "RTM_GETADDR (dump)", () -> socket.request(RTM_GETADDR, NLM_F_DUMP)
            .u8(0).u8(0).u8(0).u8(0).u32(0), (b, off, len) ->
        {
            final InterfaceAddress a = RtnetlinkAddresses.parse(b, off, len, 0);
            if (a != null)
            {
                final int index = b.getInt(off + NLMSG_HDRLEN + 4);
                addresses.add(new HeldAddress(names.getOrDefault(index, "if" + index), a));
            }
        }, addresses::clear);
        final List<HostRoute> routes = new ArrayList<>();
        for (final int family : new int[] {LibC.AF_INET, LibC.AF_INET6})
        {
            final List<HostRoute> some = new ArrayList<>();
            dump(RTM_GETROUTE, "RTM_GETROUTE (dump)", () -> socket.request(RTM_GETROUTE, NLM_F_DUMP)
                .u8(family).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0).u32(0), (b, off, len) ->
            {
                final HostRoute r = parseRoute(b, off, len, family, names);
                if (r != null)
                {
                    some.add(r);
                }
            }, some::clear);
            routes.addAll(some);
        }
        dumped = true;
        return new Snapshot(List.copyOf(addresses), List.copyOf(routes));
    }

    /**
     * Parses one RTM_NEWROUTE message of a dump.
     *
     * @param b      the buffer.
     * @param off    the message's offset.
     * @param len    nlmsg_len.
     * @param family the family asked for.
     * @param names  interface names by index.
     * @return the route, or null for another family or type, the local table, or another message.
     */
    static HostRoute parseRoute(final ByteBuffer b, final int off, final int len, final int family,
                                final Map<Integer, String> names)
    {
        final RouteMessage m = RouteMessage.read(b, off, len);
        if (m == null || m.family() != family || m.type() != RTN_UNICAST || m.table() == RT_TABLE_LOCAL)
        {
            return null;
        }
        final int size = m.addressSize();
        final String destination = m.destination() >= 0 ? text(b, m.destination(), size)
            : size == 4 ? "0.0.0.0" : "::";
        final String iface = m.oif() >= 0 ? names.getOrDefault(m.oif(), "if" + m.oif()) : null;
        return new HostRoute(iface, m.table(), m.protocol(), destination, m.prefixLength(),
            m.gateway() >= 0 ? text(b, m.gateway(), size) : null, m.prefsrc() >= 0 ? text(b, m.prefsrc(), size) : null);
    }

    /** An address in network order at {@code p}, as the model's text. */
    private static String text(final ByteBuffer b, final int p, final int size)
    {
        if (size == 4)
        {
            return new Ipv4Address(NetlinkMessages.u32BE(b, p)).toString();
        }
        return new Ipv6Address(NetlinkMessages.u64BE(b, p), NetlinkMessages.u64BE(b, p + 8)).toString();
    }

    private interface Request
    {
        void write();
    }

    /** A dump, retried from scratch when a concurrent change interrupted it (NLM_F_DUMP_INTR). */
    private void dump(final int type, final String operation, final Request request,
                      final NetlinkSocket.MessageHandler handler, final Runnable reset) throws IOException
    {
        for (int attempt = 1; ; attempt++)
        {
            request.write();
            try
            {
                socket.execute(operation, handler);
                return;
            }
            catch (final NetlinkException e)
            {
                if (e.errno() != LibC.EINTR || attempt == DUMP_ATTEMPTS)
                {
                    throw e;
                }
                reset.run();
            }
        }
    }

    @Override
    public void close()
    {
        closing = true;
        try
        {
            // The notice thread leaves its receive within NOTICE_TIMEOUT_MS; its socket is closed only after.
            notices.join(4L * NOTICE_TIMEOUT_MS);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
        try
        {
            if (!notices.isAlive())
            {
                events.close();
            }
        }
        finally
        {
            socket.close();
        }
    }
}
