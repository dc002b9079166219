package dev.egressd.agent.kernel.nft;

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
            .contains("map snat6 {\n        type ipv6_addr : interval ipv6_addr . inet_service\n    }")
            .contains("set guests4 {\n        type ifname . ipv4_addr\n    }")
            .contains("set cc6 {\n        type ipv6_addr . ipv6_addr\n        flags dynamic\n        size 65535\n    }");
    }

    @Test
    void everyDropAndRejectPathIsCountedByName()
    {
        assertThat(text)
            .contains("iifname . ip saddr != @guests4 counter name \"spoof4\" drop comment")
            .contains("iifname . ip6 saddr != @guests6 counter name \"spoof6\" drop comment")
            .contains("ct state new oifname \"eth0\" jump guest_new comment")
            .contains("ip saddr @static4 ip saddr != @snat4 counter name \"unmapped4\" jump deny comment")
            .contains("ip6 saddr @static6 ip6 saddr != @snat6 counter name \"unmapped6\" jump deny comment")
            .contains("add @cc4 { ip saddr . ip daddr ct count over 1024 } counter name \"cap4\" jump deny comment")
            .contains("add @cc6 { ip6 saddr . ip6 daddr ct count over 1024 } counter name \"cap6\" jump deny comment")
            .contains("ip saddr @static4 counter name \"backstop4\" drop comment")
            .contains("ip6 saddr @static6 counter name \"backstop6\" drop comment");
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
            "meta nfproto ipv6 jump nat6",
            "backstop4",
            "backstop6",
            "masquerade");
        assertThat(text.substring(text.indexOf("chain deny"), text.indexOf("chain postrouting")))
            .contains("meta l4proto tcp reject with tcp reset comment")
            .contains("reject with icmpx admin-prohibited comment");
        assertThat(post).doesNotContain("reject");
    }

    @Test
    void everyFixedRuleCarriesAFingerprintOfItsConfiguration()
    {
        final Ruleset base = new Ruleset(new DataplaneConfig("egressd", "eth0", "tap-*", 1024));
        final java.util.List<String> all = base.staticChains().stream()
            .flatMap(c -> c.fingerprints().stream()).toList();
        assertThat(all).hasSize(5 + 2 + 5 + 2 + 3 + 7).doesNotHaveDuplicates()
            .allMatch(f -> f.matches("egressd [0-9a-f]{16}"));
        // golden: the fingerprint of the first forward rule is stable across builds
        assertThat(base.staticChains().get(0).commentedRules().get(0)).isEqualTo(
            "tcp flags fin,rst ct state != related jump ct_closing comment \""
                + base.staticChains().get(0).fingerprints().get(0) + "\"");
        assertThat(text).contains(base.staticChains().get(5).commentedRules().get(6) + "\n");
        // the cap changes exactly the two meter rules; the uplink changes forward's fifth, both of ct_closing's and
        // postrouting's first
        final Ruleset cap = new Ruleset(new DataplaneConfig("egressd", "eth0", "tap-*", 16));
        final Ruleset wan = new Ruleset(new DataplaneConfig("egressd", "wan0", "tap-*", 1024));
        assertThat(changed(base, cap)).containsExactly("guest_new#2", "guest_new#3");
        assertThat(changed(base, wan)).containsExactly("forward#4", "ct_closing#0", "ct_closing#1", "postrouting#0");
    }

    private static java.util.List<String> changed(final Ruleset a, final Ruleset b)
    {
        final java.util.List<String> out = new java.util.ArrayList<>();
        for (int c = 0; c < a.staticChains().size(); c++)
        {
            final Ruleset.StaticChain x = a.staticChains().get(c);
            final Ruleset.StaticChain y = b.staticChains().get(c);
            for (int i = 0; i < x.rules().size(); i++)
            {
                if (!x.fingerprints().get(i).equals(y.fingerprints().get(i)))
                {
                    out.add(x.name() + "#" + i);
                }
            }
        }
        return out;
    }

    @Test
    void theRepairIsOneScriptThatKeepsElementsAndMeters()
    {
        final String repair = new Ruleset(new DataplaneConfig("egressd", "eth0", "tap-*", 1024))
            .renderRepair(java.util.Set.of("postrouting"));
        assertThat(repair).contains("add counter inet egressd spoof4\n")
            .contains("add set inet egressd cc4 { type ipv4_addr . ipv4_addr; flags dynamic; size 65535; }\n")
            .contains("add map inet egressd snat6 { type ipv6_addr : interval ipv6_addr . inet_service; }\n")
            .contains("add chain inet egressd nat6\n").contains("flush chain inet egressd nat6\n")
            .doesNotContain("add rule inet egressd nat6")
            .contains("add chain inet egressd forward { type filter hook forward priority filter; policy accept; }\n")
            .containsSubsequence("flush chain inet egressd postrouting\n", "delete chain inet egressd postrouting\n",
                "add chain inet egressd postrouting { type nat hook postrouting priority srcnat; policy accept; }\n",
                "add rule inet egressd forward ", "add rule inet egressd postrouting masquerade comment")
            .doesNotContain("flush set").doesNotContain("delete table").doesNotContain("flush table")
            .doesNotContain("delete set").doesNotContain("element");
        assertThat(repair.indexOf("add chain inet egressd postrouting")).as("re-added only after its delete")
            .isGreaterThan(repair.indexOf("delete chain inet egressd postrouting"));
    }

    @Test
    void theIpv6SnatRulesAreBuiltOverNetlinkWithTheirFingerprintsAndNeverWrittenAsText()
    {
        final Ruleset ruleset = new Ruleset(new DataplaneConfig("egressd", "eth0", "tap-*", 1024));
        final Ruleset.StaticChain nat6 = ruleset.staticChains().get(4);
        assertThat(nat6.name()).isEqualTo(Ruleset.NAT6_CHAIN);
        assertThat(nat6.netlink()).isTrue();
        assertThat(text).contains("    chain nat6 {\n    }\n").doesNotContain("saddr map @snat6");
        final java.util.List<dev.egressd.agent.kernel.nft.netlink.NftOp.AddRule> rules = ruleset.netlinkRules();
        assertThat(rules).hasSize(3).allMatch(r -> r.chain().equals("nat6"));
        assertThat(rules).extracting(dev.egressd.agent.kernel.nft.netlink.NftOp.AddRule::comment)
            .containsExactlyElementsOf(nat6.fingerprints());
        assertThat(rules.get(0).exprs()).isEqualTo(dev.egressd.agent.kernel.nft.netlink.NftRules.snat6Map("snat6", 6));
        assertThat(rules.get(2).exprs()).isEqualTo(dev.egressd.agent.kernel.nft.netlink.NftRules.snat6Map("snat6", 58));
    }

    @Test
    void aMistypedMapIsDeletedAfterTheFlushesAndBeforeTheForeignChains()
    {
        final String repair = new Ruleset(new DataplaneConfig("egressd", "eth0", "tap-*", 1024)).renderRepair(
            java.util.Set.of(), java.util.List.of(new Ruleset.Foreign("chain", "snat6_fd77", 9),
                new Ruleset.Foreign("set", "mapped6", 10)), java.util.Set.of("snat6"));
        assertThat(repair).containsSubsequence("flush chain inet egressd postrouting\n",
            "delete set inet egressd snat6\n",
            "add map inet egressd snat6 { type ipv6_addr : interval ipv6_addr . inet_service; }\n",
            "flush chain inet egressd snat6_fd77\n", "delete chain inet egressd handle 9\n",
            "delete set inet egressd handle 10\n", "add rule inet egressd forward ");
        assertThat(repair.indexOf("add map inet egressd snat6")).as("declared once, after its delete")
            .isEqualTo(repair.lastIndexOf("add map inet egressd snat6"));
    }

    @Test
    void blockIsOneTable()
    {
        assertThat(text).startsWith("table inet egressd {\n").endsWith("\n}\n");
    }
}
