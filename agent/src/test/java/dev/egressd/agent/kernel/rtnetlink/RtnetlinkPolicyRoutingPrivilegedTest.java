package dev.egressd.agent.kernel.rtnetlink;

import static dev.egressd.agent.kernel.rtnetlink.PolicyRouting.AF_INET;
import static dev.egressd.agent.kernel.rtnetlink.PolicyRouting.AF_INET6;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Route;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Rule;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.netlink.NetlinkException;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import java.io.IOException;
import java.net.InetAddress;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * RtnetlinkPolicyRouting against the kernel, in a fresh namespace per test with a link {@code r0} holding
 * 192.0.2.2/24 and 2001:db8:1:1::2/64 (the router's side of a link to a host at .1 / ::1). What the kernel holds is
 * read back with {@code ip -j rule} / {@code ip -j route show table N}, independently of our own parser. The range
 * egressd owns here is tables 1001..1100; a rule and a route in table 900 stand for the operator's own.
 */
@Privileged
class RtnetlinkPolicyRoutingPrivilegedTest
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int FIRST = 1001;
    private static final int LAST = 1100;

    private LabNamespace lab;
    private NetNamespace ns;

    @BeforeEach
    void createNamespace() throws IOException
    {
        Requirements.root();
        lab = LabNamespace.create();
        lab.addLink("r0");
        lab.ip("addr", "add", "192.0.2.2/24", "dev", "r0");
        lab.ip("-6", "addr", "add", "2001:db8:1:1::2/64", "dev", "r0", "nodad");
        ns = NetNamespace.enter(lab.name());
    }

    @AfterEach
    void deleteNamespace() throws IOException
    {
        LabNamespace.tearDown(lab, ns);
    }

    @Test
    void addsRulesForBothFamiliesWithTablesAbove255AndListsOnlyTheRange() throws IOException
    {
        lab.ip("rule", "add", "fwmark", "9", "lookup", "900", "pref", "900");
        lab.ip("-6", "rule", "add", "fwmark", "9", "lookup", "900", "pref", "900");
        final Rule v4a = new Rule(AF_INET, 1, 1001, 1001);
        final Rule v4b = new Rule(AF_INET, 0x2A, 1042, 1042);
        final Rule v6 = new Rule(AF_INET6, 1, 1001, 1001);
        final List<List<Rule>> listed = call(p ->
        {
            p.addRule(v4a);
            p.addRule(v4b);
            p.addRule(v6);
            return List.of(p.rules(AF_INET, FIRST, LAST), p.rules(AF_INET6, FIRST, LAST), p.rules(AF_INET, 900, 900),
                p.rules(AF_INET, 1042, 1042));
        });
        assertThat(listed.get(0)).containsExactlyInAnyOrder(v4a, v4b);
        assertThat(listed.get(1)).containsExactly(v6);
        assertThat(listed.get(2)).as("the operator's rule, asked for by its own range").containsExactly(
            new Rule(AF_INET, 9, 900, 900));
        assertThat(listed.get(3)).containsExactly(v4b);
        assertThat(kernelRulesInRange(AF_INET)).as("ip -4 rule, tables %d..%d", FIRST, LAST)
            .containsExactlyInAnyOrderElementsOf(listed.get(0));
        assertThat(kernelRulesInRange(AF_INET6)).as("ip -6 rule, tables %d..%d", FIRST, LAST)
            .containsExactlyInAnyOrderElementsOf(listed.get(1));

        assertThat(kernelRules("-4")).filteredOn(r -> r.path("table").asText().equals("1001")).singleElement()
            .satisfies(r ->
            {
                assertThat(r.get("priority").asInt()).isEqualTo(1001);
                assertThat(r.get("fwmark").asText()).isEqualTo("0x1");
                assertThat(r.get("protocol").asText()).isEqualTo("229");
            });
        assertThat(kernelRules("-4")).filteredOn(r -> r.path("table").asText().equals("1042")).singleElement()
            .satisfies(r -> assertThat(r.get("fwmark").asText()).isEqualTo("0x2a"));
        assertThat(kernelRules("-6")).filteredOn(r -> r.path("table").asText().equals("1001")).singleElement()
            .satisfies(r -> assertThat(r.get("fwmark").asText()).isEqualTo("0x1"));
        // ip prints "fwmark 0x1" for a full mask only: any other mask would read "0x1/0x..."
        assertThat(lab.ip("rule", "show")).contains("fwmark 0x1 lookup 1001").doesNotContain("0x1/");
    }

    @Test
    void addingARuleTwiceMakesOneAndDeletingAMissingRuleIsFine() throws IOException
    {
        final Rule rule = new Rule(AF_INET6, 7, 1007, 1007);
        final List<Integer> counts = call(p ->
        {
            final List<Integer> out = new ArrayList<>();
            p.addRule(rule);
            p.addRule(rule);
            out.add(p.rules(AF_INET6, FIRST, LAST).size());
            p.deleteRule(rule);
            out.add(p.rules(AF_INET6, FIRST, LAST).size());
            p.deleteRule(rule);
            p.deleteRule(new Rule(AF_INET, 7, 1007, 1007));
            return out;
        });
        assertThat(counts).containsExactly(1, 0);
        assertThat(kernelRules("-6")).noneMatch(r -> r.path("table").asText().equals("1007"));
    }

    @Test
    void aHandMadeCopyOfTheRuleCountsAsThereAndDeleteRemovesIt() throws IOException
    {
        // Same rule without egressd's protocol: the kernel would take ours as a second rule, addRule must not.
        lab.ip("rule", "add", "fwmark", "3", "lookup", "1003", "pref", "1003");
        final Rule rule = new Rule(AF_INET, 3, 1003, 1003);
        final List<Rule> before = call(p ->
        {
            p.addRule(rule);
            return p.rules(AF_INET, FIRST, LAST);
        });
        assertThat(before).containsExactly(rule);
        assertThat(kernelRules("-4")).filteredOn(r -> r.path("table").asText().equals("1003")).hasSize(1);
        final List<Rule> after = call(p ->
        {
            p.deleteRule(rule);
            return p.rules(AF_INET, FIRST, LAST);
        });
        assertThat(after).isEmpty();
        assertThat(kernelRules("-4")).noneMatch(r -> r.path("table").asText().equals("1003"));
    }

    @Test
    void aRuleThatAlsoSelectsOnSomethingElseDoesNotStandInForOurs() throws IOException
    {
        // Same mark, table and priority, but narrower: only our own rule steers every packet with the mark.
        lab.ip("rule", "add", "from", "10.0.0.0/8", "fwmark", "4", "lookup", "1004", "pref", "1004");
        lab.ip("rule", "add", "fwmark", "5/0xff", "lookup", "1005", "pref", "1005");
        lab.ip("rule", "add", "not", "fwmark", "6", "lookup", "1006", "pref", "1006");
        call(p ->
        {
            p.addRule(new Rule(AF_INET, 4, 1004, 1004));
            p.addRule(new Rule(AF_INET, 5, 1005, 1005));
            p.addRule(new Rule(AF_INET, 6, 1006, 1006));
            return null;
        });
        for (final String table : List.of("1004", "1005", "1006"))
        {
            assertThat(kernelRules("-4")).as("table %s", table).filteredOn(r -> r.path("table").asText().equals(table))
                .hasSize(2).anySatisfy(r -> assertThat(r.path("protocol").asText()).isEqualTo("229"));
        }
        assertThat(lab.ip("rule", "show")).contains("from all fwmark 0x4 lookup 1004 proto 229")
            .contains("from all fwmark 0x5 lookup 1005 proto 229").contains("from all fwmark 0x6 lookup 1006 proto 229");
    }

    @Test
    void deletingARuleLeavesTheOthersAlone() throws IOException
    {
        lab.ip("rule", "add", "fwmark", "1", "lookup", "900", "pref", "900");
        final Rule keep = new Rule(AF_INET, 2, 1002, 1002);
        final Rule drop = new Rule(AF_INET, 1, 1001, 1001);
        final List<Rule> left = call(p ->
        {
            p.addRule(keep);
            p.addRule(drop);
            p.deleteRule(drop);
            return p.rules(AF_INET, FIRST, LAST);
        });
        assertThat(left).containsExactly(keep);
        final List<String> tables = kernelRules("-4").stream().map(r -> r.path("table").asText()).toList();
        assertThat(tables).contains("900", "1002").doesNotContain("1001");
        assertThat(tables).contains("local", "main", "default");
    }

    @Test
    void replacesAndDeletesRoutesWithV4AndV6GatewaysInTheRangeOnly() throws IOException
    {
        lab.ip("route", "add", "203.0.113.6/32", "via", "192.0.2.1", "table", "900");
        lab.ip("-6", "route", "add", "2001:db8:5::6/128", "via", "2001:db8:1:1::1", "table", "900");
        final Route v4 = new Route(AF_INET, 1001, ip("203.0.113.5"), 32, ip("192.0.2.1"));
        final Route v4moved = new Route(AF_INET, 1001, ip("203.0.113.5"), 32, ip("192.0.2.3"));
        final Route v6 = new Route(AF_INET6, 1001, ip("2001:db8:5::5"), 128, ip("2001:db8:1:1::1"));
        final Route v6other = new Route(AF_INET6, 1002, ip("2001:db8:5::5"), 128, ip("2001:db8:1:1::3"));
        final List<List<Route>> listed = call(p ->
        {
            p.replaceRoute(v4);
            p.replaceRoute(v6);
            p.replaceRoute(v6other);
            final List<List<Route>> out = new ArrayList<>();
            out.add(p.routes(AF_INET, FIRST, LAST));
            out.add(p.routes(AF_INET6, FIRST, LAST));
            p.replaceRoute(v4);
            p.replaceRoute(v4moved);
            out.add(p.routes(AF_INET, FIRST, LAST));
            return out;
        });
        assertThat(listed.get(0)).containsExactly(v4);
        assertThat(listed.get(1)).containsExactlyInAnyOrder(v6, v6other);
        assertThat(listed.get(2)).as("replace keeps one route per destination and table").containsExactly(v4moved);
        assertThat(kernelRoutesInRange(AF_INET)).as("ip -4 route show table N").containsExactlyInAnyOrderElementsOf(listed.get(2));
        assertThat(kernelRoutesInRange(AF_INET6)).as("ip -6 route show table N").containsExactlyInAnyOrderElementsOf(listed.get(1));

        assertThat(kernelRoutes("-4", 1001)).singleElement().satisfies(r ->
        {
            assertThat(r.get("dst").asText()).isEqualTo("203.0.113.5");
            assertThat(r.get("gateway").asText()).isEqualTo("192.0.2.3");
            assertThat(r.get("dev").asText()).isEqualTo("r0");
            assertThat(r.get("protocol").asText()).isEqualTo("229");
        });
        assertThat(kernelRoutes("-6", 1001)).singleElement().satisfies(r ->
        {
            assertThat(r.get("dst").asText()).isEqualTo("2001:db8:5::5");
            assertThat(r.get("gateway").asText()).isEqualTo("2001:db8:1:1::1");
            assertThat(r.get("protocol").asText()).isEqualTo("229");
        });

        final List<List<Route>> afterDelete = call(p ->
        {
            p.deleteRoute(v4);                 // the old gateway: not the route there now, which stays
            final List<List<Route>> out = new ArrayList<>();
            out.add(p.routes(AF_INET, FIRST, LAST));
            p.deleteRoute(v4moved);
            p.deleteRoute(v4moved);            // already gone
            p.deleteRoute(v6);
            p.deleteRoute(new Route(AF_INET6, 1099, ip("2001:db8:5::5"), 128, ip("2001:db8:1:1::1"))); // no such table
            out.add(p.routes(AF_INET, FIRST, LAST));
            out.add(p.routes(AF_INET6, FIRST, LAST));
            out.add(p.routes(AF_INET, 900, 900));
            return out;
        });
        assertThat(afterDelete.get(0)).containsExactly(v4moved);
        assertThat(afterDelete.get(1)).isEmpty();
        assertThat(afterDelete.get(2)).containsExactly(v6other);
        assertThat(afterDelete.get(3)).as("the operator's route in table 900")
            .containsExactly(new Route(AF_INET, 900, ip("203.0.113.6"), 32, ip("192.0.2.1")));
        assertThat(kernelRoutes("-4", 1001)).isEmpty();
        assertThat(kernelRoutes("-6", 1001)).isEmpty();
        assertThat(kernelRoutes("-6", 1002)).hasSize(1);
        assertThat(kernelRoutes("-4", 900)).hasSize(1);
        assertThat(kernelRoutes("-6", 900)).hasSize(1);
    }

    @Test
    void kernelRefusalsAreTypedAndNameTheRoute()
    {
        // 198.51.100.1 is on no link of this namespace: the kernel cannot resolve the next hop.
        final Route unreachable = new Route(AF_INET, 1001, ip("203.0.113.5"), 32, ip("198.51.100.1"));
        assertThatThrownBy(() -> call(p ->
        {
            p.replaceRoute(unreachable);
            return null;
        })).isInstanceOf(NetlinkException.class)
            .hasMessageStartingWith("RTM_NEWROUTE (replace) 203.0.113.5/32 via 198.51.100.1 table 1001 failed: ");
    }

    @Test
    void badInputIsRefusedBeforeTheKernelSeesIt() throws IOException
    {
        assertThatThrownBy(() -> call(p ->
        {
            p.addRule(new Rule(AF_INET, 0, 1001, 1001));
            return null;
        })).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("mark");
        assertThatThrownBy(() -> call(p ->
        {
            p.addRule(new Rule(AF_INET, 1, 254, 1001));
            return null;
        })).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("rule table 254 is reserved");
        assertThatThrownBy(() -> call(p ->
        {
            p.replaceRoute(new Route(AF_INET, 1001, ip("203.0.113.5"), 32, ip("2001:db8:1:1::1")));
            return null;
        })).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("route gateway");
        assertThatThrownBy(() -> call(p ->
        {
            p.replaceRoute(new Route(AF_INET, 1001, ip("203.0.113.5"), 24, ip("192.0.2.1")));
            return null;
        })).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("beyond its prefixLength 24");
        assertThat(lab.ip("rule", "show")).doesNotContain("1001");
        assertThat(kernelRoutes("-4", 1001)).isEmpty();
    }

    private interface Body<T>
    {
        T apply(RtnetlinkPolicyRouting p) throws IOException;
    }

    private <T> T call(final Body<T> body) throws IOException
    {
        return ns.call(() ->
        {
            try (RtnetlinkPolicyRouting p = RtnetlinkPolicyRouting.open())
            {
                return body.apply(p);
            }
        });
    }

    private List<JsonNode> kernelRules(final String family) throws IOException
    {
        final List<JsonNode> out = new ArrayList<>();
        JSON.readTree(lab.ip("-j", family, "rule", "show")).forEach(out::add);
        return out;
    }

    /** The fwmark rules iproute2 shows in FIRST..LAST, as Rules. */
    private List<Rule> kernelRulesInRange(final int family) throws IOException
    {
        final List<Rule> out = new ArrayList<>();
        for (final JsonNode r : kernelRules(family == AF_INET ? "-4" : "-6"))
        {
            final String table = r.path("table").asText();
            if (table.matches("\\d+") && Integer.parseInt(table) >= FIRST && Integer.parseInt(table) <= LAST)
            {
                out.add(new Rule(family, Integer.decode(r.path("fwmark").asText("0")), Integer.parseInt(table),
                    r.get("priority").asInt()));
            }
        }
        return out;
    }

    private List<JsonNode> kernelRoutes(final String family, final int table) throws IOException
    {
        final List<JsonNode> out = new ArrayList<>();
        final String text;
        try
        {
            text = lab.ip("-j", family, "route", "show", "table", Integer.toString(table));
        }
        catch (final IOException e)
        {
            // An emptied table disappears; iproute2 then reports that it does not exist.
            if (e.getMessage() != null && e.getMessage().contains("does not exist"))
            {
                return out;
            }
            throw e;
        }
        if (!text.isBlank())
        {
            JSON.readTree(text).forEach(out::add);
        }
        return out;
    }

    /** The routes iproute2 shows in the tables FIRST..LAST ({@code ip route show table all}), as Routes. */
    private List<Route> kernelRoutesInRange(final int family) throws IOException
    {
        final List<Route> out = new ArrayList<>();
        for (final JsonNode r : JSON.readTree(lab.ip("-j", family == AF_INET ? "-4" : "-6", "route", "show", "table", "all")))
        {
            final String table = r.path("table").asText();
            if (table.matches("\\d+") && Integer.parseInt(table) >= FIRST && Integer.parseInt(table) <= LAST)
            {
                final String[] dst = r.get("dst").asText().split("/");
                final int length = dst.length == 2 ? Integer.parseInt(dst[1]) : family == AF_INET ? 32 : 128;
                out.add(new Route(family, Integer.parseInt(table), ip(dst[0]), length, ip(r.get("gateway").asText())));
            }
        }
        return out;
    }

    private static InetAddress ip(final String literal)
    {
        try
        {
            return InetAddress.getByName(literal);
        }
        catch (final java.net.UnknownHostException e)
        {
            throw new IllegalArgumentException(literal, e);
        }
    }
}
