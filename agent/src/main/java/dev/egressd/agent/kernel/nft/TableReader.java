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
 * desired plan: either from one listing of the whole table ({@code nft -j list table inet NAME}, {@link #read}),
 * or from the listings of the named sets and maps ({@code list set} / {@code list map}, one each) plus what the
 * per-guest IPv6 chains are known to hold ({@link #readSets}). Uplink addresses are not in the table and never
 * appear in the result.
 *
 * <p>An IPv6 SNAT element is reported only when all of its parts agree: the {@code snat6} vmap element, the
 * {@code mapped6} element, and a per-guest chain holding exactly the rules {@link Ruleset#snat6Rules} writes
 * (one snat rule per protocol of {@link Ruleset#SNAT6_PROTOCOLS}, all to the same address and ports). Anything
 * less is drift the reconciler should repair, so it is left out and the diff re-adds it (the renderer's ADD is
 * idempotent for that reason). The one-rule chains of an older egressd ({@code meta l4proto { tcp, udp,
 * ipv6-icmp }}) are left out the same way, so the first reconcile rewrites them.
 */
public final class TableReader
{
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * What one per-guest IPv6 SNAT chain translates to.
     *
     * @param egress    the egress address.
     * @param firstPort the first port.
     * @param lastPort  the last port.
     */
    public record Snat6Target(Ipv6Address egress, int firstPort, int lastPort)
    {
        /**
         * The plan element of a guest whose vmap element jumps to this chain.
         *
         * @param guest the guest address.
         * @return the element.
         */
        public PlanElement.Snat6 element(final Ipv6Address guest)
        {
            return new PlanElement.Snat6(guest, egress, firstPort, lastPort);
        }
    }

    /**
     * A listing of the whole table read: the plan, and the per-guest chains that hold what
     * {@link Ruleset#snat6Rules} writes (chain name to target), whether a vmap element jumps to them or not.
     *
     * @param plan   the plan elements.
     * @param chains the complete per-guest chains.
     */
    public record TableRead(KernelPlan plan, Map<String, Snat6Target> chains)
    {
    }

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
        return readTable(json).plan();
    }

    /**
     * Parses a table listing, keeping what the per-guest chains hold.
     *
     * @param json the JSON output of {@code list table inet NAME}.
     * @return the plan elements and the complete per-guest chains.
     * @throws IllegalArgumentException if the JSON is malformed or holds an element that cannot be parsed.
     */
    public TableRead readTable(final String json)
    {
        final Listing listing = new Listing();
        listing.add(json);
        final Map<String, Snat6Target> chains = listing.chains();
        return new TableRead(listing.plan(chains), chains);
    }

    /**
     * Parses listings of the named sets and maps ({@code list set inet NAME static4} and so on; which ones is the
     * caller's business: a set not listed contributes nothing), taking what the per-guest chains hold from
     * {@code chains} instead of from a listing of their rules.
     *
     * @param jsons  the JSON output of each listing.
     * @param chains what each per-guest chain is known to hold, by chain name.
     * @return the plan elements.
     * @throws IllegalArgumentException if a listing is malformed or holds an element that cannot be parsed.
     */
    public KernelPlan readSets(final List<String> jsons, final Map<String, Snat6Target> chains)
    {
        final Listing listing = new Listing();
        jsons.forEach(listing::add);
        return listing.plan(chains);
    }

    /** What the listings hold, gathered item by item. */
    private static final class Listing
    {
        private final List<PlanElement> elements = new ArrayList<>();
        private final Map<Ipv6Address, String> snat6Targets = new HashMap<>();
        private final Set<Ipv6Address> mapped6 = new HashSet<>();
        private final Map<String, List<JsonNode>> rulesByChain = new HashMap<>();

        void add(final String json)
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
                        rulesByChain.computeIfAbsent(chain, c -> new ArrayList<>()).add(rule);
                    }
                }
            }
        }

        Map<String, Snat6Target> chains()
        {
            final Map<String, Snat6Target> chains = new HashMap<>();
            rulesByChain.forEach((chain, rules) ->
            {
                final Snat6Target target = snat6Target(rules);
                if (target != null)
                {
                    chains.put(chain, target);
                }
            });
            return chains;
        }

        KernelPlan plan(final Map<String, Snat6Target> chains)
        {
            final List<PlanElement> out = new ArrayList<>(elements);
            snat6Targets.forEach((guest, chain) ->
            {
                final Snat6Target target = chains.get(chain);
                if (target != null && mapped6.contains(guest) && chain.equals(Ruleset.snat6Chain(guest)))
                {
                    out.add(target.element(guest));
                }
            });
            return KernelPlan.of(out);
        }
    }

    /**
     * What a per-guest chain's rules translate to, if they are exactly what {@link Ruleset#snat6Rules} writes:
     * one rule per protocol of {@link Ruleset#SNAT6_PROTOCOLS}, each a {@code meta l4proto} match and one snat
     * to the same address and ports, and nothing else.
     *
     * @param rules the chain's rules, as listed.
     * @return the target, or null for anything else (drift: the diff rewrites the chain).
     */
    static Snat6Target snat6Target(final List<JsonNode> rules)
    {
        if (rules.size() != Ruleset.SNAT6_PROTOCOLS.size())
        {
            return null;
        }
        final Set<String> protocols = new HashSet<>();
        Snat6Target target = null;
        for (final JsonNode rule : rules)
        {
            final JsonNode expr = rule.path("expr");
            if (expr.size() != 2)
            {
                return null;
            }
            final JsonNode match = expr.get(0).path("match");
            final JsonNode snat = expr.get(1).path("snat");
            if (!"==".equals(match.path("op").asText()) || !"l4proto".equals(match.path("left").path("meta")
                .path("key").asText()) || !match.path("right").isTextual() || !snat.path("addr").isTextual())
            {
                return null;
            }
            final int[] ports = ports(snat.path("port"));
            if (ports == null || !protocols.add(match.get("right").asText()))
            {
                return null;
            }
            final Snat6Target t;
            try
            {
                t = new Snat6Target(Ipv6Address.parse(snat.get("addr").asText()), ports[0], ports[1]);
            }
            catch (final IllegalArgumentException e)
            {
                return null;
            }
            if (target != null && !target.equals(t))
            {
                return null;
            }
            target = t;
        }
        return protocols.equals(Set.copyOf(Ruleset.SNAT6_PROTOCOLS)) ? target : null;
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
     * fixed ones and the per-guest {@code snat6_*} chains, every set or map other than {@link Ruleset#SET_NAMES},
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
                if (!fixedChains.contains(name) && !name.startsWith(Ruleset.SNAT6_CHAIN_PREFIX))
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
