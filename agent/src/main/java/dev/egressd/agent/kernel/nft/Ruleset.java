package dev.egressd.agent.kernel.nft;

import dev.egressd.agent.kernel.nft.netlink.NftOp;
import dev.egressd.agent.kernel.nft.netlink.NftRules;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The static part of egressd's table: sets, maps, meters, named counters and chains, in the shape of
 * the table in docs/design.md, "The kernel state". Per-machine facts never appear here; they
 * are elements of the sets and maps, changed by {@link PlanRenderer}, so the chains are installed once
 * and never reloaded (a reload resets the {@code ct count} meters, docs/design.md, pitfall 9).
 *
 * <p>Every rule of the fixed chains carries a fingerprint comment ({@link StaticChain#fingerprints()}):
 * a hash of the rule as this configuration renders it. {@link NftDataplane#ensureTable()}, when a deep check
 * is due, dumps the table over netlink and compares the fixed chains' hooks, policies and fingerprints with these; a new uplink or cap, or a hand edit (a flushed chain, an added or deleted
 * rule, a changed policy), is put right by {@link #renderRepair} in one transaction that keeps every
 * element and meter. Comparing fingerprints rather than nft's listing of the rules is deliberate: nft
 * normalises what it lists (it printed {@code { tcp, udp, icmp }} back as {@code { icmp, tcp, udp }}),
 * so a text or JSON comparison would depend on one nft version's printer. What a fingerprint cannot see, a
 * rule replaced by hand with its comment copied over, the check finds by the rule's expressions as the kernel
 * dumps them, compared with those egressd wrote.
 *
 * <p>Why each piece is shaped as it is:
 * <ul>
 *   <li>No {@code flags interval} on key sets and maps: keys are single addresses, and with the flag
 *       nft 1.0.6 re-reads every element before each change (12.8 ms at 4,000 machines vs 0.13 ms).</li>
 *   <li>IPv6 NAT goes through a data map like IPv4's, {@code snat6}; its SNAT rules, in the regular chain
 *       {@code nat6}, are built over netlink ({@link #netlinkRules()}), because nft 1.0.6 gives that map's nat
 *       expression the wrong registers (docs/design.md, pitfall 1). They carry their fingerprint as a comment
 *       like every other fixed rule, so the deep check sees them in nft's listing, but their text is never
 *       loaded back (nft 1.0.6 cannot parse what it lists for them).</li>
 *   <li>Rejects live in the forward filter chain: {@code reject} in a NAT chain fails (pitfall 3 there).</li>
 *   <li>Forward, which every forwarded packet crosses, accepts what did not come from a guest with its first
 *       compare, checks anti-spoofing on every guest packet, and sends only a flow's first packet on to
 *       {@code guest_new} (benchmarks/README.md, "The table's per-packet cost, piece by piece").</li>
 *   <li>Postrouting accepts anything not from a guest first: the host's own traffic is not ours.</li>
 *   <li>Every drop and reject has a named counter object, so {@link NftDataplane#counters()} reads
 *       them by name.</li>
 * </ul>
 */
public final class Ruleset
{
    /** Anti-spoofing drops, IPv4 (docs/design.md, invariant 4). */
    public static final String COUNTER_SPOOF4 = "spoof4";
    /** Anti-spoofing drops, IPv6. */
    public static final String COUNTER_SPOOF6 = "spoof6";
    /** New flows of a static IPv4 guest without a mapping, refused (fail-closed, invariant 3). */
    public static final String COUNTER_UNMAPPED4 = "unmapped4";
    /** New flows of a static IPv6 guest without a mapping, refused. */
    public static final String COUNTER_UNMAPPED6 = "unmapped6";
    /** New IPv4 flows over the destination cap, refused (invariant 5). */
    public static final String COUNTER_CAP4 = "cap4";
    /** New IPv6 flows over the destination cap, refused. */
    public static final String COUNTER_CAP6 = "cap6";
    /** Static IPv4 guest packets that reached postrouting untranslated, dropped (never masqueraded). */
    public static final String COUNTER_BACKSTOP4 = "backstop4";
    /** Static IPv6 guest packets that reached postrouting untranslated, dropped. */
    public static final String COUNTER_BACKSTOP6 = "backstop6";
    /** Every named counter of the table, in declaration order. */
    public static final List<String> COUNTERS = List.of(COUNTER_SPOOF4, COUNTER_SPOOF6, COUNTER_UNMAPPED4,
        COUNTER_UNMAPPED6, COUNTER_CAP4, COUNTER_CAP6, COUNTER_BACKSTOP4, COUNTER_BACKSTOP6);

    /** Set of static-class guest IPv4 addresses. */
    public static final String STATIC4 = "static4";
    /** Set of static-class guest IPv6 addresses. */
    public static final String STATIC6 = "static6";
    /** Set of (guest interface . IPv4 address) a guest may send from. */
    public static final String GUESTS4 = "guests4";
    /** Set of (guest interface . IPv6 address). */
    public static final String GUESTS6 = "guests6";
    /** Map guest IPv4 : egress IPv4 . port range. */
    public static final String SNAT4 = "snat4";
    /** Map guest IPv6 : egress IPv6 . port range. */
    public static final String SNAT6 = "snat6";
    /** The regular chain of the IPv6 SNAT rules, which are built over netlink. */
    public static final String NAT6_CHAIN = "nat6";

    /**
     * The regular chain a closing TCP packet (FIN or RST) of a guest's flow visits: it widens the flow's conntrack
     * events to its TCP state changes.
     */
    public static final String CLOSING_CHAIN = "ct_closing";
    /**
     * The conntrack events a guest's new flow to the uplink reports (nft's {@code ct event set}): its creation and
     * its end. The ledger opens a flow on NEW and closes it on DESTROY; every UPDATE before the flow closes would
     * be built by the kernel only for the socket filter to drop it.
     */
    public static final String EVENTS_NEW = "new,destroy";
    /**
     * The events from a flow's first FIN or RST on: also its TCP state changes (protoinfo), so the UPDATE to
     * TIME_WAIT or CLOSE, which closes the flow in the ledger while {@code ct count} stops counting it, is built.
     */
    public static final String EVENTS_CLOSING = "new,destroy,protoinfo";

    private final DataplaneConfig config;

    /**
     * A ruleset for one configuration.
     *
     * @param config the table name, interfaces and cap.
     */
    public Ruleset(final DataplaneConfig config)
    {
        this.config = config;
    }

    /**
     * The configuration.
     *
     * @return the configuration rendered.
     */
    public DataplaneConfig config()
    {
        return config;
    }

    /**
     * The IPv6 SNAT rules of {@link #NAT6_CHAIN}, one per transport protocol ({@link NftRules#SNAT6_PROTOCOLS}),
     * each as nft lists it: {@code meta l4proto tcp snat ip6 to ip6 saddr map @snat6}. The text only names the
     * rule for its fingerprint and the operator; the rule itself is {@link NftRules#snat6Map}, sent over netlink.
     */
    private static final List<String> NAT6_RULES = List.of(
        "meta l4proto tcp snat ip6 to ip6 saddr map @" + SNAT6,
        "meta l4proto udp snat ip6 to ip6 saddr map @" + SNAT6,
        "meta l4proto ipv6-icmp snat ip6 to ip6 saddr map @" + SNAT6);

    static String ports(final int firstPort, final int lastPort)
    {
        return firstPort == lastPort ? Integer.toString(firstPort) : firstPort + "-" + lastPort;
    }

    /** A set or map of the table: its keyword ({@code set} or {@code map}), name and declaration lines. */
    private record SetSpec(String kind, String name, List<String> lines)
    {
    }

    private static final List<SetSpec> SETS = List.of(
        new SetSpec("set", STATIC4, List.of("type ipv4_addr")),
        new SetSpec("set", STATIC6, List.of("type ipv6_addr")),
        new SetSpec("set", GUESTS4, List.of("type ifname . ipv4_addr")),
        new SetSpec("set", GUESTS6, List.of("type ifname . ipv6_addr")),
        new SetSpec("map", SNAT4, List.of("type ipv4_addr : interval ipv4_addr . inet_service")),
        new SetSpec("map", SNAT6, List.of("type ipv6_addr : interval ipv6_addr . inet_service")),
        new SetSpec("set", "cc4", List.of("type ipv4_addr . ipv4_addr", "flags dynamic", "size 65535")),
        new SetSpec("set", "cc6", List.of("type ipv6_addr . ipv6_addr", "flags dynamic", "size 65535")));

    /**
     * The data type of each map as nft's JSON listing names it ({@code "map": ...}): a map of that name with
     * another data type (the {@code snat6} verdict map of an older egressd) is re-created by the repair.
     */
    public static final Map<String, String> MAP_DATA = Map.of(
        SNAT4, "ipv4_addr . inet_service",
        SNAT6, "ipv6_addr . inet_service");

    /**
     * The data type of each map as the kernel keeps it for nft ({@code NFTA_SET_DATA_TYPE}: nft's own type id, a
     * concatenation being each part's id in 6 bits, first part highest: {@code ipv4_addr} 7, {@code ipv6_addr} 8,
     * {@code inet_service} 13). The netlink twin of {@link #MAP_DATA}.
     */
    public static final Map<String, Integer> MAP_DATA_TYPES = Map.of(
        SNAT4, 7 << 6 | 13,
        SNAT6, 8 << 6 | 13);

    /**
     * Whether a dumped set or map has the type egressd declares for its name: a map of {@link #MAP_DATA_TYPES} is
     * a map with that data type (an older egressd's {@code snat6} was a verdict map); any other name is as declared.
     *
     * @param set the dumped set.
     * @return false for a map egressd must re-create.
     */
    public static boolean declaredType(final dev.egressd.agent.kernel.nft.netlink.NftNetlink.SetInfo set)
    {
        final Integer dataType = MAP_DATA_TYPES.get(set.name());
        return dataType == null || set.map() && set.dataType() == dataType;
    }

    /** The name of every set and map of the table, meters included. */
    public static final Set<String> SET_NAMES;

    /**
     * The sets and maps that hold plan elements, each with its keyword for a listing ({@code set} or
     * {@code map}), in declaration order: what {@link NftDataplane#read()} lists one by one.
     */
    public static final Map<String, String> ELEMENT_SETS;

    static
    {
        final Set<String> names = new LinkedHashSet<>();
        final Map<String, String> elementSets = new LinkedHashMap<>();
        for (final SetSpec set : SETS)
        {
            names.add(set.name());
            if (!set.lines().contains("flags dynamic"))
            {
                elementSets.put(set.name(), set.kind());
            }
        }
        SET_NAMES = Collections.unmodifiableSet(names);
        ELEMENT_SETS = Collections.unmodifiableMap(elementSets);
    }

    /** Prefix of the comment that fingerprints each rule of the static chains. */
    public static final String FINGERPRINT_PREFIX = "egressd ";

    /**
     * One of the table's fixed chains as this configuration wants it.
     *
     * @param name         the chain name.
     * @param type         {@code filter} or {@code nat} for a base chain; null for a regular chain.
     * @param hook         the hook of a base chain; null for a regular chain.
     * @param priorityName the priority as written ({@code filter}, {@code srcnat}); null for a regular chain.
     * @param priority     the priority as nft lists it in JSON (filter 0, srcnat 100).
     * @param rules        the rules, as written, without their fingerprint comment; for a chain whose rules are
     *                     built over netlink, as nft lists them (never loaded: they name the rules).
     * @param netlink      whether the rules are built over netlink ({@link Ruleset#netlinkRules()}) rather than
     *                     written in nft's language.
     */
    public record StaticChain(String name, String type, String hook, String priorityName, int priority,
                              List<String> rules, boolean netlink)
    {
        /**
         * A chain whose rules are written in nft's language.
         *
         * @param name         the chain name.
         * @param type         the type of a base chain, else null.
         * @param hook         the hook of a base chain, else null.
         * @param priorityName the priority as written, else null.
         * @param priority     the priority as listed.
         * @param rules        the rules.
         */
        public StaticChain(final String name, final String type, final String hook, final String priorityName,
                           final int priority, final List<String> rules)
        {
            this(name, type, hook, priorityName, priority, rules, false);
        }

        /**
         * Whether it is a base chain (hooked into netfilter).
         *
         * @return true for {@code forward} and {@code postrouting}.
         */
        public boolean base()
        {
            return hook != null;
        }

        /**
         * The base chain's declaration line; policy always accept.
         *
         * @return e.g. {@code type filter hook forward priority filter; policy accept;}, or "" for a regular chain.
         */
        public String declaration()
        {
            return base() ? "type " + type + " hook " + hook + " priority " + priorityName + "; policy accept;" : "";
        }

        /**
         * The fingerprint comment of each rule, in order: {@link #FINGERPRINT_PREFIX} and 16 hex digits of the
         * SHA-256 of the chain's declaration, the rule's position and its text. Everything the configuration
         * puts in a rule (uplink, guest pattern, cap, set and counter names) changes it.
         *
         * @return one fingerprint per rule.
         */
        public List<String> fingerprints()
        {
            final List<String> out = new ArrayList<>(rules.size());
            for (int i = 0; i < rules.size(); i++)
            {
                out.add(fingerprint(name + "\n" + declaration() + "\n" + i + "\n" + rules.get(i)));
            }
            return out;
        }

        /**
         * The rules with their fingerprint comments, as they are added.
         *
         * @return one line per rule.
         */
        public List<String> commentedRules()
        {
            final List<String> fingerprints = fingerprints();
            final List<String> out = new ArrayList<>(rules.size());
            for (int i = 0; i < rules.size(); i++)
            {
                out.add(rules.get(i) + " comment \"" + fingerprints.get(i) + "\"");
            }
            return out;
        }
    }

    private static String fingerprint(final String text)
    {
        try
        {
            final byte[] digest = MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8));
            return FINGERPRINT_PREFIX + HexFormat.of().formatHex(digest, 0, 8);
        }
        catch (final NoSuchAlgorithmException e)
        {
            throw new IllegalStateException("SHA-256 is missing from this JVM", e);
        }
    }

    /**
     * The fixed chains, in the order they are declared: {@code forward}, {@code ct_closing}, {@code guest_new},
     * {@code deny}, {@code nat6}, {@code postrouting}. Their rules are what the configuration (uplink, guest pattern, cap) makes
     * them; {@code nat6}'s are built over netlink ({@link #netlinkRules()}).
     *
     * @return the chains.
     */
    public List<StaticChain> staticChains()
    {
        final String uplink = '"' + config.uplink() + '"';
        final String guests = '"' + config.guestInterfacePattern() + '"';
        final int cap = config.destinationCap();
        return List.of(
            // Every forwarded packet of every flow crosses this chain, so its common paths test least: a packet
            // that did not come from a guest (a reply, the host's own forwarding) leaves after one compare; a guest
            // packet meets its family's anti-spoofing lookup (on every packet: checked on the first packet only,
            // a guest could inject into another guest's established flow with that guest's tuple), and only a
            // new flow goes on to the uplink compare and guest_new.
            //
            // A TCP packet closing a flow (FIN or RST, either direction) goes to ct_closing first: the events of a
            // guest's flow to the uplink are narrowed to NEW and DESTROY when it starts (guest_new), and widened
            // to its TCP state changes from its first FIN or RST on, so of the ~5 messages the kernel would build
            // for a short connection it builds those the ledger can use (docs/design.md, "Conntrack events: only
            // what the ledger uses"). Two loads and compares more per TCP packet; a message less is ~1 us. Not for a
            // related packet: the reset a reject sends is attached to the refused flow's unconfirmed entry as
            // related, and setting a mask there lost that reset (the guest saw its retransmitted SYN refused, after
            // 1 s: DataplaneE2ETest's refusal tests).
            new StaticChain("forward", "filter", "forward", "filter", 0, List.of(
                "tcp flags fin,rst ct state != related jump " + CLOSING_CHAIN,
                "iifname != " + guests + " accept",
                "iifname . ip saddr != @guests4 counter name \"" + COUNTER_SPOOF4 + "\" drop",
                "iifname . ip6 saddr != @guests6 counter name \"" + COUNTER_SPOOF6 + "\" drop",
                "ct state new oifname " + uplink + " jump guest_new")),
            // The only states of a guest flow the ledger reads (the widening back is ct_closing's). The interface
            // pair of each rule is the flow's, original or reply direction: no other flow's events are touched.
            new StaticChain(CLOSING_CHAIN, null, null, null, 0, List.of(
                "iifname " + guests + " oifname " + uplink + " ct event set " + EVENTS_CLOSING,
                "iifname " + uplink + " oifname " + guests + " ct event set " + EVENTS_CLOSING)),
            // The event mask is set last, on the flows let through: a refused flow's is never touched (a mask set
            // before a reject delayed its reset until the guest's retransmitted SYN: DataplaneE2ETest's cap tests).
            new StaticChain("guest_new", null, null, null, 0, List.of(
                "ip saddr @static4 ip saddr != @snat4 counter name \"" + COUNTER_UNMAPPED4 + "\" jump deny",
                "ip6 saddr @static6 ip6 saddr != @" + SNAT6 + " counter name \"" + COUNTER_UNMAPPED6 + "\" jump deny",
                "add @cc4 { ip saddr . ip daddr ct count over " + cap + " } counter name \"" + COUNTER_CAP4
                    + "\" jump deny",
                "add @cc6 { ip6 saddr . ip6 daddr ct count over " + cap + " } counter name \"" + COUNTER_CAP6
                    + "\" jump deny",
                "ct event set " + EVENTS_NEW)),
            new StaticChain("deny", null, null, null, 0, List.of(
                "meta l4proto tcp reject with tcp reset",
                "reject with icmpx admin-prohibited")),
            // Between the creation of the table (or a repair) and the netlink rules, nat6 is empty: a static
            // guest's IPv6 packets then fall through to the backstop drop, fail-closed.
            new StaticChain(NAT6_CHAIN, null, null, null, 0, NAT6_RULES, true),
            new StaticChain("postrouting", "nat", "postrouting", "srcnat", 100, List.of(
                "oifname != " + uplink + " accept",
                "iifname != " + guests + " accept",
                "meta l4proto { tcp, udp, icmp } snat ip to ip saddr map @snat4",
                "meta nfproto ipv6 jump " + NAT6_CHAIN,
                "ip saddr @static4 counter name \"" + COUNTER_BACKSTOP4 + "\" drop",
                "ip6 saddr @static6 counter name \"" + COUNTER_BACKSTOP6 + "\" drop",
                "masquerade")));
    }

    /**
     * The rules built over netlink ({@link #NAT6_CHAIN}'s IPv6 SNAT), each with its fingerprint as its comment,
     * to append once the chain was created or flushed (by {@link #render()} or {@link #renderRepair}).
     *
     * @return the rules, in the chain's order.
     */
    public List<NftOp.AddRule> netlinkRules()
    {
        final List<NftOp.AddRule> out = new ArrayList<>();
        for (final StaticChain chain : staticChains())
        {
            if (!chain.netlink())
            {
                continue;
            }
            final List<String> fingerprints = chain.fingerprints();
            for (int i = 0; i < NftRules.SNAT6_PROTOCOLS.size(); i++)
            {
                out.add(new NftOp.AddRule(chain.name(), NftRules.snat6Map(SNAT6, NftRules.SNAT6_PROTOCOLS.get(i)),
                    fingerprints.get(i)));
            }
        }
        return out;
    }

    /**
     * The whole table, as one nft text block (one transaction when run). Only for creating the table
     * when it is absent: running it over an existing table would append the chains' rules again (for an
     * existing table, {@link #renderRepair} puts the fixed part right).
     *
     * @return the nft text.
     */
    public String render()
    {
        final StringBuilder sb = new StringBuilder(4096);
        sb.append("table inet ").append(config.table()).append(" {\n");
        for (final String counter : COUNTERS)
        {
            sb.append("    counter ").append(counter).append(" {\n    }\n");
        }
        for (final SetSpec set : SETS)
        {
            sb.append("    ").append(set.kind()).append(' ').append(set.name()).append(" {\n");
            set.lines().forEach(line -> sb.append("        ").append(line).append('\n'));
            sb.append("    }\n");
        }
        for (final StaticChain chain : staticChains())
        {
            sb.append("    chain ").append(chain.name()).append(" {\n");
            if (chain.base())
            {
                sb.append("        ").append(chain.declaration()).append('\n');
            }
            if (!chain.netlink())
            {
                chain.commentedRules().forEach(rule -> sb.append("        ").append(rule).append('\n'));
            }
            sb.append("    }\n");
        }
        sb.append("}\n");
        return sb.toString();
    }

    /**
     * Puts the fixed part of an existing table right, as ONE transaction that leaves every set's and map's
     * elements alone, the {@code ct count} meters {@code cc4}/{@code cc6} included (a whole-table reload
     * would reset them, docs/design.md, pitfall 9). The rules of {@link #NAT6_CHAIN} are not in it: they are
     * added over netlink after it ({@link #netlinkRules()}).
     * <ol>
     * <li>{@code add} every named counter, set and map: a no-op for one that exists as declared, a
     *     re-creation of one deleted by hand;</li>
     * <li>{@code add} every fixed chain that is not to be re-created: creates a missing one, and for a base
     *     chain puts the policy back to accept;</li>
     * <li>{@code flush} every fixed chain, then {@code delete} and {@code add} again those whose type, hook or
     *     priority is wrong (the kernel cannot change those in place);</li>
     * <li>{@code flush} then {@code delete} every foreign chain, then {@code delete} every other foreign
     *     object (after the flushes nothing refers to them any more);</li>
     * <li>{@code add rule} every rule with its fingerprint comment (but those of {@link #NAT6_CHAIN}).</li>
     * </ol>
     * Between the flush and the new rules no packet sees the chains: the transaction is atomic.
     *
     * @param recreate the fixed chains that exist with the wrong type, hook or priority.
     * @return the nft text, one command per line.
     */
    public String renderRepair(final Set<String> recreate)
    {
        return renderRepair(recreate, List.of());
    }

    /**
     * {@link #renderRepair(Set)}, also removing what egressd did not put in its table.
     *
     * @param recreate the fixed chains that exist with the wrong type, hook or priority.
     * @param foreign  the foreign objects ({@code NftDataplane}'s dump of the table).
     * @return the nft text, one command per line.
     */
    String renderRepair(final Set<String> recreate, final List<Foreign> foreign)
    {
        return renderRepair(recreate, foreign, Set.of());
    }

    /**
     * {@link #renderRepair(Set, List)}, also re-creating sets and maps declared with another type (their
     * elements are lost: the reconcile adds them back; meanwhile the guests they map are fail-closed). They
     * are deleted after the fixed chains are flushed (nothing refers to them any more) and before the foreign
     * chains are (an old verdict map's elements jump to those).
     *
     * @param recreate     the fixed chains that exist with the wrong type, hook or priority.
     * @param foreign      the foreign objects ({@code NftDataplane}'s dump of the table).
     * @param recreateSets the sets and maps that exist with the wrong type.
     * @return the nft text, one command per line.
     */
    String renderRepair(final Set<String> recreate, final List<Foreign> foreign,
                        final Set<String> recreateSets)
    {
        final String t = "inet " + config.table();
        final StringBuilder sb = new StringBuilder(4096);
        for (final String counter : COUNTERS)
        {
            sb.append("add counter ").append(t).append(' ').append(counter).append('\n');
        }
        for (final SetSpec set : SETS)
        {
            if (!recreateSets.contains(set.name()))
            {
                addSet(sb, t, set);
            }
        }
        final List<StaticChain> chains = staticChains();
        for (final StaticChain chain : chains)
        {
            if (!recreate.contains(chain.name()))
            {
                addChain(sb, t, chain);
            }
        }
        for (final StaticChain chain : chains)
        {
            sb.append("flush chain ").append(t).append(' ').append(chain.name()).append('\n');
        }
        for (final StaticChain chain : chains)
        {
            if (recreate.contains(chain.name()))
            {
                sb.append("delete chain ").append(t).append(' ').append(chain.name()).append('\n');
                addChain(sb, t, chain);
            }
        }
        for (final SetSpec set : SETS)
        {
            if (recreateSets.contains(set.name()))
            {
                // nft 1.0.6 deletes a map as a set
                sb.append("delete set ").append(t).append(' ').append(set.name()).append('\n');
                addSet(sb, t, set);
            }
        }
        // Flushed first so no foreign chain still jumps to another when it is deleted; deleted by handle, which
        // works whatever the name (nft 1.0.6 takes no quoted names there).
        for (final Foreign f : foreign)
        {
            if ("chain".equals(f.kind()) && f.name().matches("[A-Za-z_][A-Za-z0-9_./-]*"))
            {
                sb.append("flush chain ").append(t).append(' ').append(f.name()).append('\n');
            }
        }
        for (final Foreign f : foreign)
        {
            if ("chain".equals(f.kind()))
            {
                sb.append(delete(t, f));
            }
        }
        for (final Foreign f : foreign)
        {
            if (!"chain".equals(f.kind()))
            {
                sb.append(delete(t, f));
            }
        }
        for (final StaticChain chain : chains)
        {
            if (chain.netlink())
            {
                continue; // netlinkRules(), sent after this transaction
            }
            for (final String rule : chain.commentedRules())
            {
                sb.append("add rule ").append(t).append(' ').append(chain.name()).append(' ').append(rule).append('\n');
            }
        }
        return sb.toString();
    }

    private static String delete(final String t, final Foreign f)
    {
        if (f.handle() < 0)
        {
            return "delete " + f.kind() + ' ' + t + ' ' + f.name() + '\n';
        }
        // nft 1.0.6 takes no 'delete map ... handle': a map is a set to the kernel, deleted as one
        return "delete " + ("map".equals(f.kind()) ? "set" : f.kind()) + ' ' + t + " handle " + f.handle() + '\n';
    }

    private static void addSet(final StringBuilder sb, final String t, final SetSpec set)
    {
        sb.append("add ").append(set.kind()).append(' ').append(t).append(' ').append(set.name()).append(" { ");
        set.lines().forEach(line -> sb.append(line).append("; "));
        sb.append("}\n");
    }

    private static void addChain(final StringBuilder sb, final String t, final StaticChain chain)
    {
        sb.append("add chain ").append(t).append(' ').append(chain.name());
        if (chain.base())
        {
            sb.append(" { ").append(chain.declaration()).append(" }");
        }
        sb.append('\n');
    }

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
}
