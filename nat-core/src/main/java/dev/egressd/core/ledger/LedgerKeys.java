package dev.egressd.core.ledger;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

/**
 * The one key form of a destination: 128 bits as (high, low), IPv4 mapped into {@code ::ffff:0:0/96}
 * (RFC 4291 2.5.5.2), so both families share one code path and can never collide: a real IPv6 conntrack
 * entry never carries a mapped address (they are not routed), and {@link Ipv6Address#parse} refuses them.
 */
public final class LedgerKeys
{
    /** The high bits of every mapped IPv4 key. */
    public static final long IPV4_HIGH = 0L;

    /** The {@code ffff} marker in bits 32..47 of the low half of every mapped IPv4 key. */
    public static final long IPV4_MAPPED_MARKER = 0x0000_FFFF_0000_0000L;

    private LedgerKeys()
    {
    }

    /**
     * The low half of the key of an IPv4 destination.
     *
     * @param ipv4 the address bits.
     * @return {@code ::ffff:a.b.c.d} low 64 bits.
     */
    public static long ipv4Low(final int ipv4)
    {
        return IPV4_MAPPED_MARKER | (ipv4 & 0xFFFF_FFFFL);
    }

    /**
     * Whether a key is a mapped IPv4 address.
     *
     * @param high the high half.
     * @param low  the low half.
     * @return true for IPv4.
     */
    public static boolean isIpv4(final long high, final long low)
    {
        return high == IPV4_HIGH && (low >>> 32) == 0xFFFFL;
    }

    /**
     * The key as address text.
     *
     * @param high the high half.
     * @param low  the low half.
     * @return dotted quad for IPv4, RFC 5952 text for IPv6.
     */
    public static String toText(final long high, final long low)
    {
        return isIpv4(high, low) ? new Ipv4Address((int)low).toString() : new Ipv6Address(high, low).toString();
    }
}
