package dev.egressd.agent.nft;

import dev.egressd.core.model.Ipv6Address;

import java.util.List;

/**
 * The static part of egressd's table: sets, maps, meters, named counters and chains, in the shape of the
 * recipe's "recommended table" (nft-recipe.md, "Start here"). Per-machine facts never appear here; they
 * are elements of the sets and maps, changed by {@link PlanRenderer}, so the chains are installed once
 * and never reloaded (a reload resets the {@code ct count} meters, recipe pitfall 9).
 *
 * <p>Why each piece is shaped as it is:
 * <ul>
 *   <li>No {@code flags interval} on key sets and maps: keys are single addresses, and with the flag
 *       nft 1.0.6 re-reads every element before each change (12.8 ms at 4,000 machines vs 0.13 ms).</li>
 *   <li>IPv6 NAT goes through a verdict map to one chain per guest, because nft 1.0.6 loads wrong
 *       registers for an {@code ipv6_addr . inet_service} map (pitfall 1); {@code mapped6} repeats the
 *       vmap's keys because a verdict map cannot be used as a set (pitfall 4).</li>
 *   <li>Rejects live in the forward filter chain: {@code reject} in a NAT chain fails (pitfall 3).</li>
 *   <li>Postrouting accepts anything not from a guest first: the host's own traffic is not ours.</li>
 *   <li>Every drop and reject has a named counter object, so {@link NftDataplane#counters()} reads
 *       them by name.</li>
 * </ul>
 */
public final class Ruleset
{
    /** Anti-spoofing drops, IPv4 (DESIGN invariant 4). */
    public static final String COUNTER_SPOOF4 = "spoof4";
    /** Anti-spoofing drops, IPv6. */
    public static final String COUNTER_SPOOF6 = "spoof6";
    /** New flows of a static IPv4 guest without a mapping, refused (fail-closed, invariant 3). */
    public static final String COUNTER_UNMAPPED4 = "unmapped4";
    /** New flows of a static IPv6 guest without a mapping, refused. */
    public static final String COUNTER_UNMAPPED6 = "unmapped6";
    /** New IPv4 flows over the destination cap, refused (invariant 5). */
    public static final String COUNTER_CAP4 = "cap4";
    /** New IPv6 flows over the destination cap, refused. */
    public static final String COUNTER_CAP6 = "cap6";
    /** Static IPv4 guest packets that reached postrouting untranslated, dropped (never masqueraded). */
    public static final String COUNTER_BACKSTOP4 = "backstop4";
    /** Static IPv6 guest packets that reached postrouting untranslated, dropped. */
    public static final String COUNTER_BACKSTOP6 = "backstop6";
    /** Every named counter of the table, in declaration order. */
    public static final List<String> COUNTERS = List.of(COUNTER_SPOOF4, COUNTER_SPOOF6, COUNTER_UNMAPPED4,
        COUNTER_UNMAPPED6, COUNTER_CAP4, COUNTER_CAP6, COUNTER_BACKSTOP4, COUNTER_BACKSTOP6);

    /** Set of static-class guest IPv4 addresses. */
    public static final String STATIC4 = "static4";
    /** Set of static-class guest IPv6 addresses. */
    public static final String STATIC6 = "static6";
    /** Set of (guest interface . IPv4 address) a guest may send from. */
    public static final String GUESTS4 = "guests4";
    /** Set of (guest interface . IPv6 address). */
    public static final String GUESTS6 = "guests6";
    /** Map guest IPv4 : egress IPv4 . port range. */
    public static final String SNAT4 = "snat4";
    /** Verdict map guest IPv6 : jump to its per-guest chain. */
    public static final String SNAT6 = "snat6";
    /** The keys of {@link #SNAT6}, as a set. */
    public static final String MAPPED6 = "mapped6";
    /** Prefix of the per-guest IPv6 SNAT chains. */
    public static final String SNAT6_CHAIN_PREFIX = "snat6_";

    private final DataplaneConfig config;

    /**
     * A ruleset for one configuration.
     *
     * @param config the table name, interfaces and cap.
     */
    public Ruleset(final DataplaneConfig config)
    {
        this.config = config;
    }

    /**
     * The configuration.
     *
     * @return the configuration rendered.
     */
    public DataplaneConfig config()
    {
        return config;
    }

    /**
     * The per-guest IPv6 SNAT chain's name: {@code snat6_} and the guest address as 32 hex digits, so the
     * name is fixed-length, unique per guest, and a valid nft identifier.
     *
     * @param guest the guest address.
     * @return e.g. {@code snat6_fd770000000000000000000000000002}.
     */
    public static String snat6Chain(final Ipv6Address guest)
    {
        return SNAT6_CHAIN_PREFIX + String.format("%016x%016x", guest.high(), guest.low());
    }

    /**
     * The single rule of a per-guest IPv6 SNAT chain (TCP, UDP and ICMPv6 echo ids into the block).
     *
     * @param egress    the egress address.
     * @param firstPort the first port.
     * @param lastPort  the last port.
     * @return the rule text, without {@code add rule ...}.
     */
    public static String snat6Rule(final Ipv6Address egress, final int firstPort, final int lastPort)
    {
        return "meta l4proto { tcp, udp, ipv6-icmp } snat ip6 to [" + egress + "]:" + ports(firstPort, lastPort);
    }

    static String ports(final int firstPort, final int lastPort)
    {
        return firstPort == lastPort ? Integer.toString(firstPort) : firstPort + "-" + lastPort;
    }

    /**
     * The whole table, as one nft text block (one transaction when run). Only for creating the table
     * when it is absent: running it over an existing table would append the chains' rules again.
     *
     * @return the nft text.
     */
    public String render()
    {
        final String uplink = '"' + config.uplink() + '"';
        final String guests = '"' + config.guestInterfacePattern() + '"';
        final int cap = config.destinationCap();
        final StringBuilder sb = new StringBuilder(4096);
        sb.append("table inet ").append(config.table()).append(" {\n");
        for (final String counter : COUNTERS)
        {
            sb.append("    counter ").append(counter).append(" {\n    }\n");
        }
        sb.append("    set static4 {\n        type ipv4_addr\n    }\n");
        sb.append("    set static6 {\n        type ipv6_addr\n    }\n");
        sb.append("    set guests4 {\n        type ifname . ipv4_addr\n    }\n");
        sb.append("    set guests6 {\n        type ifname . ipv6_addr\n    }\n");
        sb.append("    map snat4 {\n        type ipv4_addr : interval ipv4_addr . inet_service\n    }\n");
        sb.append("    map snat6 {\n        type ipv6_addr : verdict\n    }\n");
        sb.append("    set mapped6 {\n        type ipv6_addr\n    }\n");
        sb.append("    set cc4 {\n        type ipv4_addr . ipv4_addr\n        flags dynamic\n        size 65535\n    }\n");
        sb.append("    set cc6 {\n        type ipv6_addr . ipv6_addr\n        flags dynamic\n        size 65535\n    }\n");
        sb.append("    chain forward {\n");
        sb.append("        type filter hook forward priority filter; policy accept;\n");
        sb.append("        iifname ").append(guests).append(" iifname . ip saddr != @guests4 counter name \"")
            .append(COUNTER_SPOOF4).append("\" drop\n");
        sb.append("        iifname ").append(guests).append(" iifname . ip6 saddr != @guests6 counter name \"")
            .append(COUNTER_SPOOF6).append("\" drop\n");
        sb.append("        iifname ").append(guests).append(" oifname ").append(uplink)
            .append(" ct state new jump guest_new\n");
        sb.append("    }\n");
        sb.append("    chain guest_new {\n");
        sb.append("        ip saddr @static4 ip saddr != @snat4 counter name \"").append(COUNTER_UNMAPPED4)
            .append("\" jump deny\n");
        sb.append("        ip6 saddr @static6 ip6 saddr != @mapped6 counter name \"").append(COUNTER_UNMAPPED6)
            .append("\" jump deny\n");
        sb.append("        add @cc4 { ip saddr . ip daddr ct count over ").append(cap).append(" } counter name \"")
            .append(COUNTER_CAP4).append("\" jump deny\n");
        sb.append("        add @cc6 { ip6 saddr . ip6 daddr ct count over ").append(cap).append(" } counter name \"")
            .append(COUNTER_CAP6).append("\" jump deny\n");
        sb.append("    }\n");
        sb.append("    chain deny {\n");
        sb.append("        meta l4proto tcp reject with tcp reset\n");
        sb.append("        reject with icmpx admin-prohibited\n");
        sb.append("    }\n");
        sb.append("    chain postrouting {\n");
        sb.append("        type nat hook postrouting priority srcnat; policy accept;\n");
        sb.append("        oifname != ").append(uplink).append(" accept\n");
        sb.append("        iifname != ").append(guests).append(" accept\n");
        sb.append("        meta l4proto { tcp, udp, icmp } snat ip to ip saddr map @snat4\n");
        sb.append("        ip6 saddr vmap @snat6\n");
        sb.append("        ip saddr @static4 counter name \"").append(COUNTER_BACKSTOP4).append("\" drop\n");
        sb.append("        ip6 saddr @static6 counter name \"").append(COUNTER_BACKSTOP6).append("\" drop\n");
        sb.append("        masquerade\n");
        sb.append("    }\n");
        sb.append("}\n");
        return sb.toString();
    }
}
