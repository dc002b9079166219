package dev.egressd.agent.kernel.nft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanElement;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Reads what the kernel holds back into a {@link KernelPlan}, so the reconciler can diff the kernel against the
 * desired plan: from one listing of the whole table ({@code nft -j list table inet NAME}, {@link #read}) or from
 * the listings of the named sets and maps ({@code list set} / {@code list map}, one each, {@link #readSets}).
 * Every plan element is an element of a set or map; rules are never read back (the IPv6 SNAT rules, built over
 * netlink, are listed as text nft 1.0.6 cannot load: docs/design.md, pitfall 1). Uplink addresses are not in
 * the table and never appear in the result.
 */
public final class TableReader
{
    private static final ObjectMapper JSON = new ObjectMapper();

    /** A reader. Stateless; one may be shared. */
    public TableReader()
    {
    }

    /**
     * Parses a table listing.
     *
     * @param json the JSON output of {@code list table inet NAME}.
     * @return the plan elements the table holds.
     * @throws IllegalArgumentException if the JSON is malformed or holds an element that cannot be parsed.
     */
    public KernelPlan read(final String json)
    {
        final List<PlanElement> elements = new ArrayList<>();
        add(json, elements);
        return KernelPlan.of(elements);
    }

    /**
     * Parses listings of the named sets and maps ({@code list set inet NAME static4} and so on; which ones is the
     * caller's business: a set not listed contributes nothing).
     *
     * @param jsons the JSON output of each listing.
     * @return the plan elements.
     * @throws IllegalArgumentException if a listing is malformed or holds an element that cannot be parsed.
     */
    public KernelPlan readSets(final List<String> jsons)
    {
        final List<PlanElement> elements = new ArrayList<>();
        jsons.forEach(json -> add(json, elements));
        return KernelPlan.of(elements);
    }

    private static void add(final String json, final List<PlanElement> elements)
    {
        final JsonNode root;
        try
        {
            root = JSON.readTree(json);
        }
        catch (final IOException e)
        {
            throw new IllegalArgumentException("nft listing is not JSON: " + e.getMessage(), e);
        }
        final JsonNode items = root.path("nftables");
        if (!items.isArray())
        {
            throw new IllegalArgumentException("nft listing has no \"nftables\" array");
        }
        for (final JsonNode item : items)
        {
            if (item.has("set") || item.has("map"))
            {
                final JsonNode set = item.has("set") ? item.get("set") : item.get("map");
                final String name = set.path("name").asText();
                if (mistyped(name, set))
                {
                    continue; // an older egressd's map of that name (the snat6 verdict map): the repair re-creates it
                }
                for (final JsonNode elem : set.path("elem"))
                {
                    readElement(name, elem, elements);
                }
            }
        }
    }

    /**
     * The maps of a table listing whose data type is not what {@link Ruleset#MAP_DATA} declares (or that are
     * listed as a set), e.g. the {@code snat6} verdict map of an older egressd.
     *
     * @param root the parsed listing.
     * @return their names.
     */
    static Set<String> mistypedMaps(final JsonNode root)
    {
        final Set<String> out = new java.util.LinkedHashSet<>();
        for (final JsonNode item : root.path("nftables"))
        {
            final JsonNode set = item.has("set") ? item.get("set") : item.path("map");
            final String name = set.path("name").asText("");
            if (mistyped(name, set))
            {
                out.add(name);
            }
        }
        return out;
    }

    /** A map of ours whose listed data type (when the listing names one) is not the declared one. */
    private static boolean mistyped(final String name, final JsonNode set)
    {
        final String data = Ruleset.MAP_DATA.get(name);
        return data != null && set.path("map").isTextual() && !data.equals(set.get("map").asText());
    }

    private static void readElement(final String set, final JsonNode raw, final List<PlanElement> elements)
    {
        // Elements with timeouts, comments or counters come wrapped: {"elem": {"val": ..., ...}}.
        final JsonNode elem = raw.has("elem") ? raw.get("elem").path("val") : raw;
        try
        {
            switch (set)
            {
                case Ruleset.STATIC4 -> elements.add(new PlanElement.Static4(Ipv4Address.parse(elem.asText())));
                case Ruleset.STATIC6 -> elements.add(new PlanElement.Static6(Ipv6Address.parse(elem.asText())));
                case Ruleset.GUESTS4 ->
                {
                    final JsonNode concat = elem.path("concat");
                    elements.add(new PlanElement.Guest4(concat.path(0).asText(),
                        Ipv4Address.parse(concat.path(1).asText())));
                }
                case Ruleset.GUESTS6 ->
                {
                    final JsonNode concat = elem.path("concat");
                    elements.add(new PlanElement.Guest6(concat.path(0).asText(),
                        Ipv6Address.parse(concat.path(1).asText())));
                }
                case Ruleset.SNAT4 ->
                {
                    final JsonNode key = unwrap(elem.path(0));
                    final JsonNode concat = elem.path(1).path("concat");
                    final int[] ports = ports(concat.path(1));
                    if (ports == null)
                    {
                        throw new IllegalArgumentException("no port range");
                    }
                    elements.add(new PlanElement.Snat4(Ipv4Address.parse(key.asText()),
                        Ipv4Address.parse(concat.path(0).asText()), ports[0], ports[1]));
                }
                case Ruleset.SNAT6 ->
                {
                    final JsonNode key = unwrap(elem.path(0));
                    final JsonNode concat = elem.path(1).path("concat");
                    final int[] ports = ports(concat.path(1));
                    if (ports == null)
                    {
                        throw new IllegalArgumentException("no port range");
                    }
                    elements.add(new PlanElement.Snat6(Ipv6Address.parse(key.asText()),
                        Ipv6Address.parse(concat.path(0).asText()), ports[0], ports[1]));
                }
                default ->
                {
                    // cc4/cc6 meters and anything else: not plan elements.
                }
            }
        }
        catch (final IllegalArgumentException e)
        {
            throw new IllegalArgumentException("cannot read element " + raw + " of " + set + ": " + e.getMessage(), e);
        }
    }

    private static JsonNode unwrap(final JsonNode key)
    {
        return key.has("elem") ? key.get("elem").path("val") : key;
    }

    /** A port or port range as nft lists it: {@code 1024} or {@code {"range": [1024, 2047]}}. */
    private static int[] ports(final JsonNode port)
    {
        if (port.isInt())
        {
            return new int[] {port.asInt(), port.asInt()};
        }
        final JsonNode range = port.path("range");
        if (range.isArray() && range.size() == 2 && range.get(0).isInt() && range.get(1).isInt())
        {
            return new int[] {range.get(0).asInt(), range.get(1).asInt()};
        }
        return null;
    }

    /**
     * One chain as {@code list chain} shows it: how it is hooked, and the comment of each rule in order.
     *
     * @param type     {@code filter}, {@code nat}...; null for a regular chain.
     * @param hook     the hook; null for a regular chain.
     * @param priority the priority; null for a regular chain.
     * @param policy   the policy; null for a regular chain.
     * @param comments each rule's comment, null for a rule without one.
     */
    public record ChainState(String type, String hook, Integer priority, String policy, List<String> comments)
    {
        /**
         * The hook, for a message.
         *
         * @return e.g. {@code filter hook forward priority 10}, or {@code a regular chain}.
         */
        public String describeHook()
        {
            return hook == null ? "a regular chain" : type + " hook " + hook + " priority " + priority;
        }
    }

    /**
     * Reads one chain from the JSON of {@code list chain inet TABLE NAME}.
     *
     * @param root  the parsed listing.
     * @param chain the chain's name.
     * @return its state, or null if the listing does not hold it.
     */
    /**
     * Something in egressd's table that egressd did not put there: a chain, set, map, counter or other named
     * object. The table must hold exactly egressd's ruleset: a foreign base chain there (say one hooked at
     * forward with policy drop) would drop every guest's packets behind egressd's back.
     *
     * @param kind the nft object kind as {@code delete} takes it: {@code chain}, {@code set}, {@code map},
     *             {@code counter}, {@code quota}, {@code ct helper}, ...
     * @param name   its name.
     * @param handle its handle, by which it is deleted (any name works that way), or -1 if not listed.
     */
    record Foreign(String kind, String name, long handle)
    {
        @Override
        public String toString()
        {
            return kind + " " + name;
        }
    }

    /** The named objects a table listing can hold besides chains, sets and maps, as nft's JSON names them. */
    private static final List<String> OBJECT_KINDS = List.of("counter", "quota", "limit", "ct helper",
        "ct timeout", "ct expectation", "secmark", "synproxy", "flowtable");

    /**
     * The objects in a listing of egressd's table that egressd did not create: every chain other than the
     * fixed ones (the per-guest {@code snat6_*} chains of an older egressd included), every set or map other
     * than {@link Ruleset#SET_NAMES} ({@code mapped6} of an older egressd included),
     * every counter other than {@link Ruleset#COUNTERS}, and every other named object.
     *
     * @param root        the parsed listing of the table.
     * @param fixedChains the fixed chains' names.
     * @return the foreign objects, in listing order.
     */
    static List<Foreign> foreignObjects(final JsonNode root, final Set<String> fixedChains)
    {
        final List<Foreign> foreign = new ArrayList<>();
        for (final JsonNode item : root.path("nftables"))
        {
            final JsonNode chain = item.path("chain");
            if (chain.path("name").isTextual())
            {
                final String name = chain.get("name").asText();
                if (!fixedChains.contains(name))
                {
                    foreign.add(new Foreign("chain", name, chain.path("handle").asLong(-1)));
                }
                continue;
            }
            for (final String kind : List.of("set", "map"))
            {
                final JsonNode set = item.path(kind);
                if (set.path("name").isTextual() && !Ruleset.SET_NAMES.contains(set.get("name").asText()))
                {
                    foreign.add(new Foreign(kind, set.get("name").asText(), set.path("handle").asLong(-1)));
                }
            }
            for (final String kind : OBJECT_KINDS)
            {
                final JsonNode object = item.path(kind);
                if (object.path("name").isTextual()
                    && !("counter".equals(kind) && Ruleset.COUNTERS.contains(object.get("name").asText())))
                {
                    foreign.add(new Foreign(kind, object.get("name").asText(), object.path("handle").asLong(-1)));
                }
            }
        }
        return foreign;
    }

    static ChainState chainState(final JsonNode root, final String chain)
    {
        ChainState state = null;
        final List<String> comments = new ArrayList<>();
        for (final JsonNode item : root.path("nftables"))
        {
            final JsonNode c = item.path("chain");
            if (c.isObject() && chain.equals(c.path("name").asText()))
            {
                state = c.has("hook")
                    ? new ChainState(c.path("type").asText(null), c.path("hook").asText(null),
                        c.path("prio").isInt() ? c.path("prio").asInt() : null, c.path("policy").asText(null), comments)
                    : new ChainState(null, null, null, null, comments);
            }
            final JsonNode r = item.path("rule");
            if (r.isObject() && chain.equals(r.path("chain").asText()))
            {
                comments.add(r.path("comment").isTextual() ? r.get("comment").asText() : null);
            }
        }
        return state;
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
