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
