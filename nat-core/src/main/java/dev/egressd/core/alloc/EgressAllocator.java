package dev.egressd.core.alloc;

import dev.egressd.core.alloc.Outcome.Done;
import dev.egressd.core.alloc.Outcome.Reason;
import dev.egressd.core.alloc.Outcome.Refusal;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.TreeMap;
import java.util.function.IntConsumer;

/**
 * The allocator the daemon calls: apps, their egress pairs, machines and which address each machine leaves from
 * (docs/design.md, "Which address a machine leaves from"), on top of the allocation-free {@link SlotAllocator}.
 *
 * <p>Single-threaded: the daemon serialises calls. Every operation returns an {@link Outcome}: {@link Done} with
 * the ids of the machines that changed, or a {@link Refusal} naming the field, in which case nothing changed
 * (every check runs before the first mutation). Repeating an identical request succeeds and changes nothing.
 * It takes typed values only: request text becomes addresses and pairs in {@link RequestText}, whose rules and
 * messages this class also uses for the ids and interface names it checks.
 * A guest address must be one a guest can send from: not 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 or
 * 255.255.255.255 (field {@code ipv4}), not ::, ::1, ff00::/8 or fe80::/10 (field {@code ipv6}).
 * A pair address must be one a machine can leave from: {@link RequestText#pairAddressProblem} (also link-local
 * 169.254.0.0/16), on every pair given, so a pair rebuilt from the state file is held to the same rule.
 *
 * <p>Placement of a machine, in order:
 * <ol>
 *   <li>it has a machine-scoped pair: {@link Scope#MACHINE}, whole port range;</li>
 *   <li>it is pinned: a slot on the pinned pair (the pin was checked to have room when the slot was needed);</li>
 *   <li>else a slot on the app's non-drained pair with the most free slots, random among equals, lowest block
 *       other than 0 first; block 0 last across all the app's pairs: a block 0 only when no non-drained pair of
 *       the app has a free block other than 0 ({@link SlotAllocator#place});</li>
 *   <li>else, if the app has pairs (all full or drained): {@link Scope#PENDING} when the app is fail-closed (the
 *       default), {@link Scope#HOST} with a reason saying it fell back when the app opted out;</li>
 *   <li>else (the app has no pair): {@link Scope#HOST}, masqueraded to the host address; except
 *       {@link Scope#PENDING} for a fail-closed app whose pairs a restore lost ({@link #holdClosed}), or a machine
 *       of one whose machine-scoped pair a restore lost ({@link #holdMachineClosed}), until a pair is back.</li>
 * </ol>
 * Machines in the last two states wait in a first-come-first-served queue per app and are placed as soon as a
 * slot frees, a pair is added or undrained, or a machine-scoped pair is promoted. So the queue is non-empty only
 * while no non-drained pair of the app has room.
 *
 * <p>A machine never moves while it keeps its slot: an update keeps the slot unless the app changes or a new pin
 * names another pair; a restart puts every machine back on its exact (pair, block) with
 * {@link #restoreMachine(Machine, Ipv4Address, int)} and {@link #restoreMachineScoped(Machine, EgressPair)}.
 *
 * <p>Restart order: {@link #upsertApp}, then {@link #addPair(String, EgressPair)} and {@link #setDrained} for every
 * pair, then the restores for every machine that had a slot or a machine-scoped pair, then
 * {@link #upsertMachine} for the waiting ones (in their old queue order).
 *
 * <p>Region mode (docs/design.md, §2 "Region mode: claims"). Every new slot for a machine (placed, pinned, moved,
 * promoted) is first claimed from the {@link SlotLedger}, the owner of record; a slot a machine gives up is released
 * to it.
 * The restores never claim: the state file says the slot was already ours. {@link SlotLedger#LOCAL} (the
 * default) grants every claim, so a single host behaves exactly as described above. A claim answered
 * {@code TAKEN} marks that block as held by another host (holder unknown until the region sync names it) and the
 * next candidate is tried by the same rules, at most {@value #MAX_CLAIMS} times a machine; {@code UNAVAILABLE}
 * stops every further claim in the same operation (each may cost the ledger's deadline) and leaves the machines
 * waiting with a reason starting "region ledger unavailable". Slots that machines of other hosts hold are told by
 * {@link #holdForeign} and {@link #releaseForeign}; they count as held in every free count and show in
 * {@link #pairs()} with their host, so "most free slots" is region-wide. A machine that waits with room in sight
 * (the ledger down, or claims lost) is retried by the next operation that settles its app, by
 * {@link #releaseForeign}/{@link #holdForeign}, or by {@link #retryWaiting()}, which the daemon calls when the
 * ledger is back. A pinned machine may then wait too, in its app's queue, for a slot of its pin.
 */
public final class EgressAllocator
{
    private enum OwnerKind
    {
        APP_PAIR("an egress pair of app "),
        MACHINE_SCOPED("the machine-scoped pair of machine "),
        GUEST("a guest address of machine ");

        final String text;

        OwnerKind(final String text)
        {
            this.text = text;
        }
    }

    private record Owner(OwnerKind kind, String id)
    {
        @Override
        public String toString()
        {
            return kind.text + id;
        }
    }

    private static final class App
    {
        final String id;
        final int index;
        boolean failClosed = true;
        /**
         * Pairs of this fail-closed app were lost by a restore ({@link #holdClosed(String)}): while it has no pair,
         * its machines are refused rather than masqueraded. Cleared by the next pair added to it, or by opting out.
         */
        boolean pairsLost;
        final TreeMap<Ipv4Address, Pair> pairs = new TreeMap<>();
        final LinkedHashSet<Node> waiting = new LinkedHashSet<>();

        App(final String id, final int index)
        {
            this.id = id;
            this.index = index;
        }
    }

    private static final class Pair
    {
        final EgressPair pair;
        final App app;
        final int index;
        final Node[] holders;
        /** Blocks held by machines of other hosts (region mode); their bits are set in the SlotAllocator too. */
        final ForeignHolder[] foreign;

        Pair(final EgressPair pair, final App app, final int index, final int blockCount)
        {
            this.pair = pair;
            this.app = app;
            this.index = index;
            this.holders = new Node[blockCount];
            this.foreign = new ForeignHolder[blockCount];
        }
    }

    /** A machine of another host holding a block; {@link SlotHolder#UNKNOWN} until the region sync names it. */
    private record ForeignHolder(String host, String machine)
    {
    }

    private static final ForeignHolder UNKNOWN_FOREIGN = new ForeignHolder(SlotHolder.UNKNOWN, SlotHolder.UNKNOWN);

    /** Why a machine holds its app slot: today's words for a single host, host-independent words in region mode. */
    private enum How
    {
        PINNED("pinned", "pinned"),
        MOST_FREE("most free slots", "placed"),
        RESTORED("restored", "restored"),
        PROMOTED("promoted from machine-scoped", "promoted");

        final String local;
        final String region;

        How(final String local, final String region)
        {
            this.local = local;
            this.region = region;
        }
    }

    private static final class Node
    {
        Machine machine;
        final int handle;
        Scope scope;
        Pair pair;
        int slot = SlotAllocator.NONE;
        How how;
        EgressPair scoped;
        String reason;
        /** Its machine-scoped pair was lost by a restore ({@link #holdMachineClosed}); cleared once it has a pair. */
        boolean pairLost;

        Node(final Machine machine, final int handle)
        {
            this.machine = machine;
            this.handle = handle;
        }

        String id()
        {
            return machine.id();
        }
    }

    private record Placement(Scope scope, Pair pair, int slot, EgressPair scoped)
    {
    }

    /** Claims tried for one machine in one operation before it waits (each lost race marks one more slot held). */
    public static final int MAX_CLAIMS = 8;

    /**
     * The holder of a block that waits out a deleted host's quarantine ({@link #holdForeign} with this host and a
     * null machine): no machine holds it, nobody may take it yet. Parentheses are not allowed in ids, so it never
     * names a real host.
     */
    public static final String QUARANTINE = "(quarantine)";

    private final HostSettings settings;
    private final BlockLayout layout;
    private final SlotAllocator slots;
    private final SlotLedger ledger;
    private boolean regionReasons;
    private long regionConflicts;
    private final TreeMap<String, App> apps = new TreeMap<>();
    private final TreeMap<String, Node> machines = new TreeMap<>();
    private final HashMap<String, Node> byIface = new HashMap<>();
    private final HashMap<Ipv4Address, Pair> pairsByIpv4 = new HashMap<>();
    private Pair[] pairsByIndex = new Pair[16];
    private final HashMap<Ipv4Address, Owner> ipv4Owners = new HashMap<>();
    private final HashMap<Ipv6Address, Owner> ipv6Owners = new HashMap<>();
    private final BitSet handles = new BitSet();
    /**
     * Bumped by every operation and every write of what {@link #scanMachines} reports, so a consumer that keeps a
     * copy ({@link MachineMirror}) knows when it need not scan.
     */
    private long edits;
    /**
     * The handles whose machine {@link #scanMachines} would report differently (or absent) since {@link #changedReader}
     * last took them ({@link #scanChanged}), each once: every write of a machine's reported fields goes through
     * {@link #touch} or {@link #changed}. So the loop's copy of the machines costs O(what an operation moved), not a
     * walk of every machine.
     */
    private int[] changedHandles = new int[64];
    private int changedCount;
    private final BitSet changedSet = new BitSet();
    private Object changedReader;
    /** Each handle's node, null for a free handle. */
    private Node[] byHandle = new Node[64];

    // Per-operation change tracking: the placement of each machine before the operation first touched it.
    private final LinkedHashMap<Node, Placement> touched = new LinkedHashMap<>();
    private final LinkedHashSet<String> order = new LinkedHashSet<>();
    private final LinkedHashSet<String> forced = new LinkedHashSet<>();
    // Per-operation ledger state: once a claim found the ledger unavailable, no further claim in this operation;
    // an app one of whose machines lost MAX_CLAIMS races makes no further claim in this operation either.
    private boolean ledgerDown;
    private final HashSet<App> racesLost = new HashSet<>();

    /**
     * Creates an empty allocator whose slots are claimed from a ledger.
     *
     * @param settings the host's region and block layout.
     * @param seed     seed of the tie-break among equally free pairs (tests fix it; the daemon may use any).
     * @param ledger   the owner of record of the slots: {@link SlotLedger#LOCAL} on a single host.
     */
    public EgressAllocator(final HostSettings settings, final long seed, final SlotLedger ledger)
    {
        this.settings = Objects.requireNonNull(settings, "settings");
        this.layout = settings.layout();
        this.slots = new SlotAllocator(layout.blockCount(), seed);
        this.ledger = Objects.requireNonNull(ledger, "ledger");
    }

    /**
     * Creates an empty allocator with the local ledger.
     *
     * @param settings the host's region and block layout.
     * @param seed     seed of the tie-break among equally free pairs (tests fix it; the daemon may use any).
     */
    public EgressAllocator(final HostSettings settings, final long seed)
    {
        this(settings, seed, SlotLedger.LOCAL);
    }

    /**
     * Creates an empty allocator with a seed from the clock.
     *
     * @param settings the host's region and block layout.
     */
    public EgressAllocator(final HostSettings settings)
    {
        this(settings, System.nanoTime());
    }

    /**
     * The host settings.
     *
     * @return the settings.
     */
    public HostSettings settings()
    {
        return settings;
    }

    /**
     * The owner of record of the slots.
     *
     * @return the ledger.
     */
    public SlotLedger ledger()
    {
        return ledger;
    }

    /**
     * Chooses the words of an app slot's egress reason. Off (the default): "slot 3 on app pair 203.0.113.10 (most
     * free slots)". On, for region mode, only facts that hold on every host: "slot 3 of app pair 203.0.113.10,
     * region ord (placed)". Applies at once to the machines already placed.
     *
     * @param on true for region words.
     */
    public void regionReasons(final boolean on)
    {
        regionReasons = on;
        for (final Node node : machines.values())
        {
            if (node.scope == Scope.APP)
            {
                node.reason = appReason(node.pair, SlotAllocator.blockOf(node.slot), node.how);
            }
        }
    }

    /**
     * How many times the region's owner of record took a slot from a machine of this host ({@link #holdForeign} on a
     * block a local machine held), since this allocator was created.
     *
     * @return the count.
     */
    public long regionConflicts()
    {
        return regionConflicts;
    }

    // ------------------------------------------------------------------------------------------------ apps

    /**
     * Creates an app or changes whether it fails closed. Waiting machines switch between PENDING and HOST at once.
     *
     * @param appId      the app id.
     * @param failClosed true (the default of implicitly created apps): a machine without a slot is refused
     *                   traffic; false: it falls back to the host address.
     * @return the outcome.
     */
    public Outcome upsertApp(final String appId, final boolean failClosed)
    {
        final Refusal bad = RequestText.idProblem(appId, "app");
        if (bad != null)
        {
            return bad;
        }
        final App existing = apps.get(appId);
        if (existing != null && existing.failClosed == failClosed)
        {
            return Done.NOTHING;
        }
        begin();
        final App app = ensureApp(appId);
        app.failClosed = failClosed;
        if (!failClosed)
        {
            // Opting out is the operator's word that the app's machines may leave from the host address.
            app.pairsLost = false;
            for (final Node node : app.waiting)
            {
                node.pairLost = false;
                changed(node);
                edits++;
            }
        }
        settle(app);
        return finish();
    }

    /**
     * Keeps a fail-closed app's machines refused while it has no pair, because a restore lost its pairs (they were
     * in the state file but could not be restored): they were meant to leave from a static address, so they must
     * not fall back to the host address behind the operator's back (docs/design.md, invariant 3). Without this an
     * app with no pair masquerades its machines (rule 3). It ends when a pair is added to the app (or promoted into
     * it), or when the app opts out of fail-closed; it does nothing for an app that is not fail-closed.
     *
     * @param appId the app (field {@code app}).
     * @return the outcome; the app's machines without a pair become PENDING.
     */
    public Outcome holdClosed(final String appId)
    {
        final App app = apps.get(appId);
        if (app == null)
        {
            return new Refusal(Reason.UNKNOWN_APP, "app", "app " + appId + " does not exist");
        }
        if (app.pairsLost || !app.failClosed)
        {
            return Done.NOTHING;
        }
        begin();
        app.pairsLost = true;
        settle(app);
        return finish();
    }

    /**
     * Keeps one machine of a fail-closed app refused while it has no pair, because a restore lost its
     * machine-scoped pair (as {@link #holdClosed(String)} for an app's pairs, but for this machine alone: the app's
     * other machines keep masquerading if they did). It ends once the machine has a pair again (machine-scoped, or
     * a slot on a pair of its app), or when the app opts out. Nothing happens to a machine that has a pair.
     *
     * @param machineId the machine (field {@code machine}).
     * @return the outcome.
     */
    public Outcome holdMachineClosed(final String machineId)
    {
        final Node node = machines.get(machineId);
        if (node == null)
        {
            return unknownMachine(machineId);
        }
        final App app = apps.get(node.machine.app());
        if (node.pairLost || !app.failClosed || node.scoped != null || node.slot != SlotAllocator.NONE)
        {
            return Done.NOTHING;
        }
        begin();
        node.pairLost = true;
        changed(node);
        edits++;
        settle(app);
        return finish();
    }

    // ----------------------------------------------------------------------------------------------- pairs

    /**
     * Adds an app-scoped pair.
     *
     * @param appId the app; created (fail-closed) if new.
     * @param pair  the pair; its region must be this host's.
     * @return the outcome; the app's waiting machines are placed at once.
     */
    public Outcome addPair(final String appId, final EgressPair pair)
    {
        Refusal bad = RequestText.idProblem(appId, "app");
        if (bad == null)
        {
            bad = checkPairAddresses(pair);
        }
        if (bad != null)
        {
            return bad;
        }
        final Pair existing = pairsByIpv4.get(pair.ipv4());
        if (existing != null && existing.app.id.equals(appId) && existing.pair.equals(pair))
        {
            return Done.NOTHING;
        }
        bad = checkFree(pair, null);
        if (bad != null)
        {
            return bad;
        }
        begin();
        final App app = ensureApp(appId);
        newPair(app, pair);
        settle(app);
        return finish();
    }

    /**
     * Releases an app-scoped pair. Its machines, in block order, join the end of the app's waiting queue and are
     * placed on the app's other pairs with room; those that find none become PENDING (fail-closed app) or HOST
     * (fail-open app, or no pair left at all: DESIGN rule 3).
     *
     * <p>Machines pinned to the released pair lose the pin (their record's {@code pin} becomes null) and are
     * placed like any other: a pin to a pair that no longer exists cannot be honoured, and refusing the release
     * would let one machine's pin block an operator's decision about the app's addresses.
     *
     * @param appId the app.
     * @param ipv4  the pair's IPv4.
     * @return the outcome.
     */
    public Outcome releasePair(final String appId, final Ipv4Address ipv4)
    {
        final Refusal bad = checkPair(appId, ipv4);
        if (bad != null)
        {
            return bad;
        }
        final Pair pair = apps.get(appId).pairs.get(ipv4);
        final App app = pair.app;
        begin();
        for (final Node node : machines.values())
        {
            if (ipv4.equals(node.machine.pin()))
            {
                setPin(node, null);
            }
        }
        for (final Node node : pair.holders)
        {
            if (node != null)
            {
                freeSlot(node);
                enqueue(node, app);
            }
        }
        slots.removePair(pair.index);
        pairsByIndex[pair.index] = null;
        app.pairs.remove(ipv4);
        pairsByIpv4.remove(ipv4);
        ipv4Owners.remove(ipv4);
        ipv6Owners.remove(pair.pair.ipv6());
        settle(app);
        return finish();
    }

    /**
     * Drains a pair (it keeps its machines and takes no new one) or undrains it (waiting machines are placed).
     *
     * @param appId   the app.
     * @param ipv4    the pair's IPv4.
     * @param drained the new state.
     * @return the outcome.
     */
    public Outcome setDrained(final String appId, final Ipv4Address ipv4, final boolean drained)
    {
        final Refusal bad = checkPair(appId, ipv4);
        if (bad != null)
        {
            return bad;
        }
        final Pair pair = apps.get(appId).pairs.get(ipv4);
        if (slots.isDrained(pair.index) == drained)
        {
            return Done.NOTHING;
        }
        begin();
        slots.drained(pair.index, drained);
        settle(pair.app);
        return finish();
    }

    // -------------------------------------------------------------------------------------------- machines

    /**
     * Creates or updates a machine and places it (see the class comment for the order of the rules).
     *
     * <p>An update keeps the machine's slot unless its app changes or its new pin names a pair other than the one
     * it is on; setting a pin to the pair it already holds, or removing a pin, does not move it. A pin must name a
     * pair of the machine's own app, with room and not drained whenever a new slot is needed.
     *
     * @param machine the machine as the orchestrator describes it.
     * @return the outcome.
     */
    public Outcome upsertMachine(final Machine machine)
    {
        Refusal bad = checkMachine(machine);
        if (bad != null)
        {
            return bad;
        }
        final Node existing = machines.get(machine.id());
        Pair pin = null;
        if (machine.pin() != null)
        {
            bad = checkPin(machine);
            if (bad != null)
            {
                return bad;
            }
            pin = pairsByIpv4.get(machine.pin());
            // A machine already waiting for this very pin (region mode) keeps waiting for it: no new slot asked.
            final boolean waitsForPin = existing != null && existing.slot == SlotAllocator.NONE
                && machine.pin().equals(existing.machine.pin()) && machine.app().equals(existing.machine.app());
            final boolean needsSlot = existing == null
                || (existing.scoped == null && existing.pair != pin && !waitsForPin);
            if (needsSlot && (bad = checkRoom(pin)) != null)
            {
                return bad;
            }
        }
        if (existing != null && existing.machine.equals(machine))
        {
            return Done.NOTHING;
        }
        begin();
        final App app = ensureApp(machine.app());
        if (existing == null)
        {
            placeNew(newNode(machine), app, pin);
            return finish();
        }

        touch(existing);
        forced.add(existing.id());
        final Machine old = existing.machine;
        final App oldApp = apps.get(old.app());
        unclaimGuest(existing);
        existing.machine = machine;
        edits++;
        claimGuest(existing);
        if (existing.scoped != null)
        {
            return finish();
        }
        final boolean sameApp = oldApp == app;
        if (!sameApp)
        {
            existing.pairLost = false;
            edits++;
        }
        if (existing.slot != SlotAllocator.NONE)
        {
            if (!sameApp || (pin != null && pin != existing.pair))
            {
                freeSlot(existing);
                placeNew(existing, app, pin);
                settle(oldApp);
            }
        }
        else if (!sameApp || (pin != null && !machine.pin().equals(old.pin())))
        {
            oldApp.waiting.remove(existing);
            placeNew(existing, app, pin);
            if (!sameApp)
            {
                settle(oldApp);
            }
        }
        else if (old.pin() != null && machine.pin() == null)
        {
            // A waiting machine lost its pin (region mode: only there does a pinned machine wait): it may now
            // take any slot of its app, from its place in the queue.
            settle(app);
        }
        return finish();
    }

    /**
     * Removes a machine: frees its slot or its machine-scoped pair, then places the app's waiting machines.
     *
     * @param machineId the machine id (field {@code machine}).
     * @return the outcome.
     */
    public Outcome removeMachine(final String machineId)
    {
        final Node node = machines.get(machineId);
        if (node == null)
        {
            return unknownMachine(machineId);
        }
        begin();
        touch(node);
        forced.add(node.id());
        final App app = apps.get(node.machine.app());
        if (node.slot != SlotAllocator.NONE)
        {
            freeSlot(node);
        }
        app.waiting.remove(node);
        if (node.scoped != null)
        {
            ipv4Owners.remove(node.scoped.ipv4());
            ipv6Owners.remove(node.scoped.ipv6());
        }
        unclaimGuest(node);
        handles.clear(node.handle);
        byHandle[node.handle] = null;
        machines.remove(machineId);
        settle(app);
        return finish();
    }

    /**
     * Gives a machine a legacy machine-scoped pair (DESIGN rule 1): it takes precedence over the app's pairs, so
     * the machine's slot, if any, is freed and the app's waiting machines are placed. Replaces a previous
     * machine-scoped pair of the same machine.
     *
     * @param machineId the machine.
     * @param pair      the pair; its region must be this host's.
     * @return the outcome.
     */
    public Outcome setMachineScopedPair(final String machineId, final EgressPair pair)
    {
        final Node node = machines.get(machineId);
        if (node == null)
        {
            return unknownMachine(machineId);
        }
        Refusal bad = checkPairAddresses(pair);
        if (bad != null)
        {
            return bad;
        }
        if (pair.equals(node.scoped))
        {
            return Done.NOTHING;
        }
        bad = checkFree(pair, machineId);
        if (bad != null)
        {
            return bad;
        }
        begin();
        touch(node);
        if (node.scoped != null)
        {
            ipv4Owners.remove(node.scoped.ipv4());
            ipv6Owners.remove(node.scoped.ipv6());
        }
        final App app = apps.get(node.machine.app());
        if (node.slot != SlotAllocator.NONE)
        {
            freeSlot(node);
        }
        app.waiting.remove(node);
        scope(node, pair);
        settle(app);
        return finish();
    }

    /**
     * Releases a machine's machine-scoped pair: the machine goes back to its pin, its app's pairs, or the host.
     *
     * @param machineId the machine.
     * @return the outcome; refused with {@code PAIR_FULL}/{@code PAIR_DRAINED} on field {@code pin} when the machine
     *     is pinned to a pair that cannot take it now.
     */
    public Outcome releaseMachineScopedPair(final String machineId)
    {
        final Node node = machines.get(machineId);
        if (node == null)
        {
            return unknownMachine(machineId);
        }
        if (node.scoped == null)
        {
            return noScopedPair(machineId);
        }
        final Pair pin = node.machine.pin() == null ? null : pairsByIpv4.get(node.machine.pin());
        if (pin != null)
        {
            final Refusal bad = checkRoom(pin);
            if (bad != null)
            {
                return bad;
            }
        }
        begin();
        touch(node);
        ipv4Owners.remove(node.scoped.ipv4());
        ipv6Owners.remove(node.scoped.ipv6());
        node.scoped = null;
        placeNew(node, apps.get(node.machine.app()), pin);
        return finish();
    }

    /**
     * Promotes a machine's machine-scoped pair to an app-scoped pair of its app, keeping both addresses (so
     * partners' allowlists stay valid). The machine gets a slot on that very pair, never elsewhere; then the app's
     * waiting machines are placed. A pin the machine had is dropped (its record's {@code pin} becomes null): the
     * machine now sits on its own promoted pair, which a pin to another pair would contradict.
     *
     * <p>The slot (the pair's lowest block other than 0) is claimed from the ledger first; the machine may land
     * nowhere else, so a claim not granted refuses the promote and changes nothing.
     *
     * @param machineId the machine.
     * @return the outcome; {@code SLOT_TAKEN} (field {@code machine}) when another host holds that slot,
     *     {@code LEDGER_UNAVAILABLE} (field {@code machine}) when the ledger cannot be asked.
     */
    public Outcome promote(final String machineId)
    {
        final Node node = machines.get(machineId);
        if (node == null)
        {
            return unknownMachine(machineId);
        }
        if (node.scoped == null)
        {
            return noScopedPair(machineId);
        }
        // The first block an empty pair hands out (SlotAllocator.placeOn): the lowest other than 0.
        final int block = layout.blockCount() > 1 ? 1 : 0;
        final SlotLedger.Claim answer = ledger.claim(node.scoped.ipv4(), block, machineId);
        if (answer == SlotLedger.Claim.TAKEN)
        {
            return new Refusal(Reason.SLOT_TAKEN, "machine", "machine " + machineId + " cannot be promoted: block "
                + block + " of its pair " + node.scoped.ipv4() + " is held by another host of the region");
        }
        if (answer != SlotLedger.Claim.CLAIMED)
        {
            return new Refusal(Reason.LEDGER_UNAVAILABLE, "machine", "machine " + machineId + " cannot be promoted "
                + "now: region ledger unavailable, so block " + block + " of " + node.scoped.ipv4()
                + " cannot be claimed; retry when it is back");
        }
        begin();
        touch(node);
        final EgressPair scoped = node.scoped;
        final App app = apps.get(node.machine.app());
        node.scoped = null;
        if (node.machine.pin() != null)
        {
            setPin(node, null);
        }
        final Pair pair = newPair(app, scoped);
        placeAt(node, pair, slots.assign(pair.index, block), How.PROMOTED);
        settle(app);
        return finish();
    }

    /**
     * Recreates a machine on an exact (pair, block), as after a restart, so that a restart never moves a machine.
     * A drained pair is allowed (drain keeps the machines it has). Repeating the same restore changes nothing.
     *
     * @param machine the machine.
     * @param pairIpv4 the IPv4 of a pair of the machine's app (field {@code pair}).
     * @param block    the block it held (field {@code block}).
     * @return the outcome; {@code SLOT_TAKEN} if another machine holds that block.
     */
    public Outcome restoreMachine(final Machine machine, final Ipv4Address pairIpv4, final int block)
    {
        return restore(machine, pairIpv4, block, false);
    }

    /**
     * Places a machine handed over from another host on the block the region's owner of record just gave it
     * (region mode): like {@link #restoreMachine}, except that another host's hold on the block, which the handover
     * ended, passes to the machine in the same step. Freeing the block first would let a machine waiting here take
     * it in between.
     *
     * @param machine  the machine.
     * @param pairIpv4 the pair of its slot.
     * @param block    the block.
     * @return the outcome.
     */
    public Outcome handOver(final Machine machine, final Ipv4Address pairIpv4, final int block)
    {
        return restore(machine, pairIpv4, block, true);
    }

    private Outcome restore(final Machine machine, final Ipv4Address pairIpv4, final int block,
        final boolean takeForeign)
    {
        Refusal bad = checkMachine(machine);
        if (bad != null)
        {
            return bad;
        }
        final Pair pair = pairIpv4 == null ? null : pairsByIpv4.get(pairIpv4);
        if (pair == null || !pair.app.id.equals(machine.app()))
        {
            return new Refusal(Reason.UNKNOWN_PAIR, "pair",
                "pair " + pairIpv4 + " is not an egress pair of app " + machine.app() + " on this host");
        }
        if (block < 0 || block >= layout.blockCount())
        {
            return new Refusal(Reason.INVALID, "block",
                "block must be 0.." + (layout.blockCount() - 1) + ", got " + block);
        }
        final Node existing = machines.get(machine.id());
        if (existing != null)
        {
            if (existing.machine.equals(machine) && existing.pair == pair
                && SlotAllocator.blockOf(existing.slot) == block)
            {
                return Done.NOTHING;
            }
            return alreadyExists(machine.id());
        }
        if (machine.pin() != null && !machine.pin().equals(pairIpv4))
        {
            return new Refusal(Reason.INVALID, "pin",
                "machine " + machine.id() + " is pinned to " + machine.pin() + " but its slot is on " + pairIpv4);
        }
        if (pair.holders[block] != null)
        {
            return new Refusal(Reason.SLOT_TAKEN, "block",
                "block " + block + " of pair " + pairIpv4 + " is already held by machine " + pair.holders[block].id());
        }
        final ForeignHolder foreign = pair.foreign[block];
        if (foreign != null && !takeForeign)
        {
            return new Refusal(Reason.SLOT_TAKEN, "block", "block " + block + " of pair " + pairIpv4
                + " is already held by machine " + foreign.machine() + " of host " + foreign.host());
        }
        begin();
        if (foreign != null)
        {
            // The other host's hold ends here; the block's bit is assigned again just below.
            pair.foreign[block] = null;
            slots.release(SlotAllocator.slot(pair.index, block));
        }
        ensureApp(machine.app());
        final Node node = newNode(machine);
        placeAt(node, pair, slots.assign(pair.index, block), How.RESTORED);
        return finish();
    }

    /**
     * Recreates a machine that has a machine-scoped pair, as after a restart, without ever giving it an app slot.
     *
     * @param machine the machine.
     * @param scoped  its machine-scoped pair.
     * @return the outcome.
     */
    public Outcome restoreMachineScoped(final Machine machine, final EgressPair scoped)
    {
        Refusal bad = checkMachine(machine);
        if (bad != null)
        {
            return bad;
        }
        final Node existing = machines.get(machine.id());
        if (existing != null)
        {
            return existing.machine.equals(machine) && scoped.equals(existing.scoped)
                ? Done.NOTHING : alreadyExists(machine.id());
        }
        bad = checkPairAddresses(scoped);
        if (bad == null)
        {
            bad = checkFree(scoped, machine.id());
        }
        if (bad == null && machine.pin() != null)
        {
            bad = checkPin(machine);
        }
        if (bad != null)
        {
            return bad;
        }
        begin();
        ensureApp(machine.app());
        final Node node = newNode(machine);
        scope(node, scoped);
        return finish();
    }

    // -------------------------------------------------------------------------------------- region (foreign)

    /**
     * Marks a block as held by a machine of another host, as the region's owner of record says (region mode). It
     * counts as held from now on. Repeating it changes nothing; a new host or machine for the block replaces the
     * old (or the {@link SlotHolder#UNKNOWN} one a lost claim left). If a machine of this host holds the block,
     * the owner of record wins: that machine leaves the block without releasing it (the slot is not this host's)
     * and is placed anew, claiming, or waits; it is listed as changed and counted in {@link #regionConflicts()}.
     * The app's waiting machines are then placed if they can be.
     *
     * <p>The caller applies the region's changes in the owner of record's order and drops a change older than
     * this host's own claim or release of the same slot, so a late echo never undoes a newer claim.
     *
     * @param pairIpv4 the IPv4 of one of this host's app pairs (field {@code pair}).
     * @param block    the block (field {@code block}).
     * @param host     the host whose machine holds it (field {@code host}).
     * @param machine  that machine's id (field {@code machine}).
     * @return the outcome.
     */
    public Outcome holdForeign(final Ipv4Address pairIpv4, final int block, final String host, final String machine)
    {
        Refusal bad = checkSlot(pairIpv4, block);
        final boolean quarantine = QUARANTINE.equals(host) && machine == null;
        if (bad == null && !quarantine)
        {
            bad = RequestText.idProblem(host, "host");
        }
        if (bad == null && !quarantine)
        {
            bad = RequestText.idProblem(machine, "machine");
        }
        if (bad != null)
        {
            return bad;
        }
        final Pair pair = pairsByIpv4.get(pairIpv4);
        final ForeignHolder holder = new ForeignHolder(host, machine);
        if (holder.equals(pair.foreign[block]))
        {
            return Done.NOTHING;
        }
        begin();
        final Node local = pair.holders[block];
        if (local != null)
        {
            // The bit stays set: the block passes from the local machine to the foreign holder.
            regionConflicts++;
            touch(local);
            forced.add(local.id());
            pair.holders[block] = null;
            local.pair = null;
            local.slot = SlotAllocator.NONE;
            pair.foreign[block] = holder;
            final Ipv4Address pin = local.machine.pin();
            placeNew(local, pair.app, pin == null ? null : pairsByIpv4.get(pin));
        }
        else
        {
            if (pair.foreign[block] == null)
            {
                slots.assign(pair.index, block);
            }
            pair.foreign[block] = holder;
        }
        settle(pair.app);
        return finish();
    }

    /**
     * Frees a block a machine of another host held (region mode), then places the app's waiting machines: a slot
     * freed anywhere in the region may place a machine waiting here. A block not held by another host is left
     * alone.
     *
     * @param pairIpv4 the IPv4 of one of this host's app pairs (field {@code pair}).
     * @param block    the block (field {@code block}).
     * @return the outcome.
     */
    public Outcome releaseForeign(final Ipv4Address pairIpv4, final int block)
    {
        final Refusal bad = checkSlot(pairIpv4, block);
        if (bad != null)
        {
            return bad;
        }
        final Pair pair = pairsByIpv4.get(pairIpv4);
        if (pair.foreign[block] == null)
        {
            return Done.NOTHING;
        }
        begin();
        pair.foreign[block] = null;
        slots.release(SlotAllocator.slot(pair.index, block));
        settle(pair.app);
        return finish();
    }

    /**
     * Places the waiting machines of every app that can be placed now, claiming their slots: the daemon calls it
     * when the region ledger is back after being unavailable. With the local ledger it changes nothing.
     *
     * @return the outcome.
     */
    public Outcome retryWaiting()
    {
        begin();
        for (final App app : apps.values())
        {
            settle(app);
        }
        return finish();
    }

    // --------------------------------------------------------------------------------------------- queries

    /**
     * One machine as the API shows it.
     *
     * @param handle            a small int, stable while the machine exists (reused after removal), for the ledger
     *                          and the kernel plan to key on.
     * @param machine           the machine record.
     * @param egress            which address it leaves from and why.
     * @param machineScopedPair its machine-scoped pair, or null.
     * @param pairLost          a restore lost its machine-scoped pair and it is held closed ({@link #holdMachineClosed}).
     */
    public record MachineView(int handle, Machine machine, Egress egress, EgressPair machineScopedPair,
        boolean pairLost)
    {
        /**
         * A machine not held closed.
         *
         * @param handle            the handle.
         * @param machine           the machine record.
         * @param egress            its egress.
         * @param machineScopedPair its machine-scoped pair, or null.
         */
        public MachineView(final int handle, final Machine machine, final Egress egress,
            final EgressPair machineScopedPair)
        {
            this(handle, machine, egress, machineScopedPair, false);
        }
    }

    /**
     * One held block of a pair.
     *
     * @param block   the block index.
     * @param machine the machine id holding it; {@link #UNKNOWN} for another host's machine not named yet.
     * @param host    null for a machine of this host; else the host whose machine holds the block (region mode),
     *                {@link #UNKNOWN} when only a lost claim told that the block is held.
     */
    public record SlotHolder(int block, String machine, String host)
    {
        /** The host and machine of a block a claim found held before the region sync named its holder. */
        public static final String UNKNOWN = "(unknown)";
    }

    /**
     * One app-scoped pair as the API shows it.
     *
     * @param app      the owning app.
     * @param pair     the addresses and region.
     * @param capacity slots on the pair (the block count).
     * @param used     held slots, by machines of this host and (region mode) of other hosts.
     * @param free     free slots.
     * @param drained  whether it takes new machines.
     * @param slots    the held blocks in block order, other hosts' included.
     */
    public record PairView(String app, EgressPair pair, int capacity, int used, int free, boolean drained,
        List<SlotHolder> slots)
    {
    }

    /**
     * One app as the API shows it.
     *
     * @param id         the app id.
     * @param failClosed whether machines without a slot are refused traffic (else masqueraded).
     * @param pairs      its pairs' IPv4 addresses, in address order.
     * @param freeSlots  free slots on its non-drained pairs (slots other hosts hold are not free).
     * @param waiting    ids of its PENDING or HOST machines, first come first.
     * @param pairsLost  a restore lost its pairs and it is held closed until a pair is added ({@link #holdClosed}).
     */
    public record AppView(String id, boolean failClosed, List<Ipv4Address> pairs, int freeSlots, List<String> waiting,
        boolean pairsLost)
    {
        /**
         * An app not held closed.
         *
         * @param id         the app id.
         * @param failClosed fail-closed.
         * @param pairs      its pairs.
         * @param freeSlots  its free slots.
         * @param waiting    its waiting machines.
         */
        public AppView(final String id, final boolean failClosed, final List<Ipv4Address> pairs, final int freeSlots,
            final List<String> waiting)
        {
            this(id, failClosed, pairs, freeSlots, waiting, false);
        }
    }

    /**
     * The whole state, as values: two snapshots are equal exactly when the allocator state is the same (including
     * the tie-break generator, so a refused call is shown to have drawn nothing, and other hosts' slots).
     *
     * @param apps         apps by id.
     * @param pairs        pairs by app, then address.
     * @param machines     machines by id.
     * @param randomState  the tie-break generator's state.
     */
    public record Snapshot(List<AppView> apps, List<PairView> pairs, List<MachineView> machines, long randomState)
    {
    }

    /**
     * Which address a machine leaves from.
     *
     * @param machineId the machine.
     * @return its egress, or empty if unknown.
     */
    public Optional<Egress> egress(final String machineId)
    {
        final Node node = machines.get(machineId);
        return node == null ? Optional.empty() : Optional.of(egressOf(node));
    }

    /**
     * One machine.
     *
     * @param machineId the machine.
     * @return its view, or empty if unknown.
     */
    public Optional<MachineView> machine(final String machineId)
    {
        final Node node = machines.get(machineId);
        return node == null ? Optional.empty() : Optional.of(viewOf(node));
    }

    /**
     * A machine's handle.
     *
     * @param machineId the machine.
     * @return its handle, or -1 if unknown.
     */
    public int handle(final String machineId)
    {
        final Node node = machines.get(machineId);
        return node == null ? -1 : node.handle;
    }

    /**
     * All machines.
     *
     * @return machine views by id.
     */
    public List<MachineView> machines()
    {
        final List<MachineView> views = new ArrayList<>(machines.size());
        for (final Node node : machines.values())
        {
            views.add(viewOf(node));
        }
        return views;
    }

    /**
     * Receives one machine's placement as the kernel plan and the state file need it, without a view being built:
     * what a consumer that keeps a copy of the machines compares against (by reference: {@link Machine} and
     * {@link EgressPair} are immutable, and a changed record or placement is a new reference or number).
     */
    @FunctionalInterface
    public interface MachineScan
    {
        /**
         * One machine.
         *
         * @param handle    its handle (stable while it exists, reused after removal).
         * @param machine   its record.
         * @param scope     its scope.
         * @param pair      the pair it leaves from (app or machine-scoped), or null.
         * @param block     its block when app-scoped, else -1.
         * @param firstPort its first port, or -1 when it has no pair.
         * @param lastPort  its last port, or -1 when it has no pair.
         * @param scoped    its machine-scoped pair, or null.
         * @param pairLost  whether it is held closed after a restore lost its machine-scoped pair.
         */
        void machine(int handle, Machine machine, Scope scope, EgressPair pair, int block, int firstPort, int lastPort,
            EgressPair scoped, boolean pairLost);
    }

    /**
     * A count that moves whenever anything {@link #scanMachines} reports may have changed (every operation moves it).
     *
     * @return the count.
     */
    public long edits()
    {
        return edits;
    }

    /**
     * Walks every machine in id order without allocating (the incremental consumers' O(n) scan).
     *
     * @param scan receives each machine.
     */
    public void scanMachines(final MachineScan scan)
    {
        for (final Node node : machines.values())
        {
            report(node, scan);
        }
    }

    private void report(final Node node, final MachineScan scan)
    {
        switch (node.scope)
        {
            case APP ->
            {
                final int block = SlotAllocator.blockOf(node.slot);
                scan.machine(node.handle, node.machine, Scope.APP, node.pair.pair, block, layout.firstPort(block),
                    layout.lastPort(block), node.scoped, node.pairLost);
            }
            case MACHINE -> scan.machine(node.handle, node.machine, Scope.MACHINE, node.scoped, -1,
                BlockLayout.ANY_FIRST_PORT, BlockLayout.ANY_LAST_PORT, node.scoped, node.pairLost);
            default -> scan.machine(node.handle, node.machine, node.scope, null, -1, -1, -1, node.scoped,
                node.pairLost);
        }
    }

    /**
     * Forgets the handles changed so far and makes {@code reader} the one {@link #scanChanged} serves: call it
     * right before a {@link #scanMachines} that brings the reader's copy up to date.
     *
     * @param reader the consumer (one {@code MachineMirror}).
     */
    public void resetChanged(final Object reader)
    {
        changedReader = reader;
        clearChanged();
    }

    /**
     * Walks only the handles whose machine changed since {@code reader} last walked them (by this or, after
     * {@link #resetChanged}, by {@link #scanMachines}), each once, without allocating: a machine still held is
     * reported as {@link #scanMachines} reports it, a handle that holds none now to {@code gone}. Refuses (and walks
     * nothing) when another reader took the changes since: the caller then scans every machine.
     *
     * @param reader the consumer, as given to {@link #resetChanged}.
     * @param scan   receives each changed machine, in no particular order.
     * @param gone   receives each changed handle that holds no machine.
     * @return false when {@code reader} must scan every machine instead.
     */
    public boolean scanChanged(final Object reader, final MachineScan scan, final IntConsumer gone)
    {
        if (reader != changedReader)
        {
            return false;
        }
        for (int i = 0; i < changedCount; i++)
        {
            final int h = changedHandles[i];
            final Node node = h < byHandle.length ? byHandle[h] : null;
            if (node == null)
            {
                gone.accept(h);
            }
            else
            {
                report(node, scan);
            }
        }
        clearChanged();
        return true;
    }

    private void clearChanged()
    {
        for (int i = 0; i < changedCount; i++)
        {
            changedSet.clear(changedHandles[i]);
        }
        changedCount = 0;
    }

    /** A machine's reported fields are about to change (or its handle to be freed). */
    private void changed(final Node node)
    {
        final int h = node.handle;
        if (changedSet.get(h))
        {
            return;
        }
        changedSet.set(h);
        if (changedCount == changedHandles.length)
        {
            changedHandles = Arrays.copyOf(changedHandles, changedCount * 2);
        }
        changedHandles[changedCount++] = h;
    }

    /**
     * One app as the state file keeps it: no slots, so it costs O(its pairs and waiting machines).
     *
     * @param id         the app id.
     * @param failClosed whether it is fail-closed.
     * @param pairsLost  whether a restore lost its pairs ({@link #holdClosed}).
     * @param pairs      its pairs, by address.
     * @param drained    whether each of {@code pairs} is drained.
     * @param waiting    ids of its waiting machines, first come first.
     */
    public record AppState(String id, boolean failClosed, boolean pairsLost, List<EgressPair> pairs,
        boolean[] drained, List<String> waiting)
    {
    }

    /**
     * Every app as the state file keeps it, by id (cheap: O(apps + pairs + waiting machines), no slot views).
     *
     * @return a new list.
     */
    public List<AppState> appStates()
    {
        final List<AppState> states = new ArrayList<>(apps.size());
        for (final App app : apps.values())
        {
            final List<EgressPair> pairs = new ArrayList<>(app.pairs.size());
            final boolean[] drained = new boolean[app.pairs.size()];
            for (final Pair pair : app.pairs.values())
            {
                drained[pairs.size()] = slots.isDrained(pair.index);
                pairs.add(pair.pair);
            }
            final List<String> waiting = new ArrayList<>(app.waiting.size());
            for (final Node node : app.waiting)
            {
                waiting.add(node.id());
            }
            states.add(new AppState(app.id, app.failClosed, app.pairsLost, pairs, drained, waiting));
        }
        return states;
    }

    /**
     * The app-scoped pairs' addresses, by app then address, without their slots (cheap: O(pairs)).
     *
     * @return a new list.
     */
    public List<EgressPair> appPairs()
    {
        final List<EgressPair> pairs = new ArrayList<>(pairsByIpv4.size());
        for (final App app : apps.values())
        {
            for (final Pair pair : app.pairs.values())
            {
                pairs.add(pair.pair);
            }
        }
        return pairs;
    }

    /**
     * All app-scoped pairs.
     *
     * @return pair views by app, then address.
     */
    public List<PairView> pairs()
    {
        final List<PairView> views = new ArrayList<>();
        for (final App app : apps.values())
        {
            for (final Pair pair : app.pairs.values())
            {
                final List<SlotHolder> holders = new ArrayList<>();
                for (int b = 0; b < pair.holders.length; b++)
                {
                    if (pair.holders[b] != null)
                    {
                        holders.add(new SlotHolder(b, pair.holders[b].id(), null));
                    }
                    else if (pair.foreign[b] != null)
                    {
                        holders.add(new SlotHolder(b, pair.foreign[b].machine(), pair.foreign[b].host()));
                    }
                }
                final int used = slots.usedSlots(pair.index);
                views.add(new PairView(app.id, pair.pair, layout.blockCount(), used, layout.blockCount() - used,
                    slots.isDrained(pair.index), List.copyOf(holders)));
            }
        }
        return views;
    }

    /**
     * All apps.
     *
     * @return app views by id.
     */
    public List<AppView> apps()
    {
        final List<AppView> views = new ArrayList<>(apps.size());
        for (final App app : apps.values())
        {
            final List<String> waiting = new ArrayList<>(app.waiting.size());
            for (final Node node : app.waiting)
            {
                waiting.add(node.id());
            }
            views.add(new AppView(app.id, app.failClosed, List.copyOf(app.pairs.keySet()),
                slots.freeSlotsOfApp(app.index), List.copyOf(waiting), app.pairsLost));
        }
        return views;
    }

    /**
     * Whether some app has a machine waiting for a slot while it has a free one: what a ledger whose slots can free
     * up outside this allocator (the region's) asks once a second, so it walks the apps without building views.
     *
     * @return true if a waiting machine could be placed now.
     */
    public boolean anyWaitingWithFreeSlot()
    {
        for (final App app : apps.values())
        {
            if (!app.waiting.isEmpty() && slots.freeSlotsOfApp(app.index) > 0)
            {
                return true;
            }
        }
        return false;
    }

    /**
     * The whole state as a value.
     *
     * @return a snapshot.
     */
    public Snapshot snapshot()
    {
        return new Snapshot(apps(), pairs(), machines(), slots.randomState());
    }

    // ---------------------------------------------------------------------------------------------- checks

    private Refusal checkMachine(final Machine machine)
    {
        if (machine == null)
        {
            return new Refusal(Reason.INVALID, "machine", "machine must be given");
        }
        Refusal bad = RequestText.idProblem(machine.id(), "id");
        if (bad == null)
        {
            bad = RequestText.idProblem(machine.app(), "app");
        }
        if (bad != null)
        {
            return bad;
        }
        bad = RequestText.interfaceProblem(machine.iface());
        if (bad != null)
        {
            return bad;
        }
        if (machine.ipv4() == null && machine.ipv6() == null)
        {
            return new Refusal(Reason.INVALID, "ipv4",
                "machine " + machine.id() + " needs at least one guest address (ipv4 or ipv6)");
        }
        if (machine.ipv4() != null)
        {
            final String problem = guestProblem(machine.ipv4());
            if (problem != null)
            {
                return new Refusal(Reason.INVALID, "ipv4", "ipv4 " + machine.ipv4() + " is " + problem
                    + ": a guest address must be a unicast address the guest can send from");
            }
        }
        if (machine.ipv6() != null)
        {
            final String problem = guestProblem(machine.ipv6());
            if (problem != null)
            {
                return new Refusal(Reason.INVALID, "ipv6", "ipv6 " + machine.ipv6() + " is " + problem
                    + ": a guest address must be a unicast address the guest can send from");
            }
        }
        final Node other = byIface.get(machine.iface());
        if (other != null && !other.id().equals(machine.id()))
        {
            return new Refusal(Reason.DUPLICATE_INTERFACE, RequestText.INTERFACE_FIELD, RequestText.INTERFACE_FIELD
                + " " + machine.iface() + " is already the guest interface of machine " + other.id());
        }
        final Owner guest = new Owner(OwnerKind.GUEST, machine.id());
        if (machine.ipv4() != null)
        {
            final Owner owner = ipv4Owners.get(machine.ipv4());
            if (owner != null && !owner.equals(guest))
            {
                return inUse("ipv4", machine.ipv4().toString(), owner);
            }
        }
        if (machine.ipv6() != null)
        {
            final Owner owner = ipv6Owners.get(machine.ipv6());
            if (owner != null && !owner.equals(guest))
            {
                return inUse("ipv6", machine.ipv6().toString(), owner);
            }
        }
        return null;
    }

    /** A pin must name a pair of the machine's own app. */
    private Refusal checkPin(final Machine machine)
    {
        final Pair pin = pairsByIpv4.get(machine.pin());
        if (pin == null)
        {
            return new Refusal(Reason.UNKNOWN_PAIR, "pin",
                "pin " + machine.pin() + " is not an egress pair on this host");
        }
        if (!pin.app.id.equals(machine.app()))
        {
            return new Refusal(Reason.PIN_FOREIGN_PAIR, "pin",
                "pin " + machine.pin() + " is not a pair of app " + machine.app() + ": a machine may only be pinned "
                    + "to a pair of its own app");
        }
        return null;
    }

    private Refusal checkRoom(final Pair pin)
    {
        if (slots.isDrained(pin.index))
        {
            return new Refusal(Reason.PAIR_DRAINED, "pin",
                "pin " + pin.pair.ipv4() + " is drained: it takes no new machine");
        }
        if (slots.freeSlots(pin.index) == 0)
        {
            return new Refusal(Reason.PAIR_FULL, "pin",
                "pin " + pin.pair.ipv4() + " is full: all " + layout.blockCount() + " slots are held");
        }
        return null;
    }

    /** The app must be known and the address one of its pairs. */
    private Refusal checkPair(final String appId, final Ipv4Address ipv4)
    {
        final Refusal bad = RequestText.idProblem(appId, "app");
        if (bad != null)
        {
            return bad;
        }
        final App app = apps.get(appId);
        if (app == null)
        {
            return new Refusal(Reason.UNKNOWN_APP, "app", "app " + appId + " is not known on this host");
        }
        final Pair pair = ipv4 == null ? null : app.pairs.get(ipv4);
        if (pair == null)
        {
            return new Refusal(Reason.UNKNOWN_PAIR, "ipv4", "ipv4 " + ipv4 + " is not an egress pair of app " + appId);
        }
        return null;
    }

    /** A (pair, block) named by the region sync: one of this host's app pairs, a block of the layout. */
    private Refusal checkSlot(final Ipv4Address pairIpv4, final int block)
    {
        if (pairIpv4 == null || !pairsByIpv4.containsKey(pairIpv4))
        {
            return new Refusal(Reason.UNKNOWN_PAIR, "pair", "pair " + pairIpv4 + " is not an app pair on this host");
        }
        if (block < 0 || block >= layout.blockCount())
        {
            return new Refusal(Reason.INVALID, "block",
                "block must be 0.." + (layout.blockCount() - 1) + ", got " + block);
        }
        return null;
    }

    private Refusal checkPairAddresses(final EgressPair pair)
    {
        if (pair == null)
        {
            return new Refusal(Reason.INVALID, "ipv4", "a pair needs ipv4 and ipv6");
        }
        if (!settings.region().equals(pair.region()))
        {
            return wrongRegion(pair.region());
        }
        return RequestText.pairAddressProblem(pair.ipv4(), pair.ipv6());
    }

    /** An egress pair's addresses must be free, except that a machine may keep its own machine-scoped ones. */
    private Refusal checkFree(final EgressPair pair, final String scopedMachine)
    {
        final Owner mine = scopedMachine == null ? null : new Owner(OwnerKind.MACHINE_SCOPED, scopedMachine);
        final Owner owner4 = ipv4Owners.get(pair.ipv4());
        if (owner4 != null && !owner4.equals(mine))
        {
            return inUse("ipv4", pair.ipv4().toString(), owner4);
        }
        final Owner owner6 = ipv6Owners.get(pair.ipv6());
        if (owner6 != null && !owner6.equals(mine))
        {
            return inUse("ipv6", pair.ipv6().toString(), owner6);
        }
        return null;
    }

    /**
     * Why an IPv4 cannot be a guest's source address, or null if it can. A guest's address is routed to its
     * interface and used as a packet source: the ranges no egress address may be in (RequestText) apply, except
     * link-local 169.254.0.0/16, which a guest may hold (the host's side of each guest link uses it too).
     */
    static String guestProblem(final Ipv4Address address)
    {
        return (address.bits() >>> 16) == 0xA9FE ? null : RequestText.pairProblem(address);
    }

    /** Why an IPv6 cannot be a guest's source address, or null if it can: the same ranges as an egress address. */
    static String guestProblem(final Ipv6Address address)
    {
        return RequestText.pairProblem(address);
    }

    private Refusal wrongRegion(final String region)
    {
        return RequestText.wrongRegion(region, settings.region());
    }

    private static Refusal inUse(final String field, final String address, final Owner owner)
    {
        return new Refusal(Reason.ADDRESS_IN_USE, field, field + " " + address + " is already " + owner);
    }

    private static Refusal unknownMachine(final String machineId)
    {
        return new Refusal(Reason.UNKNOWN_MACHINE, "machine",
            "machine " + RequestText.quote(machineId) + " is not known on this host");
    }

    private static Refusal noScopedPair(final String machineId)
    {
        return new Refusal(Reason.NO_MACHINE_SCOPED_PAIR, "machine",
            "machine " + machineId + " has no machine-scoped pair");
    }

    private static Refusal alreadyExists(final String machineId)
    {
        return new Refusal(Reason.ALREADY_EXISTS, "id",
            "id " + machineId + " is already a machine with another record or placement; "
                + "restore only recreates machines");
    }

    // ------------------------------------------------------------------------------------------- mutations

    private App ensureApp(final String appId)
    {
        App app = apps.get(appId);
        if (app == null)
        {
            app = new App(appId, apps.size());
            apps.put(appId, app);
        }
        return app;
    }

    private Pair newPair(final App app, final EgressPair egressPair)
    {
        final int index = slots.addPair(app.index, egressPair.ipv4().bits());
        if (index >= pairsByIndex.length)
        {
            pairsByIndex = Arrays.copyOf(pairsByIndex, Math.max(index + 1, pairsByIndex.length * 2));
        }
        final Pair pair = new Pair(egressPair, app, index, layout.blockCount());
        app.pairsLost = false;
        pairsByIndex[index] = pair;
        app.pairs.put(egressPair.ipv4(), pair);
        pairsByIpv4.put(egressPair.ipv4(), pair);
        final Owner owner = new Owner(OwnerKind.APP_PAIR, app.id);
        ipv4Owners.put(egressPair.ipv4(), owner);
        ipv6Owners.put(egressPair.ipv6(), owner);
        return pair;
    }

    private Node newNode(final Machine machine)
    {
        final int handle = handles.nextClearBit(0);
        handles.set(handle);
        final Node node = new Node(machine, handle);
        if (handle >= byHandle.length)
        {
            byHandle = Arrays.copyOf(byHandle, Math.max(handle + 1, byHandle.length * 2));
        }
        byHandle[handle] = node;
        machines.put(machine.id(), node);
        touch(node);
        forced.add(machine.id());
        claimGuest(node);
        return node;
    }

    private void claimGuest(final Node node)
    {
        final Owner owner = new Owner(OwnerKind.GUEST, node.id());
        byIface.put(node.machine.iface(), node);
        if (node.machine.ipv4() != null)
        {
            ipv4Owners.put(node.machine.ipv4(), owner);
        }
        if (node.machine.ipv6() != null)
        {
            ipv6Owners.put(node.machine.ipv6(), owner);
        }
    }

    private void unclaimGuest(final Node node)
    {
        byIface.remove(node.machine.iface());
        if (node.machine.ipv4() != null)
        {
            ipv4Owners.remove(node.machine.ipv4());
        }
        if (node.machine.ipv6() != null)
        {
            ipv6Owners.remove(node.machine.ipv6());
        }
    }

    private void setPin(final Node node, final Ipv4Address pin)
    {
        touch(node);
        forced.add(node.id());
        final Machine m = node.machine;
        node.machine = new Machine(m.id(), m.app(), m.iface(), m.ipv4(), m.ipv6(), pin);
    }

    private void scope(final Node node, final EgressPair pair)
    {
        touch(node);
        node.pairLost = false;
        node.scoped = pair;
        node.scope = Scope.MACHINE;
        node.pair = null;
        node.slot = SlotAllocator.NONE;
        final Owner owner = new Owner(OwnerKind.MACHINE_SCOPED, node.id());
        ipv4Owners.put(pair.ipv4(), owner);
        ipv6Owners.put(pair.ipv6(), owner);
        node.reason = "machine-scoped pair " + pair.ipv4() + " / " + pair.ipv6() + " (takes precedence over app pairs)";
    }

    /**
     * A machine without a slot or machine-scoped pair: on its pin, or at the end of the app's queue. A pinned
     * machine whose claims on its pin are not granted (region mode) waits in the queue too.
     */
    private void placeNew(final Node node, final App app, final Pair pin)
    {
        if (pin != null)
        {
            final int slot = claim(node, app, pin);
            if (slot != SlotAllocator.NONE)
            {
                placeAt(node, pin, slot, How.PINNED);
                return;
            }
        }
        enqueue(node, app);
        settle(app);
    }

    /**
     * A new slot for a machine, claimed from the ledger: on its pin, else by {@link SlotAllocator#place}. A slot
     * the ledger says is taken stays marked as another host's and the next candidate is tried, up to
     * {@link #MAX_CLAIMS} times; then the app makes no further claim in this operation. An unavailable ledger
     * gives the candidate back and stops every further claim in this operation.
     *
     * @return the slot, or NONE: no room, the ledger is down, or the races were lost.
     */
    private int claim(final Node node, final App app, final Pair pin)
    {
        if (racesLost.contains(app))
        {
            return SlotAllocator.NONE;
        }
        for (int attempt = 0; attempt < MAX_CLAIMS; attempt++)
        {
            if (ledgerDown)
            {
                return SlotAllocator.NONE;
            }
            final int slot = pin == null ? slots.place(app.index) : slots.placeOn(pin.index);
            if (slot == SlotAllocator.NONE)
            {
                return SlotAllocator.NONE;
            }
            final Pair pair = pairsByIndex[SlotAllocator.pairOf(slot)];
            final int block = SlotAllocator.blockOf(slot);
            final SlotLedger.Claim answer = ledger.claim(pair.pair.ipv4(), block, node.id());
            if (answer == SlotLedger.Claim.CLAIMED)
            {
                return slot;
            }
            if (answer == SlotLedger.Claim.TAKEN)
            {
                pair.foreign[block] = UNKNOWN_FOREIGN;
                continue;
            }
            slots.release(slot);
            ledgerDown = true;
            return SlotAllocator.NONE;
        }
        racesLost.add(app);
        return SlotAllocator.NONE;
    }

    private void placeAt(final Node node, final Pair pair, final int slot, final How how)
    {
        if (slot == SlotAllocator.NONE)
        {
            throw new IllegalStateException("no slot on " + pair.pair.ipv4() + " after checking it had room");
        }
        touch(node);
        node.pairLost = false;
        final int block = SlotAllocator.blockOf(slot);
        node.scope = Scope.APP;
        node.pair = pair;
        node.slot = slot;
        node.how = how;
        pair.holders[block] = node;
        node.reason = appReason(pair, block, how);
    }

    private String appReason(final Pair pair, final int block, final How how)
    {
        return regionReasons
            ? "slot " + block + " of app pair " + pair.pair.ipv4() + ", region " + pair.pair.region()
                + " (" + how.region + ")"
            : "slot " + block + " on app pair " + pair.pair.ipv4() + " (" + how.local + ")";
    }

    /** A machine of this host gives up its slot: back to the allocator, and released to the ledger. */
    private void freeSlot(final Node node)
    {
        touch(node);
        final Pair pair = node.pair;
        final int block = SlotAllocator.blockOf(node.slot);
        slots.release(node.slot);
        pair.holders[block] = null;
        node.pair = null;
        node.slot = SlotAllocator.NONE;
        ledger.release(pair.pair.ipv4(), block, node.id());
    }

    private Pair pinOf(final Node node)
    {
        return node.machine.pin() == null ? null : pairsByIpv4.get(node.machine.pin());
    }

    private void enqueue(final Node node, final App app)
    {
        touch(node);
        node.scope = Scope.PENDING;
        app.waiting.add(node);
    }

    /**
     * Places the app's waiting machines, first come first, while a slot can be had; then explains the rest. A
     * waiting pinned machine (region mode only: its claims were not granted) looks only at its pin and, when that
     * has no room, lets the machines behind it go first.
     */
    private void settle(final App app)
    {
        final Iterator<Node> it = app.waiting.iterator();
        while (it.hasNext())
        {
            final Node node = it.next();
            final Pair pin = pinOf(node);
            final int slot = claim(node, app, pin);
            if (slot == SlotAllocator.NONE)
            {
                if (pin != null && !ledgerDown && !racesLost.contains(app))
                {
                    continue;
                }
                break;
            }
            it.remove();
            placeAt(node, pairsByIndex[SlotAllocator.pairOf(slot)], slot, pin == null ? How.MOST_FREE : How.PINNED);
        }
        if (app.waiting.isEmpty())
        {
            return;
        }
        final int pairCount = app.pairs.size();
        int drained = 0;
        for (final Pair pair : app.pairs.values())
        {
            drained += slots.isDrained(pair.index) ? 1 : 0;
        }
        final String full = "all " + pairCount + (pairCount == 1 ? " pair" : " pairs") + " of app " + app.id
            + (drained == 0 ? " are full" : " are full or drained (" + drained + " drained)");
        final int appRoom = slots.freeSlotsOfApp(app.index);
        for (final Node node : app.waiting)
        {
            touch(node);
            if (pairCount == 0 && app.failClosed && (app.pairsLost || node.pairLost))
            {
                node.scope = Scope.PENDING;
                node.reason = (app.pairsLost ? "the egress pairs of app " + app.id : "the machine-scoped pair of machine "
                    + node.id()) + " could not be restored from the state file: pending (fail-closed), its traffic is "
                    + "refused until a pair is added";
                continue;
            }
            if (pairCount == 0)
            {
                node.scope = Scope.HOST;
                node.reason = "app " + app.id + " has no egress pairs in region " + settings.region()
                    + ": masqueraded to the host address";
                continue;
            }
            node.scope = app.failClosed ? Scope.PENDING : Scope.HOST;
            final Pair pin = pinOf(node);
            final boolean room = pin == null ? appRoom > 0
                : !slots.isDrained(pin.index) && slots.freeSlots(pin.index) > 0;
            if (!room || (!ledgerDown && !racesLost.contains(app)))
            {
                final String why = pin == null ? full : "pin " + pin.pair.ipv4() + " is "
                    + (slots.isDrained(pin.index) ? "drained" : "full across the region");
                node.reason = app.failClosed
                    ? why + ": pending (fail-closed), its traffic is refused until a slot frees"
                    : why + ": fell back to the host address (app " + app.id + " is not fail-closed)";
            }
            else if (ledgerDown)
            {
                node.reason = app.failClosed
                    ? "region ledger unavailable: pending (fail-closed), its traffic is refused until a slot of app "
                        + app.id + " can be claimed"
                    : "region ledger unavailable: fell back to the host address (app " + app.id
                        + " opted out of fail-closed); retried when the ledger is back";
            }
            else
            {
                final String lost = "claims for a slot of app " + app.id + " kept losing races to other hosts ("
                    + MAX_CLAIMS + " tries)";
                node.reason = app.failClosed
                    ? lost + ": pending (fail-closed), its traffic is refused; retried when the region's slots change"
                    : lost + ": fell back to the host address (app " + app.id + " is not fail-closed); retried when "
                        + "the region's slots change";
            }
        }
    }

    private void touch(final Node node)
    {
        edits++;
        changed(node);
        if (!touched.containsKey(node))
        {
            touched.put(node, new Placement(node.scope, node.pair, node.slot, node.scoped));
            order.add(node.id());
        }
    }

    private void begin()
    {
        edits++;
        touched.clear();
        order.clear();
        forced.clear();
        ledgerDown = false;
        racesLost.clear();
    }

    private Done finish()
    {
        final List<String> changed = new ArrayList<>();
        final Map<String, Placement> before = new HashMap<>();
        for (final Map.Entry<Node, Placement> e : touched.entrySet())
        {
            before.put(e.getKey().id(), e.getValue());
        }
        for (final String id : order)
        {
            final Node node = machines.get(id);
            if (forced.contains(id) || node == null
                || !before.get(id).equals(new Placement(node.scope, node.pair, node.slot, node.scoped)))
            {
                changed.add(id);
            }
        }
        begin();
        return changed.isEmpty() ? Done.NOTHING : new Done(changed);
    }

    private MachineView viewOf(final Node node)
    {
        return new MachineView(node.handle, node.machine, egressOf(node), node.scoped, node.pairLost);
    }

    private Egress egressOf(final Node node)
    {
        switch (node.scope)
        {
            case APP:
            {
                final int block = SlotAllocator.blockOf(node.slot);
                return new Egress(Scope.APP, node.pair.pair, block, layout.firstPort(block), layout.lastPort(block),
                    node.reason);
            }
            case MACHINE:
                return new Egress(Scope.MACHINE, node.scoped, -1, BlockLayout.ANY_FIRST_PORT, BlockLayout.ANY_LAST_PORT,
                    node.reason);
            default:
                return new Egress(node.scope, null, -1, -1, -1, node.reason);
        }
    }
}
