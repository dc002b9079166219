package dev.egressd.agent.kernel.nft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.HashSet;
import java.util.Set;

/**
 * The names of a table's sets and maps from libnftables' JSON listings: the table check's way for an nft client
 * that cannot list them over nf_tables netlink. Every other read of the table is a netlink dump (docs/design.md,
 * "Reading the table back").
 */
final class SetListing
{
    private static final ObjectMapper JSON = new ObjectMapper();

    private SetListing()
    {
    }

    /**
     * The names of one table's sets or maps in a listing of them ({@code list sets table inet NAME}, which
     * in nft 1.0.6 holds no maps, or {@code list maps inet}, which cannot name a table).
     *
     * @param root  the parsed listing.
     * @param table the table's name.
     * @return the names.
     */
    static Set<String> setNames(final JsonNode root, final String table)
    {
        final Set<String> names = new HashSet<>();
        for (final JsonNode item : root.path("nftables"))
        {
            final JsonNode set = item.has("set") ? item.get("set") : item.path("map");
            if (set.path("name").isTextual() && table.equals(set.path("table").asText()))
            {
                names.add(set.get("name").asText());
            }
        }
        return names;
    }

    static JsonNode tree(final String json)
    {
        try
        {
            return JSON.readTree(json);
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }
}
