package dev.egressd.core.model;

/**
 * A static egress pair: one IPv4 and one IPv6, allocated together, in one region.
 *
 * @param ipv4   the IPv4 address; it also names the pair.
 * @param ipv6   the IPv6 address.
 * @param region the region the pair belongs to.
 */
public record EgressPair(Ipv4Address ipv4, Ipv6Address ipv6, String region)
{
    /**
     * Validates the pair.
     *
     * @param ipv4   the IPv4 address.
     * @param ipv6   the IPv6 address.
     * @param region the region.
     */
    public EgressPair
    {
        if (ipv4 == null || ipv6 == null || region == null)
        {
            throw new IllegalArgumentException("a pair needs ipv4, ipv6 and region");
        }
    }
}
