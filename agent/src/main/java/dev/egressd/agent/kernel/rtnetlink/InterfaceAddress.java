package dev.egressd.agent.kernel.rtnetlink;

import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

/**
 * One address on an interface as RTM_GETADDR reports it. Exactly one of {@code ipv4} and {@code ipv6}
 * is set.
 *
 * @param ipv4              the IPv4 address, or null.
 * @param ipv6              the IPv6 address, or null.
 * @param prefixLength      ifa_prefixlen.
 * @param flags             IFA_F_* (from IFA_FLAGS when present, else ifa_flags).
 * @param preferredLifetime seconds left of the preferred lifetime; {@link #FOREVER} for ever.
 * @param validLifetime     seconds left of the valid lifetime; {@link #FOREVER} for ever.
 * @param proto             IFA_PROTO, who added the address: {@link NetlinkConstants#IFAPROT_EGRESSD} for
 *                          egressd, {@link NetlinkConstants#IFAPROT_UNSPEC} when absent (added by hand,
 *                          or a kernel older than 6.1).
 */
public record InterfaceAddress(Ipv4Address ipv4, Ipv6Address ipv6, int prefixLength, int flags,
                               long preferredLifetime, long validLifetime, int proto)
{
    /** Lifetime meaning "for ever" (INFINITY_LIFE_TIME as an unsigned u32). */
    public static final long FOREVER = 0xFFFFFFFFL;

    /**
     * Whether this is a single-address prefix (/32 or /128), the shape egressd gives static egress IPs.
     *
     * @return true for a /32 IPv4 or /128 IPv6 address.
     */
    public boolean isHostPrefix()
    {
        return ipv4 != null ? prefixLength == 32 : prefixLength == 128;
    }

    /**
     * Whether egressd added this address: a host prefix marked with egressd's IFA_PROTO. Only such
     * addresses are egressd's to remove.
     *
     * @return true for a /32 or /128 with proto {@link NetlinkConstants#IFAPROT_EGRESSD}.
     */
    public boolean isOwned()
    {
        return proto == NetlinkConstants.IFAPROT_EGRESSD && isHostPrefix();
    }

    /**
     * Whether a flag is set.
     *
     * @param flag an IFA_F_* value, e.g. {@link NetlinkConstants#IFA_F_NODAD}.
     * @return true if set.
     */
    public boolean hasFlag(final int flag)
    {
        return (flags & flag) == flag;
    }

    @Override
    public String toString()
    {
        return (ipv4 != null ? ipv4.toString() : ipv6.toString()) + "/" + prefixLength
            + " flags 0x" + Integer.toHexString(flags)
            + " preferred " + (preferredLifetime == FOREVER ? "forever" : Long.toString(preferredLifetime))
            + " valid " + (validLifetime == FOREVER ? "forever" : Long.toString(validLifetime))
            + " proto 0x" + Integer.toHexString(proto);
    }
}
