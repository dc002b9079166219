package dev.egressd.agent.reconcile;

import dev.egressd.agent.state.StateMapper;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.MachineMirror;
import dev.egressd.core.model.AddressDevice;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.KernelPlanner;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.function.Supplier;

/**
 * The desired plan kept up to date by what changed, so a change costs O(what it changed) (the machines it moved, as
 * the allocator tells them), not a plan built and diffed whole (docs/design.md, "The control plane").
 *
 * <p>It reads which machines changed (their record, scope, pair, ports or machine-scoped pair) from a
 * {@link MachineMirror} it shares with the loop's other incremental consumers (one look at what the allocator
 * moved, per change for all of them); a machine that changed has its elements planned again. The pairs' uplink
 * addresses, the extra elements (recovered, draining) and the recovered elements {@code holding} re-sent machines
 * are small, and compared whole. Each element key that moved gets its
 * winner chosen again, with the precedence of the whole build ({@link ControlLoop#fullDesiredPlan()}): a holding
 * element, else the allocator's, else the first extra one. The winner a key had at the last {@link #mark()} is kept
 * the first time it moves, so {@link #changesSinceMark()} is O(keys moved). A new allocator (a rollback rebuilds it)
 * has every machine planned again.
 *
 * <p>Once in a while the loop checks it against a whole build ({@link #verify}): a difference is a bug, logged,
 * counted and repaired by taking the whole build's plan.
 *
 * <p>Loop thread only.
 */
final class DesiredPlanCache implements DesiredPlan
{
    private static final Logger LOG = LoggerFactory.getLogger(DesiredPlanCache.class);
    /** Stands for "no element" among the winners kept since the mark. */
    private static final Object NONE = new Object();
    private static final List<String> KINDS = KernelPlan.kinds();

    private final AddressDevice appDevice;
    private final Supplier<EgressAllocator> allocator;
    private final Supplier<? extends Collection<PlanElement>> extra;
    private final Supplier<? extends Collection<PlanElement>> holding;

    /** The plan: kind to key to element. */
    private final Map<String, HashMap<Object, PlanElement>> plan = byKind();
    /** The allocator's elements, counted (a key two contributors plan the same way holds one element). */
    private final Map<String, HashMap<Object, Counted>> own = byKind();
    private final Map<String, HashMap<Object, PlanElement>> extras = byKind();
    private final Map<String, HashMap<Object, PlanElement>> holds = byKind();
    /** Each moved key's winner at the last mark ({@link #NONE} for none). */
    private final Map<String, HashMap<Object, Object>> atMark = byKind();
    /** Keys whose winner may have changed in this refresh. */
    private final Map<String, HashSet<Object>> dirty = new HashMap<>();

    // The machines as last seen (shared with the loop's other incremental consumers) and what changed since.
    private final MachineMirror mirror;
    private final MachineMirror.Reader changed;
    /** Each handle's elements as last planned, null for none. */
    private PlanElement[][] elements = new PlanElement[64][];

    private EgressAllocator planned;
    private List<EgressPair> appPairs = List.of();
    private List<EgressPair> machinePairs = List.of();
    private List<PlanElement> uplinks = List.of();
    private List<PlanElement> extraList = List.of();
    private List<PlanElement> holdingList = List.of();
    private boolean scopedMoved;
    /** The allocator's {@link EgressAllocator#edits()} at the last refresh (-1: its pairs to be looked at again). */
    private long refreshedEdits = -1;
    private long version;
    /** The plan {@link #plan()} built last (immutable), and the version it was built at. */
    private KernelPlan built;
    private long builtVersion;
    private final List<PlanElement> scratch = new ArrayList<>();

    private static final class Counted
    {
        final PlanElement element;
        int count;

        Counted(final PlanElement element)
        {
            this.element = element;
        }
    }

    /**
     * Creates the cache; it plans nothing until asked.
     *
     * @param appDevice where the app-scoped pairs' addresses go.
     * @param allocator the allocator now (a rollback replaces it).
     * @param extra     the extra elements (recovered, then draining), kept where the allocator plans nothing.
     * @param holding   the recovered elements that win over the allocator's ({@link RecoveredElements#holding}).
     */
    DesiredPlanCache(final AddressDevice appDevice, final Supplier<EgressAllocator> allocator,
        final Supplier<? extends Collection<PlanElement>> extra,
        final Supplier<? extends Collection<PlanElement>> holding)
    {
        this(appDevice, allocator, extra, holding, new MachineMirror());
    }

    /**
     * Creates the cache over a mirror of the machines it shares with other consumers; it plans nothing until asked.
     *
     * @param appDevice where the app-scoped pairs' addresses go.
     * @param allocator the allocator now (a rollback replaces it).
     * @param extra     the extra elements (recovered, then draining), kept where the allocator plans nothing.
     * @param holding   the recovered elements that win over the allocator's ({@link RecoveredElements#holding}).
     * @param mirror    the machines as last scanned.
     */
    DesiredPlanCache(final AddressDevice appDevice, final Supplier<EgressAllocator> allocator,
        final Supplier<? extends Collection<PlanElement>> extra,
        final Supplier<? extends Collection<PlanElement>> holding, final MachineMirror mirror)
    {
        this.appDevice = appDevice;
        this.allocator = allocator;
        this.extra = extra;
        this.holding = holding;
        this.mirror = mirror;
        // what the plan takes from a machine: not its block (its ports say it) nor its pair-lost flag
        this.changed = mirror.reader(MachineMirror.MACHINE | MachineMirror.SCOPE | MachineMirror.PAIR
            | MachineMirror.PORTS | MachineMirror.SCOPED);
    }

    /**
     * The desired plan built whole: the allocator's, the extra elements where it plans nothing, and the holding
     * elements over both. What the cache must always equal.
     *
     * @param allocator the allocator.
     * @param extra     recovered elements, then draining addresses (the first of a key wins).
     * @param holding   the recovered elements that win over the allocator's.
     * @param appDevice where the app-scoped pairs' addresses go.
     * @return the plan.
     */
    static KernelPlan build(final EgressAllocator allocator, final Collection<PlanElement> extra,
        final List<PlanElement> holding, final AddressDevice appDevice)
    {
        final KernelPlan plan = StateMapper.plan(allocator, extra, appDevice);
        if (holding.isEmpty())
        {
            return plan;
        }
        // a re-sent machine whose recovered pair is not back keeps its recovered egress (RecoveredElements)
        final Set<String> keys = new HashSet<>();
        final List<PlanElement> all = new ArrayList<>(holding);
        for (final PlanElement e : holding)
        {
            keys.add(e.kind() + "|" + e.key());
        }
        for (final PlanElement e : plan.elements())
        {
            if (!keys.contains(e.kind() + "|" + e.key()))
            {
                all.add(e);
            }
        }
        return KernelPlan.of(all);
    }

    private static <V> Map<String, HashMap<Object, V>> byKind()
    {
        final Map<String, HashMap<Object, V>> map = new HashMap<>();
        for (final String kind : KINDS)
        {
            map.put(kind, new HashMap<>());
        }
        return map;
    }

    @Override
    public KernelPlan plan()
    {
        refresh();
        // every move of the plan moves the version (moveTo): while it stands still the plan built last is the plan
        // (an idle daemon's reconcile asks for it every second; built whole it cost 2-3 ms a second at 4,000
        // machines, a third of the daemon's idle CPU)
        if (built != null && builtVersion == version)
        {
            return built;
        }
        final List<PlanElement> all = new ArrayList<>();
        for (final String kind : KINDS)
        {
            all.addAll(plan.get(kind).values());
        }
        built = KernelPlan.of(all);
        builtVersion = version;
        return built;
    }

    @Override
    public long version()
    {
        refresh();
        return version;
    }

    @Override
    public List<PlanChange> changesSinceMark()
    {
        refresh();
        final List<PlanChange> changes = new ArrayList<>();
        for (final String kind : KINDS)
        {
            final HashMap<Object, PlanElement> now = plan.get(kind);
            for (final Map.Entry<Object, Object> e : atMark.get(kind).entrySet())
            {
                final Object was = e.getValue();
                final PlanElement is = now.get(e.getKey());
                if (is != null && was == NONE)
                {
                    changes.add(PlanChange.add(is));
                }
                else if (is != null && !is.equals(was))
                {
                    changes.add(PlanChange.replace((PlanElement)was, is));
                }
            }
        }
        for (int k = KINDS.size() - 1; k >= 0; k--)
        {
            final String kind = KINDS.get(k);
            final HashMap<Object, PlanElement> now = plan.get(kind);
            for (final Map.Entry<Object, Object> e : atMark.get(kind).entrySet())
            {
                if (e.getValue() != NONE && !now.containsKey(e.getKey()))
                {
                    changes.add(PlanChange.remove((PlanElement)e.getValue()));
                }
            }
        }
        return changes;
    }

    @Override
    public void mark()
    {
        refresh();
        atMark.values().forEach(Map::clear);
    }

    /**
     * Checks the plan against a whole build; on a difference (a change this cache missed: a bug) logs it and takes
     * the whole build's plan, keeping the mark (the next {@link #changesSinceMark()} carries the repair).
     *
     * @param full the plan built whole from the same allocator.
     * @return true if they were equal.
     */
    boolean verify(final KernelPlan full)
    {
        final KernelPlan mine = plan();
        if (mine.equals(full))
        {
            return true;
        }
        LOG.error("the incrementally kept desired plan differs from a full build (a missed change); taking the full "
            + "build. Missing: {}; extra: {}", missing(full, mine), missing(mine, full));
        replan();
        refresh();
        if (!plan().equals(full))
        {
            // not the cache's bookkeeping then, but an input it cannot see: hold the whole build's plan as it is
            for (final String kind : KINDS)
            {
                final HashMap<Object, PlanElement> now = plan.get(kind);
                final Map<Object, PlanElement> want = full.elements(kind);
                for (final Object key : new ArrayList<>(now.keySet()))
                {
                    if (!want.containsKey(key))
                    {
                        moveTo(kind, key, null);
                    }
                }
                want.forEach((key, element) -> moveTo(kind, key, element));
            }
            version++;
        }
        return false;
    }

    private static List<PlanElement> missing(final KernelPlan from, final KernelPlan in)
    {
        final List<PlanElement> missing = new ArrayList<>();
        for (final PlanElement e : from.elements())
        {
            if (!in.contains(e))
            {
                missing.add(e);
                if (missing.size() == 10)
                {
                    break;
                }
            }
        }
        return missing;
    }

    /** Forgets every machine as planned: the next refresh plans each again. */
    private void replan()
    {
        for (int h = 0; h < elements.length; h++)
        {
            if (elements[h] != null)
            {
                forget(h);
            }
        }
        changed.clear();
        changed.all();
        refreshedEdits = -1;
        setUplinks(List.of());
        appPairs = null;
        extraList = List.of();
        reindex(extras, extraList);
        holdingList = List.of();
        reindex(holds, holdingList);
        settle();
    }

    /** Brings the plan up to date with the allocator and the extra elements. */
    private void refresh()
    {
        final EgressAllocator a = allocator.get();
        if (a != planned)
        {
            replan();
            planned = a;
        }
        mirror.update(a);
        scopedMoved = false;
        final int n = changed.size();
        // what the changed machines planned goes first, then what they plan now: a key that moved from one machine
        // to another is counted right whatever the order of the two
        for (int i = 0; i < n; i++)
        {
            final int h = changed.handle(i);
            scopedMoved |= (changed.fields(h) & MachineMirror.SCOPED) != 0;
            if (h < elements.length && elements[h] != null)
            {
                forget(h);
            }
        }
        for (int i = 0; i < n; i++)
        {
            final int h = changed.handle(i);
            if (mirror.present(h))
            {
                plan(h);
            }
        }
        changed.clear();
        final List<EgressPair> nowPairs = scopedMoved || a.edits() != refreshedEdits ? a.appPairs() : appPairs;
        refreshedEdits = a.edits();
        if (scopedMoved || !nowPairs.equals(appPairs))
        {
            appPairs = nowPairs;
            final List<EgressPair> scopedPairs = new ArrayList<>();
            for (int h = mirror.nextScoped(0); h >= 0; h = mirror.nextScoped(h + 1))
            {
                scopedPairs.add(mirror.scoped(h));
            }
            machinePairs = scopedPairs;
            final List<PlanElement> now = new ArrayList<>();
            KernelPlanner.pairElements(appPairs, machinePairs, appDevice, now);
            if (!now.equals(uplinks))
            {
                setUplinks(now);
            }
        }
        final Collection<PlanElement> nowExtra = extra.get();
        if (!sameElements(nowExtra, extraList))
        {
            extraList = List.copyOf(nowExtra);
            reindex(extras, extraList);
        }
        final Collection<PlanElement> nowHolding = holding.get();
        if (!sameElements(nowHolding, holdingList))
        {
            holdingList = List.copyOf(nowHolding);
            reindex(holds, holdingList);
        }
        settle();
    }

    private static boolean sameElements(final Collection<PlanElement> now, final List<PlanElement> was)
    {
        if (now.size() != was.size())
        {
            return false;
        }
        int i = 0;
        for (final PlanElement e : now)
        {
            if (!e.equals(was.get(i++)))
            {
                return false;
            }
        }
        return true;
    }

    /** Replaces one source's index (the first element of a key wins, as in the whole build), marking keys dirty. */
    private void reindex(final Map<String, HashMap<Object, PlanElement>> index, final List<PlanElement> list)
    {
        for (final String kind : KINDS)
        {
            final HashMap<Object, PlanElement> map = index.get(kind);
            for (final Object key : map.keySet())
            {
                dirty(kind, key);
            }
            map.clear();
        }
        for (final PlanElement e : list)
        {
            index.get(e.kind()).putIfAbsent(e.key(), e);
            dirty(e.kind(), e.key());
        }
    }

    private void setUplinks(final List<PlanElement> now)
    {
        for (final PlanElement e : uplinks)
        {
            drop(e);
        }
        uplinks = now;
        for (final PlanElement e : uplinks)
        {
            add(e);
        }
    }

    /** Plans one machine as the mirror holds it. */
    private void plan(final int h)
    {
        if (h >= elements.length)
        {
            elements = Arrays.copyOf(elements, Math.max(h + 1, elements.length * 2));
        }
        scratch.clear();
        KernelPlanner.machineElements(mirror.machine(h), mirror.scope(h), mirror.pair(h), mirror.firstPort(h),
            mirror.lastPort(h), scratch);
        final PlanElement[] planned = scratch.toArray(new PlanElement[0]);
        elements[h] = planned;
        for (final PlanElement e : planned)
        {
            add(e);
        }
    }

    private void forget(final int handle)
    {
        for (final PlanElement e : elements[handle])
        {
            drop(e);
        }
        elements[handle] = null;
    }

    private void add(final PlanElement e)
    {
        final HashMap<Object, Counted> map = own.get(e.kind());
        Counted c = map.get(e.key());
        if (c == null || !c.element.equals(e))
        {
            // a key planned two ways at once is a contradiction the whole build refuses (KernelPlan.of); the
            // latest wins here, and the periodic check against the whole build reports it
            final Counted was = c;
            c = new Counted(e);
            c.count = was == null ? 0 : was.count;
            map.put(e.key(), c);
        }
        c.count++;
        dirty(e.kind(), e.key());
    }

    private void drop(final PlanElement e)
    {
        final HashMap<Object, Counted> map = own.get(e.kind());
        final Counted c = map.get(e.key());
        if (c != null && --c.count <= 0)
        {
            map.remove(e.key());
        }
        dirty(e.kind(), e.key());
    }

    private void dirty(final String kind, final Object key)
    {
        dirty.computeIfAbsent(kind, k -> new HashSet<>()).add(key);
    }

    /** Chooses the winner of every dirty key again. */
    private void settle()
    {
        for (final Map.Entry<String, HashSet<Object>> e : dirty.entrySet())
        {
            final String kind = e.getKey();
            final HashMap<Object, Counted> mine = own.get(kind);
            final HashMap<Object, PlanElement> held = holds.get(kind);
            final HashMap<Object, PlanElement> kept = extras.get(kind);
            for (final Object key : e.getValue())
            {
                PlanElement winner = held.get(key);
                if (winner == null)
                {
                    final Counted c = mine.get(key);
                    winner = c != null ? c.element : kept.get(key);
                }
                moveTo(kind, key, winner);
            }
            e.getValue().clear();
        }
    }

    private void moveTo(final String kind, final Object key, final PlanElement winner)
    {
        final HashMap<Object, PlanElement> now = plan.get(kind);
        final PlanElement was = winner == null ? now.remove(key) : now.put(key, winner);
        if (!Objects.equals(was, winner))
        {
            atMark.get(kind).putIfAbsent(key, was == null ? NONE : was);
            version++;
        }
    }

    @Override
    public String toString()
    {
        final Map<String, Integer> sizes = new LinkedHashMap<>();
        plan.forEach((kind, map) -> sizes.put(kind, map.size()));
        return "DesiredPlanCache" + sizes;
    }
}
