package dev.egressd.agent.state;

import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * One journal record: what one accepted change did to the {@link DesiredState}, by top-level entry. Apps and
 * machines are keyed by id (the whole new entry, or the id of a removed one); the host, the recovered elements and
 * the draining addresses are small and written whole when they changed. A field left out (null) did not change.
 *
 * <p>Replaying a record sets every entry it names to its value, so replaying records over a state that already
 * holds some of them gives the same result as replaying them over the state before them: the property the
 * snapshot-then-rotate order relies on.
 *
 * @param host            the new host settings, or null.
 * @param apps            apps added or changed (whole).
 * @param appsRemoved     ids of apps removed.
 * @param machines        machines added or changed (whole).
 * @param machinesRemoved ids of machines removed.
 * @param recovered       the new recovered elements (whole), or null.
 * @param draining        the new draining addresses (whole), or null.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record StateChange(
    @JsonProperty("host") DesiredState.Host host,
    @JsonProperty("apps") List<DesiredState.App> apps,
    @JsonProperty("apps_removed") List<String> appsRemoved,
    @JsonProperty("machines") List<DesiredState.MachineEntry> machines,
    @JsonProperty("machines_removed") List<String> machinesRemoved,
    @JsonProperty("recovered") List<DesiredState.Element> recovered,
    @JsonProperty("draining") List<DesiredState.Draining> draining)
{
    /**
     * What changed from one state to the next.
     *
     * @param before the state on disk.
     * @param after  the state to persist.
     * @return the change.
     */
    public static StateChange between(final DesiredState before, final DesiredState after)
    {
        if (!sortedById(before) || !sortedById(after))
        {
            return betweenById(before, after);
        }
        // Both in id order: one merge walk. Entries an incremental export kept (StateExport) are the same objects
        // in both, and pass at a reference compare.
        final List<DesiredState.App> appsPut = new ArrayList<>();
        final List<String> appsRemoved = new ArrayList<>();
        walk(before.apps(), after.apps(), DesiredState.App::id, appsPut, appsRemoved);
        final List<DesiredState.MachineEntry> machinesPut = new ArrayList<>();
        final List<String> machinesRemoved = new ArrayList<>();
        walk(before.machines(), after.machines(), DesiredState.MachineEntry::id, machinesPut, machinesRemoved);
        return of(before, after, appsPut, appsRemoved, machinesPut, machinesRemoved);
    }

    private static <T> void walk(final List<T> before, final List<T> after,
        final java.util.function.Function<T, String> id, final List<T> put, final List<String> removed)
    {
        if (before == after)
        {
            return; // an incremental export keeps its list when no entry moved
        }
        int i = 0;
        int j = 0;
        while (i < before.size() && j < after.size())
        {
            final T b = before.get(i);
            final T a = after.get(j);
            if (a == b)
            {
                i++;
                j++;
                continue;
            }
            final int order = id.apply(b).compareTo(id.apply(a));
            if (order == 0)
            {
                if (!a.equals(b))
                {
                    put.add(a);
                }
                i++;
                j++;
            }
            else if (order < 0)
            {
                removed.add(id.apply(b));
                i++;
            }
            else
            {
                put.add(a);
                j++;
            }
        }
        for (; i < before.size(); i++)
        {
            removed.add(id.apply(before.get(i)));
        }
        for (; j < after.size(); j++)
        {
            put.add(after.get(j));
        }
    }

    private static StateChange of(final DesiredState before, final DesiredState after,
        final List<DesiredState.App> appsPut, final List<String> appsRemoved,
        final List<DesiredState.MachineEntry> machinesPut, final List<String> machinesRemoved)
    {
        return new StateChange(
            before.host().equals(after.host()) ? null : after.host(),
            appsPut.isEmpty() ? null : appsPut,
            appsRemoved.isEmpty() ? null : appsRemoved,
            machinesPut.isEmpty() ? null : machinesPut,
            machinesRemoved.isEmpty() ? null : machinesRemoved,
            before.recovered().equals(after.recovered()) ? null : after.recovered(),
            before.draining().equals(after.draining()) ? null : after.draining());
    }

    /**
     * {@link #between} by id lookups, whatever the order of the entries: the reference the merge walk is checked
     * against, and what states out of id order take.
     *
     * @param before the state on disk.
     * @param after  the state to persist.
     * @return the change.
     */
    public static StateChange betweenById(final DesiredState before, final DesiredState after)
    {
        final Map<String, DesiredState.App> apps = new HashMap<>(before.apps().size() * 2);
        for (final DesiredState.App app : before.apps())
        {
            apps.put(app.id(), app);
        }
        final List<DesiredState.App> appsPut = new ArrayList<>();
        final Set<String> appsSeen = new HashSet<>();
        for (final DesiredState.App app : after.apps())
        {
            appsSeen.add(app.id());
            if (!app.equals(apps.get(app.id())))
            {
                appsPut.add(app);
            }
        }
        final List<String> appsRemoved = new ArrayList<>();
        for (final DesiredState.App app : before.apps())
        {
            if (!appsSeen.contains(app.id()))
            {
                appsRemoved.add(app.id());
            }
        }
        final Map<String, DesiredState.MachineEntry> machines = new HashMap<>(before.machines().size() * 2);
        for (final DesiredState.MachineEntry m : before.machines())
        {
            machines.put(m.id(), m);
        }
        final List<DesiredState.MachineEntry> machinesPut = new ArrayList<>();
        final Set<String> machinesSeen = new HashSet<>(after.machines().size() * 2);
        for (final DesiredState.MachineEntry m : after.machines())
        {
            machinesSeen.add(m.id());
            if (!m.equals(machines.get(m.id())))
            {
                machinesPut.add(m);
            }
        }
        final List<String> machinesRemoved = new ArrayList<>();
        for (final DesiredState.MachineEntry m : before.machines())
        {
            if (!machinesSeen.contains(m.id()))
            {
                machinesRemoved.add(m.id());
            }
        }
        return of(before, after, appsPut, appsRemoved, machinesPut, machinesRemoved);
    }

    /**
     * Whether two states are equal, faster than {@link DesiredState#equals} when they share entry objects (an
     * incremental export's): entries are compared by reference first.
     *
     * @param a a state.
     * @param b another.
     * @return true if equal.
     */
    public static boolean same(final DesiredState a, final DesiredState b)
    {
        return a.version() == b.version() && a.host().equals(b.host()) && same(a.apps(), b.apps())
            && same(a.machines(), b.machines()) && a.recovered().equals(b.recovered())
            && a.draining().equals(b.draining());
    }

    private static <T> boolean same(final List<T> a, final List<T> b)
    {
        if (a == b)
        {
            return true; // an incremental export keeps its list when no entry moved
        }
        if (a.size() != b.size())
        {
            return false;
        }
        for (int i = 0; i < a.size(); i++)
        {
            final T x = a.get(i);
            final T y = b.get(i);
            if (x != y && !x.equals(y))
            {
                return false;
            }
        }
        return true;
    }

    /**
     * Whether a state's apps and machines are in strictly increasing id order, the order {@link #applyTo} gives
     * them (and the allocator exports them in).
     *
     * @param state the state.
     * @return true if so.
     */
    public static boolean sortedById(final DesiredState state)
    {
        // A state's lists are immutable, so lists found in order stay so: the store checks the state it writes, and
        // the record's diff checks it again, and once more as the next write's "before". Remembered by the lists'
        // identity (a state with other draining addresses shares them), the last few, so that is one O(machines)
        // walk per state at most, and none for one an incremental export built in order.
        if (known(state))
        {
            return true;
        }
        if (!walkSorted(state))
        {
            return false;
        }
        remember(state);
        return true;
    }

    /**
     * Takes a state as in id order without walking it: for a state built in that order by construction
     * ({@link StateExport}: the allocator walks its machines and apps by id).
     *
     * @param state the state.
     */
    static void inOrder(final DesiredState state)
    {
        if (!known(state))
        {
            remember(state);
        }
    }

    /**
     * How many lists in order are remembered (apps and machines of a state each). Four: the state being written,
     * the one before it (the record's "before"), and room for a state walked between them (the one a start loaded,
     * one with other draining addresses) without pushing either out. With two, one walked state put the previous
     * export out, whose walk then put the next one's previous out: every write walked the whole state again.
     */
    private static final int REMEMBERED = 4;

    /** Apps and machines lists found in id order, newest first, in pairs (replaced whole: any thread reads it). */
    private static volatile List<?>[] inOrder = new List<?>[2 * REMEMBERED];

    /** How many states were walked to check their order (tests). */
    private static final java.util.concurrent.atomic.AtomicLong WALKS = new java.util.concurrent.atomic.AtomicLong();

    private static boolean known(final DesiredState state)
    {
        final List<?>[] known = inOrder;
        for (int i = 0; i < known.length; i += 2)
        {
            if (known[i] == state.apps() && known[i + 1] == state.machines())
            {
                return true;
            }
        }
        return false;
    }

    private static void remember(final DesiredState state)
    {
        final List<?>[] known = inOrder;
        final List<?>[] next = new List<?>[known.length];
        next[0] = state.apps();
        next[1] = state.machines();
        System.arraycopy(known, 0, next, 2, known.length - 2);
        inOrder = next;
    }

    /**
     * States walked so far to check their order.
     *
     * @return the count.
     */
    static long walks()
    {
        return WALKS.get();
    }

    private static boolean walkSorted(final DesiredState state)
    {
        WALKS.incrementAndGet();
        for (int i = 1; i < state.apps().size(); i++)
        {
            if (state.apps().get(i - 1).id().compareTo(state.apps().get(i).id()) >= 0)
            {
                return false;
            }
        }
        for (int i = 1; i < state.machines().size(); i++)
        {
            if (state.machines().get(i - 1).id().compareTo(state.machines().get(i).id()) >= 0)
            {
                return false;
            }
        }
        return true;
    }

    /**
     * Replays this change over a state.
     *
     * @param state the state.
     * @return the state after the change.
     */
    public DesiredState applyTo(final DesiredState state)
    {
        // ids in order, as the allocator exports them (its maps are sorted by id)
        final TreeMap<String, DesiredState.App> allApps = new TreeMap<>();
        for (final DesiredState.App app : state.apps())
        {
            allApps.put(app.id(), app);
        }
        if (appsRemoved != null)
        {
            appsRemoved.forEach(allApps::remove);
        }
        if (apps != null)
        {
            apps.forEach(a -> allApps.put(a.id(), a));
        }
        final TreeMap<String, DesiredState.MachineEntry> allMachines = new TreeMap<>();
        for (final DesiredState.MachineEntry m : state.machines())
        {
            allMachines.put(m.id(), m);
        }
        if (machinesRemoved != null)
        {
            machinesRemoved.forEach(allMachines::remove);
        }
        if (machines != null)
        {
            machines.forEach(m -> allMachines.put(m.id(), m));
        }
        return new DesiredState(state.version(), host != null ? host : state.host(),
            new ArrayList<>(allApps.values()), new ArrayList<>(allMachines.values()),
            recovered != null ? recovered : state.recovered(), draining != null ? draining : state.draining());
    }

    /**
     * Whether it changes nothing.
     *
     * @return true when every field is null.
     */
    @JsonIgnore
    public boolean isEmpty()
    {
        return host == null && apps == null && appsRemoved == null && machines == null && machinesRemoved == null
            && recovered == null && draining == null;
    }
}
