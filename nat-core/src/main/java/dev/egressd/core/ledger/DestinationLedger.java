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
 *     <li><i>Machines</i>, indexed by handle, four ints each in {@code machines}: first port ({@code 0} = not
 *     registered), last port, live connections, busiest count; and a histogram per machine,
 *     {@code machineHistograms[m][c]} = how many of its destinations hold exactly {@code c} connections.</li>
 * </ol>
 *
 * <b>Deletion</b> is backward-shift (Knuth vol. 3, algorithm R): no tombstones, so probe lengths depend only on
 * the live load, never on history, and no rehash is needed to clean up. The connection table is kept at most 1/2
 * full, the entry index (live and idle entries) at most 3/8 before idle entries are swept.
 *
 * <b>Busiest count without a scan.</b> Counts move by exactly 1 per event. Going up, the new max is
 * {@code max(busiest, c)}, so it changes only when {@code c == busiest + 1}. Going down from
 * {@code c + 1 == busiest}, if the histogram says no other destination is still at {@code c + 1}, the new busiest
 * is exactly {@code c}, because the destination just decremented sits there. The busiest count thus only ever
 * moves by one, and a saturation counter changes only when it reaches (or leaves) its threshold exactly: an
 * equality test, skipped entirely below {@link #warningThreshold()}. So {@link #busiestCount} is a field read and
 * each event costs O(1). The histogram grows (by doubling) only when a machine reaches a count it never reached
 * before; steady state allocates nothing.
 *
 * <b>Saturation counters</b> ({@link #machinesAtWarning()}, {@link #machinesAtCritical()},
 * {@link #machinesOverCap()}) are maintained, not scanned: whenever a machine's busiest count crosses a threshold
 * the counter moves by one. Metrics read three ints every 15 s.
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
 *     <li>{@code machineHistograms[m][c]} = entries of {@code m} with count {@code c >= 1} (cell 0 is scratch); the
 *     busiest count of
 *     {@code m} = largest {@code c} with a non-zero histogram cell, 0 if none.</li>
 *     <li>{@code atWarning} = machines with busiest {@code >= warningThreshold()}, likewise critical and over cap.
 *     </li>
 *     <li>No connection of an unregistered machine is live.</li>
 * </ul>
 *
 * <b>Complexity.</b> {@link #open}: expected O(1), two hash probes (connection, entry); {@link #close}: one
 * (connection); amortized O(1) with idle-entry sweeps; no allocation (growth excepted). Counts, busiest and
 * saturation: O(1). {@link #endResync()}, {@link #unregisterMachine(int)}: O(connection capacity). {@link #topDestinations}: O(entry pool + connection capacity + k log k), allocates. Measured by
 * {@code DestinationLedgerBenchmark}.
 *
 * <p>Single writer, no locks (STYLE guidance 3).
 */
public final class DestinationLedger implements ConnectionLedger
{
    /** The highest machine handle: per-machine state is indexed by handle, so handles must stay small. */
    public static final int MAX_MACHINE = (1 << 20) - 1;

    private static final int EMPTY = -1;
    private static final long EMPTY_META = -1L;
    private static final long EMPTY_SLOT = -1L;
    private static final long ENTRY_BITS = 0xFFFF_FFFFL;
    private static final int MIN_CAPACITY = 16;
    private static final int INITIAL_HISTOGRAM = 16;
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;
    private static final long MACHINE_MIX = 0xC2B2AE3D27D4EB4FL;
    private static final long HIGH_MIX = 0x165667B19E3779F9L;

    private static final int ENTRY_STRIDE = 3;
    private static final int ENTRY_HIGH = 0;
    private static final int ENTRY_LOW = 1;
    private static final int ENTRY_MACHINE_COUNT = 2;

    private static final int MACHINE_STRIDE = 4;
    private static final int MACHINE_FIRST_PORT = 0;
    private static final int MACHINE_LAST_PORT = 1;
    private static final int MACHINE_CONNECTIONS = 2;
    private static final int MACHINE_BUSIEST = 3;

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

    // Machines, indexed by handle: [firstPort, lastPort, connections, busiest] each, and a count histogram.
    private int[] machines;
    private int[][] machineHistograms;

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
        if (expectedConnections < 0 || expectedConnections > (1 << 28) ||
            expectedMachines < 0 || expectedMachines > MAX_MACHINE + 1)
        {
            throw new IllegalArgumentException("expected sizes out of range");
        }
        this.destinationCap = destinationCap;
        this.warningThreshold = (destinationCap * 80 + 99) / 100;
        this.criticalThreshold = (destinationCap * 95 + 99) / 100;

        final int capacity = tableCapacity(expectedConnections);
        allocateConnections(capacity);
        allocateEntrySlots(capacity);
        final int pool = capacity / 2;
        entries = new long[pool * ENTRY_STRIDE];
        freeEntries = new int[pool];

        final int machineCapacity = Math.max(MIN_CAPACITY, expectedMachines);
        machines = new int[machineCapacity * MACHINE_STRIDE];
        machineHistograms = new int[machineCapacity][];
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
        if (machine >= machineHistograms.length)
        {
            growMachines(machine);
        }
        final int base = machine * MACHINE_STRIDE;
        final boolean isNew = machines[base + MACHINE_FIRST_PORT] == 0;
        machines[base + MACHINE_FIRST_PORT] = firstPort;
        machines[base + MACHINE_LAST_PORT] = lastPort;
        if (isNew)
        {
            machineHistograms[machine] = new int[INITIAL_HISTOGRAM];
        }
        return isNew;
    }

    @Override
    public int unregisterMachine(final int machine)
    {
        if (!isRegistered(machine))
        {
            return 0;
        }
        final int dropped = removeConnectionsWhere(machine);
        final int base = machine * MACHINE_STRIDE;
        machines[base + MACHINE_FIRST_PORT] = 0;
        machines[base + MACHINE_LAST_PORT] = 0;
        machineHistograms[machine] = null;
        return dropped;
    }

    @Override
    public boolean isRegistered(final int machine)
    {
        return machine >= 0 && machine < machineHistograms.length &&
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
        raise(machine, count);
        opens++;

        int status = statusSoFar | OPENED;
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

    private void raise(final int machine, final int count)
    {
        int[] histogram = machineHistograms[machine];
        if (count >= histogram.length)
        {
            histogram = growHistogram(machine, count);
        }
        // Cell 0 is scratch (it counts nothing): writing it spares a branch on every first connection.
        histogram[count - 1]--;
        histogram[count]++;
        final int at = machine * MACHINE_STRIDE + MACHINE_BUSIEST;
        if (count > machines[at])
        {
            // Counts move by one, so the busiest count was count - 1 and rises by exactly one.
            machines[at] = count;
            if (count >= warningThreshold)
            {
                crossedUp(count);
            }
        }
    }

    private void lower(final int machine, final int count)
    {
        final int[] histogram = machineHistograms[machine];
        final int remainingAtOld = --histogram[count + 1];
        histogram[count]++;
        final int at = machine * MACHINE_STRIDE + MACHINE_BUSIEST;
        if (0 == remainingAtOld && machines[at] == count + 1)
        {
            // The destination just decremented now sits at count, so the busiest count falls by exactly one.
            machines[at] = count;
            if (count >= warningThreshold - 1)
            {
                crossedDown(count + 1);
            }
        }
    }

    /** The busiest count of a machine rose to {@code busiest} from {@code busiest - 1}. */
    private void crossedUp(final int busiest)
    {
        if (busiest == warningThreshold)
        {
            atWarning++;
        }
        if (busiest == criticalThreshold)
        {
            atCritical++;
        }
        if (busiest == destinationCap + 1)
        {
            overCap++;
        }
    }

    /** The busiest count of a machine fell from {@code old} to {@code old - 1}. */
    private void crossedDown(final int old)
    {
        if (old == warningThreshold)
        {
            atWarning--;
        }
        if (old == criticalThreshold)
        {
            atCritical--;
        }
        if (old == destinationCap + 1)
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
        long[] entrySlots = this.entrySlots;
        final long[] entries = this.entries;
        int mask = entrySlots.length - 1;
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

        if (entrySize >= entryResizeAt)
        {
            makeEntryRoom();
            entrySlots = this.entrySlots;
            mask = entrySlots.length - 1;
            index = hash >>> entryShift;
            while (EMPTY_SLOT != entrySlots[index])
            {
                index = (index + 1) & mask;
            }
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
        pool[at + ENTRY_MACHINE_COUNT] = machineWord;
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
        final int machine = (int)(word >>> 32);
        machines[machine * MACHINE_STRIDE + MACHINE_CONNECTIONS]--;
        lower(machine, count);
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
        entrySize = 0;
        liveEntries = 0;
        freeCount = 0;
        entryHighWater = 0;
        for (int machine = 0; machine < machineHistograms.length; machine++)
        {
            machines[machine * MACHINE_STRIDE + MACHINE_CONNECTIONS] = 0;
            machines[machine * MACHINE_STRIDE + MACHINE_BUSIEST] = 0;
            if (null != machineHistograms[machine])
            {
                Arrays.fill(machineHistograms[machine], 0);
            }
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
        return isRegistered(machine) ? machines[machine * MACHINE_STRIDE + MACHINE_BUSIEST] : 0;
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
        connResizeAt = capacity / 2;
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

    private int[] growHistogram(final int machine, final int count)
    {
        final int[] histogram = Arrays.copyOf(
            machineHistograms[machine], Math.max(machineHistograms[machine].length * 2, count + 1));
        machineHistograms[machine] = histogram;
        return histogram;
    }

    private void growMachines(final int machine)
    {
        final int capacity = Math.max(machineHistograms.length * 2, machine + 1);
        machines = Arrays.copyOf(machines, capacity * MACHINE_STRIDE);
        machineHistograms = Arrays.copyOf(machineHistograms, capacity);
    }
}
