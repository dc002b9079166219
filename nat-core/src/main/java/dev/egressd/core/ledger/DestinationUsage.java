package dev.egressd.core.ledger;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

/**
 * One destination of one machine as the CLI shows it: the address, the live connections and the distinct
 * translated ports they use.
 *
 * @param high       the first 64 bits of the ledger key (0 for IPv4).
 * @param low        the last 64 bits of the ledger key (IPv4 is {@code ::ffff:a.b.c.d}).
 * @param count      live connections from the machine to this destination.
 * @param portsInUse distinct translated source ports among those connections.
 */
public record DestinationUsage(long high, long low, int count, int portsInUse)
{
    /**
     * Whether the destination is an IPv4 address (held in the ledger's {@code ::ffff:0:0/96} key space).
     *
     * @return true for IPv4.
     */
    public boolean isIpv4()
    {
        return LedgerKeys.isIpv4(high, low);
    }

    /**
     * The destination as text, dotted quad for IPv4 and RFC 5952 for IPv6.
     *
     * @return the address text.
     */
    public String destination()
    {
        return LedgerKeys.toText(high, low);
    }

    @Override
    public String toString()
    {
        return destination() + " count=" + count + " ports=" + portsInUse;
    }

    /**
     * Convenience for callers holding model types.
     *
     * @param address an IPv4 address.
     * @return whether this usage is for it.
     */
    public boolean is(final Ipv4Address address)
    {
        return high == 0 && low == LedgerKeys.ipv4Low(address.bits());
    }

    /**
     * Convenience for callers holding model types.
     *
     * @param address an IPv6 address.
     * @return whether this usage is for it.
     */
    public boolean is(final Ipv6Address address)
    {
        return high == address.high() && low == address.low();
    }
}
