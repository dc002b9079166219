package dev.egressd.agent.nft;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;

import java.io.UncheckedIOException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

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
     * Creates the whole table when it is absent; does nothing when it exists. Never reloads an existing
     * table: a reload resets the {@code ct count} meters (recipe pitfall 9) and would append the chains'
     * rules a second time. A table whose static part changed (a new cap) needs an explicit teardown.
     *
     * @return true if the table was created.
     * @throws NftException if nft refuses the table.
     */
    public boolean ensureTable() throws NftException
    {
        if (tableExists())
        {
            return false;
        }
        nft.run(ruleset.render());
        return true;
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
