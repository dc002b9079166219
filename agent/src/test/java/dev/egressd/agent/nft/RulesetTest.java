package dev.egressd.agent.nft;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class RulesetTest
{
    private final String text = new Ruleset(new DataplaneConfig("egressd", "eth0", "tap-*", 1024)).render();

    @Test
    void declaresEveryNamedCounter()
    {
        for (final String counter : Ruleset.COUNTERS)
        {
            assertThat(text).contains("    counter " + counter + " {\n    }\n");
        }
        assertThat(Ruleset.COUNTERS).containsExactly("spoof4", "spoof6", "unmapped4", "unmapped6", "cap4", "cap6",
            "backstop4", "backstop6");
    }

    @Test
    void keySetsAndMapsHaveNoIntervalFlag()
    {
        assertThat(text).doesNotContain("flags interval")
            .contains("map snat4 {\n        type ipv4_addr : interval ipv4_addr . inet_service\n    }")
            .contains("map snat6 {\n        type ipv6_addr : verdict\n    }")
            .contains("set guests4 {\n        type ifname . ipv4_addr\n    }")
            .contains("set cc6 {\n        type ipv6_addr . ipv6_addr\n        flags dynamic\n        size 65535\n    }");
    }

    @Test
    void everyDropAndRejectPathIsCountedByName()
    {
        assertThat(text)
            .contains("iifname \"tap-*\" iifname . ip saddr != @guests4 counter name \"spoof4\" drop\n")
            .contains("iifname \"tap-*\" iifname . ip6 saddr != @guests6 counter name \"spoof6\" drop\n")
            .contains("iifname \"tap-*\" oifname \"eth0\" ct state new jump guest_new\n")
            .contains("ip saddr @static4 ip saddr != @snat4 counter name \"unmapped4\" jump deny\n")
            .contains("ip6 saddr @static6 ip6 saddr != @mapped6 counter name \"unmapped6\" jump deny\n")
            .contains("add @cc4 { ip saddr . ip daddr ct count over 1024 } counter name \"cap4\" jump deny\n")
            .contains("add @cc6 { ip6 saddr . ip6 daddr ct count over 1024 } counter name \"cap6\" jump deny\n")
            .contains("ip saddr @static4 counter name \"backstop4\" drop\n")
            .contains("ip6 saddr @static6 counter name \"backstop6\" drop\n");
    }

    @Test
    void postroutingTouchesOnlyGuestTrafficAndBackstopsBeforeMasquerade()
    {
        final String post = text.substring(text.indexOf("chain postrouting"));
        assertThat(post).containsSubsequence(
            "type nat hook postrouting priority srcnat; policy accept;",
            "oifname != \"eth0\" accept",
            "iifname != \"tap-*\" accept",
            "meta l4proto { tcp, udp, icmp } snat ip to ip saddr map @snat4",
            "ip6 saddr vmap @snat6",
            "backstop4",
            "backstop6",
            "masquerade");
        assertThat(text.substring(text.indexOf("chain deny"), text.indexOf("chain postrouting")))
            .contains("meta l4proto tcp reject with tcp reset\n")
            .contains("reject with icmpx admin-prohibited\n");
        assertThat(post).doesNotContain("reject");
    }

    @Test
    void blockIsOneTable()
    {
        assertThat(text).startsWith("table inet egressd {\n").endsWith("\n}\n");
    }
}
