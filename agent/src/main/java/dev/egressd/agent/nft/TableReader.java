package dev.egressd.agent.nft;

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
 * Reads what the kernel holds ({@code nft -j list table inet NAME}) back into a {@link KernelPlan}, so
 * the reconciler can diff the kernel against the desired plan. Uplink addresses are not in the table
 * and never appear in the result.
 *
 * <p>An IPv6 SNAT element is reported only when all of its parts agree: the {@code snat6} vmap element,
 * the {@code mapped6} element, and a per-guest chain with exactly one snat rule. Anything less is drift
 * the reconciler should repair, so it is left out and the diff re-adds it (the renderer's ADD is
 * idempotent for that reason).
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
        final List<PlanElement> elements = new ArrayList<>();
        final Map<Ipv6Address, String> snat6Targets = new HashMap<>();
        final Set<Ipv6Address> mapped6 = new HashSet<>();
        final Map<String, List<JsonNode>> snatRulesByChain = new HashMap<>();
        final Map<String, Integer> rulesPerChain = new HashMap<>();
        for (final JsonNode item : items)
        {
            if (item.has("set") || item.has("map"))
            {
                final JsonNode set = item.has("set") ? item.get("set") : item.get("map");
                final String name = set.path("name").asText();
                for (final JsonNode elem : set.path("elem"))
                {
                    readElement(name, elem, elements, snat6Targets, mapped6);
                }
            }
            else if (item.has("rule"))
            {
                final JsonNode rule = item.get("rule");
                final String chain = rule.path("chain").asText();
                if (chain.startsWith(Ruleset.SNAT6_CHAIN_PREFIX))
                {
                    rulesPerChain.merge(chain, 1, Integer::sum);
                    for (final JsonNode expr : rule.path("expr"))
                    {
                        if (expr.has("snat"))
                        {
                            snatRulesByChain.computeIfAbsent(chain, c -> new ArrayList<>()).add(expr.get("snat"));
                        }
                    }
                }
            }
        }
        snat6Targets.forEach((guest, chain) ->
        {
            final List<JsonNode> snats = snatRulesByChain.getOrDefault(chain, List.of());
            if (mapped6.contains(guest) && chain.equals(Ruleset.snat6Chain(guest)) && snats.size() == 1
                && rulesPerChain.getOrDefault(chain, 0) == 1)
            {
                final JsonNode snat = snats.get(0);
                final int[] ports = ports(snat.path("port"));
                if (snat.path("addr").isTextual() && ports != null)
                {
                    elements.add(new PlanElement.Snat6(guest, Ipv6Address.parse(snat.get("addr").asText()),
                        ports[0], ports[1]));
                }
            }
        });
        return KernelPlan.of(elements);
    }

    private static void readElement(final String set, final JsonNode raw, final List<PlanElement> elements,
        final Map<Ipv6Address, String> snat6Targets, final Set<Ipv6Address> mapped6)
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
                    final JsonNode target = elem.path(1).path("jump").path("target");
                    if (target.isTextual())
                    {
                        snat6Targets.put(Ipv6Address.parse(unwrap(elem.path(0)).asText()), target.asText());
                    }
                }
                case Ruleset.MAPPED6 -> mapped6.add(Ipv6Address.parse(elem.asText()));
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
