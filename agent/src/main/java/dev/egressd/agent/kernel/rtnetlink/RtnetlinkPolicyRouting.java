package dev.egressd.agent.kernel.rtnetlink;

import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.netlink.NetlinkException;
import dev.egressd.agent.netlink.NetlinkMessages;
import dev.egressd.agent.netlink.NetlinkSocket;
import dev.egressd.agent.netlink.NetlinkWriter;
import static dev.egressd.agent.netlink.NetlinkConstants.FIB_RULE_HDR_SIZE;
import static dev.egressd.agent.netlink.NetlinkConstants.FRA_FWMARK;
import static dev.egressd.agent.netlink.NetlinkConstants.FRA_FWMASK;
import static dev.egressd.agent.netlink.NetlinkConstants.FRA_PRIORITY;
import static dev.egressd.agent.netlink.NetlinkConstants.FRA_PROTOCOL;
import static dev.egressd.agent.netlink.NetlinkConstants.FRA_TABLE;
import static dev.egressd.agent.netlink.NetlinkConstants.FR_ACT_TO_TBL;
import static dev.egressd.agent.netlink.NetlinkConstants.NLMSG_HDRLEN;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_CREATE;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_DUMP;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_EXCL;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_REPLACE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTA_DST;
import static dev.egressd.agent.netlink.NetlinkConstants.RTA_GATEWAY;
import static dev.egressd.agent.netlink.NetlinkConstants.RTA_TABLE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTMSG_SIZE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_DELROUTE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_DELRULE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_GETROUTE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_GETRULE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_NEWROUTE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_NEWRULE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTN_UNICAST;
import static dev.egressd.agent.netlink.NetlinkConstants.RTN_UNSPEC;
import static dev.egressd.agent.netlink.NetlinkConstants.RTPROT_EGRESSD;
import static dev.egressd.agent.netlink.NetlinkConstants.RTPROT_UNSPEC;
import static dev.egressd.agent.netlink.NetlinkConstants.RT_SCOPE_NOWHERE;
import static dev.egressd.agent.netlink.NetlinkConstants.RT_SCOPE_UNIVERSE;
import static dev.egressd.agent.netlink.NetlinkConstants.RT_TABLE_DEFAULT;
import static dev.egressd.agent.netlink.NetlinkConstants.RT_TABLE_LOCAL;
import static dev.egressd.agent.netlink.NetlinkConstants.RT_TABLE_MAIN;
import static dev.egressd.agent.netlink.NetlinkConstants.RT_TABLE_UNSPEC;

import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.natives.NativeException;
import dev.egressd.core.model.Ipv6Address;
import java.io.IOException;
import java.net.Inet4Address;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link PolicyRouting} over rtnetlink (RTM_NEWRULE / RTM_DELRULE / RTM_GETRULE with struct fib_rule_hdr,
 * RTM_NEWROUTE / RTM_DELROUTE / RTM_GETROUTE with struct rtmsg), in the network namespace of the thread that opened
 * it. What it puts into the kernel is what {@code ip rule add fwmark M lookup T pref P} and
 * {@code ip route replace D via G table T} would, with two differences:
 * <ul>
 * <li>Rules and routes carry egressd's protocol {@link NetlinkConstants#RTPROT_EGRESSD} (0xE5, {@code proto 229}
 *     in {@code ip rule} / {@code ip route}), so an operator can tell them apart. Reading and deleting do not
 *     depend on it: the caller owns a table range, and everything in it is listed and may be deleted, whoever put
 *     it there.</li>
 * <li>Tables are 32-bit: the table goes in FRA_TABLE / RTA_TABLE always, and in the header's u8 only when it fits
 *     (else RT_TABLE_UNSPEC there), as iproute2 does. The reserved tables (0, default 253, main 254, local 255) are
 *     refused: egressd never changes them.</li>
 * </ul>
 *
 * <p>Idempotence. The kernel accepts duplicate rules unless NLM_F_EXCL is set, and its duplicate test compares the
 * rule's protocol too (a hand-made copy without our protocol is a different rule to it), so {@link #addRule} first
 * dumps the rules and adds nothing when a rule with the same family, mark, table and priority and no other
 * selector (full mask, no source, destination or interface, not inverted) is there; otherwise it adds with
 * NLM_F_CREATE|NLM_F_EXCL, taking EEXIST (a concurrent add) as done. {@link #deleteRule} names mark, mask, table
 * and priority (not the protocol, so a hand-made copy in the range goes too) and takes ENOENT as done.
 * {@link #replaceRoute} sends NLM_F_CREATE|NLM_F_REPLACE: one route per destination and table, whatever was there.
 * {@link #deleteRoute} names destination, table and gateway (any protocol, scope and type), so it deletes exactly
 * the route it was given and takes ESRCH / ENOENT (route or table gone) as done; a route that meanwhile points
 * elsewhere is not the one asked for and stays.
 *
 * <p>Listing. {@link #rules} returns the rules that look up a table in the range (other actions, such as
 * blackhole, are no rules egressd makes), a rule without a mark as mark 0. {@link #routes} returns every route in
 * the range, a route without a single gateway (device or multipath route) with a null gateway. The kernel dumps
 * all tables; the range is applied while parsing.
 *
 * <p>No output interface is sent: the kernel finds it from the gateway, which must be reachable on a connected
 * route (the router's point-to-point link to the host, IPv4 or global IPv6 such as {@code 2001:db8:1:N::1}).
 *
 * <p>Not thread-safe; use it from one thread (the one that opened it).
 */
public final class RtnetlinkPolicyRouting implements PolicyRouting
{
    private static final int DUMP_ATTEMPTS = 5;
    /** Create, refusing an exact duplicate (EEXIST) instead of adding a second copy. */
    static final int RULE_ADD_FLAGS = NLM_F_CREATE | NLM_F_EXCL;
    /** Create or replace the route to the destination in the table. */
    static final int ROUTE_REPLACE_FLAGS = NLM_F_CREATE | NLM_F_REPLACE;
    /** FRA_FWMASK: the whole mark is compared. */
    static final int FULL_MASK = 0xFFFFFFFF;

    private final NetlinkSocket socket;

    private RtnetlinkPolicyRouting(final NetlinkSocket socket)
    {
        this.socket = socket;
    }

    /**
     * Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
     *
     * @return the client.
     * @throws NativeException if the socket cannot be opened or bound.
     */
    public static RtnetlinkPolicyRouting open() throws NativeException
    {
        return new RtnetlinkPolicyRouting(RtnetlinkAddresses.openRouteSocket());
    }

    @Override
    public List<Rule> rules(final int family, final int firstTable, final int lastTable) throws IOException
    {
        checkFamily(family, "family");
        checkRange(firstTable, lastTable);
        final String operation = "RTM_GETRULE " + familyName(family) + " tables " + Integer.toUnsignedString(firstTable)
            + ".." + Integer.toUnsignedString(lastTable);
        return dump(RTM_GETRULE, operation, w -> fibRuleHdr(w, family, 0, 0), (b, off, len, out) ->
        {
            final Rule r = parseRule(b, off, len, family);
            if (r != null && inRange(r.table(), firstTable, lastTable))
            {
                out.add(r);
            }
        });
    }

    @Override
    public void addRule(final Rule rule) throws IOException
    {
        checkRule(rule);
        final List<Rule> there = dump(RTM_GETRULE, "RTM_GETRULE (before adding " + describe(rule) + ")",
            w -> fibRuleHdr(w, rule.family(), 0, 0), (b, off, len, out) ->
            {
                if (rule.equals(parseRule(b, off, len, rule.family())) && selectsOnlyTheMark(b, off, len))
                {
                    out.add(rule);
                }
            });
        if (!there.isEmpty())
        {
            return;
        }
        newRule(socket.request(RTM_NEWRULE, RULE_ADD_FLAGS), rule);
        try
        {
            socket.execute("RTM_NEWRULE " + describe(rule), null);
        }
        catch (final NetlinkException e)
        {
            if (!e.isAlreadyExists())
            {
                throw e;
            }
        }
    }

    @Override
    public void deleteRule(final Rule rule) throws IOException
    {
        checkRule(rule);
        deleteRule(socket.request(RTM_DELRULE, 0), rule);
        try
        {
            socket.execute("RTM_DELRULE " + describe(rule), null);
        }
        catch (final NetlinkException e)
        {
            if (!e.isNotFound())
            {
                throw e;
            }
        }
    }

    @Override
    public List<Route> routes(final int family, final int firstTable, final int lastTable) throws IOException
    {
        checkFamily(family, "family");
        checkRange(firstTable, lastTable);
        final String operation = "RTM_GETROUTE " + familyName(family) + " tables "
            + Integer.toUnsignedString(firstTable) + ".." + Integer.toUnsignedString(lastTable);
        // Without NETLINK_GET_STRICT_CHK the kernel ignores the header's table, so the range is applied here.
        return dump(RTM_GETROUTE, operation,
            w -> rtmsg(w, family, 0, RT_TABLE_UNSPEC, RTPROT_UNSPEC, RT_SCOPE_UNIVERSE, RTN_UNSPEC),
            (b, off, len, out) ->
            {
                final Route r = parseRoute(b, off, len, family);
                if (r != null && inRange(r.table(), firstTable, lastTable))
                {
                    out.add(r);
                }
            });
    }

    @Override
    public void replaceRoute(final Route route) throws IOException
    {
        checkRoute(route);
        newRoute(socket.request(RTM_NEWROUTE, ROUTE_REPLACE_FLAGS), route);
        socket.execute("RTM_NEWROUTE (replace) " + describe(route), null);
    }

    @Override
    public void deleteRoute(final Route route) throws IOException
    {
        checkRoute(route);
        deleteRoute(socket.request(RTM_DELROUTE, 0), route);
        try
        {
            socket.execute("RTM_DELROUTE " + describe(route), null);
        }
        catch (final NetlinkException e)
        {
            if (!e.isNotFound())
            {
                throw e;
            }
        }
    }

    @Override
    public void close()
    {
        socket.close();
    }

    // ---- messages ------------------------------------------------------------------------------------------------

    /**
     * The body of RTM_NEWRULE: {@code fwmark M/0xffffffff lookup T pref P proto egressd}.
     *
     * @param w    a writer after {@link NetlinkWriter#begin}.
     * @param rule the rule.
     */
    static void newRule(final NetlinkWriter w, final Rule rule)
    {
        ruleBody(w, rule);
        w.attrU8(FRA_PROTOCOL, RTPROT_EGRESSD);
    }

    /**
     * The body of RTM_DELRULE: the same selectors as {@link #newRule} without the protocol, so the kernel deletes
     * the first rule with this mark, mask, table and priority whoever made it.
     *
     * @param w    a writer after {@link NetlinkWriter#begin}.
     * @param rule the rule.
     */
    static void deleteRule(final NetlinkWriter w, final Rule rule)
    {
        ruleBody(w, rule);
    }

    /**
     * The body of RTM_NEWROUTE: {@code D/len via G table T proto egressd}, unicast, universe scope.
     *
     * @param w     a writer after {@link NetlinkWriter#begin}.
     * @param route the route.
     */
    static void newRoute(final NetlinkWriter w, final Route route)
    {
        rtmsg(w, route.family(), route.prefixLength(), headerTable(route.table()), RTPROT_EGRESSD, RT_SCOPE_UNIVERSE,
            RTN_UNICAST);
        routeAttributes(w, route);
    }

    /**
     * The body of RTM_DELROUTE: destination, table and gateway; any protocol, scope (RT_SCOPE_NOWHERE) and type.
     *
     * @param w     a writer after {@link NetlinkWriter#begin}.
     * @param route the route.
     */
    static void deleteRoute(final NetlinkWriter w, final Route route)
    {
        rtmsg(w, route.family(), route.prefixLength(), headerTable(route.table()), RTPROT_UNSPEC, RT_SCOPE_NOWHERE,
            RTN_UNSPEC);
        routeAttributes(w, route);
    }

    /**
     * Parses one RTM_NEWRULE message of a dump.
     *
     * @param b      the buffer.
     * @param off    the message offset.
     * @param len    nlmsg_len.
     * @param family only rules of this family are returned.
     * @return the rule, or null for another family or message type, or an action other than "lookup a table"
     *         (blackhole, goto, ...): those are no rules egressd makes. A rule without a mark reads as mark 0.
     */
    static Rule parseRule(final ByteBuffer b, final int off, final int len, final int family)
    {
        if (NetlinkMessages.type(b, off) != RTM_NEWRULE || len < NLMSG_HDRLEN + FIB_RULE_HDR_SIZE)
        {
            return null;
        }
        final int h = off + NLMSG_HDRLEN;
        if ((b.get(h) & 0xFF) != family || (b.get(h + 7) & 0xFF) != FR_ACT_TO_TBL)
        {
            return null;
        }
        int table = b.get(h + 4) & 0xFF;
        int mark = 0;
        int priority = 0;
        final int end = off + len;
        for (int a = NetlinkMessages.firstAttr(b, h + FIB_RULE_HDR_SIZE, end); a >= 0; a = NetlinkMessages.nextAttr(b, a, end))
        {
            if (NetlinkMessages.attrLength(b, a) - NetlinkConstants.NLA_HDRLEN < 4)
            {
                continue;
            }
            final int p = NetlinkMessages.payload(a);
            switch (NetlinkMessages.attrType(b, a))
            {
                case FRA_TABLE -> table = b.getInt(p);
                case FRA_FWMARK -> mark = b.getInt(p);
                case FRA_PRIORITY -> priority = b.getInt(p);
                default ->
                {
                    // mask, protocol, selectors egressd does not use
                }
            }
        }
        return new Rule(family, mark, table, priority);
    }

    /**
     * Whether a rule of a dump selects packets by the whole mark alone, like the rules egressd makes: no source,
     * destination, TOS or interface selector, not inverted, mask 0xffffffff. Only such a rule makes an add
     * redundant; {@code from 10.0.0.0/8 fwmark 1 lookup 1001} does not do what egressd's rule does.
     *
     * @param b   the buffer.
     * @param off the message offset (an RTM_NEWRULE).
     * @param len nlmsg_len.
     * @return true for a mark-only rule.
     */
    static boolean selectsOnlyTheMark(final ByteBuffer b, final int off, final int len)
    {
        if (len < NLMSG_HDRLEN + FIB_RULE_HDR_SIZE)
        {
            return false;
        }
        final int h = off + NLMSG_HDRLEN;
        if (b.get(h + 1) != 0 || b.get(h + 2) != 0 || b.get(h + 3) != 0
            || (b.getInt(h + 8) & NetlinkConstants.FIB_RULE_INVERT) != 0)
        {
            return false;
        }
        boolean fullMask = false;
        final int end = off + len;
        for (int a = NetlinkMessages.firstAttr(b, h + FIB_RULE_HDR_SIZE, end); a >= 0; a = NetlinkMessages.nextAttr(b, a, end))
        {
            final int type = NetlinkMessages.attrType(b, a);
            if (type == NetlinkConstants.FRA_IIFNAME || type == NetlinkConstants.FRA_OIFNAME)
            {
                return false;
            }
            if (type == FRA_FWMASK && NetlinkMessages.attrLength(b, a) - NetlinkConstants.NLA_HDRLEN >= 4)
            {
                fullMask = b.getInt(NetlinkMessages.payload(a)) == FULL_MASK;
            }
        }
        return fullMask;
    }

    /**
     * Parses one RTM_NEWROUTE message of a dump.
     *
     * @param b      the buffer.
     * @param off    the message offset.
     * @param len    nlmsg_len.
     * @param family only routes of this family are returned.
     * @return the route, or null for another family or message type. The destination of a default route is the
     *         family's any-address with prefix length 0; the gateway is null for a route without RTA_GATEWAY
     *         (a device route, or a multipath route: egressd makes neither).
     */
    static Route parseRoute(final ByteBuffer b, final int off, final int len, final int family)
    {
        final RouteMessage m = RouteMessage.read(b, off, len);
        if (m == null || m.family() != family)
        {
            return null;
        }
        final int size = m.addressSize();
        final InetAddress destination = m.destination() >= 0 ? address(b, m.destination(), size)
            : address(ByteBuffer.allocate(size), 0, size);
        return new Route(family, m.table(), destination, m.prefixLength(),
            m.gateway() >= 0 ? address(b, m.gateway(), size) : null);
    }

    private static void ruleBody(final NetlinkWriter w, final Rule rule)
    {
        fibRuleHdr(w, rule.family(), headerTable(rule.table()), FR_ACT_TO_TBL);
        w.attrU32(FRA_PRIORITY, rule.priority())
            .attrU32(FRA_FWMARK, rule.mark())
            .attrU32(FRA_FWMASK, FULL_MASK)
            .attrU32(FRA_TABLE, rule.table());
    }

    private static void routeAttributes(final NetlinkWriter w, final Route route)
    {
        w.attrU32(RTA_TABLE, route.table());
        putAddress(w, RTA_DST, route.destination());
        putAddress(w, RTA_GATEWAY, route.gateway());
    }

    private static void fibRuleHdr(final NetlinkWriter w, final int family, final int table, final int action)
    {
        // struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action; u32 flags.
        w.u8(family).u8(0).u8(0).u8(0).u8(table).u8(0).u8(0).u8(action).u32(0);
    }

    private static void rtmsg(final NetlinkWriter w, final int family, final int dstLength, final int table,
                              final int protocol, final int scope, final int type)
    {
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags.
        w.u8(family).u8(dstLength).u8(0).u8(0).u8(table).u8(protocol).u8(scope).u8(type).u32(0);
    }

    /** The header's u8 table: the table when it fits, else RT_TABLE_UNSPEC (the u32 attribute carries it). */
    private static int headerTable(final int table)
    {
        return Integer.compareUnsigned(table, 256) < 0 ? table : RT_TABLE_UNSPEC;
    }

    private static void putAddress(final NetlinkWriter w, final int type, final InetAddress address)
    {
        final ByteBuffer a = ByteBuffer.wrap(address.getAddress());
        if (address instanceof Inet4Address)
        {
            w.attrU32BE(type, a.getInt(0));
        }
        else
        {
            w.attrU128BE(type, a.getLong(0), a.getLong(8));
        }
    }

    private static InetAddress address(final ByteBuffer b, final int p, final int size)
    {
        final byte[] bytes = new byte[size];
        for (int i = 0; i < size; i++)
        {
            bytes[i] = b.get(p + i);
        }
        try
        {
            // For 16 bytes this keeps an Inet6Address even for ::ffff:a.b.c.d, since getByAddress does not map.
            return size == 4 ? InetAddress.getByAddress(bytes) : Inet6Address.getByAddress(null, bytes, null);
        }
        catch (final UnknownHostException e)
        {
            throw new IllegalStateException("address of " + size + " bytes refused", e);
        }
    }

    // ---- dumps ---------------------------------------------------------------------------------------------------

    private interface Header
    {
        void write(NetlinkWriter w);
    }

    private interface Collector<T>
    {
        void accept(ByteBuffer b, int off, int len, List<T> out) throws IOException;
    }

    /** A dump, retried when a concurrent change interrupted it (NLM_F_DUMP_INTR). */
    private <T> List<T> dump(final int type, final String operation, final Header header,
                             final Collector<T> collector) throws IOException
    {
        for (int attempt = 1; ; attempt++)
        {
            final List<T> out = new ArrayList<>();
            header.write(socket.request(type, NLM_F_DUMP));
            try
            {
                socket.execute(operation, (b, off, len) -> collector.accept(b, off, len, out));
                return out;
            }
            catch (final NetlinkException e)
            {
                if (e.errno() != LibC.EINTR || attempt == DUMP_ATTEMPTS)
                {
                    throw e;
                }
            }
        }
    }

    // ---- checks --------------------------------------------------------------------------------------------------

    private static boolean inRange(final int table, final int first, final int last)
    {
        return Integer.compareUnsigned(table, first) >= 0 && Integer.compareUnsigned(table, last) <= 0;
    }

    private static void checkFamily(final int family, final String field)
    {
        if (family != AF_INET && family != AF_INET6)
        {
            throw new IllegalArgumentException(field + " must be AF_INET (2) or AF_INET6 (10): " + family);
        }
    }

    private static void checkRange(final int first, final int last)
    {
        checkTable(first, "firstTable");
        checkTable(last, "lastTable");
        if (Integer.compareUnsigned(first, last) > 0)
        {
            throw new IllegalArgumentException("firstTable " + Integer.toUnsignedString(first) + " is after lastTable "
                + Integer.toUnsignedString(last));
        }
    }

    /** Tables are unsigned 32-bit; the reserved ones are never egressd's. */
    private static void checkTable(final int table, final String field)
    {
        if (table == RT_TABLE_UNSPEC || table == RT_TABLE_DEFAULT || table == RT_TABLE_MAIN || table == RT_TABLE_LOCAL)
        {
            throw new IllegalArgumentException(field + " " + table + " is reserved (unspec 0, default 253, main 254, "
                + "local 255): egressd uses tables of its own");
        }
    }

    private static void checkRule(final Rule rule)
    {
        if (rule == null)
        {
            throw new IllegalArgumentException("rule is null");
        }
        checkFamily(rule.family(), "rule family");
        checkTable(rule.table(), "rule table");
        // Mark 0 would match every unmarked packet; priority 0 is the local table's rule, and on delete means "any".
        if (rule.mark() == 0)
        {
            throw new IllegalArgumentException("rule mark must not be 0 (it would match every unmarked packet): "
                + describe(rule));
        }
        if (rule.priority() == 0)
        {
            throw new IllegalArgumentException("rule priority must not be 0 (the local table's rule): " + describe(rule));
        }
    }

    private static void checkRoute(final Route route)
    {
        if (route == null)
        {
            throw new IllegalArgumentException("route is null");
        }
        checkFamily(route.family(), "route family");
        checkTable(route.table(), "route table");
        final Class<?> type = route.family() == AF_INET ? Inet4Address.class : Inet6Address.class;
        final int bits = route.family() == AF_INET ? 32 : 128;
        if (!type.isInstance(route.destination()))
        {
            throw new IllegalArgumentException("route destination must be an " + familyName(route.family())
                + " address: " + text(route.destination()));
        }
        if (!type.isInstance(route.gateway()))
        {
            throw new IllegalArgumentException("route gateway must be an " + familyName(route.family())
                + " address: " + text(route.gateway()));
        }
        if (route.prefixLength() < 0 || route.prefixLength() > bits)
        {
            throw new IllegalArgumentException("route prefixLength must be 0.." + bits + ": " + route.prefixLength());
        }
        final byte[] d = route.destination().getAddress();
        for (int bit = route.prefixLength(); bit < bits; bit++)
        {
            if ((d[bit / 8] & (0x80 >>> (bit % 8))) != 0)
            {
                throw new IllegalArgumentException("route destination " + text(route.destination())
                    + " has bits set beyond its prefixLength " + route.prefixLength());
            }
        }
    }

    private static String familyName(final int family)
    {
        return family == AF_INET ? "IPv4" : family == AF_INET6 ? "IPv6" : "family " + family;
    }

    /** The rule as {@code ip rule} would show it. */
    static String describe(final Rule rule)
    {
        return (rule.family() == AF_INET6 ? "-6 " : "") + "fwmark 0x" + Integer.toHexString(rule.mark())
            + " lookup " + Integer.toUnsignedString(rule.table()) + " pref " + Integer.toUnsignedString(rule.priority());
    }

    /** The route as {@code ip route} would show it. */
    static String describe(final Route route)
    {
        return text(route.destination()) + "/" + route.prefixLength() + " via " + text(route.gateway())
            + " table " + Integer.toUnsignedString(route.table());
    }

    /** An address as ip prints it (IPv6 compressed, unlike InetAddress). */
    private static String text(final InetAddress address)
    {
        if (address instanceof Inet6Address)
        {
            final ByteBuffer a = ByteBuffer.wrap(address.getAddress());
            return new Ipv6Address(a.getLong(0), a.getLong(8)).toString();
        }
        return address == null ? "null" : address.getHostAddress();
    }
}
