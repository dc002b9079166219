package dev.egressd.agent.router;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.egressd.agent.kernel.nft.NftException;
import dev.egressd.agent.kernel.nft.NftablesClient;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting;
import dev.egressd.agent.router.SteeringPlan.Key;

import java.io.IOException;
import java.net.InetAddress;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * The router's nftables table (family {@code inet}, docs/region.md "The router"): four interval maps from a shared
 * address and a block to a host mark (ports for TCP/UDP, echo ids for ICMP, per family), two sets of the shared
 * addresses, and one prerouting chain that marks replies by destination, ICMP errors by the quoted source port,
 * packets from the hosts by source, and then drops a packet from a shared address whose reverse path under its
 * mark does not lead back to the interface it came in on (fencing: a host sending from a block that is not its
 * own, or from a block nobody holds).
 *
 * <p>The table is created (or replaced) whole in one transaction; every later change of elements is one
 * transaction over all maps and sets ({@link #apply}). What the kernel holds is read back by one JSON listing
 * ({@link #repair}): elements deleted or changed by hand are put back, and a chain or map changed by hand makes
 * the table be replaced in one transaction. Not thread-safe: one thread owns it (and the nft context).
 */
public final class SteeringTable
{
    /** The maps and sets, by family. */
    static final String PORTS4 = "blk4";
    static final String PORTS6 = "blk6";
    static final String ICMP4 = "icmpid4";
    static final String ICMP6 = "icmpid6";
    static final String SHARED4 = "shared4";
    static final String SHARED6 = "shared6";
    static final String CHAIN = "prerouting";
    private static final List<String> MAPS = List.of(PORTS4, ICMP4, PORTS6, ICMP6);

    /** Elements per {@code add element} command: keeps each command line of a big table moderate. */
    private static final int ELEMENTS_PER_COMMAND = 2048;
    private static final Pattern NAME = Pattern.compile("[A-Za-z][A-Za-z0-9_]{0,31}");
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * The prerouting chain's rules, in order (docs/region.md). Marking by destination first (replies), then ICMP
     * errors by the quoted packet's source port (assuming no IPv4 options and no IPv6 extension headers), then
     * packets from the hosts by source (so the router's own ICMP errors, e.g. for PMTU, follow the mark back with
     * fwmark_reflect), and last the fencing check, which must see the mark set by source.
     */
    static final List<String> RULES = List.of(
        "meta l4proto { tcp, udp } meta mark set ip daddr . th dport map @" + PORTS4,
        "meta l4proto { tcp, udp } meta mark set ip6 daddr . th dport map @" + PORTS6,
        "icmp type echo-reply meta mark set ip daddr . icmp id map @" + ICMP4,
        "icmpv6 type echo-reply meta mark set ip6 daddr . icmpv6 id map @" + ICMP6,
        "icmp type { destination-unreachable, time-exceeded, parameter-problem } @th,136,8 { 6, 17 }"
            + " meta mark set ip daddr . @th,224,16 map @" + ICMP4,
        "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } @th,112,8 { 6, 17 }"
            + " meta mark set ip6 daddr . @th,384,16 map @" + ICMP6,
        "ip saddr @" + SHARED4 + " meta l4proto { tcp, udp } meta mark set ip saddr . th sport map @" + PORTS4,
        "ip6 saddr @" + SHARED6 + " meta l4proto { tcp, udp } meta mark set ip6 saddr . th sport map @" + PORTS6,
        "ip saddr @" + SHARED4 + " icmp type echo-request meta mark set ip saddr . icmp id map @" + ICMP4,
        "ip6 saddr @" + SHARED6 + " icmpv6 type echo-request meta mark set ip6 saddr . icmpv6 id map @" + ICMP6,
        "ip saddr @" + SHARED4 + " fib saddr . mark . iif oif missing counter drop",
        "ip6 saddr @" + SHARED6 + " fib saddr . mark . iif oif missing counter drop");

    /** What the table holds, as far as this object knows: per map, key to mark; and the shared sets. */
    private static final class Held
    {
        final Map<String, Map<Key, Integer>> maps = new HashMap<>();
        final Set<InetAddress> shared = new HashSet<>();

        Held()
        {
            MAPS.forEach(m -> maps.put(m, new HashMap<>()));
        }

        int elements()
        {
            return maps.values().stream().mapToInt(Map::size).sum();
        }
    }

    private final NftablesClient nft;
    private final String table;
    /** What the kernel holds, or null when unknown (a failed transaction): the next call reads it back. */
    private Held held;
    /** The chain as listed right after this object created it (rules' expressions, counters zeroed). */
    private JsonNode chainFingerprint;

    /**
     * A table handle; nothing is done until {@link #create}.
     *
     * @param nft   the nft client (one long-lived libnftables context in production).
     * @param table the table's name (family inet).
     * @throws IllegalArgumentException if the name is not a valid table name.
     */
    public SteeringTable(final NftablesClient nft, final String table)
    {
        this.nft = Objects.requireNonNull(nft, "nft");
        if (table == null || !NAME.matcher(table).matches())
        {
            throw new IllegalArgumentException("router-table must be 1..32 letters, digits or '_', got " + table);
        }
        this.table = table;
    }

    /** @return the table's name. */
    public String name()
    {
        return table;
    }

    /** @return the elements the table holds as far as known (all four maps), or -1 if unknown. */
    public int elements()
    {
        return held == null ? -1 : held.elements();
    }

    /**
     * Creates the table with a plan's elements, replacing any table of the same name, in one transaction: packets
     * see the old table or the new one, never none.
     *
     * @param plan the plan.
     * @throws NftException if nft refuses (then nothing changed).
     */
    public void create(final SteeringPlan plan) throws NftException
    {
        final StringBuilder script = new StringBuilder();
        // "add table" first so the delete never fails on a missing table; both are in the same transaction.
        script.append("add table inet ").append(table).append('\n');
        script.append("delete table inet ").append(table).append('\n');
        script.append("table inet ").append(table).append(" {\n");
        script.append("  set ").append(SHARED4).append(" { type ipv4_addr; }\n");
        script.append("  set ").append(SHARED6).append(" { type ipv6_addr; }\n");
        script.append("  map ").append(PORTS4).append(" { typeof ip daddr . th dport : meta mark; flags interval; }\n");
        script.append("  map ").append(PORTS6).append(" { typeof ip6 daddr . th dport : meta mark; flags interval; }\n");
        script.append("  map ").append(ICMP4).append(" { typeof ip daddr . icmp id : meta mark; flags interval; }\n");
        script.append("  map ").append(ICMP6)
            .append(" { typeof ip6 daddr . icmpv6 id : meta mark; flags interval; }\n");
        script.append("  chain ").append(CHAIN)
            .append(" { type filter hook prerouting priority mangle; policy accept; }\n");
        script.append("}\n");
        for (final String rule : RULES)
        {
            script.append("add rule inet ").append(table).append(' ').append(CHAIN).append(' ').append(rule)
                .append('\n');
        }
        final Held fresh = new Held();
        final Map<String, List<String>> adds = new HashMap<>();
        plan.elements().forEach((k, mark) -> addElement(fresh, adds, k, mark));
        plan.shared().forEach(a -> addShared(fresh, adds, a));
        appendElements(script, "add", adds);
        held = null;
        nft.run(script.toString());
        held = fresh;
        chainFingerprint = fingerprint(readChain(tree(nft.runJson("list chain inet " + table + " " + CHAIN))));
    }

    /**
     * Changes the table's elements to a plan's, in one transaction over all maps and sets.
     *
     * @param plan the plan.
     * @return how many elements and addresses were deleted or added.
     * @throws NftException if nft refuses (nothing changed; the next call reads the table back first).
     */
    public int apply(final SteeringPlan plan) throws NftException
    {
        if (held == null)
        {
            repair(plan);
            return 0;
        }
        final Held wanted = new Held();
        plan.elements().forEach((k, mark) -> addElement(wanted, null, k, mark));
        plan.shared().forEach(a -> addShared(wanted, null, a));
        final Map<String, List<String>> deletes = new HashMap<>();
        final Map<String, List<String>> adds = new HashMap<>();
        int changes = 0;
        for (final String map : MAPS)
        {
            final Map<Key, Integer> now = held.maps.get(map);
            final Map<Key, Integer> want = wanted.maps.get(map);
            for (final Map.Entry<Key, Integer> e : now.entrySet())
            {
                if (!e.getValue().equals(want.get(e.getKey())))
                {
                    deletes.computeIfAbsent(map, m -> new ArrayList<>()).add(key(e.getKey()));
                    changes++;
                }
            }
            for (final Map.Entry<Key, Integer> e : want.entrySet())
            {
                if (!e.getValue().equals(now.get(e.getKey())))
                {
                    adds.computeIfAbsent(map, m -> new ArrayList<>())
                        .add(key(e.getKey()) + " : " + mark(e.getValue()));
                    changes++;
                }
            }
        }
        for (final InetAddress a : held.shared)
        {
            if (!wanted.shared.contains(a))
            {
                deletes.computeIfAbsent(sharedSet(a), m -> new ArrayList<>()).add(a.getHostAddress());
                changes++;
            }
        }
        for (final InetAddress a : wanted.shared)
        {
            if (!held.shared.contains(a))
            {
                adds.computeIfAbsent(sharedSet(a), m -> new ArrayList<>()).add(a.getHostAddress());
                changes++;
            }
        }
        if (changes == 0)
        {
            return 0;
        }
        final StringBuilder script = new StringBuilder();
        appendElements(script, "delete", deletes);
        appendElements(script, "add", adds);
        held = null;
        nft.run(script.toString());
        held = wanted;
        return changes;
    }

    /**
     * Reads the table back and makes it hold a plan: elements missing, extra or changed by hand are put right in
     * one transaction; a missing table, or a chain, map or set changed by hand, makes the table be created again
     * whole ({@link #create}).
     *
     * @param plan the plan.
     * @return how many elements, or 1 for the whole table, were repaired (0: the kernel held what was known).
     * @throws NftException if nft refuses to list or to repair.
     */
    public int repair(final SteeringPlan plan) throws NftException
    {
        final Held known = held;
        final JsonNode listing;
        try
        {
            listing = tree(nft.runJson("list table inet " + table));
        }
        catch (final NftException e)
        {
            if (!e.isNotFound())
            {
                throw e;
            }
            create(plan);
            return 1;
        }
        final Held read;
        try
        {
            read = read(listing);
        }
        catch (final IllegalArgumentException e)
        {
            create(plan); // a set or map of another shape: replace the table
            return 1;
        }
        if (read == null || chainFingerprint == null || !chainFingerprint.equals(fingerprint(readChain(listing))))
        {
            create(plan);
            return 1;
        }
        held = read;
        final int drift = known == null ? 0 : differences(known, read);
        apply(plan);
        return drift;
    }

    /** Elements and addresses in one but not the other (or with another mark). */
    private static int differences(final Held a, final Held b)
    {
        int n = 0;
        for (final String map : MAPS)
        {
            final Map<Key, Integer> x = a.maps.get(map);
            final Map<Key, Integer> y = b.maps.get(map);
            for (final Map.Entry<Key, Integer> e : x.entrySet())
            {
                if (!e.getValue().equals(y.get(e.getKey())))
                {
                    n++;
                }
            }
            for (final Key k : y.keySet())
            {
                if (!x.containsKey(k))
                {
                    n++;
                }
            }
        }
        final Set<InetAddress> s = new HashSet<>(a.shared);
        s.removeAll(b.shared);
        final Set<InetAddress> t = new HashSet<>(b.shared);
        t.removeAll(a.shared);
        return n + s.size() + t.size();
    }

    /**
     * Deletes the table (for tests and an explicit teardown; the router itself never flushes its table).
     *
     * @throws NftException if nft refuses.
     */
    public void delete() throws NftException
    {
        nft.run("add table inet " + table + "\ndelete table inet " + table + "\n");
        held = null;
    }

    // ------------------------------------------------------------------------------------------------------------

    /** Puts an element into both maps of its family, and its text into {@code adds} unless that is null. */
    private static void addElement(final Held into, final Map<String, List<String>> adds, final Key k, final int mark)
    {
        final String ports = k.ipv6() ? PORTS6 : PORTS4;
        final String icmp = k.ipv6() ? ICMP6 : ICMP4;
        into.maps.get(ports).put(k, mark);
        into.maps.get(icmp).put(k, mark);
        if (adds == null)
        {
            return;
        }
        final String text = key(k) + " : " + mark(mark);
        adds.computeIfAbsent(ports, m -> new ArrayList<>()).add(text);
        adds.computeIfAbsent(icmp, m -> new ArrayList<>()).add(text);
    }

    private static void addShared(final Held into, final Map<String, List<String>> adds, final InetAddress a)
    {
        into.shared.add(a);
        if (adds != null)
        {
            adds.computeIfAbsent(sharedSet(a), m -> new ArrayList<>()).add(a.getHostAddress());
        }
    }

    private static String sharedSet(final InetAddress a)
    {
        return SteeringPlan.family(a) == PolicyRouting.AF_INET ? SHARED4 : SHARED6;
    }

    private static String key(final Key k)
    {
        return k.address().getHostAddress() + " . " + k.firstPort() + "-" + k.lastPort();
    }

    private static String mark(final int mark)
    {
        return "0x" + Integer.toHexString(mark);
    }

    private void appendElements(final StringBuilder script, final String verb, final Map<String, List<String>> bySet)
    {
        for (final String set : List.of(SHARED4, SHARED6, PORTS4, ICMP4, PORTS6, ICMP6))
        {
            final List<String> items = bySet.get(set);
            if (items == null)
            {
                continue;
            }
            for (int i = 0; i < items.size(); i += ELEMENTS_PER_COMMAND)
            {
                script.append(verb).append(" element inet ").append(table).append(' ').append(set).append(" { ")
                    .append(String.join(", ", items.subList(i, Math.min(items.size(), i + ELEMENTS_PER_COMMAND))))
                    .append(" }\n");
            }
        }
    }

    // ------------------------------------------------------------------------------------------------------------

    private static JsonNode tree(final String json) throws NftException
    {
        try
        {
            return JSON.readTree(json);
        }
        catch (final IOException e)
        {
            throw new NftException("nft listing is not JSON: " + e.getMessage(), "", json);
        }
    }

    /**
     * Reads the maps and sets of a table listing.
     *
     * @return what they hold, or null when one of them is missing.
     * @throws IllegalArgumentException if an element cannot be parsed.
     */
    private static Held read(final JsonNode listing)
    {
        final Held held = new Held();
        final Set<String> seen = new HashSet<>();
        for (final JsonNode item : listing.path("nftables"))
        {
            final JsonNode set = item.has("map") ? item.get("map") : item.get("set");
            if (set == null)
            {
                continue;
            }
            final String name = set.path("name").asText();
            seen.add(name);
            if (MAPS.contains(name))
            {
                final Map<Key, Integer> into = held.maps.get(name);
                for (final JsonNode elem : set.path("elem"))
                {
                    into.put(parseKey(name, elem.path(0)), parseMark(name, elem.path(1)));
                }
            }
            else if (SHARED4.equals(name) || SHARED6.equals(name))
            {
                for (final JsonNode elem : set.path("elem"))
                {
                    held.shared.add(SteeringPlan.address(elem.asText()));
                }
            }
        }
        return seen.containsAll(MAPS) && seen.contains(SHARED4) && seen.contains(SHARED6) ? held : null;
    }

    private static Key parseKey(final String map, final JsonNode key)
    {
        final JsonNode concat = key.path("concat");
        if (concat.size() != 2)
        {
            throw new IllegalArgumentException(map + ": element key is not address . ports: " + key);
        }
        final InetAddress address = SteeringPlan.address(concat.get(0).asText());
        final JsonNode ports = concat.get(1);
        if (ports.has("range"))
        {
            return new Key(address, ports.get("range").get(0).asInt(), ports.get("range").get(1).asInt());
        }
        if (ports.isInt())
        {
            return new Key(address, ports.asInt(), ports.asInt());
        }
        throw new IllegalArgumentException(map + ": element ports are not an interval: " + key);
    }

    private static int parseMark(final String map, final JsonNode mark)
    {
        if (!mark.isIntegralNumber())
        {
            throw new IllegalArgumentException(map + ": element data is not a mark: " + mark);
        }
        return mark.asInt();
    }

    /** The chain's rules from a listing (table or chain), or null when the chain is missing. */
    private static List<JsonNode> readChain(final JsonNode listing)
    {
        boolean found = false;
        final List<JsonNode> rules = new ArrayList<>();
        for (final JsonNode item : listing.path("nftables"))
        {
            if (item.has("chain") && CHAIN.equals(item.get("chain").path("name").asText()))
            {
                found = true;
                rules.add(((ObjectNode) item.get("chain").deepCopy()).without(List.of("handle")));
            }
            else if (item.has("rule") && CHAIN.equals(item.get("rule").path("chain").asText()))
            {
                rules.add(item.get("rule").path("expr"));
            }
        }
        return found ? rules : null;
    }

    /** The chain as a value: the counters' figures zeroed, so traffic does not count as a change. */
    private static JsonNode fingerprint(final List<JsonNode> chain)
    {
        if (chain == null)
        {
            return null;
        }
        final com.fasterxml.jackson.databind.node.ArrayNode out = JSON.createArrayNode();
        for (final JsonNode node : chain)
        {
            final JsonNode copy = node.deepCopy();
            zeroCounters(copy);
            out.add(copy);
        }
        return out;
    }

    private static void zeroCounters(final JsonNode node)
    {
        if (node.isObject())
        {
            final ObjectNode object = (ObjectNode) node;
            if (object.has("counter") && object.get("counter").isObject())
            {
                object.putNull("counter");
            }
            object.forEach(SteeringTable::zeroCounters);
        }
        else if (node.isArray())
        {
            node.forEach(SteeringTable::zeroCounters);
        }
    }
}
