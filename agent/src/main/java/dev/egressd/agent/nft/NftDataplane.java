package dev.egressd.agent.nft;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;

import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * egressd's table in the kernel, as the reconciler sees it: create it once, read it as a plan, apply
 * plan changes as one atomic transaction, read the named counters.
 *
 * <p>Uses its client from one thread, like the client itself (see {@link LibNftablesClient}).
 */
public final class NftDataplane
{
    private final NftablesClient nft;
    private final DataplaneConfig config;
    private final Ruleset ruleset;
    private final PlanRenderer renderer;
    private final TableReader reader = new TableReader();
    private String lastRepair;

    /**
     * A dataplane over a client.
     *
     * @param nft    the nft client.
     * @param config the table name, interfaces and cap.
     */
    public NftDataplane(final NftablesClient nft, final DataplaneConfig config)
    {
        this.nft = nft;
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
     * Makes sure egressd's table exists and its fixed part is what this configuration wants, repairing it
     * without a reload: creates the whole table when it is absent; otherwise lists only the fixed chains
     * ({@code forward}, {@code guest_new}, {@code deny}, {@code postrouting}: a cost that does not grow with
     * the number of machines) and compares each chain's type, hook, priority, policy and the fingerprint
     * comments of its rules with {@link Ruleset#staticChains()}. On any difference (a new uplink or cap in
     * the configuration, a chain flushed or a rule added, deleted or changed by hand, a policy changed, a
     * chain, counter or set deleted) it runs {@link Ruleset#renderRepair} as ONE transaction: the fixed
     * chains are flushed and refilled, missing counters, sets and chains are added, and every set and map
     * keeps its elements, so the {@code ct count} meters keep counting the connections they hold (a
     * whole-table reload would reset them, recipe pitfall 9).
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
        if (!tableExists())
        {
            nft.run(ruleset.render());
            lastRepair = "created the table inet " + config.table();
            return true;
        }
        final List<String> drift = new ArrayList<>();
        final Set<String> recreate = new LinkedHashSet<>();
        for (final Ruleset.StaticChain want : ruleset.staticChains())
        {
            final String json;
            try
            {
                json = nft.runJson("list chain inet " + config.table() + " " + want.name());
            }
            catch (final NftException e)
            {
                if (e.isNotFound())
                {
                    drift.add("chain " + want.name() + " is missing");
                    continue;
                }
                throw e;
            }
            final TableReader.ChainState have = TableReader.chainState(parse(json), want.name());
            if (have == null)
            {
                drift.add("chain " + want.name() + " is missing");
                continue;
            }
            final boolean hookOk = want.base()
                ? want.type().equals(have.type()) && want.hook().equals(have.hook()) && have.priority() != null
                    && want.priority() == have.priority()
                : have.hook() == null;
            if (!hookOk)
            {
                recreate.add(want.name());
                drift.add("chain " + want.name() + " is hooked as " + have.describeHook());
            }
            else if (want.base() && !"accept".equals(have.policy()))
            {
                drift.add("chain " + want.name() + " has policy " + have.policy());
            }
            final List<String> expected = want.fingerprints();
            if (!expected.equals(have.comments()))
            {
                drift.add("chain " + want.name() + " holds " + have.comments().size() + " rules, "
                    + matching(expected, have.comments()) + " of the " + expected.size() + " it should");
            }
        }
        if (drift.isEmpty())
        {
            return false;
        }
        nft.run(ruleset.renderRepair(recreate));
        lastRepair = "repaired the fixed part of inet " + config.table() + ": " + String.join("; ", drift);
        return true;
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
     * @return e.g. {@code repaired the fixed part of inet egressd: chain forward holds 0 rules, 0 of the 3 it
     *         should}; null before the first change.
     */
    public String lastRepair()
    {
        return lastRepair;
    }

    /**
     * What the table holds now, as plan elements (without uplink addresses).
     *
     * @return the plan read from the kernel.
     * @throws NftException if the table cannot be listed ({@link NftException#isNotFound()} when absent).
     */
    public KernelPlan read() throws NftException
    {
        return reader.read(nft.runJson("list table inet " + config.table()));
    }

    /**
     * Applies plan changes as ONE nft transaction; uplink changes are skipped (rtnetlink's business).
     *
     * @param changes the changes, e.g. from {@code PlanDiff.between(read(), desired)}.
     * @throws NftException if nft refuses any part; the message names the plan change nft blamed and its
     *                      reason, and the kernel is unchanged.
     */
    public void apply(final List<PlanChange> changes) throws NftException
    {
        final List<PlanRenderer.Rendered> rendered = renderer.renderEach(changes);
        if (rendered.isEmpty())
        {
            return;
        }
        final String script = script(rendered);
        try
        {
            nft.run(script);
        }
        catch (final NftException e)
        {
            final Blame blame = blame(rendered, e);
            throw new NftException("nft transaction failed, nothing changed: " + blame.what() + ": "
                + blame.cause().reason(), e.command(), e.error());
        }
    }

    private record Blame(String what, NftException cause)
    {
    }

    /**
     * Which change nft refused. nft 1.0.6 does not say which line of a buffer failed, so on failure the
     * prefixes of the transaction are dry-run, bisecting for the shortest one that fails: its last change
     * is the culprit (a longer prefix fails whenever a shorter one does). log2(n) dry runs, on failure
     * only.
     */
    private Blame blame(final List<PlanRenderer.Rendered> rendered, final NftException failure)
    {
        if (rendered.size() == 1)
        {
            return new Blame(rendered.get(0).change().toString(), failure);
        }
        int lo = 1;
        int hi = rendered.size();
        NftException cause = failure;
        try
        {
            while (lo < hi)
            {
                final int mid = (lo + hi) >>> 1;
                try
                {
                    nft.check(script(rendered.subList(0, mid)));
                    lo = mid + 1;
                }
                catch (final NftException e)
                {
                    hi = mid;
                    cause = e;
                }
            }
        }
        catch (final UnsupportedOperationException | IllegalStateException e)
        {
            return new Blame("one of " + rendered.size() + " changes", failure);
        }
        return new Blame(rendered.get(lo - 1).change().toString(), cause);
    }

    private static String script(final List<PlanRenderer.Rendered> rendered)
    {
        final StringBuilder script = new StringBuilder();
        for (final PlanRenderer.Rendered r : rendered)
        {
            r.lines().forEach(line -> script.append(line).append('\n'));
        }
        return script.toString();
    }

    /**
     * Packets seen by each named counter of the table ({@link Ruleset#COUNTERS}).
     *
     * @return counter name to packets, in listing order.
     * @throws NftException if the counters cannot be listed.
     */
    public Map<String, Long> counters() throws NftException
    {
        final JsonNode items = parse(nft.runJson("list counters table inet " + config.table())).path("nftables");
        final Map<String, Long> counters = new LinkedHashMap<>();
        for (final JsonNode item : items)
        {
            final JsonNode counter = item.path("counter");
            if (counter.isObject() && config.table().equals(counter.path("table").asText()))
            {
                counters.put(counter.path("name").asText(), counter.path("packets").asLong());
            }
        }
        return counters;
    }

    /**
     * Deletes the whole table: for the explicit teardown only (every static guest loses egress).
     *
     * @throws NftException if nft refuses, e.g. {@link NftException#isNotFound()} when it is absent.
     */
    public void deleteTable() throws NftException
    {
        nft.run("delete table inet " + config.table());
    }

    private static JsonNode parse(final String json) throws NftException
    {
        try
        {
            return TableReader.tree(json);
        }
        catch (final UncheckedIOException e)
        {
            throw new NftException("nft output is not JSON: " + e.getCause().getMessage(), "", json);
        }
    }
}
