package dev.egressd.agent.nft;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatIllegalArgumentException;

class TableReaderTest
{
    private final TableReader reader = new TableReader();

    /** A listing captured from nft 1.0.6 (the recipe's table, one machine added by hand). */
    @Test
    void readsARealListing() throws Exception
    {
        final String json;
        try (InputStream in = getClass().getResourceAsStream("list-table-nft-1.0.6.json"))
        {
            json = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        final Ipv4Address g4 = Ipv4Address.parse("10.77.0.2");
        final Ipv6Address g6 = Ipv6Address.parse("fd77::2");
        assertThat(reader.read(json)).isEqualTo(KernelPlan.of(List.of(
            new PlanElement.Static4(g4),
            new PlanElement.Static6(g6),
            new PlanElement.Guest4("tap-m1", g4),
            new PlanElement.Guest6("tap-m1", g6),
            new PlanElement.Snat4(g4, Ipv4Address.parse("203.0.113.10"), 1024, 2047),
            new PlanElement.Snat6(g6, Ipv6Address.parse("2001:db8:10::10"), 1024, 2047))));
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
    void anIncompleteSnat6IsLeftOutSoTheDiffReAddsIt()
    {
        final String chain = Ruleset.snat6Chain(Ipv6Address.parse("fd77::2"));
        final String vmap = "{\"map\": {\"name\": \"snat6\", \"elem\": [[\"fd77::2\", {\"jump\": {\"target\": \""
            + chain + "\"}}]]}}";
        final String mapped = "{\"set\": {\"name\": \"mapped6\", \"elem\": [\"fd77::2\"]}}";
        final String rule = "{\"rule\": {\"chain\": \"" + chain + "\", \"expr\": [{\"snat\": {\"family\": \"ip6\", "
            + "\"addr\": \"2001:db8::1\", \"port\": {\"range\": [1, 1023]}}}]}}";
        assertThat(reader.read("{\"nftables\": [" + vmap + "," + mapped + "," + rule + "]}").size()).isEqualTo(1);
        assertThat(reader.read("{\"nftables\": [" + vmap + "," + rule + "]}").size()).as("no mapped6").isZero();
        assertThat(reader.read("{\"nftables\": [" + vmap + "," + mapped + "]}").size()).as("no rule").isZero();
        assertThat(reader.read("{\"nftables\": [" + vmap + "," + mapped + "," + rule + "," + rule + "]}").size())
            .as("two rules").isZero();
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
