package dev.egressd.agent.state;

import dev.egressd.core.alloc.EgressAllocator;
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
 * made of (its record, scope, pair, block, machine-scoped pair, pair-lost flag) is another reference or number than
 * at the last export, found by one non-allocating scan of the allocator ({@link EgressAllocator#scanMachines}); an
 * app's entry (apps are few) is built again and its old object kept when equal. So two exports share the entry
 * objects of everything that did not change, and {@link StateChange#between} tells them apart by reference.
 *
 * <p>Equal to {@link StateMapper#export} at every call (tests check it through random operations). Loop thread only.
 */
public final class StateExport
{
    private EgressAllocator exported;
    private Machine[] machine = new Machine[64];
    private Scope[] scope = new Scope[64];
    private EgressPair[] pair = new EgressPair[64];
    private int[] block = new int[64];
    private EgressPair[] scoped = new EgressPair[64];
    private boolean[] pairLost = new boolean[64];
    private DesiredState.MachineEntry[] entry = new DesiredState.MachineEntry[64];
    private Map<String, DesiredState.App> apps = new HashMap<>();
    private List<DesiredState.MachineEntry> machines;
    private final EgressAllocator.MachineScan visit = this::visit;

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
            Arrays.fill(machine, null);
            Arrays.fill(entry, null);
            apps = new HashMap<>();
            exported = allocator;
        }
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
        machines = new ArrayList<>();
        allocator.scanMachines(visit);
        final List<DesiredState.Element> elements = new ArrayList<>(recovered.size());
        for (final PlanElement element : recovered)
        {
            elements.add(StateMapper.toData(element));
        }
        final DesiredState state = new DesiredState(DesiredState.VERSION, StateMapper.host(allocator.settings()),
            appList, machines, elements);
        machines = null;
        return state;
    }

    private void visit(final int handle, final Machine m, final Scope s, final EgressPair p, final int b,
        final int firstPort, final int lastPort, final EgressPair sp, final boolean lost)
    {
        if (handle >= machine.length)
        {
            final int n = Math.max(handle + 1, machine.length * 2);
            machine = Arrays.copyOf(machine, n);
            scope = Arrays.copyOf(scope, n);
            pair = Arrays.copyOf(pair, n);
            block = Arrays.copyOf(block, n);
            scoped = Arrays.copyOf(scoped, n);
            pairLost = Arrays.copyOf(pairLost, n);
            entry = Arrays.copyOf(entry, n);
        }
        if (machine[handle] != m || scope[handle] != s || pair[handle] != p || block[handle] != b
            || scoped[handle] != sp || pairLost[handle] != lost || entry[handle] == null)
        {
            machine[handle] = m;
            scope[handle] = s;
            pair[handle] = p;
            block[handle] = b;
            scoped[handle] = sp;
            pairLost[handle] = lost;
            final DesiredState.Slot slot = s == Scope.APP ? new DesiredState.Slot(p.ipv4().toString(), b) : null;
            entry[handle] = new DesiredState.MachineEntry(m.id(), m.app(), m.iface(), text(m.ipv4()), text(m.ipv6()),
                text(m.pin()), slot,
                sp == null ? null : new DesiredState.ScopedPair(sp.ipv4().toString(), sp.ipv6().toString()),
                lost ? Boolean.TRUE : null);
        }
        machines.add(entry[handle]);
    }

    private static String text(final Object address)
    {
        return address == null ? null : address.toString();
    }
}
