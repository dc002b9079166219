package dev.egressd.agent.kernel.nft;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.agent.kernel.nft.netlink.NfTables;
import dev.egressd.agent.kernel.nft.netlink.NfTablesClient;
import dev.egressd.agent.kernel.nft.netlink.NftElements;
import dev.egressd.agent.kernel.nft.netlink.NftNetlink;
import dev.egressd.agent.kernel.nft.netlink.NftOp;
import dev.egressd.agent.kernel.nft.netlink.NftRefusedException;
import dev.egressd.agent.natives.Natives;
import dev.egressd.agent.netlink.NetlinkException;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.LongSupplier;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * egressd's table in the kernel, as the reconciler sees it: create it once, read it as a plan, apply
 * plan changes as one atomic transaction, read the named counters.
 *
 * <p><strong>Deep and shallow checks, all over netlink.</strong> Nothing is read through libnftables: 1.0.6 loads
 * a cache before each command, and for any listing of rules that cache holds every rule of the table and every
 * element of every set (0.4-0.6 s at 4,000 machines for {@code list table}). Every read is a netlink dump of just
 * what it needs ({@link NftNetlink}), decoded by the project's codec, never nft's text (which for {@code nat6}'s
 * rules nft 1.0.6 cannot load back, docs/design.md, pitfall 1). libnftables only creates the table and writes
 * repairs. Once {@link #paceDeepChecks} is set (the daemon sets it), the checks of the rules are done only as often
 * as their cost allows:
 * <ul>
 *   <li>{@link #read()} dumps the six sets and maps ({@code NFT_MSG_GETSETELEM}, one set each: every plan element
 *       is a set or map element); a deep read ({@link #readFull()}) first dumps the table's set declarations
 *       ({@code NFT_MSG_GETSET}) and leaves out a map of another type. A hand-deleted element shows at once.</li>
 *   <li>{@link #ensureTable()} checks every time that the table and its sets exist ({@code NFT_MSG_GETSET}), and,
 *       when a deep check is due, the fixed chains' hooks, policies and rules and the table's foreign objects
 *       ({@code NFT_MSG_GETCHAIN}, {@code GETRULE}, {@code GETSET}, {@code GETOBJ}, {@code GETFLOWTABLE} dumps of the
 *       table, {@link NftNetlink#dumpTable()}). A rule is checked by its fingerprint comment (what this
 *       configuration wants) and by its expressions as the kernel dumps them against those egressd wrote (or,
 *       after a restart, first found under the right comments): so a rule replaced by hand with its comment
 *       copied over is found too.</li>
 * </ul>
 * <p><strong>Nothing changed, nothing read.</strong> Paced, every check and read first asks the kernel for the
 * ruleset's generation id ({@code NFT_MSG_GETGEN} over netlink: one small request, whatever the table's size);
 * the kernel changes it with every committed nf_tables transaction in the namespace, egressd's or anyone's. When
 * it is the one at which a deep check last found the fixed part right, {@link #ensureTable()} does nothing more;
 * when it is the one at which the sets were last read, {@link #read()} returns that plan again. So an idle
 * daemon's reconcile costs two generation requests, and any change (a hand edit included) makes the next ones
 * look as before. A deep check that is due is skipped only while the generation has not moved since a deep
 * check found everything right: it could find nothing new.
 *
 * <p>A deep read is also forced when nothing is known yet, after the table was created, after a refused
 * transaction and when a set cannot be listed; a deep check, after a refused transaction and when a set is
 * missing. Unpaced (the default), every read and every check is deep, as before.
 *
 * <p>The rules libnftables cannot write (the IPv6 SNAT through the {@code snat6} map, docs/design.md, pitfall 1)
 * go over nf_tables netlink ({@link NfTablesClient}) right after the transaction that created the table or
 * repaired its fixed part; until they are in, a static guest's IPv6 packets meet the backstop drop.
 *
 * <p>Uses its clients from one thread, like the clients themselves (see {@link LibNftablesClient}).
 */
public final class NftDataplane
{
    private static final Logger LOG = LoggerFactory.getLogger(NftDataplane.class);

    private final NftablesClient nft;
    private final NfTablesClient netlink;
    private final DataplaneConfig config;
    private final Ruleset ruleset;
    private final PlanRenderer renderer;
    private String lastRepair;
    /** Nothing read yet, or a transaction was refused: the next read is deep. */
    private boolean deepReadForced = true;
    private boolean deepCheckForced = true;
    private int deepFactor;
    private LongSupplier clock = System::nanoTime;
    /** When the last deep cycle (a deep check, then the deep read that follows it) ended, and what it cost. */
    private long deepEnd;
    private long deepCost;
    /** A deep check was done; the next read is deep too and closes the cycle. */
    private boolean deepReadPending;
    private long pendingCheckCost;
    /**
     * Each fixed chain's rules (their expressions, as dumped) as egressd last wrote or, with the right fingerprint
     * comments, found them: a rule edited by hand with its comment kept differs from these.
     */
    private final Map<String, List<byte[]>> written = new HashMap<>();
    private int deepReads;
    private int deepChecks;
    /** Paced: the ruleset generation at which a deep check last found the fixed part right; -1 if none. */
    private long checkedGeneration = -1;
    /** The generation seen as ensureTable began, for the deep check it may run; -1 if unknown. */
    private long checkGeneration = -1;
    /** Paced: the generation at which {@link #lastPlan} was read; -1 if none. */
    private long readGeneration = -1;
    private KernelPlan lastPlan;
    private int unchangedSkips;
    /** The generation the last {@link #apply}'s transaction produced, read right after its ack; -1 if none. */
    private long committedGeneration = -1;
    /** Whether the last {@link #apply} sent a transaction (it sends none for only uplink addresses). */
    private boolean committedTransaction;

    /**
     * A dataplane over a client.
     *
     * @param nft     the nft client.
     * @param netlink the nf_tables netlink client of the same namespace, for the rules nft cannot write.
     * @param config  the table name, interfaces and cap.
     */
    public NftDataplane(final NftablesClient nft, final NfTablesClient netlink, final DataplaneConfig config)
    {
        this.nft = nft;
        this.netlink = netlink;
        this.config = config;
        this.ruleset = new Ruleset(config);
        this.renderer = new PlanRenderer(config);
    }

    /**
     * The configuration.
     *
     * @return the configuration.
     */
    public DataplaneConfig config()
    {
        return config;
    }

    /**
     * Whether egressd's table exists.
     *
     * @return true if {@code inet <table>} is in the ruleset.
     * @throws NftException if nft cannot list tables.
     */
    public boolean tableExists() throws NftException
    {
        final JsonNode items = parse(nft.runJson("list tables")).path("nftables");
        for (final JsonNode item : items)
        {
            final JsonNode table = item.path("table");
            if ("inet".equals(table.path("family").asText()) && config.table().equals(table.path("name").asText()))
            {
                return true;
            }
        }
        return false;
    }

    /**
     * Paces the deep checks (see the class comment). A deep cycle is a deep check of the fixed chains
     * ({@link #ensureTable()}) and the deep read that follows it ({@link #read()}), the order of one reconcile;
     * after a cycle that took {@code t}, the next is due {@code factor * t} later, so deep cycles take at most
     * {@code 1 / (factor + 1)} of the time. One cycle for both, rather than a pace each, so the reconciles that
     * pay for them are few. A new factor applies at once, to the last cycle's cost.
     *
     * @param factor 0 for a deep read and check every time (the default); e.g. 9 for at most a tenth.
     * @param clock  nanoseconds, e.g. {@code System::nanoTime}.
     */
    public void paceDeepChecks(final int factor, final LongSupplier clock)
    {
        if (factor < 0)
        {
            throw new IllegalArgumentException("factor: " + factor + " is negative");
        }
        this.deepFactor = factor;
        this.clock = clock;
    }

    /**
     * How many deep reads ({@link #readFull()}) and deep checks of the fixed chains were done, for the tests of
     * the pacing. (Each is also logged at DEBUG with its cost.)
     *
     * @return {deep reads, deep checks}.
     */
    int[] deepCounts()
    {
        return new int[] {deepReads, deepChecks};
    }

    /**
     * Makes sure egressd's table exists and its fixed part is what this configuration wants, repairing it
     * without a reload: creates the whole table when it is absent; otherwise, when a deep check is due (see
     * the class comment; always, unpaced), dumps the table without its elements over netlink and compares each
     * fixed chain's ({@code forward}, {@code guest_new}, {@code deny}, {@code postrouting}...) type, hook, priority,
     * policy and the fingerprint comments of its rules with {@link Ruleset#staticChains()}, and each rule's
     * expressions with those egressd wrote. On any difference (a new uplink or
     * cap in the configuration, a chain flushed or a rule added, deleted or changed by hand, a policy changed,
     * a chain, counter or set deleted, or a chain, set, map, counter or other object that egressd did not put in
     * its table) it runs {@link Ruleset#renderRepair} as ONE transaction: the fixed
     * chains are flushed and refilled, missing counters, sets and chains are added, and every set and map
     * keeps its elements (the foreign objects are deleted), so the {@code ct count} meters keep counting the connections they hold (a
     * whole-table reload would reset them, docs/design.md, pitfall 9).
     *
     * <p>Every call first dumps the names of the table's sets and maps over netlink (no rules and no elements);
     * a missing table, set or map is seen at once.
     *
     * <p>A meter entry already in {@code cc4}/{@code cc6} keeps the cap it was created with until its
     * connections are gone and the kernel's garbage collection removes it; new (guest, destination) keys
     * get the new cap at once. Forgetting the live counts instead would let a guest overshoot the cap.
     *
     * @return true if the table was created or its fixed part repaired ({@link #lastRepair()} says what).
     * @throws NftException if nft refuses to list or to repair; a failed repair changed nothing.
     */
    public boolean ensureTable() throws NftException
    {
        checkGeneration = deepFactor > 0 ? generation() : -1;
        if (checkGeneration >= 0 && checkGeneration == checkedGeneration && !deepCheckForced)
        {
            unchangedSkips++;
            return false;
        }
        Set<String> sets;
        try
        {
            sets = setNamesOverNetlink();
            if (sets == null)
            {
                sets = SetListing.setNames(parse(nft.runJsonTerse("list sets table inet " + config.table())),
                    config.table());
                sets.addAll(SetListing.setNames(parse(nft.runJsonTerse("list maps inet")), config.table()));
            }
        }
        catch (final NftException e)
        {
            if (!e.isNotFound())
            {
                throw e;
            }
            return createOrCheck(tableExists()); // nft says "not found" for the table: make sure
        }
        if (!sets.containsAll(Ruleset.SET_NAMES) || !Ruleset.SET_NAMES.containsAll(sets))
        {
            deepCheckForced = true;
        }
        // The generation moved since the fixed part was last found right (checkGeneration >= 0 here: an unchanged one
        // returned above): check it now. Over netlink the deep check costs the table's few rules, not its elements,
        // so it is not paced: paced, a reconcile whose read found every element right would vouch for a generation
        // at which a hand edit of a fixed chain was never looked at (the reconciler then trusts that generation and
        // reads nothing more until the next change, docs/design.md, "The control plane").
        if (!deepCheckForced && checkGeneration < 0 && !due())
        {
            return false;
        }
        return createOrCheck(true);
    }

    /**
     * The table's set and map names from one netlink dump, or null when the client cannot list them. Not through
     * libnftables: its {@code list sets} fills a cache of the whole ruleset first and starts again whenever the
     * generation moved meanwhile, so under a steady stream of egressd's own batches (hundreds a second) the
     * reconcile's check went on for seconds of the reader's CPU, and past the read watchdog's 30 s on a loaded
     * machine (benchmarks/README.md, "8 concurrent clients").
     */
    private Set<String> setNamesOverNetlink() throws NftException
    {
        try
        {
            final Set<String> names = netlink.setNames();
            return names == null ? null : new java.util.HashSet<>(names);
        }
        catch (final IOException e)
        {
            throw netlinkFailed("cannot list the sets of", "NFT_MSG_GETSET", e);
        }
    }

    /** The table is created if absent, else its fixed chains are checked (a deep check). */
    private boolean createOrCheck(final boolean exists) throws NftException
    {
        if (!exists)
        {
            checkedGeneration = -1;
            lastPlan = null;
            nft.run(ruleset.render());
            addNetlinkRules();
            rememberWritten();
            lastRepair = "created the table inet " + config.table();
            deepCheckForced = false;
            return true;
        }
        final long start = clock.getAsLong();
        checkedGeneration = -1;
        final boolean repaired = checkFixedChains();
        if (repaired)
        {
            lastPlan = null;
        }
        else
        {
            checkedGeneration = checkGeneration;
        }
        final long end = clock.getAsLong();
        deepChecks++;
        LOG.debug("deep check of inet {}: {} ms", config.table(), (end - start) / 1_000_000);
        deepCheckForced = false;
        deepReadPending = true;
        pendingCheckCost = end - start;
        return repaired;
    }

    /** Whether the next deep cycle is due: {@code factor} times the last one's cost after it ended. */
    private boolean due()
    {
        return deepFactor == 0 || clock.getAsLong() - (deepEnd + deepFactor * deepCost) >= 0;
    }

    private boolean checkFixedChains() throws NftException
    {
        final List<String> drift = new ArrayList<>();
        final Set<String> recreate = new LinkedHashSet<>();
        // One set of netlink dumps of the table without its elements (chains, rules, sets, objects): no libnftables
        // cache, so it costs the table's rules and declarations, whatever the sets hold. Rules are compared by their
        // fingerprint comments and by their expressions as the kernel dumps them, never by nft's text for them (nft
        // 1.0.6 lists nat6's rules as text it cannot load back: docs/design.md, pitfall 1).
        final NftNetlink.TableDump dump = tableDump();
        final Map<String, List<byte[]>> seen = new HashMap<>();
        for (final Ruleset.StaticChain want : ruleset.staticChains())
        {
            final NftNetlink.ChainInfo have = dump.chain(want.name());
            if (have == null)
            {
                drift.add("chain " + want.name() + " is missing");
                continue;
            }
            final boolean hookOk = want.base()
                ? have.base() && want.type().equals(have.type()) && hookNumber(want.hook()) == have.hook()
                    && want.priority() == have.priority()
                : !have.base();
            if (!hookOk)
            {
                recreate.add(want.name());
                drift.add("chain " + want.name() + " is hooked as " + describeHook(have));
            }
            else if (want.base() && have.policy() != NfTables.NF_ACCEPT)
            {
                drift.add("chain " + want.name() + " has policy " + (have.policy() == NfTables.NF_DROP ? "drop"
                    : Integer.toString(have.policy())));
            }
            final List<NftNetlink.RuleInfo> rules = dump.rules(want.name());
            final List<String> comments = new ArrayList<>(rules.size());
            final List<byte[]> expressions = new ArrayList<>(rules.size());
            for (final NftNetlink.RuleInfo r : rules)
            {
                comments.add(r.comment());
                expressions.add(r.expressions());
            }
            final List<String> expected = want.fingerprints();
            if (!expected.equals(comments))
            {
                drift.add("chain " + want.name() + " holds " + comments.size() + " rules, "
                    + matching(expected, comments) + " of the " + expected.size() + " it should");
                continue;
            }
            seen.put(want.name(), expressions);
            final List<byte[]> known = written.get(want.name());
            final int changed = known == null ? -1 : firstDifference(known, expressions);
            if (changed >= 0)
            {
                drift.add("chain " + want.name() + ": rule " + changed + " is not the rule egressd wrote (its comment"
                    + " was kept)");
            }
        }
        final Set<String> mistyped = new LinkedHashSet<>();
        for (final NftNetlink.SetInfo set : dump.sets())
        {
            if (!Ruleset.declaredType(set))
            {
                mistyped.add(set.name());
            }
        }
        if (!mistyped.isEmpty())
        {
            drift.add("re-created " + String.join(", ", mistyped) + " with the data type "
                + mistyped.stream().map(Ruleset.MAP_DATA::get).collect(java.util.stream.Collectors.joining(", ")));
        }
        final List<Ruleset.Foreign> foreign = foreignObjects(dump);
        if (!foreign.isEmpty())
        {
            drift.add("removed what egressd did not put there: " + foreign.stream().map(Object::toString)
                .collect(java.util.stream.Collectors.joining(", ")));
        }
        if (drift.isEmpty())
        {
            // The rules as found are egressd's from now on: a later edit that keeps a rule's comment is seen.
            written.putAll(seen);
            return false;
        }
        nft.run(ruleset.renderRepair(recreate, foreign, mistyped));
        addNetlinkRules();
        rememberWritten();
        lastRepair = "repaired the fixed part of inet " + config.table() + ": " + String.join("; ", drift);
        return true;
    }

    /** The table without its elements, over netlink; a missing table as nft's "not found". */
    private NftNetlink.TableDump tableDump() throws NftException
    {
        try
        {
            return netlink.dumpTable();
        }
        catch (final IOException e)
        {
            throw netlinkFailed("cannot dump", "NFT_MSG_GETRULE", e);
        }
    }

    /**
     * Remembers the fixed chains' rules as egressd just wrote them (after the table was created or repaired), so a
     * rule changed by hand with its fingerprint comment copied over is still seen. When they cannot be read, the
     * next deep check adopts what it finds under the right comments.
     */
    private void rememberWritten()
    {
        written.clear();
        try
        {
            final NftNetlink.TableDump dump = netlink.dumpTable();
            for (final Ruleset.StaticChain chain : ruleset.staticChains())
            {
                final List<byte[]> expressions = new ArrayList<>();
                dump.rules(chain.name()).forEach(r -> expressions.add(r.expressions()));
                written.put(chain.name(), expressions);
            }
        }
        catch (final IOException e)
        {
            written.clear();
            LOG.debug("cannot dump inet {} after writing its fixed part: {}", config.table(), e.getMessage());
        }
    }

    /** The index of the first rule whose expressions differ, the shorter list's length if one is longer; -1 if equal. */
    private static int firstDifference(final List<byte[]> a, final List<byte[]> b)
    {
        for (int i = 0; i < Math.min(a.size(), b.size()); i++)
        {
            if (!java.util.Arrays.equals(a.get(i), b.get(i)))
            {
                return i;
            }
        }
        return a.size() == b.size() ? -1 : Math.min(a.size(), b.size());
    }

    /**
     * What egressd did not put in its table: every chain other than the fixed ones (but a rule's own anonymous
     * chain, which goes with its rule), every named set or map other than {@link Ruleset#SET_NAMES}, every counter
     * other than {@link Ruleset#COUNTERS}, and every other named object and flowtable.
     */
    private List<Ruleset.Foreign> foreignObjects(final NftNetlink.TableDump dump)
    {
        final Set<String> fixed = new HashSet<>();
        ruleset.staticChains().forEach(c -> fixed.add(c.name()));
        final List<Ruleset.Foreign> foreign = new ArrayList<>();
        for (final NftNetlink.ChainInfo c : dump.chains())
        {
            if (!fixed.contains(c.name()) && (c.flags() & NfTables.NFT_CHAIN_BINDING) == 0)
            {
                foreign.add(new Ruleset.Foreign("chain", c.name(), c.handle()));
            }
        }
        for (final NftNetlink.SetInfo set : dump.sets())
        {
            if (!Ruleset.SET_NAMES.contains(set.name()))
            {
                foreign.add(new Ruleset.Foreign(set.map() ? "map" : "set", set.name(), set.handle()));
            }
        }
        for (final NftNetlink.ObjectInfo o : dump.objects())
        {
            if (!("counter".equals(o.kind()) && Ruleset.COUNTERS.contains(o.name())))
            {
                foreign.add(new Ruleset.Foreign(o.kind(), o.name(), o.handle()));
            }
        }
        return foreign;
    }

    /** A netlink hook number by nft's name of the hook, -1 for a name egressd does not use. */
    static int hookNumber(final String hook)
    {
        return switch (hook)
        {
            case "prerouting" -> NfTables.NF_INET_PRE_ROUTING;
            case "input" -> NfTables.NF_INET_LOCAL_IN;
            case "forward" -> NfTables.NF_INET_FORWARD;
            case "output" -> NfTables.NF_INET_LOCAL_OUT;
            case "postrouting" -> NfTables.NF_INET_POST_ROUTING;
            default -> -1;
        };
    }

    /** How a dumped chain is hooked, for a message: e.g. {@code filter hook forward priority 10}. */
    static String describeHook(final NftNetlink.ChainInfo chain)
    {
        if (!chain.base())
        {
            return "a regular chain";
        }
        String name = "hook " + chain.hook();
        for (final String hook : List.of("prerouting", "input", "forward", "output", "postrouting"))
        {
            if (hookNumber(hook) == chain.hook())
            {
                name = hook;
            }
        }
        return chain.type() + " hook " + name + " priority " + chain.priority();
    }

    /**
     * Appends the rules built over netlink to their (new or just flushed) chain. If the kernel refuses them,
     * the chain stays empty (fail-closed) and the next check goes deep and repairs again.
     */
    private void addNetlinkRules() throws NftException
    {
        try
        {
            netlink.commit(ruleset.netlinkRules());
        }
        catch (final IOException e)
        {
            deepCheckForced = true;
            throw new NftException("cannot add the IPv6 SNAT rules of inet " + config.table() + " over netlink: "
                + e.getMessage(), "NFT_MSG_NEWRULE", "");
        }
    }

    /** How many of the expected fingerprints are at their place. */
    private static int matching(final List<String> expected, final List<String> actual)
    {
        int n = 0;
        for (int i = 0; i < Math.min(expected.size(), actual.size()); i++)
        {
            n += expected.get(i).equals(actual.get(i)) ? 1 : 0;
        }
        return n;
    }

    /**
     * What the last {@link #ensureTable()} that returned true did, for the operator's log.
     *
     * @return e.g. {@code repaired the fixed part of inet egressd: chain forward holds 0 rules, 0 of the 4 it
     *         should}; null before the first change.
     */
    public String lastRepair()
    {
        return lastRepair;
    }

    /**
     * What the table holds now, as plan elements (without uplink addresses): a deep read ({@link #readFull()})
     * when one is due, else the six sets and maps listed one by one (see the class comment).
     *
     * @return the plan read from the kernel.
     * @throws NftException if the table cannot be listed ({@link NftException#isNotFound()} when absent).
     */
    public KernelPlan read() throws NftException
    {
        final long generation = deepFactor > 0 ? generation() : -1;
        if (generation >= 0 && generation == readGeneration && lastPlan != null && !deepReadForced)
        {
            unchangedSkips++;
            if (deepReadPending)
            {
                // The deep check found nothing and nothing changed since the last read: the cycle ends here.
                deepEnd = clock.getAsLong();
                deepCost = pendingCheckCost;
                deepReadPending = false;
                pendingCheckCost = 0;
            }
            return lastPlan;
        }
        final KernelPlan plan = readChanged();
        readGeneration = generation;
        lastPlan = plan;
        return plan;
    }

    /** {@link #read()} when the generation moved (or is not used): deep when due, else set by set. */
    private KernelPlan readChanged() throws NftException
    {
        if (deepReadForced || deepReadPending || due())
        {
            if (!deepReadPending)
            {
                // A deep read without its deep check (the cycle fell due between the two): the next check goes
                // deep, so the fixed chains do not wait a whole cycle more.
                deepCheckForced = true;
            }
            return readFull();
        }
        // Each set and map dumped over netlink (NFT_MSG_GETSETELEM): one set's elements, no libnftables cache.
        final List<PlanElement> elements = new ArrayList<>();
        for (final String set : Ruleset.ELEMENT_SETS.keySet())
        {
            final List<NftNetlink.Element> dumped;
            try
            {
                dumped = netlink.elements(set);
            }
            catch (final IOException e)
            {
                if (!(e instanceof NetlinkException n && n.isNotFound()))
                {
                    throw new NftException("cannot dump " + set + " of inet " + config.table() + ": " + e.getMessage(),
                        "NFT_MSG_GETSETELEM", String.valueOf(e.getMessage()));
                }
                // The table or one of its sets is gone: the whole listing says which, and the next
                // ensureTable looks deep.
                deepCheckForced = true;
                return readFull();
            }
            for (final NftNetlink.Element e : dumped)
            {
                elements.add(decode(set, e));
            }
        }
        return KernelPlan.of(elements);
    }

    /** A dumped element back as a plan element, by the layouts of {@link NftElements}. */
    static PlanElement decode(final String set, final NftNetlink.Element e) throws NftException
    {
        final byte[] k = e.key();
        final byte[] d = e.data();
        final boolean ok = switch (set)
        {
            case Ruleset.STATIC4 -> k.length == 4;
            case Ruleset.STATIC6 -> k.length == 16;
            case Ruleset.GUESTS4 -> k.length == NftElements.IFNAME_BYTES + 4;
            case Ruleset.GUESTS6 -> k.length == NftElements.IFNAME_BYTES + 16;
            case Ruleset.SNAT4 -> k.length == 4 && d != null && d.length == NftElements.SNAT4_DATA_BYTES;
            case Ruleset.SNAT6 -> k.length == 16 && d != null && d.length == NftElements.SNAT6_DATA_BYTES;
            default -> false;
        };
        if (!ok)
        {
            throw new NftException("cannot read an element of " + set + " of " + k.length + " key bytes and "
                + (d == null ? 0 : d.length) + " data bytes", "NFT_MSG_GETSETELEM", "");
        }
        return switch (set)
        {
            case Ruleset.STATIC4 -> new PlanElement.Static4(ip4(k, 0));
            case Ruleset.STATIC6 -> new PlanElement.Static6(ip6(k, 0));
            case Ruleset.GUESTS4 -> new PlanElement.Guest4(NftElements.getIfname(k), ip4(k, NftElements.IFNAME_BYTES));
            case Ruleset.GUESTS6 -> new PlanElement.Guest6(NftElements.getIfname(k), ip6(k, NftElements.IFNAME_BYTES));
            case Ruleset.SNAT4 -> new PlanElement.Snat4(ip4(k, 0), ip4(d, 0), NftElements.getPort(d, 4),
                NftElements.getPort(d, 12));
            default -> new PlanElement.Snat6(ip6(k, 0), ip6(d, 0), NftElements.getPort(d, 16),
                NftElements.getPort(d, 36));
        };
    }

    private static Ipv4Address ip4(final byte[] b, final int off)
    {
        return new Ipv4Address(NftElements.getInt(b, off));
    }

    private static Ipv6Address ip6(final byte[] b, final int off)
    {
        return new Ipv6Address(NftElements.getLong(b, off), NftElements.getLong(b, off + 8));
    }

    /**
     * What the table holds now, read whole (a deep read): the table's sets and maps (one NFT_MSG_GETSET dump, which
     * also says which maps are of another type: their elements are not egressd's and are left out, the repair
     * re-creates them), then each plan set's elements (one NFT_MSG_GETSETELEM dump each). No libnftables cache: it
     * costs the elements, whatever else the table holds.
     *
     * @return the plan read from the kernel.
     * @throws NftException if the table cannot be read ({@link NftException#isNotFound()} when absent).
     */
    public KernelPlan readFull() throws NftException
    {
        final long start = clock.getAsLong();
        final List<NftNetlink.SetInfo> sets;
        try
        {
            sets = netlink.sets();
        }
        catch (final IOException e)
        {
            throw netlinkFailed("cannot dump the sets of", "NFT_MSG_GETSET", e);
        }
        final Map<String, NftNetlink.SetInfo> byName = new HashMap<>();
        sets.forEach(i -> byName.put(i.name(), i));
        final List<PlanElement> elements = new ArrayList<>();
        for (final String set : Ruleset.ELEMENT_SETS.keySet())
        {
            final NftNetlink.SetInfo info = byName.get(set);
            if (info == null || !Ruleset.declaredType(info))
            {
                // Missing, or an older egressd's map of that name (its elements are not plan elements): the next
                // check re-creates it.
                deepCheckForced = true;
                continue;
            }
            final List<NftNetlink.Element> dumped;
            try
            {
                dumped = netlink.elements(set);
            }
            catch (final IOException e)
            {
                final boolean missing = e instanceof NetlinkException n && n.isNotFound();
                if (missing)
                {
                    deepCheckForced = true; // deleted since the set dump: the next check re-creates it
                    continue;
                }
                throw new NftException("cannot dump " + set + " of inet " + config.table() + ": " + e.getMessage(),
                    "NFT_MSG_GETSETELEM", String.valueOf(e.getMessage()));
            }
            for (final NftNetlink.Element e : dumped)
            {
                elements.add(decode(set, e));
            }
        }
        final KernelPlan read = KernelPlan.of(elements);
        deepReadForced = false;
        deepReads++;
        deepEnd = clock.getAsLong();
        LOG.debug("deep read of inet {}: {} ms", config.table(), (deepEnd - start) / 1_000_000);
        deepCost = deepEnd - start + pendingCheckCost;
        deepReadPending = false;
        pendingCheckCost = 0;
        return read;
    }

    /**
     * Applies plan changes as ONE nf_tables transaction, sent over netlink as one batch of element messages
     * ({@code NFT_MSG_NEWSETELEM} / {@code NFT_MSG_DELSETELEM}, one per element, so the kernel's error names the
     * change): no libnftables cache to load, so the cost does not grow with the table. Uplink changes are skipped
     * (rtnetlink's business). A REPLACE is a delete and an add of the key in the same batch: no packet sees the
     * key missing (pitfall 5).
     *
     * @param changes the changes, e.g. from {@code PlanDiff.between(read(), desired)}.
     * @throws NftException             if the kernel refuses any part; the message names the plan change it
     *                                  refused (with the nft text it amounts to) and the reason, and the kernel
     *                                  is unchanged.
     * @throws IllegalArgumentException if an element cannot be encoded (a bad port range or interface name),
     *                                  naming it; nothing is sent.
     */
    public void apply(final List<PlanChange> changes) throws NftException
    {
        lastPlan = null;
        committedGeneration = -1;
        committedTransaction = false;
        final List<NftOp> ops = new ArrayList<>(changes.size() * 2);
        final List<PlanChange> owners = new ArrayList<>(changes.size() * 2);
        for (final PlanChange change : changes)
        {
            final int before = ops.size();
            switch (change.op())
            {
                case ADD -> add(change.element(), ops);
                case REMOVE -> delete(change.element(), ops);
                case REPLACE ->
                {
                    if (change.previous() != null)
                    {
                        delete(change.previous(), ops);
                    }
                    add(change.element(), ops);
                }
                default -> throw new IllegalArgumentException("unknown op " + change.op());
            }
            for (int k = before; k < ops.size(); k++)
            {
                owners.add(change);
            }
        }
        if (ops.isEmpty())
        {
            // nothing committed: the generation as it is, which is the one before if nobody else committed
            committedGeneration = generation();
            return;
        }
        try
        {
            netlink.commit(ops);
            committedTransaction = true;
            // One small request on the same socket right after the ack: the reconciler tells from it whether this
            // transaction was the only one since the last proven generation (docs/design.md, "The control plane").
            committedGeneration = generation();
        }
        catch (final NftRefusedException e)
        {
            // Refused: the kernel is not what egressd thought (or the change is bad); look deep next time.
            deepReadForced = true;
            deepCheckForced = true;
            final PlanChange blamed = e.index() >= 0 && e.index() < owners.size() ? owners.get(e.index()) : null;
            final String reason = Natives.strerror(e.errno())
                + (e.kernelMessage() == null || e.kernelMessage().isEmpty() ? "" : ": " + e.kernelMessage());
            throw new NftException("nft transaction failed, nothing changed: "
                + (blamed == null ? "one of " + changes.size() + " changes" : blamed.toString()) + ": " + reason,
                blamed == null ? e.change() : renderer.render(List.of(blamed)).strip(), "Error: " + reason);
        }
        catch (final IOException e)
        {
            deepReadForced = true;
            deepCheckForced = true;
            throw new NftException("nf_tables batch of " + ops.size() + " element changes failed: " + e.getMessage(),
                "NFT_MSG_NEWSETELEM", String.valueOf(e.getMessage()));
        }
    }

    /**
     * The ruleset generation the last {@link #apply}'s transaction produced, as read on the same socket right after
     * its ack: the transaction's own if nobody else committed in between (the kernel adds one per transaction).
     *
     * @return the generation; -1 when the last apply failed or the generation could not be read.
     */
    public long committedGeneration()
    {
        return committedGeneration;
    }

    /**
     * Whether the last {@link #apply} committed a transaction; when it did not (only uplink addresses changed),
     * {@link #committedGeneration()} is the generation as it was after the apply.
     *
     * @return true if it did.
     */
    public boolean committedTransaction()
    {
        return committedTransaction;
    }

    /** The element message that adds an element (none for the uplink kinds). */
    private static void add(final PlanElement element, final List<NftOp> ops)
    {
        final byte[] key = key(element);
        if (key == null)
        {
            return;
        }
        byte[] data = null;
        try
        {
            if (element instanceof PlanElement.Snat4 e)
            {
                data = NftElements.snat4(e.egress().bits(), e.firstPort(), e.lastPort());
            }
            else if (element instanceof PlanElement.Snat6 e)
            {
                data = NftElements.snat6(e.egress().high(), e.egress().low(), e.firstPort(), e.lastPort());
            }
        }
        catch (final IllegalArgumentException e)
        {
            throw new IllegalArgumentException(e.getMessage() + " in " + element, e);
        }
        ops.add(new NftOp.AddElement(element.kind(), key, data));
    }

    private static void delete(final PlanElement element, final List<NftOp> ops)
    {
        final byte[] key = key(element);
        if (key != null)
        {
            ops.add(new NftOp.DeleteElement(element.kind(), key));
        }
    }

    /** The element's key as the kernel stores it (NftElements), or null for the uplink kinds. */
    private static byte[] key(final PlanElement element)
    {
        if (element instanceof PlanElement.Static4 e)
        {
            return NftElements.ipv4(e.guest().bits());
        }
        if (element instanceof PlanElement.Static6 e)
        {
            return NftElements.ipv6(e.guest().high(), e.guest().low());
        }
        if (element instanceof PlanElement.Guest4 e)
        {
            DataplaneConfig.checkIfname("iface", e.iface());
            return NftElements.ifnameIpv4(e.iface(), e.address().bits());
        }
        if (element instanceof PlanElement.Guest6 e)
        {
            DataplaneConfig.checkIfname("iface", e.iface());
            return NftElements.ifnameIpv6(e.iface(), e.address().high(), e.address().low());
        }
        if (element instanceof PlanElement.Snat4 e)
        {
            return NftElements.ipv4(e.guest().bits());
        }
        if (element instanceof PlanElement.Snat6 e)
        {
            return NftElements.ipv6(e.guest().high(), e.guest().low());
        }
        return null; // Uplink4 / Uplink6: addresses on the uplink are rtnetlink's business
    }

    /**
     * Packets seen by each named counter of the table ({@link Ruleset#COUNTERS}).
     *
     * @return counter name to packets, in listing order.
     * @throws NftException if the counters cannot be listed.
     */
    public Map<String, Long> counters() throws NftException
    {
        final Map<String, NftNetlink.Counter> read;
        try
        {
            read = netlink.counters();
        }
        catch (final IOException e)
        {
            throw netlinkFailed("cannot read the counters of", "NFT_MSG_GETOBJ", e);
        }
        final Map<String, Long> counters = new LinkedHashMap<>();
        read.forEach((name, counter) -> counters.put(name, counter.packets()));
        return counters;
    }

    /**
     * The ruleset's generation id, or -1 when it cannot be read (then everything is read as if it had changed).
     */
    private long generation()
    {
        try
        {
            return netlink.generation() & 0xFFFFFFFFL;
        }
        catch (final IOException e)
        {
            LOG.debug("cannot read the nf_tables generation id: {}", e.getMessage());
            return -1;
        }
    }

    /**
     * How many checks and reads were answered from the unchanged generation id, for tests.
     *
     * @return the count.
     */
    int unchangedSkips()
    {
        return unchangedSkips;
    }

    /**
     * Deletes the whole table: for the explicit teardown only (every static guest loses egress).
     *
     * @throws NftException if nft refuses, e.g. {@link NftException#isNotFound()} when it is absent.
     */
    public void deleteTable() throws NftException
    {
        lastPlan = null;
        checkedGeneration = -1;
        deepReadForced = true;
        written.clear();
        nft.run("delete table inet " + config.table());
    }

    /**
     * A netlink request about the table that failed, as the callers of libnftables see a failure: a missing table
     * reads as nft's "No such file or directory" ({@link NftException#isNotFound()}).
     */
    private NftException netlinkFailed(final String what, final String request, final IOException e)
    {
        final boolean missing = e instanceof NetlinkException n && n.isNotFound();
        return new NftException(what + " inet " + config.table() + ": " + e.getMessage(), request,
            missing ? "Error: No such file or directory" : String.valueOf(e.getMessage()));
    }

    private static JsonNode parse(final String json) throws NftException
    {
        try
        {
            return SetListing.tree(json);
        }
        catch (final UncheckedIOException e)
        {
            throw new NftException("nft output is not JSON: " + e.getCause().getMessage(), "", json);
        }
    }
}
