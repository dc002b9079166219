package dev.egressd.core.alloc;

import dev.egressd.core.alloc.Outcome.Done;
import dev.egressd.core.alloc.Outcome.Reason;
import dev.egressd.core.alloc.Outcome.Refusal;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The obviously-correct model of {@link EgressAllocator} and {@link SlotAllocator}: sorted maps and sets, plain
 * loops, addresses found by scanning everything, no bit tricks and no indexes.
 *
 * <p>It makes exactly the same choices as the fast allocator, so tests can demand identical placements: pairs are
 * considered in IPv4 order, a tie among the most-free pairs is broken by the same {@link SplitMix64} drawn only
 * when at least two pairs tie, and waiting machines are placed first come first. Because it copies the tie-break,
 * agreeing with it does not prove the placement RULE; {@code PlacementRuleTest} checks the rule on its own.
 *
 * <p>Two layers, so a benchmark can compare like with like: {@link #place(String)} / {@link #release(Slot)} is the
 * slot layer (what {@link SlotAllocator#place}/{@link SlotAllocator#release} do); the other methods are the domain
 * operations. Refusals carry the same code and field as the fast allocator's; messages are left empty.
 */
public final class ReferenceAllocator
{
    /**
     * A slot held on a pair.
     *
     * @param pair  the pair's IPv4.
     * @param block the block index.
     */
    public record Slot(Ipv4Address pair, int block)
    {
    }

    /**
     * Where one machine leaves from, in the terms the property test compares.
     *
     * @param scope the rule that applies.
     * @param pair  the pair's IPv4 (APP and MACHINE), else null.
     * @param block the block (APP), else -1.
     */
    public record Placement(Scope scope, Ipv4Address pair, int block)
    {
    }

    private static final class App
    {
        boolean failClosed = true;
        final TreeMap<Ipv4Address, RPair> pairs = new TreeMap<>();
        final TreeMap<Long, String> waiting = new TreeMap<>();
    }

    private static final class RPair
    {
        final EgressPair pair;
        final String app;
        boolean drained;
        final TreeSet<Integer> used = new TreeSet<>();
        final TreeMap<Integer, String> holders = new TreeMap<>();

        RPair(final EgressPair pair, final String app)
        {
            this.pair = pair;
            this.app = app;
        }
    }

    private static final class RMachine
    {
        Machine machine;
        Scope scope;
        Ipv4Address pair;
        int block = -1;
        EgressPair scoped;

        RMachine(final Machine machine)
        {
            this.machine = machine;
        }
    }

    private final HostSettings settings;
    private final int blockCount;
    private final SplitMix64 random;
    private final TreeMap<String, App> apps = new TreeMap<>();
    private final TreeMap<String, RMachine> machines = new TreeMap<>();
    private long clock;

    /**
     * Creates an empty model.
     *
     * @param settings the host settings.
     * @param seed     the tie-break seed (the same as the fast allocator's to get the same choices).
     */
    public ReferenceAllocator(final HostSettings settings, final long seed)
    {
        this.settings = settings;
        this.blockCount = settings.layout().blockCount();
        this.random = new SplitMix64(seed);
    }

    // ------------------------------------------------------------------------------------------ slot layer

    /**
     * Places one slot for an app. Block 0 last across all the app's pairs: if some non-drained pair has a free
     * block other than 0, the most free of those pairs (random among equals) and its lowest free block but 0;
     * otherwise block 0 of a non-drained pair that has it free (random among those).
     *
     * @param app the app id.
     * @return the slot, or null if none can be had.
     */
    public Slot place(final String app)
    {
        final App a = apps.get(app);
        if (a == null)
        {
            return null;
        }
        final List<RPair> withNonZero = new ArrayList<>();
        final List<RPair> withOnlyZero = new ArrayList<>();
        for (final RPair pair : a.pairs.values())
        {
            if (pair.drained)
            {
                continue;
            }
            if (lowestFreeNonZeroBlock(pair) >= 0)
            {
                withNonZero.add(pair);
            }
            else if (!pair.used.contains(0))
            {
                withOnlyZero.add(pair);
            }
        }
        if (!withNonZero.isEmpty())
        {
            int mostFree = 0;
            for (final RPair pair : withNonZero)
            {
                mostFree = Math.max(mostFree, blockCount - pair.used.size());
            }
            final List<RPair> best = new ArrayList<>();
            for (final RPair pair : withNonZero)
            {
                if (blockCount - pair.used.size() == mostFree)
                {
                    best.add(pair);
                }
            }
            final RPair chosen = pickOne(best);
            final int block = lowestFreeNonZeroBlock(chosen);
            chosen.used.add(block);
            return new Slot(chosen.pair.ipv4(), block);
        }
        if (!withOnlyZero.isEmpty())
        {
            final RPair chosen = pickOne(withOnlyZero);
            chosen.used.add(0);
            return new Slot(chosen.pair.ipv4(), 0);
        }
        return null;
    }

    /** One of several equal pairs (in IPv4 order), drawing a random number only when there are at least two. */
    private RPair pickOne(final List<RPair> equals)
    {
        return equals.size() == 1 ? equals.get(0) : equals.get(random.nextInt(equals.size()));
    }

    /** The lowest free block of a pair other than block 0, or -1. */
    private int lowestFreeNonZeroBlock(final RPair pair)
    {
        for (int block = 1; block < blockCount; block++)
        {
            if (!pair.used.contains(block))
            {
                return block;
            }
        }
        return -1;
    }

    /**
     * Gives a slot back.
     *
     * @param slot a held slot.
     */
    public void release(final Slot slot)
    {
        final RPair pair = pairAnywhere(slot.pair());
        if (pair == null || !pair.used.remove(slot.block()))
        {
            throw new IllegalStateException("slot is not held: " + slot);
        }
    }

    private Slot take(final RPair pair)
    {
        for (int block = 1; block < blockCount; block++)
        {
            if (!pair.used.contains(block))
            {
                pair.used.add(block);
                return new Slot(pair.pair.ipv4(), block);
            }
        }
        if (!pair.used.contains(0))
        {
            pair.used.add(0);
            return new Slot(pair.pair.ipv4(), 0);
        }
        return null;
    }

    // ---------------------------------------------------------------------------------------- domain layer

    /**
     * See {@link EgressAllocator#upsertApp}.
     *
     * @param app        the app id.
     * @param failClosed whether it fails closed.
     * @return the outcome.
     */
    public Outcome upsertApp(final String app, final boolean failClosed)
    {
        if (!validId(app))
        {
            return refuse(Reason.INVALID, "app");
        }
        ensureApp(app).failClosed = failClosed;
        settle(app);
        return Done.NOTHING;
    }

    /**
     * See {@link EgressAllocator#addPair(String, EgressPair)}.
     *
     * @param app  the app id.
     * @param pair the pair.
     * @return the outcome.
     */
    public Outcome addPair(final String app, final EgressPair pair)
    {
        if (!validId(app))
        {
            return refuse(Reason.INVALID, "app");
        }
        if (!pair.region().equals(settings.region()))
        {
            return refuse(Reason.WRONG_REGION, "region");
        }
        final RPair existing = pairAnywhere(pair.ipv4());
        if (existing != null && existing.app.equals(app) && existing.pair.equals(pair))
        {
            return Done.NOTHING;
        }
        if (ipv4Used(pair.ipv4(), null))
        {
            return refuse(Reason.ADDRESS_IN_USE, "ipv4");
        }
        if (ipv6Used(pair.ipv6(), null))
        {
            return refuse(Reason.ADDRESS_IN_USE, "ipv6");
        }
        ensureApp(app).pairs.put(pair.ipv4(), new RPair(pair, app));
        settle(app);
        return Done.NOTHING;
    }

    /**
     * See {@link EgressAllocator#releasePair(String, Ipv4Address)}.
     *
     * @param app  the app id.
     * @param ipv4 the pair.
     * @return the outcome.
     */
    public Outcome releasePair(final String app, final Ipv4Address ipv4)
    {
        final Refusal bad = checkAppPair(app, ipv4);
        if (bad != null)
        {
            return bad;
        }
        final App a = apps.get(app);
        final RPair pair = a.pairs.get(ipv4);
        for (final RMachine m : machines.values())
        {
            if (ipv4.equals(m.machine.pin()))
            {
                m.machine = withPin(m.machine, null);
            }
        }
        for (final String id : new ArrayList<>(pair.holders.values()))
        {
            final RMachine m = machines.get(id);
            freeSlot(m);
            enqueue(m);
        }
        a.pairs.remove(ipv4);
        settle(app);
        return Done.NOTHING;
    }

    /**
     * See {@link EgressAllocator#setDrained(String, Ipv4Address, boolean)}.
     *
     * @param app     the app id.
     * @param ipv4    the pair.
     * @param drained the new state.
     * @return the outcome.
     */
    public Outcome setDrained(final String app, final Ipv4Address ipv4, final boolean drained)
    {
        final Refusal bad = checkAppPair(app, ipv4);
        if (bad != null)
        {
            return bad;
        }
        apps.get(app).pairs.get(ipv4).drained = drained;
        settle(app);
        return Done.NOTHING;
    }

    /**
     * See {@link EgressAllocator#upsertMachine}.
     *
     * @param machine the machine.
     * @return the outcome.
     */
    public Outcome upsertMachine(final Machine machine)
    {
        final Refusal bad = checkMachine(machine);
        if (bad != null)
        {
            return bad;
        }
        final RMachine existing = machines.get(machine.id());
        RPair pin = null;
        if (machine.pin() != null)
        {
            pin = pairAnywhere(machine.pin());
            if (pin == null)
            {
                return refuse(Reason.UNKNOWN_PAIR, "pin");
            }
            if (!pin.app.equals(machine.app()))
            {
                return refuse(Reason.PIN_FOREIGN_PAIR, "pin");
            }
            final boolean needsSlot = existing == null
                || (existing.scoped == null && !pin.pair.ipv4().equals(existing.pair));
            if (needsSlot && pin.drained)
            {
                return refuse(Reason.PAIR_DRAINED, "pin");
            }
            if (needsSlot && pin.used.size() == blockCount)
            {
                return refuse(Reason.PAIR_FULL, "pin");
            }
        }
        if (existing != null && existing.machine.equals(machine))
        {
            return Done.NOTHING;
        }
        ensureApp(machine.app());
        if (existing == null)
        {
            final RMachine m = new RMachine(machine);
            machines.put(machine.id(), m);
            placeNew(m, pin);
            return Done.NOTHING;
        }
        final String oldApp = existing.machine.app();
        existing.machine = machine;
        if (existing.scoped != null)
        {
            return Done.NOTHING;
        }
        final boolean sameApp = oldApp.equals(machine.app());
        if (existing.scope == Scope.APP)
        {
            if (!sameApp || (pin != null && !pin.pair.ipv4().equals(existing.pair)))
            {
                freeSlot(existing);
                placeNew(existing, pin);
                settle(oldApp);
            }
        }
        else if (!sameApp || pin != null)
        {
            removeWaiting(oldApp, machine.id());
            placeNew(existing, pin);
            if (!sameApp)
            {
                settle(oldApp);
            }
        }
        return Done.NOTHING;
    }

    /**
     * See {@link EgressAllocator#removeMachine}.
     *
     * @param id the machine id.
     * @return the outcome.
     */
    public Outcome removeMachine(final String id)
    {
        final RMachine m = machines.get(id);
        if (m == null)
        {
            return refuse(Reason.UNKNOWN_MACHINE, "machine");
        }
        if (m.scope == Scope.APP)
        {
            freeSlot(m);
        }
        removeWaiting(m.machine.app(), id);
        machines.remove(id);
        settle(m.machine.app());
        return Done.NOTHING;
    }

    /**
     * See {@link EgressAllocator#setMachineScopedPair(String, EgressPair)}.
     *
     * @param id   the machine id.
     * @param pair the machine-scoped pair.
     * @return the outcome.
     */
    public Outcome setMachineScopedPair(final String id, final EgressPair pair)
    {
        final RMachine m = machines.get(id);
        if (m == null)
        {
            return refuse(Reason.UNKNOWN_MACHINE, "machine");
        }
        if (!pair.region().equals(settings.region()))
        {
            return refuse(Reason.WRONG_REGION, "region");
        }
        if (pair.equals(m.scoped))
        {
            return Done.NOTHING;
        }
        if (ipv4Used(pair.ipv4(), id))
        {
            return refuse(Reason.ADDRESS_IN_USE, "ipv4");
        }
        if (ipv6Used(pair.ipv6(), id))
        {
            return refuse(Reason.ADDRESS_IN_USE, "ipv6");
        }
        if (m.scope == Scope.APP)
        {
            freeSlot(m);
        }
        removeWaiting(m.machine.app(), id);
        m.scoped = pair;
        m.scope = Scope.MACHINE;
        settle(m.machine.app());
        return Done.NOTHING;
    }

    /**
     * See {@link EgressAllocator#releaseMachineScopedPair}.
     *
     * @param id the machine id.
     * @return the outcome.
     */
    public Outcome releaseMachineScopedPair(final String id)
    {
        final RMachine m = machines.get(id);
        if (m == null)
        {
            return refuse(Reason.UNKNOWN_MACHINE, "machine");
        }
        if (m.scoped == null)
        {
            return refuse(Reason.NO_MACHINE_SCOPED_PAIR, "machine");
        }
        final RPair pin = m.machine.pin() == null ? null : pairAnywhere(m.machine.pin());
        if (pin != null && pin.drained)
        {
            return refuse(Reason.PAIR_DRAINED, "pin");
        }
        if (pin != null && pin.used.size() == blockCount)
        {
            return refuse(Reason.PAIR_FULL, "pin");
        }
        m.scoped = null;
        placeNew(m, pin);
        return Done.NOTHING;
    }

    /**
     * See {@link EgressAllocator#promote}.
     *
     * @param id the machine id.
     * @return the outcome.
     */
    public Outcome promote(final String id)
    {
        final RMachine m = machines.get(id);
        if (m == null)
        {
            return refuse(Reason.UNKNOWN_MACHINE, "machine");
        }
        if (m.scoped == null)
        {
            return refuse(Reason.NO_MACHINE_SCOPED_PAIR, "machine");
        }
        final String app = m.machine.app();
        final RPair pair = new RPair(m.scoped, app);
        apps.get(app).pairs.put(pair.pair.ipv4(), pair);
        m.scoped = null;
        m.machine = withPin(m.machine, null);
        assign(m, take(pair));
        settle(app);
        return Done.NOTHING;
    }

    // --------------------------------------------------------------------------------------------- queries

    /**
     * Every machine's placement.
     *
     * @return placements by machine id.
     */
    public Map<String, Placement> placements()
    {
        final TreeMap<String, Placement> result = new TreeMap<>();
        for (final Map.Entry<String, RMachine> e : machines.entrySet())
        {
            final RMachine m = e.getValue();
            final Ipv4Address pair = m.scope == Scope.MACHINE ? m.scoped.ipv4() : m.pair;
            result.put(e.getKey(), new Placement(m.scope, pair, m.block));
        }
        return result;
    }

    /**
     * The machine records (pins may have been dropped by a release or promote).
     *
     * @return machines by id.
     */
    public Map<String, Machine> machineRecords()
    {
        final TreeMap<String, Machine> result = new TreeMap<>();
        machines.forEach((id, m) -> result.put(id, m.machine));
        return result;
    }

    /**
     * Each app's waiting machines, first come first.
     *
     * @return waiting ids by app.
     */
    public Map<String, List<String>> waiting()
    {
        final TreeMap<String, List<String>> result = new TreeMap<>();
        apps.forEach((id, a) -> result.put(id, List.copyOf(a.waiting.values())));
        return result;
    }

    /**
     * Everything, as text, to show that a refusal changed nothing.
     *
     * @return a dump.
     */
    public String dump()
    {
        final StringBuilder sb = new StringBuilder();
        apps.forEach((id, a) ->
        {
            sb.append("app ").append(id).append(a.failClosed ? " closed" : " open").append(" waiting ")
                .append(a.waiting).append('\n');
            a.pairs.forEach((ip, p) -> sb.append("  pair ").append(p.pair).append(p.drained ? " drained " : " ")
                .append(p.used).append(' ').append(p.holders).append('\n'));
        });
        machines.forEach((id, m) -> sb.append("machine ").append(m.machine).append(' ').append(m.scope).append(' ')
            .append(m.pair).append(' ').append(m.block).append(' ').append(m.scoped).append('\n'));
        return sb.append("random ").append(random.state()).toString();
    }

    // ----------------------------------------------------------------------------------------------- inner

    private void placeNew(final RMachine m, final RPair pin)
    {
        if (pin != null)
        {
            assign(m, take(pin));
        }
        else
        {
            enqueue(m);
            settle(m.machine.app());
        }
    }

    private void assign(final RMachine m, final Slot slot)
    {
        m.scope = Scope.APP;
        m.pair = slot.pair();
        m.block = slot.block();
        pairAnywhere(slot.pair()).holders.put(slot.block(), m.machine.id());
    }

    private void freeSlot(final RMachine m)
    {
        final RPair pair = pairAnywhere(m.pair);
        release(new Slot(m.pair, m.block));
        pair.holders.remove(m.block);
        m.pair = null;
        m.block = -1;
    }

    private void enqueue(final RMachine m)
    {
        m.scope = Scope.PENDING;
        apps.get(m.machine.app()).waiting.put(++clock, m.machine.id());
    }

    private void removeWaiting(final String app, final String id)
    {
        apps.get(app).waiting.values().remove(id);
    }

    private void settle(final String app)
    {
        final App a = apps.get(app);
        while (!a.waiting.isEmpty())
        {
            final Slot slot = place(app);
            if (slot == null)
            {
                break;
            }
            assign(machines.get(a.waiting.pollFirstEntry().getValue()), slot);
        }
        for (final String id : a.waiting.values())
        {
            final RMachine m = machines.get(id);
            if (a.pairs.isEmpty())
            {
                m.scope = Scope.HOST;
            }
            else
            {
                m.scope = a.failClosed ? Scope.PENDING : Scope.HOST;
            }
        }
    }

    private Refusal checkMachine(final Machine m)
    {
        if (!validId(m.id()))
        {
            return refuse(Reason.INVALID, "id");
        }
        if (!validId(m.app()))
        {
            return refuse(Reason.INVALID, "app");
        }
        if (m.iface() == null || !m.iface().matches("[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"))
        {
            return refuse(Reason.INVALID, "interface");
        }
        if (m.ipv4() == null && m.ipv6() == null)
        {
            return refuse(Reason.INVALID, "ipv4");
        }
        if (m.ipv4() != null && !usableGuest(m.ipv4()))
        {
            return refuse(Reason.INVALID, "ipv4");
        }
        if (m.ipv6() != null && !usableGuest(m.ipv6()))
        {
            return refuse(Reason.INVALID, "ipv6");
        }
        for (final RMachine other : machines.values())
        {
            if (!other.machine.id().equals(m.id()) && other.machine.iface().equals(m.iface()))
            {
                return refuse(Reason.DUPLICATE_INTERFACE, "interface");
            }
        }
        if (m.ipv4() != null && ipv4UsedExceptGuest(m.ipv4(), m.id()))
        {
            return refuse(Reason.ADDRESS_IN_USE, "ipv4");
        }
        if (m.ipv6() != null && ipv6UsedExceptGuest(m.ipv6(), m.id()))
        {
            return refuse(Reason.ADDRESS_IN_USE, "ipv6");
        }
        return null;
    }

    private Refusal checkAppPair(final String app, final Ipv4Address ipv4)
    {
        if (!validId(app))
        {
            return refuse(Reason.INVALID, "app");
        }
        if (!apps.containsKey(app))
        {
            return refuse(Reason.UNKNOWN_APP, "app");
        }
        if (!apps.get(app).pairs.containsKey(ipv4))
        {
            return refuse(Reason.UNKNOWN_PAIR, "ipv4");
        }
        return null;
    }

    /** Whether an IPv4 is an app pair's, a machine-scoped pair's (other than scopedOf's), or a guest address. */
    private boolean ipv4Used(final Ipv4Address a, final String scopedOf)
    {
        if (pairAnywhere(a) != null)
        {
            return true;
        }
        for (final RMachine m : machines.values())
        {
            if (a.equals(m.machine.ipv4()))
            {
                return true;
            }
            if (m.scoped != null && m.scoped.ipv4().equals(a) && !m.machine.id().equals(scopedOf))
            {
                return true;
            }
        }
        return false;
    }

    private boolean ipv6Used(final dev.egressd.core.model.Ipv6Address a, final String scopedOf)
    {
        for (final App app : apps.values())
        {
            for (final RPair p : app.pairs.values())
            {
                if (p.pair.ipv6().equals(a))
                {
                    return true;
                }
            }
        }
        for (final RMachine m : machines.values())
        {
            if (a.equals(m.machine.ipv6()))
            {
                return true;
            }
            if (m.scoped != null && m.scoped.ipv6().equals(a) && !m.machine.id().equals(scopedOf))
            {
                return true;
            }
        }
        return false;
    }

    private boolean ipv4UsedExceptGuest(final Ipv4Address a, final String id)
    {
        if (pairAnywhere(a) != null)
        {
            return true;
        }
        for (final RMachine m : machines.values())
        {
            if (m.scoped != null && m.scoped.ipv4().equals(a))
            {
                return true;
            }
            if (a.equals(m.machine.ipv4()) && !m.machine.id().equals(id))
            {
                return true;
            }
        }
        return false;
    }

    private boolean ipv6UsedExceptGuest(final dev.egressd.core.model.Ipv6Address a, final String id)
    {
        for (final App app : apps.values())
        {
            for (final RPair p : app.pairs.values())
            {
                if (p.pair.ipv6().equals(a))
                {
                    return true;
                }
            }
        }
        for (final RMachine m : machines.values())
        {
            if (m.scoped != null && m.scoped.ipv6().equals(a))
            {
                return true;
            }
            if (a.equals(m.machine.ipv6()) && !m.machine.id().equals(id))
            {
                return true;
            }
        }
        return false;
    }

    /** Not 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 (multicast) or 255.255.255.255. */
    private static boolean usableGuest(final Ipv4Address a)
    {
        final int firstOctet = a.toBytes()[0] & 0xFF;
        return firstOctet != 0 && firstOctet != 127 && !(firstOctet >= 224 && firstOctet <= 239)
            && !a.toString().equals("255.255.255.255");
    }

    /** Not ::, ::1, ff00::/8 (multicast) or fe80::/10 (link-local). */
    private static boolean usableGuest(final dev.egressd.core.model.Ipv6Address a)
    {
        final byte[] b = a.toBytes();
        final int first = b[0] & 0xFF;
        final int second = b[1] & 0xFF;
        final boolean linkLocal = first == 0xFE && second >= 0x80 && second <= 0xBF;
        return !a.toString().equals("::") && !a.toString().equals("::1") && first != 0xFF && !linkLocal;
    }

    private RPair pairAnywhere(final Ipv4Address ipv4)
    {
        for (final App app : apps.values())
        {
            final RPair pair = app.pairs.get(ipv4);
            if (pair != null)
            {
                return pair;
            }
        }
        return null;
    }

    private App ensureApp(final String app)
    {
        return apps.computeIfAbsent(app, k -> new App());
    }

    private static boolean validId(final String id)
    {
        return id != null && id.matches("[A-Za-z0-9][A-Za-z0-9_.-]{0,127}");
    }

    private static Machine withPin(final Machine m, final Ipv4Address pin)
    {
        return new Machine(m.id(), m.app(), m.iface(), m.ipv4(), m.ipv6(), pin);
    }

    private static Refusal refuse(final Reason code, final String field)
    {
        return new Refusal(code, field, "");
    }
}
