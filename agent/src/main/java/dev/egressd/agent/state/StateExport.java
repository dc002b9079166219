package dev.egressd.agent.state;

import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.MachineMirror;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import dev.egressd.core.plan.PlanElement;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * {@link StateMapper#export} kept up to date by what changed: a machine's entry is built again only when what it is
 * made of (its record, scope, pair, block, machine-scoped pair, pair-lost flag) changed since the last export, as a
 * {@link MachineMirror} shared with the loop's other incremental consumers tells (one look at what the allocator moved, per
 * change for all of them), and the list of entries is built again only when one changed; an app's entry (apps are few) is built again and its old object kept when equal. So two exports share the entry
 * objects of everything that did not change, and {@link StateChange#between} tells them apart by reference.
 *
 * <p>Equal to {@link StateMapper#export} at every call (tests check it through random operations). Loop thread only.
 */
public final class StateExport
{
    private final MachineMirror mirror;
    private final MachineMirror.Reader changed;
    private EgressAllocator exported;
    private DesiredState.MachineEntry[] entry = new DesiredState.MachineEntry[64];
    private Map<String, DesiredState.App> apps = new HashMap<>();
    private List<DesiredState.MachineEntry> machines = List.of();

    /** An export with a mirror of the machines of its own. */
    public StateExport()
    {
        this(new MachineMirror());
    }

    /**
     * An export over a mirror of the machines it shares with other consumers.
     *
     * @param mirror the machines as last scanned.
     */
    public StateExport(final MachineMirror mirror)
    {
        this.mirror = mirror;
        this.changed = mirror.reader(MachineMirror.ALL);
    }

    /**
     * The allocator's state, as {@link StateMapper#export} gives it.
     *
     * @param allocator the allocator (another one than last time, after a rollback, has every entry built again).
     * @param recovered recovered kernel elements still unclaimed.
     * @return the state.
     */
    public DesiredState export(final EgressAllocator allocator, final Collection<PlanElement> recovered)
    {
        if (allocator != exported)
        {
            Arrays.fill(entry, null);
            apps = new HashMap<>();
            exported = allocator;
            changed.clear();
            changed.all();
        }
        mirror.update(allocator);
        final Map<String, DesiredState.App> nextApps = new HashMap<>();
        final List<DesiredState.App> appList = new ArrayList<>();
        for (final EgressAllocator.AppState app : allocator.appStates())
        {
            final List<DesiredState.Pair> pairs = new ArrayList<>(app.pairs().size());
            for (int i = 0; i < app.pairs().size(); i++)
            {
                final EgressPair p = app.pairs().get(i);
                pairs.add(new DesiredState.Pair(p.ipv4().toString(), p.ipv6().toString(), app.drained()[i]));
            }
            DesiredState.App next = new DesiredState.App(app.id(), app.failClosed(), pairs, app.waiting(),
                app.pairsLost() ? Boolean.TRUE : null);
            final DesiredState.App was = apps.get(app.id());
            if (next.equals(was))
            {
                next = was;
            }
            nextApps.put(app.id(), next);
            appList.add(next);
        }
        apps = nextApps;
        final int n = changed.size();
        for (int i = 0; i < n; i++)
        {
            final int h = changed.handle(i);
            if (h >= entry.length)
            {
                entry = Arrays.copyOf(entry, Math.max(h + 1, entry.length * 2));
            }
            entry[h] = mirror.present(h) ? entryOf(h) : null;
        }
        if (n > 0 || machines.size() != mirror.size())
        {
            // the mirror's order is the allocator's, by id: the state's
            final DesiredState.MachineEntry[] list = new DesiredState.MachineEntry[mirror.size()];
            for (int i = 0; i < list.length; i++)
            {
                list[i] = entry[mirror.inOrder(i)];
            }
            machines = List.of(list); // immutable already: the state takes it without a copy
        }
        changed.clear();
        final List<DesiredState.Element> elements = new ArrayList<>(recovered.size());
        for (final PlanElement element : recovered)
        {
            elements.add(StateMapper.toData(element));
        }
        final DesiredState state = new DesiredState(DesiredState.VERSION, StateMapper.host(allocator.settings()),
            appList, machines, elements);
        StateChange.inOrder(state);
        return state;
    }

    private DesiredState.MachineEntry entryOf(final int h)
    {
        final Machine m = mirror.machine(h);
        final EgressPair sp = mirror.scoped(h);
        final DesiredState.Slot slot = mirror.scope(h) == Scope.APP
            ? new DesiredState.Slot(mirror.pair(h).ipv4().toString(), mirror.block(h)) : null;
        return new DesiredState.MachineEntry(m.id(), m.app(), m.iface(), text(m.ipv4()), text(m.ipv6()),
            text(m.pin()), slot, sp == null ? null : new DesiredState.ScopedPair(sp.ipv4().toString(),
                sp.ipv6().toString()), mirror.pairLost(h) ? Boolean.TRUE : null);
    }

    private static String text(final Object address)
    {
        return address == null ? null : address.toString();
    }
}
