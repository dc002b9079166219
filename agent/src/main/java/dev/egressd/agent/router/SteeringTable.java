package dev.egressd.agent.router;

import dev.egressd.agent.kernel.nft.NftException;
import dev.egressd.agent.kernel.nft.NftablesClient;
import dev.egressd.agent.kernel.nft.netlink.NfTablesClient;
import dev.egressd.agent.kernel.nft.netlink.NftNetlink;
import dev.egressd.agent.kernel.nft.netlink.NftOp;
import dev.egressd.agent.kernel.nft.netlink.NftRefusedException;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting;
import dev.egressd.agent.netlink.NetlinkException;
import dev.egressd.agent.router.SteeringPlan.Key;

import java.io.IOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The router's nftables table (family {@code inet}, docs/region.md "The router"): four interval maps from a shared
 * address and a block to a host mark (ports for TCP/UDP, echo ids for ICMP, per family), two sets of the shared
 * addresses, and one prerouting chain that marks replies by destination, ICMP errors by the quoted source port,
 * packets from the hosts by source, and then drops a packet from a shared address whose reverse path under its
 * mark does not lead back to the interface it came in on (fencing: a host sending from a block that is not its
 * own, or from a block nobody holds).
 *
 * <p>The table is created (or replaced) whole in one libnftables transaction ({@link #create}). Every later change
 * of elements is ONE nf_tables netlink batch over all maps and sets ({@link #apply}): the kernel commits all of it
 * or none, and a refused batch names the refused change and the errno. libnftables is not used for elements
 * because it loads its cache of the whole table (every element of every map) before each command: O(table) for a
 * change of four elements.
 *
 * <p>What the kernel holds is read back over netlink ({@link #repair}): the chain's hook, policy and rules
 * (NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, compared with what they were right after this object created the table) and
 * each map and set dumped (NFT_MSG_GETSETELEM). Elements deleted or changed by hand are put back; a chain changed
 * by hand, or a map or set missing or of another shape, makes the table be replaced in one transaction. The read
 * is skipped when the ruleset's generation id (NFT_MSG_GETGEN, one small request) is the one at which the kernel
 * was last known to hold {@code held}: the kernel moves it with every committed nf_tables transaction in the
 * namespace, by anyone. After this object's own batch the id it knows moves on only when exactly that batch
 * happened in between (the id went up by one), so an idle router reads nothing but the generation.
 *
 * <p>Not thread-safe: one thread owns it (and both clients).
 */
public final class SteeringTable
{
    private static final Logger LOG = LoggerFactory.getLogger(SteeringTable.class);

    /** The maps and sets, by family. */
    static final String PORTS4 = "blk4";
    static final String PORTS6 = "blk6";
    static final String ICMP4 = "icmpid4";
    static final String ICMP6 = "icmpid6";
    static final String SHARED4 = "shared4";
    static final String SHARED6 = "shared6";
    static final String CHAIN = "prerouting";
    private static final List<String> MAPS = List.of(PORTS4, ICMP4, PORTS6, ICMP6);
    /** The order of a batch's changes and of a read: the sets, then the maps (deletes before adds). */
    private static final List<String> ALL = List.of(SHARED4, SHARED6, PORTS4, ICMP4, PORTS6, ICMP6);

    /** Elements per {@code add element} command of {@link #create}: keeps each command line moderate. */
    private static final int ELEMENTS_PER_COMMAND = 2048;
    private static final Pattern NAME = Pattern.compile("[A-Za-z][A-Za-z0-9_]{0,31}");
    private static final long UNKNOWN = -1;

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
    private final NfTablesClient netlink;
    private final String table;
    /** What the kernel holds, or null when unknown (a failed transaction): the next call reads it back. */
    private Held held;
    /** The chain as read right after this object created it (counters' figures left out). */
    private byte[] chainFingerprint;
    /** The plan {@link #held} mirrors exactly (the last one applied or created), or null (after a read-back). */
    private SteeringPlan appliedPlan;
    /** The generation id at which the kernel held {@link #held} for certain, or UNKNOWN. */
    private long knownGeneration = UNKNOWN;
    private long readsSkipped;
    private long reads;

    /**
     * A table handle; nothing is done until {@link #create}.
     *
     * @param nft     the nft client, for creating the table (one long-lived libnftables context in production).
     * @param netlink the nf_tables netlink client of the same namespace, bound to this table, for its elements and
     *                reads.
     * @param table   the table's name (family inet).
     * @throws IllegalArgumentException if the name is not a valid table name.
     */
    public SteeringTable(final NftablesClient nft, final NfTablesClient netlink, final String table)
    {
        this.nft = Objects.requireNonNull(nft, "nft");
        this.netlink = Objects.requireNonNull(netlink, "netlink");
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

    /** @return read-backs done over netlink (chain and every map and set). */
    public long reads()
    {
        return reads;
    }

    /** @return read-backs skipped because the ruleset's generation id had not moved. */
    public long readsSkipped()
    {
        return readsSkipped;
    }

    /**
     * Creates the table with a plan's elements, replacing any table of the same name, in one transaction: packets
     * see the old table or the new one, never none.
     *
     * @param plan the plan.
     * @throws IOException if nft refuses (then nothing changed), or the new chain cannot be read back.
     */
    public void create(final SteeringPlan plan) throws IOException
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
        appendElements(script, adds);
        held = null;
        appliedPlan = null;
        knownGeneration = UNKNOWN;
        chainFingerprint = null;
        final long before = generation();
        nft.run(script.toString());
        chainFingerprint = netlink.chainFingerprint(CHAIN);
        held = fresh;
        appliedPlan = plan;
        // Exactly one transaction since `before` (ours): the table and the fingerprint are ours for certain.
        knownGeneration = followedOnlyByOurs(before);
    }

    /**
     * Changes the table's elements to a plan's, in one netlink batch over all maps and sets.
     *
     * @param plan the plan.
     * @return how many elements and addresses were deleted or added.
     * @throws NftRefusedException if the kernel refused the batch (nothing changed; it names the change and the
     *                             errno; the next call reads the table back first).
     * @throws IOException         if the socket fails, or nft refuses a read-back's repair.
     */
    public int apply(final SteeringPlan plan) throws IOException
    {
        if (held == null)
        {
            repair(plan);
            return 0;
        }
        if (plan == appliedPlan)
        {
            return 0;
        }
        if (appliedPlan != null)
        {
            return applyDiff(plan);
        }
        final Held wanted = new Held();
        plan.elements().forEach((k, mark) -> addElement(wanted, null, k, mark));
        plan.shared().forEach(a -> addShared(wanted, null, a));
        final List<NftOp> ops = new ArrayList<>();
        final List<String> described = new ArrayList<>();
        for (final String set : ALL)
        {
            if (MAPS.contains(set))
            {
                final Map<Key, Integer> now = held.maps.get(set);
                final Map<Key, Integer> want = wanted.maps.get(set);
                for (final Map.Entry<Key, Integer> e : now.entrySet())
                {
                    if (!e.getValue().equals(want.get(e.getKey())))
                    {
                        ops.add(new NftOp.DeleteElement(set, first(e.getKey()), last(e.getKey())));
                        described.add("delete element " + set + " { " + e.getKey() + " }");
                    }
                }
            }
            else
            {
                for (final InetAddress a : held.shared)
                {
                    if (set.equals(sharedSet(a)) && !wanted.shared.contains(a))
                    {
                        ops.add(new NftOp.DeleteElement(set, a.getAddress()));
                        described.add("delete element " + set + " { " + a.getHostAddress() + " }");
                    }
                }
            }
        }
        for (final String set : ALL)
        {
            if (MAPS.contains(set))
            {
                final Map<Key, Integer> now = held.maps.get(set);
                final Map<Key, Integer> want = wanted.maps.get(set);
                for (final Map.Entry<Key, Integer> e : want.entrySet())
                {
                    if (!e.getValue().equals(now.get(e.getKey())))
                    {
                        ops.add(new NftOp.AddElement(set, first(e.getKey()), mark(e.getValue()), last(e.getKey())));
                        described.add("add element " + set + " { " + e.getKey() + " : " + markText(e.getValue())
                            + " }");
                    }
                }
            }
            else
            {
                for (final InetAddress a : wanted.shared)
                {
                    if (set.equals(sharedSet(a)) && !held.shared.contains(a))
                    {
                        ops.add(new NftOp.AddElement(set, a.getAddress(), null));
                        described.add("add element " + set + " { " + a.getHostAddress() + " }");
                    }
                }
            }
        }
        if (ops.isEmpty())
        {
            appliedPlan = plan;
            return 0;
        }
        commit(ops, described);
        held = wanted;
        appliedPlan = plan;
        return ops.size();
    }

    /**
     * {@link #apply} from the plan {@link #held} mirrors: the batch from the plans' diff, and {@code held} changed by
     * it alone (no map of the whole table is built for a change of a few elements).
     */
    private int applyDiff(final SteeringPlan plan) throws IOException
    {
        final SteeringPlan.Diff diff = appliedPlan.diffTo(plan);
        final List<NftOp> ops = new ArrayList<>();
        final List<String> described = new ArrayList<>();
        for (final InetAddress a : diff.deleteShared())
        {
            ops.add(new NftOp.DeleteElement(sharedSet(a), a.getAddress()));
            described.add("delete element " + sharedSet(a) + " { " + a.getHostAddress() + " }");
        }
        for (final Key k : diff.deleteElements())
        {
            for (final String map : k.ipv6() ? List.of(PORTS6, ICMP6) : List.of(PORTS4, ICMP4))
            {
                ops.add(new NftOp.DeleteElement(map, first(k), last(k)));
                described.add("delete element " + map + " { " + k + " }");
            }
        }
        for (final InetAddress a : diff.addShared())
        {
            ops.add(new NftOp.AddElement(sharedSet(a), a.getAddress(), null));
            described.add("add element " + sharedSet(a) + " { " + a.getHostAddress() + " }");
        }
        for (final Map.Entry<Key, Integer> e : diff.addElements().entrySet())
        {
            final Key k = e.getKey();
            for (final String map : k.ipv6() ? List.of(PORTS6, ICMP6) : List.of(PORTS4, ICMP4))
            {
                ops.add(new NftOp.AddElement(map, first(k), mark(e.getValue()), last(k)));
                described.add("add element " + map + " { " + k + " : " + markText(e.getValue()) + " }");
            }
        }
        if (ops.isEmpty())
        {
            appliedPlan = plan;
            return 0;
        }
        final Held h = held;
        commit(ops, described);
        for (final Key k : diff.deleteElements())
        {
            h.maps.get(k.ipv6() ? PORTS6 : PORTS4).remove(k);
            h.maps.get(k.ipv6() ? ICMP6 : ICMP4).remove(k);
        }
        diff.addElements().forEach((k, mark) -> addElement(h, null, k, mark));
        h.shared.removeAll(diff.deleteShared());
        h.shared.addAll(diff.addShared());
        held = h;
        appliedPlan = plan;
        return ops.size();
    }

    /**
     * Commits one batch: {@code held} is unknown until the caller sets it after success; the generation known moves
     * on only if this batch was the one transaction since it (see the class comment).
     */
    private void commit(final List<NftOp> ops, final List<String> described) throws IOException
    {
        final long known = knownGeneration;
        final long before = known == UNKNOWN ? UNKNOWN : generation();
        held = null;
        appliedPlan = null;
        knownGeneration = UNKNOWN;
        try
        {
            netlink.commit(ops);
        }
        catch (final NftRefusedException e)
        {
            final int i = e.index();
            throw new NftRefusedException("inet " + table, i,
                i >= 0 && i < described.size() ? described.get(i) : "a batch of " + ops.size() + " steering changes",
                e.errno(), e.kernelMessage(), e.refused());
        }
        if (before != UNKNOWN && before == known)
        {
            knownGeneration = followedOnlyByOurs(before);
        }
    }

    /**
     * Reads the table back and makes it hold a plan: elements missing, extra or changed by hand are put right in
     * one batch; a missing table, a chain changed by hand, or a map or set missing or of another shape, makes the
     * table be created again whole ({@link #create}). Nothing is read when the ruleset's generation id is the one
     * at which the kernel held what this object knows (see the class comment).
     *
     * @param plan the plan.
     * @return how many elements, or 1 for the whole table, were repaired (0: the kernel held what was known).
     * @throws IOException if a read fails (other than for a missing table, chain, map or set), or the kernel or nft
     *                     refuses the repair.
     */
    public int repair(final SteeringPlan plan) throws IOException
    {
        final Held known = held;
        final long generation = generation();
        if (known != null && generation != UNKNOWN && generation == knownGeneration)
        {
            readsSkipped++;
            apply(plan);
            return 0;
        }
        reads++;
        final Held read;
        try
        {
            final byte[] chain = netlink.chainFingerprint(CHAIN);
            if (chainFingerprint == null || !Arrays.equals(chain, chainFingerprint))
            {
                create(plan);
                return 1;
            }
            read = read();
        }
        catch (final NetlinkException e)
        {
            if (!e.isNotFound())
            {
                throw e;
            }
            create(plan); // the table, its chain or one of its maps or sets is gone
            return 1;
        }
        catch (final IllegalArgumentException e)
        {
            LOG.warn("router table inet {}: {}; replacing the table", table, e.getMessage());
            create(plan); // a set or map of another shape
            return 1;
        }
        held = read;
        appliedPlan = null; // what was read, not a plan: the next apply diffs against it whole
        // Read at `generation` or later: if anything changed meanwhile, the id moved and the next repair reads.
        knownGeneration = generation;
        final int drift = known == null ? 0 : differences(known, read);
        apply(plan);
        return drift;
    }

    /** Every map and set dumped over netlink. */
    private Held read() throws IOException
    {
        final Held into = new Held();
        for (final String set : ALL)
        {
            final boolean ipv6 = set.equals(SHARED6) || set.equals(PORTS6) || set.equals(ICMP6);
            for (final NftNetlink.Element e : netlink.elements(set))
            {
                if (MAPS.contains(set))
                {
                    into.maps.get(set).put(decodeKey(set, ipv6, e), decodeMark(set, e));
                }
                else
                {
                    into.shared.add(decodeAddress(set, e.key(), ipv6 ? 16 : 4));
                }
            }
        }
        return into;
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
        appliedPlan = null;
        knownGeneration = UNKNOWN;
    }

    /** The ruleset's generation id, or UNKNOWN when it cannot be read (then everything is read as changed). */
    private long generation()
    {
        try
        {
            return netlink.generation() & 0xFFFFFFFFL;
        }
        catch (final IOException e)
        {
            LOG.debug("router table inet {}: cannot read the nf_tables generation id: {}", table, e.getMessage());
            return UNKNOWN;
        }
    }

    /** The generation now if it is the one right after {@code before} (only our transaction since), else UNKNOWN. */
    private long followedOnlyByOurs(final long before)
    {
        if (before == UNKNOWN)
        {
            return UNKNOWN;
        }
        final long after = generation();
        return after == (before + 1 & 0xFFFFFFFFL) ? after : UNKNOWN;
    }

    // ------------------------------------------------------------------------------------------------------------
    // The bytes the kernel stores (docs/region.md): a map's key is the address then the port (or echo id) in
    // network order, padded to 4 bytes; an interval's first and last keys differ in the port only. The mark is a
    // meta mark: 4 bytes in the host's order.

    /** @return the first key of an element's interval. */
    static byte[] first(final Key k)
    {
        return concat(k.address(), k.firstPort());
    }

    /** @return the last key of an element's interval. */
    static byte[] last(final Key k)
    {
        return concat(k.address(), k.lastPort());
    }

    private static byte[] concat(final InetAddress address, final int port)
    {
        final byte[] a = address.getAddress();
        final byte[] key = new byte[a.length + 4];
        System.arraycopy(a, 0, key, 0, a.length);
        key[a.length] = (byte) (port >>> 8);
        key[a.length + 1] = (byte) port;
        return key;
    }

    /** @return a mark as a map's data. */
    static byte[] mark(final int mark)
    {
        return ByteBuffer.allocate(4).order(ByteOrder.nativeOrder()).putInt(mark).array();
    }

    private static Key decodeKey(final String map, final boolean ipv6, final NftNetlink.Element e)
    {
        final int length = (ipv6 ? 16 : 4) + 4;
        final byte[] k = e.key();
        final byte[] end = e.keyEnd() == null ? k : e.keyEnd();
        if (k.length != length || end.length != length || !Arrays.equals(k, 0, length - 4, end, 0, length - 4))
        {
            throw new IllegalArgumentException(map + ": an element's key is not address . ports ("
                + k.length + " bytes)");
        }
        final InetAddress address = decodeAddress(map, Arrays.copyOf(k, length - 4), length - 4);
        return new Key(address, port(k, length - 4), port(end, length - 4));
    }

    private static int port(final byte[] key, final int off)
    {
        return (key[off] & 0xFF) << 8 | key[off + 1] & 0xFF;
    }

    private static int decodeMark(final String map, final NftNetlink.Element e)
    {
        if (e.data() == null || e.data().length != 4)
        {
            throw new IllegalArgumentException(map + ": an element's data is not a mark");
        }
        return ByteBuffer.wrap(e.data()).order(ByteOrder.nativeOrder()).getInt();
    }

    private static InetAddress decodeAddress(final String set, final byte[] bytes, final int length)
    {
        if (bytes.length != length)
        {
            throw new IllegalArgumentException(set + ": an element is " + bytes.length + " bytes, not an address of "
                + length);
        }
        try
        {
            return InetAddress.getByAddress(bytes);
        }
        catch (final UnknownHostException e)
        {
            throw new IllegalArgumentException(set + ": not an address", e);
        }
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
        final String text = key(k) + " : " + markText(mark);
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

    private static String markText(final int mark)
    {
        return "0x" + Integer.toHexString(mark);
    }

    private void appendElements(final StringBuilder script, final Map<String, List<String>> bySet)
    {
        for (final String set : ALL)
        {
            final List<String> items = bySet.get(set);
            if (items == null)
            {
                continue;
            }
            for (int i = 0; i < items.size(); i += ELEMENTS_PER_COMMAND)
            {
                script.append("add element inet ").append(table).append(' ').append(set).append(" { ")
                    .append(String.join(", ", items.subList(i, Math.min(items.size(), i + ELEMENTS_PER_COMMAND))))
                    .append(" }\n");
            }
        }
    }
}
