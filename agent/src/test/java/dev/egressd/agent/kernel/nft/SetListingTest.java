package dev.egressd.agent.kernel.nft;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SetListingTest
{
    private static String resource(final String name) throws Exception
    {
        try (InputStream in = SetListingTest.class.getResourceAsStream(name))
        {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    /** Listings captured from nft 1.0.6 (`-j -t list sets table inet egressd`, `-j -t list maps inet`). */
    @Test
    void setNamesReadsTheTerseListingsOfSetsAndMaps() throws Exception
    {
        final JsonNode captured = SetListing.tree(resource("list-each-set-nft-1.0.6.json"));
        final Set<String> names = SetListing.setNames(captured.get("terse: list sets table inet egressd"), "egressd");
        names.addAll(SetListing.setNames(captured.get("terse: list maps inet"), "egressd"));
        assertThat(names).isEqualTo(Ruleset.SET_NAMES);
        assertThat(SetListing.setNames(captured.get("terse: list maps inet"), "other")).isEmpty();
    }

    @Test
    void aListingThatIsNotJsonIsRefused()
    {
        assertThatThrownBy(() -> SetListing.tree("{\"nftables\": [")).isInstanceOf(java.io.UncheckedIOException.class);
    }
}
