package dev.egressd.agent.kernel.rtnetlink;

import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.netlink.NetlinkException;
import dev.egressd.agent.netlink.NetlinkMessages;
import dev.egressd.agent.netlink.NetlinkSocket;
import dev.egressd.agent.netlink.NetlinkWriter;
import static dev.egressd.agent.netlink.NetlinkConstants.IFADDRMSG_SIZE;
import static dev.egressd.agent.netlink.NetlinkConstants.IFA_ADDRESS;
import static dev.egressd.agent.netlink.NetlinkConstants.IFA_CACHEINFO;
import static dev.egressd.agent.netlink.NetlinkConstants.IFA_FLAGS;
import static dev.egressd.agent.netlink.NetlinkConstants.IFA_F_NODAD;
import static dev.egressd.agent.netlink.NetlinkConstants.IFA_F_NOPREFIXROUTE;
import static dev.egressd.agent.netlink.NetlinkConstants.IFA_LOCAL;
import static dev.egressd.agent.netlink.NetlinkConstants.IFA_PROTO;
import static dev.egressd.agent.netlink.NetlinkConstants.IFAPROT_EGRESSD;
import static dev.egressd.agent.netlink.NetlinkConstants.IFAPROT_UNSPEC;
import static dev.egressd.agent.netlink.NetlinkConstants.INFINITY_LIFE_TIME;
import static dev.egressd.agent.netlink.NetlinkConstants.NLMSG_HDRLEN;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_CREATE;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_DUMP;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_EXCL;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_REPLACE;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_DELADDR;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_GETADDR;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_GETLINK;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_NEWADDR;
import static dev.egressd.agent.netlink.NetlinkConstants.RTM_NEWLINK;
import static dev.egressd.agent.netlink.NetlinkConstants.RT_SCOPE_UNIVERSE;

import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.natives.NativeException;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * Adds, removes and lists the static egress addresses on an interface over rtnetlink
 * (RTM_NEWADDR / RTM_DELADDR / RTM_GETADDR), in the network namespace of the thread that opened it.
 *
 * <p>Shape of what is added:
 * <ul>
 * <li>IPv4 as a /32 (no subnet route is implied, so the host never routes through it), lifetimes
 *     for ever.</li>
 * <li>IPv6 as a /128 with IFA_F_NODAD (usable at once, no tentative phase) and preferred lifetime 0,
 *     valid for ever: the address is deprecated from the start, so source selection never picks it
 *     for the host's own traffic or for masquerade (docs/design.md, pitfall 7), while SNAT to it still
 *     works.</li>
 * <li>IFA_F_NOPREFIXROUTE on both, so adding an address never adds a route to the main table:
 *     egressd changes addresses only, never routing.</li>
 * <li>IFA_PROTO {@link NetlinkConstants#IFAPROT_EGRESSD} on both: the mark of ownership.</li>
 * </ul>
 *
 * <p>Ownership, as Cilium touches only its own routing table: egressd removes only addresses that
 * carry its IFA_PROTO mark ({@link InterfaceAddress#isOwned()}); an address put on the uplink by hand
 * or by other software is never listed as owned and never removed, whatever its value. IFA_PROTO needs
 * kernel 6.1: an older kernel ignores the mark, so nothing would ever be owned ({@code KernelChecks}
 * refuses such a kernel at start-up).
 *
 * <p>Add never takes over an address it did not put there. It sends NLM_F_CREATE|NLM_F_EXCL, so the
 * kernel refuses (EEXIST) when the address is already on the interface; then a dump says whose it is:
 * egressd's own ({@link AddResult#OWNED}: it is re-sent with NLM_F_REPLACE, which corrects its flags and
 * lifetimes), or someone else's ({@link AddResult#FOREIGN}: an address the operator or other software put
 * there, left exactly as it is: not marked, lifetimes not rewritten, and therefore never removed by
 * egressd). The kernel's notion of "already there" is the address and, for IPv4, the prefix length: a
 * foreign {@code 203.0.113.10/24} does not stop egressd's {@code /32}; for IPv6 any prefix length does.
 * Remove of an address that is not there, or not egressd's, changes nothing and returns false. Note that
 * {@code ip addr change} on one of egressd's addresses resets its IFA_PROTO (iproute2 sends no mark): the
 * operator has taken it over, and from then on it is foreign.
 *
 * <p>Not thread-safe; use it from one thread (the one that opened it).
 */
public final class RtnetlinkAddresses implements AutoCloseable
{
    private static final int DUMP_ATTEMPTS = 5;
    /** Create only: EEXIST when the address is there, whoever put it there. */
    static final int ADD_FLAGS = NLM_F_CREATE | NLM_F_EXCL;
    /** Update flags and lifetimes of an existing address: only ever sent for an address egressd owns. */
    static final int REPLACE_FLAGS = NLM_F_CREATE | NLM_F_REPLACE;

    /** What {@link #add} found and did. */
    public enum AddResult
    {
        /** The address was not there; it now is, marked as egressd's. */
        CREATED,
        /** It was already there as egressd's; its flags and lifetimes were put right. */
        OWNED,
        /**
         * It was already there without egressd's mark (by hand, or other software): left untouched, not
         * claimed. egressd can use it as an egress address, but never changes or removes it.
         */
        FOREIGN
    }

    private final NetlinkSocket socket;

    private RtnetlinkAddresses(final NetlinkSocket socket)
    {
        this.socket = socket;
    }

    /**
     * Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
     *
     * @return the client.
     * @throws NativeException if the socket cannot be opened or bound.
     */
    public static RtnetlinkAddresses open() throws NativeException
    {
        return new RtnetlinkAddresses(openRouteSocket());
    }

    /**
     * Opens and binds a NETLINK_ROUTE request socket in the calling thread's network namespace (the addresses'
     * and the policy routing's clients each own one).
     *
     * @return the socket.
     * @throws NativeException if the socket cannot be opened or bound.
     */
    static NetlinkSocket openRouteSocket() throws NativeException
    {
        final NetlinkSocket socket = NetlinkSocket.open(LibC.NETLINK_ROUTE);
        try
        {
            socket.bind(0);
            // Replies can never take long; a timeout turns a lost reply into an error, not a hang.
            socket.receiveTimeout(5_000);
        }
        catch (final NativeException e)
        {
            socket.close();
            throw e;
        }
        return socket;
    }

    /**
     * The index of an interface, by RTM_GETLINK with IFLA_IFNAME.
     *
     * @param name the interface name, e.g. {@code uplink}.
     * @return its ifindex.
     * @throws NetlinkException ({@link NetlinkException#isNotFound()}) naming the interface if it does
     *                          not exist in this namespace.
     * @throws IOException      if the socket fails.
     */
    public int ifindex(final String name) throws IOException
    {
        checkName(name);
        socket.request(RTM_GETLINK, 0)
            .u8(0).u8(0).u16(0).u32(0).u32(0).u32(0)        // struct ifinfomsg: match by name only
            .attrString(NetlinkConstants.IFLA_IFNAME, name);
        final int[] index = {0};
        try
        {
            socket.execute("RTM_GETLINK " + name, (b, off, len) ->
            {
                if (NetlinkMessages.type(b, off) == RTM_NEWLINK)
                {
                    index[0] = b.getInt(off + NLMSG_HDRLEN + 4);     // ifinfomsg.ifi_index
                }
            });
        }
        catch (final NetlinkException e)
        {
            if (e.isNotFound())
            {
                throw new NetlinkException("interface " + name + " does not exist in this network namespace",
                    e.errno(), e);
            }
            throw e;
        }
        if (index[0] <= 0)
        {
            throw new NetlinkException("interface " + name + ": RTM_GETLINK returned no index", LibC.ENODEV,
                (Throwable)null);
        }
        return index[0];
    }

    /**
     * Adds an IPv4 address as a /32 marked as egressd's, unless a /32 of that address is already there:
     * then it is left alone if it is not egressd's (see the class comment).
     *
     * @param ifname  the interface.
     * @param address the address.
     * @return what was found and done.
     * @throws IOException if the interface does not exist or the kernel refuses.
     */
    public AddResult add(final String ifname, final Ipv4Address address) throws IOException
    {
        final int ifindex = ifindex(ifname);
        final String operation = "RTM_NEWADDR " + address + "/32 dev " + ifname;
        newAddress(socket.request(RTM_NEWADDR, ADD_FLAGS), ifindex, address);
        if (executeTolerating(operation, true))
        {
            return AddResult.CREATED;
        }
        // EEXIST: a /32 of this address is there (IPv4 matches address and prefix length).
        final boolean owned = addresses(ifname).stream()
            .anyMatch(a -> address.equals(a.ipv4()) && a.isHostPrefix() && a.isOwned());
        if (!owned)
        {
            return AddResult.FOREIGN;
        }
        newAddress(socket.request(RTM_NEWADDR, REPLACE_FLAGS), ifindex, address);
        executeTolerating(operation + " (replace)", true);
        return AddResult.OWNED;
    }

    /**
     * Adds an IPv6 address as a /128, nodad, preferred lifetime 0 and valid for ever, marked as
     * egressd's, unless the address is already there (any prefix length): then an address of egressd's
     * has its flags, lifetimes and mark corrected, and anyone else's is left alone.
     *
     * @param ifname  the interface.
     * @param address the address.
     * @return what was found and done.
     * @throws IOException if the interface does not exist or the kernel refuses.
     */
    public AddResult add(final String ifname, final Ipv6Address address) throws IOException
    {
        final int ifindex = ifindex(ifname);
        final String operation = "RTM_NEWADDR " + address + "/128 dev " + ifname;
        newAddress(socket.request(RTM_NEWADDR, ADD_FLAGS), ifindex, address);
        if (executeTolerating(operation, true))
        {
            return AddResult.CREATED;
        }
        final boolean owned = addresses(ifname).stream()
            .anyMatch(a -> address.equals(a.ipv6()) && a.isHostPrefix() && a.isOwned());
        if (!owned)
        {
            return AddResult.FOREIGN;
        }
        newAddress(socket.request(RTM_NEWADDR, REPLACE_FLAGS), ifindex, address);
        executeTolerating(operation + " (replace)", true);
        return AddResult.OWNED;
    }

    /**
     * Removes an IPv4 /32 that egressd added; harmless if it is not there. An address that is not
     * egressd's (no IFAPROT_EGRESSD mark, or another prefix length) is left alone.
     *
     * @param ifname  the interface.
     * @param address the address.
     * @return true if it was removed, false if it was not there or not egressd's.
     * @throws IOException if the interface does not exist or the kernel refuses.
     */
    public boolean remove(final String ifname, final Ipv4Address address) throws IOException
    {
        // RTM_DELADDR does not match on IFA_PROTO, so ownership is checked here, by a dump first.
        // Between the dump and the delete only a hand-made change of this very address could interfere.
        if (!ownedAddresses(ifname).stream().anyMatch(a -> address.equals(a.ipv4())))
        {
            return false;
        }
        final int ifindex = ifindex(ifname);
        deleteAddress(socket.request(RTM_DELADDR, 0), ifindex, address);
        return executeTolerating("RTM_DELADDR " + address + "/32 dev " + ifname, false);
    }

    /**
     * Removes an IPv6 /128 that egressd added; harmless if it is not there, left alone if it is not
     * egressd's.
     *
     * @param ifname  the interface.
     * @param address the address.
     * @return true if it was removed, false if it was not there or not egressd's.
     * @throws IOException if the interface does not exist or the kernel refuses.
     */
    public boolean remove(final String ifname, final Ipv6Address address) throws IOException
    {
        if (!ownedAddresses(ifname).stream().anyMatch(a -> address.equals(a.ipv6())))
        {
            return false;
        }
        final int ifindex = ifindex(ifname);
        deleteAddress(socket.request(RTM_DELADDR, 0), ifindex, address);
        return executeTolerating("RTM_DELADDR " + address + "/128 dev " + ifname, false);
    }

    /**
     * Every IPv4 and IPv6 address on an interface, any prefix length, with flags and lifetimes.
     *
     * @param ifname the interface.
     * @return the addresses in kernel order.
     * @throws IOException if the interface does not exist or the dump fails.
     */
    public List<InterfaceAddress> addresses(final String ifname) throws IOException
    {
        final int ifindex = ifindex(ifname);
        for (int attempt = 1; ; attempt++)
        {
            final List<InterfaceAddress> out = new ArrayList<>();
            final NetlinkWriter w = socket.request(RTM_GETADDR, NLM_F_DUMP);
            // ifa_index filters only with NETLINK_GET_STRICT_CHK; parse() filters again regardless.
            ifaddrmsg(w, 0, 0, 0, ifindex);
            try
            {
                socket.execute("RTM_GETADDR dev " + ifname, (b, off, len) ->
                {
                    final InterfaceAddress a = parse(b, off, len, ifindex);
                    if (a != null)
                    {
                        out.add(a);
                    }
                });
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

    /**
     * The IPv4 /32 addresses on an interface: the shape of static egress addresses.
     *
     * @param ifname the interface.
     * @return the addresses.
     * @throws IOException if the interface does not exist or the dump fails.
     */
    public List<Ipv4Address> listIpv4(final String ifname) throws IOException
    {
        final List<Ipv4Address> out = new ArrayList<>();
        for (final InterfaceAddress a : addresses(ifname))
        {
            if (a.ipv4() != null && a.isHostPrefix())
            {
                out.add(a.ipv4());
            }
        }
        return out;
    }

    /**
     * The IPv6 /128 addresses on an interface: the shape of static egress addresses.
     *
     * @param ifname the interface.
     * @return the addresses.
     * @throws IOException if the interface does not exist or the dump fails.
     */
    public List<Ipv6Address> listIpv6(final String ifname) throws IOException
    {
        final List<Ipv6Address> out = new ArrayList<>();
        for (final InterfaceAddress a : addresses(ifname))
        {
            if (a.ipv6() != null && a.isHostPrefix())
            {
                out.add(a.ipv6());
            }
        }
        return out;
    }

    /**
     * The addresses egressd added to an interface ({@link InterfaceAddress#isOwned()}), both families,
     * from one dump.
     *
     * @param ifname the interface.
     * @return the owned addresses in kernel order.
     * @throws IOException if the interface does not exist or the dump fails.
     */
    public List<InterfaceAddress> ownedAddresses(final String ifname) throws IOException
    {
        final List<InterfaceAddress> out = new ArrayList<>();
        for (final InterfaceAddress a : addresses(ifname))
        {
            if (a.isOwned())
            {
                out.add(a);
            }
        }
        return out;
    }

    /**
     * The IPv4 /32 addresses egressd added to an interface: the only IPv4 addresses it may remove.
     *
     * @param ifname the interface.
     * @return the addresses.
     * @throws IOException if the interface does not exist or the dump fails.
     */
    public List<Ipv4Address> listOwned4(final String ifname) throws IOException
    {
        final List<Ipv4Address> out = new ArrayList<>();
        for (final InterfaceAddress a : ownedAddresses(ifname))
        {
            if (a.ipv4() != null)
            {
                out.add(a.ipv4());
            }
        }
        return out;
    }

    /**
     * The IPv6 /128 addresses egressd added to an interface: the only IPv6 addresses it may remove.
     *
     * @param ifname the interface.
     * @return the addresses.
     * @throws IOException if the interface does not exist or the dump fails.
     */
    public List<Ipv6Address> listOwned6(final String ifname) throws IOException
    {
        final List<Ipv6Address> out = new ArrayList<>();
        for (final InterfaceAddress a : ownedAddresses(ifname))
        {
            if (a.ipv6() != null)
            {
                out.add(a.ipv6());
            }
        }
        return out;
    }

    @Override
    public void close()
    {
        socket.close();
    }

    /**
     * Parses one RTM_NEWADDR message.
     *
     * @param b       the buffer.
     * @param off     the message offset.
     * @param len     nlmsg_len.
     * @param ifindex only addresses on this interface are returned; 0 for any.
     * @return the address, or null for other interfaces, families or message types.
     */
    static InterfaceAddress parse(final ByteBuffer b, final int off, final int len, final int ifindex)
    {
        if (NetlinkMessages.type(b, off) != RTM_NEWADDR || len < NLMSG_HDRLEN + IFADDRMSG_SIZE)
        {
            return null;
        }
        final int ifa = off + NLMSG_HDRLEN;
        final int family = b.get(ifa) & 0xFF;
        final int prefixLength = b.get(ifa + 1) & 0xFF;
        int flags = b.get(ifa + 2) & 0xFF;
        final int index = b.getInt(ifa + 4);
        if ((ifindex != 0 && index != ifindex) || (family != LibC.AF_INET && family != LibC.AF_INET6))
        {
            return null;
        }
        final int size = family == LibC.AF_INET ? 4 : 16;
        int local = -1;
        int address = -1;
        long preferred = InterfaceAddress.FOREVER;
        long valid = InterfaceAddress.FOREVER;
        int proto = IFAPROT_UNSPEC;
        final int end = off + len;
        for (int a = NetlinkMessages.firstAttr(b, ifa + IFADDRMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            final int payloadLength = NetlinkMessages.attrLength(b, a) - NetlinkConstants.NLA_HDRLEN;
            final int p = NetlinkMessages.payload(a);
            switch (NetlinkMessages.attrType(b, a))
            {
                case IFA_LOCAL -> local = payloadLength >= size ? p : -1;
                case IFA_ADDRESS -> address = payloadLength >= size ? p : -1;
                case IFA_FLAGS -> flags = payloadLength >= 4 ? b.getInt(p) : flags;
                case IFA_PROTO -> proto = payloadLength >= 1 ? b.get(p) & 0xFF : proto;
                case IFA_CACHEINFO ->
                {
                    if (payloadLength >= 8)
                    {
                        preferred = b.getInt(p) & 0xFFFFFFFFL;
                        valid = b.getInt(p + 4) & 0xFFFFFFFFL;
                    }
                }
                default ->
                {
                    // labels, broadcast, metric: not needed
                }
            }
        }
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
        final int at = local >= 0 ? local : address;
        if (at < 0)
        {
            return null;
        }
        if (family == LibC.AF_INET)
        {
            return new InterfaceAddress(new Ipv4Address(NetlinkMessages.u32BE(b, at)), null, prefixLength, flags,
                preferred, valid, proto);
        }
        return new InterfaceAddress(null, new Ipv6Address(NetlinkMessages.u64BE(b, at), NetlinkMessages.u64BE(b, at + 8)),
            prefixLength, flags, preferred, valid, proto);
    }

    /**
     * The body of RTM_NEWADDR for an IPv4 /32, marked as egressd's.
     *
     * @param w       a writer after {@link NetlinkWriter#begin}.
     * @param ifindex the interface.
     * @param address the address.
     */
    static void newAddress(final NetlinkWriter w, final int ifindex, final Ipv4Address address)
    {
        ifaddrmsg(w, LibC.AF_INET, 32, IFA_F_NOPREFIXROUTE, ifindex);
        w.attrU32BE(IFA_LOCAL, address.bits()).attrU32BE(IFA_ADDRESS, address.bits())
            .attrU32(IFA_FLAGS, IFA_F_NOPREFIXROUTE)
            .attrU8(IFA_PROTO, IFAPROT_EGRESSD);
    }

    /**
     * The body of RTM_NEWADDR for an IPv6 /128: nodad, no prefix route, preferred 0, valid for ever,
     * marked as egressd's.
     *
     * @param w       a writer after {@link NetlinkWriter#begin}.
     * @param ifindex the interface.
     * @param address the address.
     */
    static void newAddress(final NetlinkWriter w, final int ifindex, final Ipv6Address address)
    {
        final int flags = IFA_F_NODAD | IFA_F_NOPREFIXROUTE;
        ifaddrmsg(w, LibC.AF_INET6, 128, flags, ifindex);
        w.attrU128BE(IFA_LOCAL, address.high(), address.low())
            .attrU128BE(IFA_ADDRESS, address.high(), address.low())
            .attrU32(IFA_FLAGS, flags)
            .attrCacheinfo(IFA_CACHEINFO, 0, INFINITY_LIFE_TIME)
            .attrU8(IFA_PROTO, IFAPROT_EGRESSD);
    }

    /**
     * The body of RTM_DELADDR for an IPv4 /32.
     *
     * @param w       a writer after {@link NetlinkWriter#begin}.
     * @param ifindex the interface.
     * @param address the address.
     */
    static void deleteAddress(final NetlinkWriter w, final int ifindex, final Ipv4Address address)
    {
        ifaddrmsg(w, LibC.AF_INET, 32, 0, ifindex);
        // IFA_ADDRESS with prefixlen 32 makes the kernel match the prefix length too, not just IFA_LOCAL.
        w.attrU32BE(IFA_LOCAL, address.bits()).attrU32BE(IFA_ADDRESS, address.bits());
    }

    /**
     * The body of RTM_DELADDR for an IPv6 /128.
     *
     * @param w       a writer after {@link NetlinkWriter#begin}.
     * @param ifindex the interface.
     * @param address the address.
     */
    static void deleteAddress(final NetlinkWriter w, final int ifindex, final Ipv6Address address)
    {
        ifaddrmsg(w, LibC.AF_INET6, 128, 0, ifindex);
        w.attrU128BE(IFA_ADDRESS, address.high(), address.low());
    }

    private static void ifaddrmsg(final NetlinkWriter w, final int family, final int prefixLength, final int flags,
                                  final int ifindex)
    {
        // struct ifaddrmsg; ifa_flags is u8, the full flags go in IFA_FLAGS.
        w.u8(family).u8(prefixLength).u8(flags & 0xFF).u8(RT_SCOPE_UNIVERSE).u32(ifindex);
    }

    /** Runs the built request; EEXIST on add and "not found" on remove are the desired state already. */
    private boolean executeTolerating(final String operation, final boolean adding) throws IOException
    {
        try
        {
            socket.execute(operation, null);
            return true;
        }
        catch (final NetlinkException e)
        {
            if (adding ? e.isAlreadyExists() : e.isNotFound())
            {
                return false;
            }
            throw e;
        }
    }

    private static void checkName(final String name)
    {
        if (name == null || name.isEmpty() || name.length() >= NetlinkConstants.IFNAMSIZ)
        {
            throw new IllegalArgumentException("not an interface name (1.." + (NetlinkConstants.IFNAMSIZ - 1)
                + " characters): " + name);
        }
        for (int i = 0; i < name.length(); i++)
        {
            final char c = name.charAt(i);
            if (c <= ' ' || c >= 0x7F || c == '/' || c == ':')
            {
                throw new IllegalArgumentException("not an interface name: " + name);
            }
        }
    }
}
