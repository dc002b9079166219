package dev.egressd.agent.kernel.nft.netlink;

import static dev.egressd.agent.kernel.nft.netlink.NfTables.*;

import java.util.List;

/**
 * Rules egressd builds over netlink because nft 1.0.6 cannot: the IPv6 SNAT through an
 * {@code ipv6_addr : interval ipv6_addr . inet_service} map (docs/design.md, pitfall 1).
 *
 * <p>The map's 40 bytes of data land in the registers from NFT_REG_1 on as they are stored,
 * {@code [addr_min 16][port_min 4][addr_max 16][port_max 4]}, so the nat expression must read the
 * first address at NFT_REG_1 (byte 0), the first port at NFT_REG_2 (byte 16), the last address at
 * NFT_REG32_05 (byte 20) and the last port at NFT_REG32_09 (byte 36). nft 1.0.6 passes registers 1, 2, 3,
 * 4, which the kernel refuses (ENODATA: the last port would lie beyond the data). Proven with packets:
 * TCP, UDP and ICMPv6 echo ids translated into the block.
 */
public final class NftRules
{
    /** IPPROTO_TCP. */
    public static final int TCP = 6;
    /** IPPROTO_UDP. */
    public static final int UDP = 17;
    /** IPPROTO_ICMPV6. */
    public static final int ICMPV6 = 58;
    /** The protocols the IPv6 SNAT translates, one rule each (a port mapping needs one transport protocol). */
    public static final List<Integer> SNAT6_PROTOCOLS = List.of(TCP, UDP, ICMPV6);

    /** Where ip6 saddr lies in the IPv6 header. */
    private static final int IP6_SADDR_OFFSET = 8;

    private NftRules()
    {
    }

    /**
     * {@code meta nfproto ipv6 meta l4proto <proto> snat ip6 to ip6 saddr map @<map>}, as the kernel
     * takes it: a guest whose address is not in the map does not match (the lookup fails) and goes on to
     * the next rule.
     *
     * @param map      the {@code ipv6_addr : interval ipv6_addr . inet_service} map.
     * @param l4proto  the transport protocol, e.g. {@link #TCP}.
     * @return the expressions.
     */
    public static List<NftExpr> snat6Map(final String map, final int l4proto)
    {
        if (l4proto < 0 || l4proto > 255)
        {
            throw new IllegalArgumentException("l4proto: " + l4proto + " is not 0..255");
        }
        NftNetlink.checkName("map", map);
        return List.of(
            new NftExpr.Meta(NFT_META_NFPROTO, NFT_REG_1),
            new NftExpr.CmpEq(NFT_REG_1, new byte[] {(byte)NFPROTO_IPV6}),
            new NftExpr.Meta(NFT_META_L4PROTO, NFT_REG_1),
            new NftExpr.CmpEq(NFT_REG_1, new byte[] {(byte)l4proto}),
            new NftExpr.Payload(NFT_PAYLOAD_NETWORK_HEADER, IP6_SADDR_OFFSET, 16, NFT_REG_1),
            new NftExpr.Lookup(map, NFT_REG_1, NFT_REG_1),
            new NftExpr.Nat(NFT_NAT_SNAT, NFPROTO_IPV6, NFT_REG_1, NFT_REG32_05, NFT_REG_2, NFT_REG32_09,
                NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED));
    }
}
