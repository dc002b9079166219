package dev.egressd.agent.testing;

import java.util.ArrayList;
import java.util.List;

/**
 * The region lab's stand-in for the router role, for the lab's OWN self-check ({@code RegionLabTest}) only: the
 * verified steering recipe of docs/region.md loaded with {@code nft} and {@code ip} into the router namespace
 * (table {@code inet labsteer}; host n's mark is n, its table 7000+n). Tests of egressd use the real
 * {@code egressd router} instead; this proves the topology carries what the router role has to do.
 */
public final class StandInRouter
{
    private static final String TABLE = "labsteer";
    private static final int TABLE_BASE = 7000;

    private final RegionLab lab;
    private final List<String> routed = new ArrayList<>();

    StandInRouter(final RegionLab lab)
    {
        this.lab = lab;
        lab.must("rtr", "sysctl", "-qw", "net.ipv4.fwmark_reflect=1", "net.ipv6.fwmark_reflect=1");
        final String maps = String.join("\n",
            "table inet " + TABLE + " {",
            "  map blk4 { typeof ip daddr . th dport : meta mark; flags interval; }",
            "  map blk6 { typeof ip6 daddr . th dport : meta mark; flags interval; }",
            "  map icmpid4 { typeof ip daddr . icmp id : meta mark; flags interval; }",
            "  map icmpid6 { typeof ip6 daddr . icmpv6 id : meta mark; flags interval; }",
            "  chain pre {",
            "    type filter hook prerouting priority mangle; policy accept;",
            "    meta l4proto { tcp, udp } meta mark set ip daddr . th dport map @blk4",
            "    meta l4proto { tcp, udp } meta mark set ip6 daddr . th dport map @blk6",
            "    icmp type echo-reply meta mark set ip daddr . icmp id map @icmpid4",
            "    icmpv6 type echo-reply meta mark set ip6 daddr . icmpv6 id map @icmpid6",
            "    icmp type { destination-unreachable, time-exceeded, parameter-problem } @th,136,8 { 6, 17 }"
                + " meta mark set ip daddr . @th,224,16 map @icmpid4",
            "    icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem }"
                + " @th,112,8 { 6, 17 } meta mark set ip6 daddr . @th,384,16 map @icmpid6",
            "    meta l4proto { tcp, udp } meta mark set ip saddr . th sport map @blk4",
            "    meta l4proto { tcp, udp } meta mark set ip6 saddr . th sport map @blk6",
            "    icmp type echo-request meta mark set ip saddr . icmp id map @icmpid4",
            "    icmpv6 type echo-request meta mark set ip6 saddr . icmpv6 id map @icmpid6",
            "  }",
            "}", "");
        final java.nio.file.Path file = lab.workDir().resolve("standin-router.nft");
        try
        {
            java.nio.file.Files.writeString(file, maps);
        }
        catch (final java.io.IOException e)
        {
            throw new java.io.UncheckedIOException(e);
        }
        lab.must("rtr", "nft", "-f", file.toString());
        for (int host = 1; host <= lab.hosts(); host++)
        {
            for (final String family : List.of("-4", "-6"))
            {
                lab.must("rtr", "ip", family, "rule", "add", "fwmark", Integer.toString(host), "lookup",
                    Integer.toString(TABLE_BASE + host), "pref", Integer.toString(1000 + host));
            }
        }
    }

    /**
     * Steers a block of a pair to a host: the four maps' elements, and the pair's route in the host's table.
     *
     * @param pair4 the pair's IPv4.
     * @param pair6 the pair's IPv6.
     * @param host  the host holding the block.
     * @param first the block's first port.
     * @param last  the block's last port.
     */
    public void steer(final String pair4, final String pair6, final int host, final int first, final int last)
    {
        route(pair4, pair6, host);
        final String range = first + "-" + last;
        final String mark = "0x" + Integer.toHexString(host);
        lab.must("rtr", "nft", "add element inet " + TABLE + " blk4 { " + pair4 + " . " + range + " : " + mark + " }; "
            + "add element inet " + TABLE + " icmpid4 { " + pair4 + " . " + range + " : " + mark + " }; "
            + "add element inet " + TABLE + " blk6 { " + pair6 + " . " + range + " : " + mark + " }; "
            + "add element inet " + TABLE + " icmpid6 { " + pair6 + " . " + range + " : " + mark + " }");
    }

    /**
     * Stops steering a block (its replies then find no route at the router).
     *
     * @param pair4 the pair's IPv4.
     * @param pair6 the pair's IPv6.
     * @param first the block's first port.
     * @param last  the block's last port.
     */
    public void unsteer(final String pair4, final String pair6, final int first, final int last)
    {
        final String range = first + "-" + last;
        lab.must("rtr", "nft", "delete element inet " + TABLE + " blk4 { " + pair4 + " . " + range + " }; "
            + "delete element inet " + TABLE + " icmpid4 { " + pair4 + " . " + range + " }; "
            + "delete element inet " + TABLE + " blk6 { " + pair6 + " . " + range + " }; "
            + "delete element inet " + TABLE + " icmpid6 { " + pair6 + " . " + range + " }");
    }

    private void route(final String pair4, final String pair6, final int host)
    {
        final String key = pair4 + "@" + host;
        if (routed.contains(key))
        {
            return;
        }
        final String table = Integer.toString(TABLE_BASE + host);
        lab.must("rtr", "ip", "route", "add", pair4 + "/32", "via", RegionLab.hostAddress4(host), "dev",
            RegionLab.hostNs(host), "table", table);
        lab.must("rtr", "ip", "-6", "route", "add", pair6 + "/128", "via", RegionLab.hostAddress6(host), "dev",
            RegionLab.hostNs(host), "table", table);
        routed.add(key);
    }
}
