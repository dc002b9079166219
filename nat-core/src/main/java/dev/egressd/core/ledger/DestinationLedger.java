package dev.egressd.core.ledger;

import dev.egressd.core.model.HostSettings;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The allocation-free destination ledger the daemon runs: per machine and per destination IP, the live
 * connections (keyed by conntrack id) and their count against the destination cap, fed by conntrack events.
 *
 * <h2>Implementation notes</h2>
 *
 * <b>Layout.</b> Three structures, all primitive arrays, each record interleaved in one array so that one
 * event touches one cache line per structure (Agrona's "one array holds keys and values"):
 * <ol>
 *     <li><i>Connections</i>: an open-addressing table keyed by conntrack id, power-of-two capacity, linear
 *     probing, two longs per slot in {@code conns}: {@code [2i]} the id, {@code [2i+1]} the meta word
 *     {@code entry << 32 | port << 16 | mark}, where entry is the connection's destination entry, port the
 *     translated port (a u16, as conntrack gives it) and mark the low 16 bits of the resync generation of its
 *     last open. {@code EMPTY_META = -1} (entry -1) marks a free slot, so every long is a usable id. The home
 *     slot is the top bits of {@code id * golden ratio} (Fibonacci hashing), so sequential ids spread.</li>
 *     <li><i>Destination entries</i>: one per (machine, destination) in use, in a pool with stable indices, three
 *     longs each in {@code entries}: {@code [3e]} destination high, {@code [3e+1]} destination low,
 *     {@code [3e+2]} {@code machine << 32 | count}. Stable indices let a connection point at its entry, so a close
 *     never hashes the destination. An open-addressing index {@code entrySlots[i]}
 *     (a {@code long}: the key's 32-bit hash {@code << 32 | pool index}, {@code EMPTY_SLOT = -1}) finds the entry of
 *     a (machine, high, low) key; keeping the hash in the slot lets probes skip other keys and lets backward
 *     shifts and growth place entries without reading the pool (growth and the idle sweep read only the count
 *     word). Freed pool indices go on a stack for reuse.
 *     Destinations are 128-bit keys; IPv4 is mapped into {@code ::ffff:0:0/96} ({@link LedgerKeys}), one code path.
 *     <i>Lazy free</i>: an entry whose count drops to 0 stays indexed, <i>idle</i>, so a destination that churns
 *     (one connection at a time: the common case) finds its entry again instead of inserting and deleting it on
 *     every open and close, and a close never hashes the destination. Idle entries are invisible ({@link #count} 0,
 *     skipped by {@link #topDestinations}, not in {@link #liveDestinations()}, which counts {@code liveEntries}).
 *     They are dropped only when an insert finds the index at its load limit ({@code makeEntryRoom}): if live
 *     entries fill half the limit or more the index doubles (growth drops idle entries as it rehashes), otherwise
 *     one in-place pass deletes every idle entry. Either way at least half the limit is free afterwards, so the
 *     O(capacity) pass is amortized O(1) per insert, and memory follows the peak of live destinations, not
 *     history. (DestinationLedgerBenchmark at 0% fill, old and new alternating in one JVM: 24-33 -> 17-23
 *     ns/op, about 1.3x; in one JMH run, 1 entry 38 -> 25 ns/op, 1,000 entries 52 -> 28.)</li>
 *     <li><i>Machines</i>, indexed by handle, six ints each in {@code machines}: first port ({@code 0} = not
 *     registered), last port, live connections, and how many of its destinations are at or above the warning
 *     threshold, the critical threshold and the cap + 1.</li>
 * </ol>
 *
 * <b>Deletion</b> is backward-shift (Knuth vol. 3, algorithm R): no tombstones, so probe lengths depend only on
 * the live load, never on history, and no rehash is needed to clean up. The connection table is kept at most 1/4
 * full, the entry index (live and idle entries) at most 3/8 before idle entries are swept.
 *
 * <b>The last entry.</b> An open first compares its key with the entry the previous open counted on
 * ({@code lastEntry}): an application's connections to one destination (a pool filling, a burst of requests) arrive
 * as consecutive opens and skip the index probe; a miss costs three compares.
 *
 * <b>Saturation without a scan.</b> Counts move by exactly 1 per event, so a destination reaches a threshold only by
 * being raised to exactly it, and leaves it only by being lowered from exactly it. Each machine keeps how many of
 * its destinations are at or above each threshold; when that number leaves 0 (or returns to it) the machine enters
 * (or leaves) {@link #machinesAtWarning()}, {@link #machinesAtCritical()} or {@link #machinesOverCap()}, and the
 * open says so with a {@code REACHED_*} bit. Below {@link #warningThreshold()} (almost every event) this is one
 * compare. Metrics read three ints.
 *
 * <b>Busiest count by a scan.</b> {@link #busiestCount} and {@link #busiestCounts} scan the entry pool (O(pool):
 * 0.05-0.08 ms at 100,000 entries, LedgerSnapshotBenchmark), because the exact maximum kept per event needed a per-machine histogram of counts
 * whose upkeep was a third of the cost of an open + close (DestinationLedgerBenchmark: 19-29 -> 13-21 ns/op
 * without it). The daemon reads all machines' busiest counts in one {@link #busiestCounts} pass once a second, for
 * the per-machine gauge, and learns of threshold crossings from {@link #open}'s status.
 *
 * <b>Ports in use</b> are not kept per entry: a bitmap cannot be decremented when two connections (different
 * destination ports, or TCP and UDP) share a translated port, machines without a block span 65535 ports, and a
 * per-port refcount costs 2 KiB per entry or a third hash lookup per event. The CLI is the only reader, so
 * {@link #topDestinations} derives them from the connection table.
 *
 * <b>Resync</b> is mark-and-sweep: every open (and every duplicate open) stamps the connection with the current
 * generation; {@link #beginResync()} increments it; {@link #endResync()} drops every connection whose stamp is
 * older. Marks keep 16 bits: after a sweep every live mark equals the generation, so only 65,536 begins without
 * an end could alias. The sweep scans the table from just after an empty slot, so backward shifts only ever move not-yet-seen
 * connections into the slot being examined, which is examined again.
 *
 * <b>Invariants</b> (checked against {@code ReferenceLedger} by the property test):
 * <ul>
 *     <li>count of entry {@code e} = live connections pointing at {@code e}; an indexed entry with count 0 is idle;
 *     {@code entrySize} = indexed entries (live and idle), {@code liveEntries} = those with count {@code >= 1}
 *     = {@link #liveDestinations()}; {@code connSize} = sum of all counts = {@link #liveConnections()}.</li>
 *     <li>the at-warning number of machine {@code m} = entries of {@code m} with count {@code >= warningThreshold()},
 *     likewise critical and over the cap; {@code atWarning} = machines whose at-warning number is not 0 (their
 *     busiest count is {@code >= warningThreshold()}), likewise {@code atCritical} and {@code overCap}.</li>
 *     <li>{@code lastEntry} is EMPTY or an indexed entry (live or idle).</li>
 *     <li>No connection of an unregistered machine is live.</li>
 * </ul>
 *
 * <b>Complexity.</b> {@link #open}: expected O(1), two hash probes (connection, entry; one when the last entry
 * matches); {@link #close}: one (connection); amortized O(1) with idle-entry sweeps; no allocation (growth
 * excepted). Counts and saturation: O(1). {@link #busiestCount}, {@link #busiestCounts}: O(entry pool).
 * {@link #endResync()}, {@link #unregisterMachine(int)}: O(connection capacity). {@link #topDestinations}: O(entry
 * pool + connection capacity + k log k), allocates. Measured by {@code DestinationLedgerBenchmark}.
 *
 * <p>Single writer, no locks: only the conntrack thread touches it, so no operation pays for a lock or a volatile.
 */
public final class DestinationLedger implements ConnectionLedger
{
    /** The highest machine handle: per-machine state is indexed by handle, so handles must stay small. */
    public static final int MAX_MACHINE = (1 << 20) - 1;

    /** The most connections a ledger can be sized for up front. */
    public static final int MAX_EXPECTED_CONNECTIONS = 1 << 27;

    private static final int EMPTY = -1;
    private static final long EMPTY_META = -1L;
    private static final long EMPTY_SLOT = -1L;
    private static final long ENTRY_BITS = 0xFFFF_FFFFL;
    private static final int MIN_CAPACITY = 16;
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;
    private static final long MACHINE_MIX = 0xC2B2AE3D27D4EB4FL;
    private static final long HIGH_MIX = 0x165667B19E3779F9L;

    private static final int ENTRY_STRIDE = 3;
    private static final int ENTRY_HIGH = 0;
    private static final int ENTRY_LOW = 1;
    private static final int ENTRY_MACHINE_COUNT = 2;

    private static final int MACHINE_STRIDE = 6;
    private static final int MACHINE_FIRST_PORT = 0;
    private static final int MACHINE_LAST_PORT = 1;
    private static final int MACHINE_CONNECTIONS = 2;
    // How many of the machine's destinations are at or above each threshold (warning, critical, over the cap).
    private static final int MACHINE_AT_WARNING = 3;
    private static final int MACHINE_AT_CRITICAL = 4;
    private static final int MACHINE_OVER_CAP = 5;

    private final int destinationCap;
    private final int warningThreshold;
    private final int criticalThreshold;

    // Connections: open addressing keyed by conntrack id, [id, entry << 32 | port << 16 | mark] per slot.
    private long[] conns;
    private int connShift;
    private int connSize;
    private int connResizeAt;

    // Destination entries: a stable pool [high, low, machine << 32 | count] plus an open-addressing index over it.
    private long[] entrySlots;
    private int entryShift;
    private int entrySize;
    private int liveEntries;
    private int entryResizeAt;
    private long[] entries;
    private int[] freeEntries;
    private int freeCount;
    private int entryHighWater;
    // The entry the last open counted on, or EMPTY: an application's connections to one destination (a pool filling,
    // a burst of requests) come as consecutive opens, which then skip the index probe. Idle entries leave the index
    // only in makeEntryRoom, called by an insert that then caches its own entry; clear() resets it.
    private int lastEntry = EMPTY;

    // Machines, indexed by handle: [firstPort, lastPort, connections, atWarning, atCritical, overCap] each.
    private int[] machines;

    private int atWarning;
    private int atCritical;
    private int overCap;
    private int generation;
    private boolean resyncing;

    private long opens;
    private long closes;
    private long duplicateOpens;
    private long replacedOpens;
    private long unknownCloses;
    private long violations;
    private long overCapOpens;
    private long unknownMachineOpens;
    private long sweptConnections;

    // The last RECENT_VIOLATIONS violations, a ring indexed by violations & (RECENT_VIOLATIONS - 1).
    private final long[] violationIds = new long[RECENT_VIOLATIONS];
    private final int[] violationMachines = new int[RECENT_VIOLATIONS];
    private final long[] violationHighs = new long[RECENT_VIOLATIONS];
    private final long[] violationLows = new long[RECENT_VIOLATIONS];
    private final int[] violationPorts = new int[RECENT_VIOLATIONS];
    private final int[] violationFirstPorts = new int[RECENT_VIOLATIONS];
    private final int[] violationLastPorts = new int[RECENT_VIOLATIONS];

    /** A ledger with the production cap of {@value HostSettings#DEFAULT_DESTINATION_CAP}. */
    public DestinationLedger()
    {
        this(HostSettings.DEFAULT_DESTINATION_CAP);
    }

    /**
     * A ledger with the given cap and small initial tables.
     *
     * @param destinationCap the most concurrent connections per machine per destination IP, 1..65535.
     */
    public DestinationLedger(final int destinationCap)
    {
        this(destinationCap, MIN_CAPACITY, MIN_CAPACITY);
    }

    /**
     * A ledger sized up front, so a known load never grows the tables.
     *
     * @param destinationCap      the most concurrent connections per machine per destination IP, 1..65535.
     * @param expectedConnections live connections to size for.
     * @param expectedMachines    machine handles to size for.
     */
    public DestinationLedger(final int destinationCap, final int expectedConnections, final int expectedMachines)
    {
        if (destinationCap < 1 || destinationCap > 65535)
        {
            throw new IllegalArgumentException("destinationCap must be 1..65535, got " + destinationCap);
        }
        // 2^27 connections size the table to 2^29 slots of two longs: the largest Java array that holds them.
        if (expectedConnections < 0 || expectedConnections > MAX_EXPECTED_CONNECTIONS)
        {
            throw new IllegalArgumentException("expectedConnections must be 0.." + MAX_EXPECTED_CONNECTIONS + ", got "
                + expectedConnections);
        }
        if (expectedMachines < 0 || expectedMachines > MAX_MACHINE + 1)
        {
            throw new IllegalArgumentException("expectedMachines must be 0.." + (MAX_MACHINE + 1) + ", got "
                + expectedMachines);
        }
        this.destinationCap = destinationCap;
        this.warningThreshold = (destinationCap * 80 + 99) / 100;
        this.criticalThreshold = (destinationCap * 95 + 99) / 100;

        final int capacity = tableCapacity(expectedConnections);
        allocateConnections(capacity * 2);
        allocateEntrySlots(capacity);
        final int pool = capacity / 2;
        entries = new long[pool * ENTRY_STRIDE];
        freeEntries = new int[pool];

        machines = new int[Math.max(MIN_CAPACITY, expectedMachines) * MACHINE_STRIDE];
    }

    @Override
    public int destinationCap()
    {
        return destinationCap;
    }

    @Override
    public int warningThreshold()
    {
        return warningThreshold;
    }

    @Override
    public int criticalThreshold()
    {
        return criticalThreshold;
    }

    // ---------------------------------------------------------------- machines

    @Override
    public boolean registerMachine(final int machine, final int firstPort, final int lastPort)
    {
        if (machine < 0 || machine > MAX_MACHINE)
        {
            throw new IllegalArgumentException("machine must be 0.." + MAX_MACHINE + ", got " + machine);
        }
        if (firstPort < 1 || lastPort > 65535 || firstPort > lastPort)
        {
            throw new IllegalArgumentException("port range must lie in 1..65535, got " + firstPort + ".." + lastPort);
        }
        if (machine >= machines.length / MACHINE_STRIDE)
        {
            growMachines(machine);
        }
        final int base = machine * MACHINE_STRIDE;
        final boolean isNew = machines[base + MACHINE_FIRST_PORT] == 0;
        machines[base + MACHINE_FIRST_PORT] = firstPort;
        machines[base + MACHINE_LAST_PORT] = lastPort;
        return isNew;
    }

    @Override
    public int unregisterMachine(final int machine)
    {
        if (!isRegistered(machine))
        {
            return 0;
        }
        // Every connection goes through releaseEntry, so the machine's counts and the saturation counters fall to 0.
        final int dropped = removeConnectionsWhere(machine);
        final int base = machine * MACHINE_STRIDE;
        machines[base + MACHINE_FIRST_PORT] = 0;
        machines[base + MACHINE_LAST_PORT] = 0;
        return dropped;
    }

    @Override
    public boolean isRegistered(final int machine)
    {
        return machine >= 0 && machine < machines.length / MACHINE_STRIDE &&
            machines[machine * MACHINE_STRIDE + MACHINE_FIRST_PORT] != 0;
    }

    // ---------------------------------------------------------------- events (hot path)

    @Override
    public int open(final long connId, final int machine, final int destination, final int translatedPort)
    {
        return open(connId, machine, LedgerKeys.IPV4_HIGH, LedgerKeys.ipv4Low(destination), translatedPort);
    }

    @Override
    public int open(
        final long connId, final int machine, final long destinationHigh, final long destinationLow,
        final int translatedPort)
    {
        final int[] machines = this.machines;
        final int base = machine * MACHINE_STRIDE;
        // The mask test refuses negative and oversized handles before base can overflow.
        if ((machine & ~MAX_MACHINE) != 0 || base >= machines.length || machines[base + MACHINE_FIRST_PORT] == 0)
        {
            unknownMachineOpens++;
            return UNKNOWN_MACHINE;
        }

        final long[] conns = this.conns;
        final int mask = (conns.length >> 1) - 1;
        int index = (int)((connId * GOLDEN) >>> connShift);
        long meta;
        while (EMPTY_META != (meta = conns[(index << 1) + 1]))
        {
            if (connId == conns[index << 1])
            {
                return reopen(index, meta, connId, machine, destinationHigh, destinationLow, translatedPort);
            }
            index = (index + 1) & mask;
        }

        if (connSize >= connResizeAt)
        {
            growConnections();
            index = freeConnectionSlot(connId);
        }
        connSize++;
        return admit(index, connId, machine, destinationHigh, destinationLow, translatedPort, 0);
    }

    @Override
    public int close(final long connId)
    {
        final long[] conns = this.conns;
        final int mask = (conns.length >> 1) - 1;
        int index = (int)((connId * GOLDEN) >>> connShift);
        long meta;
        while (EMPTY_META != (meta = conns[(index << 1) + 1]))
        {
            if (connId == conns[index << 1])
            {
                removeConnection(index, meta);
                closes++;
                return CLOSED;
            }
            index = (index + 1) & mask;
        }
        unknownCloses++;
        return NOT_FOUND;
    }

    private int reopen(
        final int index, final long meta, final long connId, final int machine, final long high, final long low,
        final int port)
    {
        final long[] entries = this.entries;
        final int entry = (int)(meta >> 32);
        final int at = entry * ENTRY_STRIDE;
        final int oldMachine = (int)(entries[at + ENTRY_MACHINE_COUNT] >>> 32);
        if (oldMachine == machine && entries[at + ENTRY_HIGH] == high && entries[at + ENTRY_LOW] == low &&
            ((int)meta >>> 16) == port)
        {
            conns[(index << 1) + 1] = (meta & ~0xFFFFL) | (generation & 0xFFFF);
            duplicateOpens++;
            return DUPLICATE;
        }
        // The kernel never holds two live entries with one id: we missed this id's close, and it was reused.
        releaseEntry(entry);
        replacedOpens++;
        return admit(index, connId, machine, high, low, port, REPLACED);
    }

    private int admit(
        final int index, final long connId, final int machine, final long high, final long low, final int port,
        final int statusSoFar)
    {
        final int entry = acquireEntry(machine, high, low);
        final long[] conns = this.conns;
        conns[index << 1] = connId;
        conns[(index << 1) + 1] = ((long)entry << 32) | ((port & 0xFFFFL) << 16) | (generation & 0xFFFF);

        final int count = (int)++entries[entry * ENTRY_STRIDE + ENTRY_MACHINE_COUNT];
        if (1 == count)
        {
            liveEntries++;
        }
        final int[] machines = this.machines;
        final int base = machine * MACHINE_STRIDE;
        machines[base + MACHINE_CONNECTIONS]++;
        opens++;

        int status = statusSoFar | OPENED;
        if (count >= warningThreshold)
        {
            status |= crossedUp(base, count);
        }
        if (port < machines[base + MACHINE_FIRST_PORT] || port > machines[base + MACHINE_LAST_PORT])
        {
            status |= VIOLATION;
            recordViolation(connId, machine, high, low, port);
        }
        if (count > destinationCap)
        {
            status |= OVER_CAP;
            overCapOpens++;
        }
        return status;
    }

    private void removeConnection(final int index, final long meta)
    {
        deleteConnectionSlot(index);
        connSize--;
        releaseEntry((int)(meta >> 32));
    }

    /**
     * A destination of the machine at {@code base} rose to {@code count}, at or above the warning threshold:
     * counts it in at each threshold it just reached, and the machine in the saturation counters when it is the
     * machine's first destination there.
     *
     * @return the REACHED_* status bits of the thresholds the machine just reached.
     */
    private int crossedUp(final int base, final int count)
    {
        final int[] machines = this.machines;
        int status = 0;
        if (count == warningThreshold && 0 == machines[base + MACHINE_AT_WARNING]++)
        {
            atWarning++;
            status |= REACHED_WARNING;
        }
        if (count == criticalThreshold && 0 == machines[base + MACHINE_AT_CRITICAL]++)
        {
            atCritical++;
            status |= REACHED_CRITICAL;
        }
        if (count == destinationCap + 1 && 0 == machines[base + MACHINE_OVER_CAP]++)
        {
            overCap++;
            status |= REACHED_OVER_CAP;
        }
        return status;
    }

    /** A destination of the machine at {@code base} fell from {@code old}, at or above the warning threshold. */
    private void crossedDown(final int base, final int old)
    {
        final int[] machines = this.machines;
        if (old == warningThreshold && 0 == --machines[base + MACHINE_AT_WARNING])
        {
            atWarning--;
        }
        if (old == criticalThreshold && 0 == --machines[base + MACHINE_AT_CRITICAL])
        {
            atCritical--;
        }
        if (old == destinationCap + 1 && 0 == --machines[base + MACHINE_OVER_CAP])
        {
            overCap--;
        }
    }

    private void recordViolation(final long connId, final int machine, final long high, final long low, final int port)
    {
        final int slot = (int)(violations & (RECENT_VIOLATIONS - 1));
        violationIds[slot] = connId;
        violationMachines[slot] = machine;
        violationHighs[slot] = high;
        violationLows[slot] = low;
        violationPorts[slot] = port;
        violationFirstPorts[slot] = machines[machine * MACHINE_STRIDE + MACHINE_FIRST_PORT];
        violationLastPorts[slot] = machines[machine * MACHINE_STRIDE + MACHINE_LAST_PORT];
        violations++;
    }

    // ---------------------------------------------------------------- destination entries

    private static int entryHash(final int machine, final long high, final long low)
    {
        final long key = low ^ (high * HIGH_MIX) ^ (machine * MACHINE_MIX);
        return (int)(((key ^ (key >>> 31)) * GOLDEN) >>> 32);
    }

    private int findEntry(final int machine, final long high, final long low)
    {
        final long[] entrySlots = this.entrySlots;
        final long[] entries = this.entries;
        final int mask = entrySlots.length - 1;
        final long machineWord = (long)machine << 32;
        final int hash = entryHash(machine, high, low);
        int index = hash >>> entryShift;
        long slot;
        while (EMPTY_SLOT != (slot = entrySlots[index]))
        {
            if ((int)(slot >>> 32) == hash)
            {
                final int entry = (int)slot;
                final int at = entry * ENTRY_STRIDE;
                if (entries[at + ENTRY_LOW] == low && entries[at + ENTRY_HIGH] == high &&
                    (entries[at + ENTRY_MACHINE_COUNT] & ~ENTRY_BITS) == machineWord)
                {
                    return entry;
                }
            }
            index = (index + 1) & mask;
        }
        return EMPTY;
    }

    private int acquireEntry(final int machine, final long high, final long low)
    {
        final long[] entries = this.entries;
        final long machineWord = (long)machine << 32;
        final int last = lastEntry;
        if (EMPTY != last)
        {
            final int at = last * ENTRY_STRIDE;
            if (entries[at + ENTRY_LOW] == low && entries[at + ENTRY_HIGH] == high &&
                (entries[at + ENTRY_MACHINE_COUNT] & ~ENTRY_BITS) == machineWord)
            {
                return last;
            }
        }
        final int entry = findOrInsertEntry(machine, high, low);
        lastEntry = entry;
        return entry;
    }

    private int findOrInsertEntry(final int machine, final long high, final long low)
    {
        final int found = findEntry(machine, high, low);
        return EMPTY != found ? found : insertEntry(machine, high, low);
    }

    /** A new (machine, destination) entry; only the first connection to a destination comes here, so it probes again. */
    private int insertEntry(final int machine, final long high, final long low)
    {
        if (entrySize >= entryResizeAt)
        {
            makeEntryRoom();
        }
        final long[] entrySlots = this.entrySlots;
        final int hash = entryHash(machine, high, low);
        final int mask = entrySlots.length - 1;
        int index = hash >>> entryShift;
        while (EMPTY_SLOT != entrySlots[index])
        {
            index = (index + 1) & mask;
        }

        final int fresh;
        if (freeCount > 0)
        {
            fresh = freeEntries[--freeCount];
        }
        else
        {
            if (entryHighWater == freeEntries.length)
            {
                growEntryPool();
            }
            fresh = entryHighWater++;
        }
        final long[] pool = this.entries;
        final int at = fresh * ENTRY_STRIDE;
        pool[at + ENTRY_HIGH] = high;
        pool[at + ENTRY_LOW] = low;
        pool[at + ENTRY_MACHINE_COUNT] = (long)machine << 32;
        entrySlots[index] = ((long)hash << 32) | fresh;
        entrySize++;
        return fresh;
    }

    private void releaseEntry(final int entry)
    {
        final long[] entries = this.entries;
        final int at = entry * ENTRY_STRIDE + ENTRY_MACHINE_COUNT;
        final long word = entries[at] - 1;
        entries[at] = word;
        final int count = (int)word;
        final int base = (int)(word >>> 32) * MACHINE_STRIDE;
        machines[base + MACHINE_CONNECTIONS]--;
        if (count >= warningThreshold - 1)
        {
            crossedDown(base, count + 1);
        }
        if (0 == count)
        {
            // Lazy free: the entry stays indexed, idle, so a destination that churns reuses it (makeEntryRoom).
            liveEntries--;
        }
    }

    /**
     * Called when an insert finds the entry index at its load limit: drops every idle (count 0) entry, and doubles
     * the index if live entries fill half the limit or more. Either way at least half the limit is free after, so
     * the O(capacity) pass is amortized over as many inserts.
     */
    private void makeEntryRoom()
    {
        if (liveEntries >= entryResizeAt / 2)
        {
            growEntrySlots();
            return;
        }
        final long[] entrySlots = this.entrySlots;
        final long[] entries = this.entries;
        final int capacity = entrySlots.length;
        final int mask = capacity - 1;
        int start = 0;
        while (EMPTY_SLOT != entrySlots[start])
        {
            start++;
        }
        // As removeConnectionsWhere: a removal only pulls a not-yet-visited slot into the one just examined.
        int index = (start + 1) & mask;
        for (int visited = 0; visited < capacity; )
        {
            final long slot = entrySlots[index];
            if (EMPTY_SLOT != slot && 0 == (int)entries[(int)slot * ENTRY_STRIDE + ENTRY_MACHINE_COUNT])
            {
                deleteEntrySlot(index);
                freeEntries[freeCount++] = (int)slot;
                entrySize--;
            }
            else
            {
                index = (index + 1) & mask;
                visited++;
            }
        }
    }

    private void deleteEntrySlot(final int slot)
    {
        final long[] entrySlots = this.entrySlots;
        final int mask = entrySlots.length - 1;
        final int shift = entryShift;
        int hole = slot;
        int index = slot;
        long moving;
        while (EMPTY_SLOT != (moving = entrySlots[index = (index + 1) & mask]))
        {
            final int home = (int)(moving >>> 32) >>> shift;
            // Move back unless its home lies cyclically in (hole, index]: then the hole does not cut its probe run.
            if (((index - home) & mask) >= ((index - hole) & mask))
            {
                entrySlots[hole] = moving;
                hole = index;
            }
        }
        entrySlots[hole] = EMPTY_SLOT;
    }

    // ---------------------------------------------------------------- connection table

    private int freeConnectionSlot(final long connId)
    {
        final long[] conns = this.conns;
        final int mask = (conns.length >> 1) - 1;
        int index = (int)((connId * GOLDEN) >>> connShift);
        while (EMPTY_META != conns[(index << 1) + 1])
        {
            index = (index + 1) & mask;
        }
        return index;
    }

    private void deleteConnectionSlot(final int slot)
    {
        final long[] conns = this.conns;
        final int mask = (conns.length >> 1) - 1;
        final int shift = connShift;

        int hole = slot;
        int index = slot;
        long meta;
        while (EMPTY_META != (meta = conns[((index = (index + 1) & mask) << 1) + 1]))
        {
            final long id = conns[index << 1];
            final int home = (int)((id * GOLDEN) >>> shift);
            // Move back unless its home lies cyclically in (hole, index]: then the hole does not cut its probe run.
            if (((index - home) & mask) >= ((index - hole) & mask))
            {
                conns[hole << 1] = id;
                conns[(hole << 1) + 1] = meta;
                hole = index;
            }
        }
        conns[(hole << 1) + 1] = EMPTY_META;
    }

    /**
     * Removes the connections of one machine, or (machine = EMPTY) those not marked since the resync began.
     * Starts just after an empty slot so no probe run crosses the start; a removal can then only pull a
     * not-yet-visited connection into the slot just examined, which is why that slot is examined again.
     */
    private int removeConnectionsWhere(final int machine)
    {
        final long[] conns = this.conns;
        final long[] entries = this.entries;
        final int capacity = conns.length >> 1;
        final int mask = capacity - 1;
        final int mark = generation & 0xFFFF;

        int start = 0;
        while (EMPTY_META != conns[(start << 1) + 1])
        {
            start++;
        }
        int removed = 0;
        int index = (start + 1) & mask;
        for (int visited = 0; visited < capacity; )
        {
            final long meta = conns[(index << 1) + 1];
            final boolean drop = EMPTY_META != meta && (EMPTY == machine ?
                ((int)meta & 0xFFFF) != mark :
                (int)(entries[(int)(meta >> 32) * ENTRY_STRIDE + ENTRY_MACHINE_COUNT] >>> 32) == machine);
            if (drop)
            {
                removeConnection(index, meta);
                removed++;
            }
            else
            {
                index = (index + 1) & mask;
                visited++;
            }
        }
        return removed;
    }

    // ---------------------------------------------------------------- resync

    @Override
    public void clear()
    {
        Arrays.fill(conns, EMPTY_META);
        connSize = 0;
        Arrays.fill(entrySlots, EMPTY_SLOT);
        lastEntry = EMPTY;
        entrySize = 0;
        liveEntries = 0;
        freeCount = 0;
        entryHighWater = 0;
        for (int base = 0; base < machines.length; base += MACHINE_STRIDE)
        {
            machines[base + MACHINE_CONNECTIONS] = 0;
            machines[base + MACHINE_AT_WARNING] = 0;
            machines[base + MACHINE_AT_CRITICAL] = 0;
            machines[base + MACHINE_OVER_CAP] = 0;
        }
        atWarning = 0;
        atCritical = 0;
        overCap = 0;
    }

    @Override
    public void beginResync()
    {
        generation++;
        resyncing = true;
    }

    @Override
    public int endResync()
    {
        if (!resyncing)
        {
            return 0;
        }
        resyncing = false;
        final int swept = removeConnectionsWhere(EMPTY);
        sweptConnections += swept;
        return swept;
    }

    // ---------------------------------------------------------------- queries

    @Override
    public int count(final int machine, final int destination)
    {
        return count(machine, LedgerKeys.IPV4_HIGH, LedgerKeys.ipv4Low(destination));
    }

    @Override
    public int count(final int machine, final long destinationHigh, final long destinationLow)
    {
        final int entry = findEntry(machine, destinationHigh, destinationLow);
        return EMPTY == entry ? 0 : entryCount(entry);
    }

    private int entryCount(final int entry)
    {
        return (int)entries[entry * ENTRY_STRIDE + ENTRY_MACHINE_COUNT];
    }

    @Override
    public int busiestCount(final int machine)
    {
        if (!isRegistered(machine))
        {
            return 0;
        }
        final long[] entries = this.entries;
        int busiest = 0;
        for (int at = ENTRY_MACHINE_COUNT, end = entryHighWater * ENTRY_STRIDE; at < end; at += ENTRY_STRIDE)
        {
            final long word = entries[at];
            // Free and idle entries count 0, whatever machine they last held.
            if ((int)(word >>> 32) == machine && (int)word > busiest)
            {
                busiest = (int)word;
            }
        }
        return busiest;
    }

    @Override
    public void busiestCounts(final int[] byMachine)
    {
        Arrays.fill(byMachine, 0);
        final long[] entries = this.entries;
        for (int at = ENTRY_MACHINE_COUNT, end = entryHighWater * ENTRY_STRIDE; at < end; at += ENTRY_STRIDE)
        {
            final long word = entries[at];
            final int machine = (int)(word >>> 32);
            if (machine < byMachine.length && (int)word > byMachine[machine])
            {
                byMachine[machine] = (int)word;
            }
        }
    }

    @Override
    public int machinesAtWarning()
    {
        return atWarning;
    }

    @Override
    public int machinesAtCritical()
    {
        return atCritical;
    }

    @Override
    public int machinesOverCap()
    {
        return overCap;
    }

    @Override
    public List<DestinationUsage> topDestinations(final int machine, final int limit)
    {
        if (!isRegistered(machine) || limit <= 0)
        {
            return new ArrayList<>();
        }
        final long[] entries = this.entries;
        final List<Integer> mine = new ArrayList<>();
        for (int entry = 0; entry < entryHighWater; entry++)
        {
            final long word = entries[entry * ENTRY_STRIDE + ENTRY_MACHINE_COUNT];
            if ((int)word > 0 && (int)(word >>> 32) == machine)
            {
                mine.add(entry);
            }
        }
        mine.sort((a, b) ->
        {
            final int byCount = Integer.compare(entryCount(b), entryCount(a));
            if (byCount != 0)
            {
                return byCount;
            }
            final int byHigh = Long.compareUnsigned(
                entries[a * ENTRY_STRIDE + ENTRY_HIGH], entries[b * ENTRY_STRIDE + ENTRY_HIGH]);
            return byHigh != 0 ? byHigh : Long.compareUnsigned(
                entries[a * ENTRY_STRIDE + ENTRY_LOW], entries[b * ENTRY_STRIDE + ENTRY_LOW]);
        });
        final List<Integer> top = mine.subList(0, Math.min(limit, mine.size()));

        final Map<Integer, BitSet> ports = new HashMap<>();
        for (final Integer entry : top)
        {
            ports.put(entry, new BitSet(65536));
        }
        for (int index = 0; index < conns.length >> 1; index++)
        {
            final long meta = conns[(index << 1) + 1];
            final BitSet bits = EMPTY_META == meta ? null : ports.get((int)(meta >> 32));
            if (null != bits)
            {
                bits.set((int)meta >>> 16);
            }
        }
        final List<DestinationUsage> result = new ArrayList<>(top.size());
        for (final Integer entry : top)
        {
            result.add(new DestinationUsage(
                entries[entry * ENTRY_STRIDE + ENTRY_HIGH], entries[entry * ENTRY_STRIDE + ENTRY_LOW],
                entryCount(entry), ports.get(entry).cardinality()));
        }
        return result;
    }

    @Override
    public List<Violation> recentViolations()
    {
        final int kept = (int)Math.min(violations, RECENT_VIOLATIONS);
        final List<Violation> result = new ArrayList<>(kept);
        for (long n = violations - kept; n < violations; n++)
        {
            final int slot = (int)(n & (RECENT_VIOLATIONS - 1));
            result.add(new Violation(
                violationIds[slot], violationMachines[slot], violationHighs[slot], violationLows[slot],
                violationPorts[slot], violationFirstPorts[slot], violationLastPorts[slot]));
        }
        return result;
    }

    @Override
    public int liveConnections()
    {
        return connSize;
    }

    @Override
    public int liveDestinations()
    {
        return liveEntries;
    }

    @Override
    public int machineConnections(final int machine)
    {
        return isRegistered(machine) ? machines[machine * MACHINE_STRIDE + MACHINE_CONNECTIONS] : 0;
    }

    @Override
    public long opens()
    {
        return opens;
    }

    @Override
    public long closes()
    {
        return closes;
    }

    @Override
    public long duplicateOpens()
    {
        return duplicateOpens;
    }

    @Override
    public long replacedOpens()
    {
        return replacedOpens;
    }

    @Override
    public long unknownCloses()
    {
        return unknownCloses;
    }

    @Override
    public long violations()
    {
        return violations;
    }

    @Override
    public long overCapOpens()
    {
        return overCapOpens;
    }

    @Override
    public long unknownMachineOpens()
    {
        return unknownMachineOpens;
    }

    @Override
    public long sweptConnections()
    {
        return sweptConnections;
    }

    /**
     * Slots in the connection table, for tests of growth.
     *
     * @return the current capacity.
     */
    public int connectionCapacity()
    {
        return conns.length >> 1;
    }

    // ---------------------------------------------------------------- growth (allocates; never in steady state)

    private static int tableCapacity(final int expected)
    {
        final int wanted = Math.max(MIN_CAPACITY, expected * 2);
        return 1 << (Integer.SIZE - Integer.numberOfLeadingZeros(wanted - 1));
    }

    private void allocateConnections(final int capacity)
    {
        conns = new long[capacity << 1];
        Arrays.fill(conns, EMPTY_META);
        connShift = Long.SIZE - Integer.numberOfTrailingZeros(capacity);
        // 1/4, not 1/2: near 1/2 full, linear probing's longer runs cost open + close 17-18 ns instead of 14
        // (DestinationLedgerBenchmark, 1,000 entries at 0% and 99% of the cap, the table just under its limit). The
        // price is 16 B per slot, 64-128 B per live connection: 16-32 MB at nf_conntrack_max's default of 262,144,
        // which bounds the table.
        connResizeAt = capacity / 4;
    }

    private void allocateEntrySlots(final int capacity)
    {
        entrySlots = new long[capacity];
        Arrays.fill(entrySlots, EMPTY_SLOT);
        entryShift = Integer.SIZE - Integer.numberOfTrailingZeros(capacity);
        // 3/8, not 1/2: chosen when every open to a new destination inserted and its close deleted (1,000 entries
        // at 0%: 44 -> 33 ns/op); idle entries now fill the index up to this limit between sweeps, so short probe
        // runs still pay on every open.
        entryResizeAt = capacity * 3 / 8;
    }

    private void growConnections()
    {
        final long[] old = conns;
        allocateConnections(old.length);
        final long[] conns = this.conns;
        final int mask = (conns.length >> 1) - 1;
        for (int i = 0; i < old.length; i += 2)
        {
            if (EMPTY_META != old[i + 1])
            {
                int index = (int)((old[i] * GOLDEN) >>> connShift);
                while (EMPTY_META != conns[(index << 1) + 1])
                {
                    index = (index + 1) & mask;
                }
                conns[index << 1] = old[i];
                conns[(index << 1) + 1] = old[i + 1];
            }
        }
    }

    private void growEntrySlots()
    {
        final long[] oldSlots = entrySlots;
        allocateEntrySlots(oldSlots.length * 2);
        final long[] entrySlots = this.entrySlots;
        final long[] entries = this.entries;
        final int mask = entrySlots.length - 1;
        entrySize = 0;
        for (final long slot : oldSlots)
        {
            if (EMPTY_SLOT == slot)
            {
                continue;
            }
            if (0 == (int)entries[(int)slot * ENTRY_STRIDE + ENTRY_MACHINE_COUNT])
            {
                freeEntries[freeCount++] = (int)slot;
            }
            else
            {
                entrySize++;
                int index = (int)(slot >>> 32) >>> entryShift;
                while (EMPTY_SLOT != entrySlots[index])
                {
                    index = (index + 1) & mask;
                }
                entrySlots[index] = slot;
            }
        }
    }

    private void growEntryPool()
    {
        final int capacity = freeEntries.length * 2;
        entries = Arrays.copyOf(entries, capacity * ENTRY_STRIDE);
        freeEntries = Arrays.copyOf(freeEntries, capacity);
    }

    private void growMachines(final int machine)
    {
        final int capacity = Math.max(machines.length / MACHINE_STRIDE * 2, machine + 1);
        machines = Arrays.copyOf(machines, capacity * MACHINE_STRIDE);
    }
}
