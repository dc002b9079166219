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
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatIllegalArgumentException;

class TableReaderTest
{
    private final TableReader reader = new TableReader();

    private static final Ipv4Address G4 = Ipv4Address.parse("10.77.0.2");
    private static final Ipv6Address G6 = Ipv6Address.parse("fd77::2");
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

    /**
     * A listing captured from nft 1.0.6: Ruleset.render() with the nat6 rules added over netlink, plus one machine
     * as PlanRenderer adds it. nft lists the netlink-made rules as text it cannot load back; reading the table
     * does not depend on them.
     */
    @Test
    void readsARealListing() throws Exception
    {
        final String listing = resource("list-table-nft-1.0.6.json");
        assertThat(listing).contains("\"chain\": \"nat6\"").contains("\"map\": \"ipv6_addr . inet_service\"");
        assertThat(reader.read(listing)).isEqualTo(ONE_MACHINE);
        assertThat(TableReader.mistypedMaps(TableReader.tree(listing))).isEmpty();
    }

    /**
     * The same machine in a table written by an older egressd (snat6 a verdict map jumping to a per-guest chain,
     * mapped6 its keys): the IPv6 SNAT is left out (the repair re-creates snat6 and the diff re-adds it), the rest
     * is read.
     */
    @Test
    void theVerdictMapOfAnOlderEgressdIsLeftOutAndFlaggedForRecreation() throws Exception
    {
        final String listing = resource("list-table-vmap-snat6-nft-1.0.6.json");
        final List<PlanElement> expected = new ArrayList<>(ONE_MACHINE.elements());
        expected.removeIf(e -> e instanceof PlanElement.Snat6);
        assertThat(reader.read(listing)).isEqualTo(KernelPlan.of(expected));
        assertThat(TableReader.mistypedMaps(TableReader.tree(listing))).containsExactly(Ruleset.SNAT6);
        assertThat(TableReader.foreignObjects(TableReader.tree(listing), Set.of("forward", "guest_new", "deny",
            "nat6", "postrouting"))).extracting(Object::toString)
            .containsExactly("set mapped6", "chain snat6_fd770000000000000000000000000002");
    }

    /** Each set and map listed by name, as nft 1.0.6 printed them. */
    @Test
    void readsTheRealListingsOfEachSet() throws Exception
    {
        final JsonNode captured = TableReader.tree(resource("list-each-set-nft-1.0.6.json"));
        final List<String> listings = new ArrayList<>();
        Ruleset.ELEMENT_SETS.forEach((name, kind) ->
            listings.add(captured.get("list " + kind + " inet egressd " + name).toString()));
        assertThat(listings).hasSize(6);
        assertThat(reader.readSets(listings)).isEqualTo(ONE_MACHINE);
        assertThat(reader.readSets(listings.subList(0, 2)).size()).as("sets not listed add nothing").isEqualTo(2);
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

    @Test
    void anIpv6SnatElementIsReadLikeAnIpv4One()
    {
        final String json = """
            {"nftables": [
              {"map": {"name": "snat6", "map": "ipv6_addr . inet_service", "elem": [["fd77::2",
                 {"concat": ["2001:db8::1", {"range": [1024, 2047]}]}], ["fd77::3", {"concat": ["2001:db8::1", 80]}]]}}
            ]}""";
        assertThat(reader.read(json).elements()).containsExactlyInAnyOrder(
            new PlanElement.Snat6(Ipv6Address.parse("fd77::2"), Ipv6Address.parse("2001:db8::1"), 1024, 2047),
            new PlanElement.Snat6(Ipv6Address.parse("fd77::3"), Ipv6Address.parse("2001:db8::1"), 80, 80));
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
