package dev.egressd.agent.kernel.nft;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatIllegalArgumentException;

class TableReaderTest
{
    private final TableReader reader = new TableReader();

    private static final Ipv4Address G4 = Ipv4Address.parse("10.77.0.2");
    private static final Ipv6Address G6 = Ipv6Address.parse("fd77::2");
    private static final String CHAIN = Ruleset.snat6Chain(G6);
    private static final KernelPlan ONE_MACHINE = KernelPlan.of(List.of(
        new PlanElement.Static4(G4),
        new PlanElement.Static6(G6),
        new PlanElement.Guest4("tap-m1", G4),
        new PlanElement.Guest6("tap-m1", G6),
        new PlanElement.Snat4(G4, Ipv4Address.parse("203.0.113.10"), 1024, 2047),
        new PlanElement.Snat6(G6, Ipv6Address.parse("2001:db8:10::10"), 1024, 2047)));

    private static String resource(final String name) throws Exception
    {
        try (InputStream in = TableReaderTest.class.getResourceAsStream(name))
        {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    /** A listing captured from nft 1.0.6: Ruleset.render() plus one machine as PlanRenderer adds it. */
    @Test
    void readsARealListing() throws Exception
    {
        final TableReader.TableRead read = reader.readTable(resource("list-table-nft-1.0.6.json"));
        assertThat(read.plan()).isEqualTo(ONE_MACHINE);
        assertThat(read.chains()).containsExactly(
            Map.entry(CHAIN, new TableReader.Snat6Target(Ipv6Address.parse("2001:db8:10::10"), 1024, 2047)));
    }

    /** The same machine in a table written by an older egressd: one rule with an anonymous protocol set. */
    @Test
    void theOneRuleChainOfAnOlderEgressdIsLeftOutSoTheDiffRewritesIt() throws Exception
    {
        final TableReader.TableRead read = reader.readTable(resource("list-table-one-rule-snat6-nft-1.0.6.json"));
        final List<PlanElement> expected = new ArrayList<>(ONE_MACHINE.elements());
        expected.removeIf(e -> e instanceof PlanElement.Snat6);
        assertThat(read.plan()).isEqualTo(KernelPlan.of(expected));
        assertThat(read.chains()).isEmpty();
    }

    /** Each set and map listed by name, as nft 1.0.6 printed them, with the chains known from elsewhere. */
    @Test
    void readsTheRealListingsOfEachSetWithTheChainsGiven() throws Exception
    {
        final JsonNode captured = TableReader.tree(resource("list-each-set-nft-1.0.6.json"));
        final List<String> listings = new ArrayList<>();
        Ruleset.ELEMENT_SETS.forEach((name, kind) ->
            listings.add(captured.get("list " + kind + " inet egressd " + name).toString()));
        assertThat(listings).hasSize(7);
        final Map<String, TableReader.Snat6Target> chains =
            Map.of(CHAIN, new TableReader.Snat6Target(Ipv6Address.parse("2001:db8:10::10"), 1024, 2047));
        assertThat(reader.readSets(listings, chains)).isEqualTo(ONE_MACHINE);
        final KernelPlan unknownChain = reader.readSets(listings, Map.of());
        assertThat(unknownChain.size()).as("a chain not known is left out: the diff rewrites it").isEqualTo(5);
        assertThat(unknownChain.elements("snat6")).isEmpty();
        assertThat(reader.readSets(listings.subList(0, 2), chains).size()).as("sets not listed add nothing")
            .isEqualTo(2);
    }

    @Test
    void setNamesReadsTheTerseListingsOfSetsAndMaps() throws Exception
    {
        final JsonNode captured = TableReader.tree(resource("list-each-set-nft-1.0.6.json"));
        final Set<String> names = TableReader.setNames(captured.get("terse: list sets table inet egressd"), "egressd");
        names.addAll(TableReader.setNames(captured.get("terse: list maps inet"), "egressd"));
        assertThat(names).isEqualTo(Ruleset.SET_NAMES);
        assertThat(TableReader.setNames(captured.get("terse: list maps inet"), "other")).isEmpty();
    }

    @Test
    void anEmptyTableIsAnEmptyPlan()
    {
        assertThat(reader.read("{\"nftables\": [{\"metainfo\": {}}, {\"set\": {\"name\": \"static4\"}}]}"))
            .isEqualTo(KernelPlan.empty());
    }

    @Test
    void singlePortsAndWrappedElementsAreRead()
    {
        final String json = """
            {"nftables": [
              {"map": {"name": "snat4", "elem": [[{"elem": {"val": "10.0.0.2", "counter": {}}},
                 {"concat": ["203.0.113.5", 4096]}]]}},
              {"set": {"name": "static4", "elem": [{"elem": {"val": "10.0.0.2", "comment": "m1"}}]}}
            ]}""";
        assertThat(reader.read(json).elements()).containsExactlyInAnyOrder(
            new PlanElement.Static4(Ipv4Address.parse("10.0.0.2")),
            new PlanElement.Snat4(Ipv4Address.parse("10.0.0.2"), Ipv4Address.parse("203.0.113.5"), 4096, 4096));
    }

    private static String snat6Rule(final String chain, final String protocol, final String addr, final int last)
    {
        return "{\"rule\": {\"chain\": \"" + chain + "\", \"expr\": [{\"match\": {\"op\": \"==\", \"left\": "
            + "{\"meta\": {\"key\": \"l4proto\"}}, \"right\": \"" + protocol + "\"}}, {\"snat\": {\"family\": \"ip6\", "
            + "\"addr\": \"" + addr + "\", \"port\": {\"range\": [1, " + last + "]}}}]}}";
    }

    private int read(final String... items)
    {
        return reader.read("{\"nftables\": [" + String.join(",", items) + "]}").size();
    }

    @Test
    void anIncompleteSnat6IsLeftOutSoTheDiffReAddsIt()
    {
        final String chain = Ruleset.snat6Chain(Ipv6Address.parse("fd77::2"));
        final String vmap = "{\"map\": {\"name\": \"snat6\", \"elem\": [[\"fd77::2\", {\"jump\": {\"target\": \""
            + chain + "\"}}]]}}";
        final String mapped = "{\"set\": {\"name\": \"mapped6\", \"elem\": [\"fd77::2\"]}}";
        final String tcp = snat6Rule(chain, "tcp", "2001:db8::1", 1023);
        final String udp = snat6Rule(chain, "udp", "2001:db8::1", 1023);
        final String icmp = snat6Rule(chain, "ipv6-icmp", "2001:db8::1", 1023);
        assertThat(read(vmap, mapped, tcp, udp, icmp)).isEqualTo(1);
        assertThat(read(vmap, mapped, icmp, tcp, udp)).as("in another order").isEqualTo(1);
        assertThat(read(vmap, tcp, udp, icmp)).as("no mapped6").isZero();
        assertThat(read(vmap, mapped)).as("no rule").isZero();
        assertThat(read(vmap, mapped, tcp, udp)).as("no ICMPv6 rule").isZero();
        assertThat(read(vmap, mapped, tcp, udp, icmp, tcp)).as("a rule twice").isZero();
        assertThat(read(vmap, mapped, tcp, tcp, icmp)).as("TCP twice, no UDP").isZero();
        assertThat(read(vmap, mapped, tcp, udp, snat6Rule(chain, "sctp", "2001:db8::1", 1023)))
            .as("SCTP instead of ICMPv6").isZero();
        assertThat(read(vmap, mapped, tcp, udp, snat6Rule(chain, "ipv6-icmp", "2001:db8::1", 2047)))
            .as("rules disagree on the ports").isZero();
        assertThat(read(vmap, mapped, tcp, udp, snat6Rule(chain, "ipv6-icmp", "2001:db8::2", 1023)))
            .as("rules disagree on the address").isZero();
        final String other = Ruleset.snat6Chain(Ipv6Address.parse("fd77::3"));
        assertThat(read(vmap.replace(chain, other), mapped, snat6Rule(other, "tcp", "2001:db8::1", 1023),
            snat6Rule(other, "udp", "2001:db8::1", 1023), snat6Rule(other, "ipv6-icmp", "2001:db8::1", 1023)))
            .as("the vmap jumps to another guest's chain").isZero();
    }

    @Test
    void garbageIsRefusedWithTheElement()
    {
        assertThatIllegalArgumentException().isThrownBy(() -> reader.read("not json"));
        assertThatIllegalArgumentException().isThrownBy(() -> reader.read("{}"));
        assertThatIllegalArgumentException()
            .isThrownBy(() -> reader.read("{\"nftables\": [{\"set\": {\"name\": \"static4\", \"elem\": [\"fd77::1\"]}}]}"))
            .withMessageContaining("static4").withMessageContaining("fd77::1");
    }
}
