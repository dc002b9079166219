package dev.egressd.core.ledger;

import java.util.List;

/**
 * What the daemon, the metrics binder and the CLI need from a destination ledger: per machine and per
 * destination IP, the live connections (by conntrack id) and the translated ports they use.
 *
 * <p>Implemented by {@link DestinationLedger} (the allocation-free one the daemon runs) and by the test
 * sources' {@code ReferenceLedger}, so one contract test and one model-based property test cover both.
 *
 * <p>Semantics every implementation shares:
 * <ul>
 *     <li>Events are idempotent: opening a live id with the same tuple is a {@link #DUPLICATE} no-op, closing an
 *     unknown id is a no-op that returns {@link #NOT_FOUND}. A close that overtakes its open (possible only
 *     around a resync) is therefore lost: the later open counts until its own close or the next resync sweep.
 *     </li>
 *     <li>Opening a live id with a <em>different</em> tuple means the ledger missed that id's close and the kernel
 *     reused the id: the old connection is dropped and the new one counted ({@link #REPLACED}), because the kernel
 *     never holds two live entries with one id.</li>
 *     <li>A translated port outside the machine's range is reported ({@link #VIOLATION}, a counter and
 *     {@link #recentViolations()}), never thrown, and the connection still counts: the kernel counts it.
 *     Only opens are checked, against the range in force then; a re-register (the machine moved) keeps live
 *     connections and does not re-judge them, as the kernel keeps their old translation.</li>
 *     <li>Events for a machine that is not registered are refused ({@link #UNKNOWN_MACHINE}) and change nothing:
 *     the daemon registers every machine before it feeds its events (and before a resync dump).</li>
 *     <li>Cumulative counters never go backwards, not even on {@link #clear()}: metrics export them as counters.</li>
 * </ul>
 *
 * <p>Single writer: implementations are not thread-safe; the metrics reader may see a slightly stale value of a
 * plain {@code long}, never a torn one on a 64-bit JVM.
 */
public interface ConnectionLedger
{
    /** {@link #open} status bit: a new connection was counted. */
    int OPENED = 1;

    /** {@link #open} status bit: the id was already live with the same tuple; nothing changed (besides the mark). */
    int DUPLICATE = 1 << 1;

    /** {@link #open} status bit, with {@link #OPENED}: the id was live with another tuple, which was dropped. */
    int REPLACED = 1 << 2;

    /** {@link #open} status bit, with {@link #OPENED}: the translated port lies outside the machine's range. */
    int VIOLATION = 1 << 3;

    /** {@link #open} status bit, with {@link #OPENED}: the (machine, destination) count is now over the cap. */
    int OVER_CAP = 1 << 4;

    /** {@link #open} status: the machine is not registered; nothing was counted. */
    int UNKNOWN_MACHINE = 1 << 5;

    /**
     * {@link #open} status bit, with {@link #OPENED}: this open took a destination of the machine to exactly
     * {@link #warningThreshold()} and no other destination of the machine is at or above it, so the machine now
     * counts in {@link #machinesAtWarning()} (the moment to tell the operator, once).
     */
    int REACHED_WARNING = 1 << 6;

    /** {@link #open} status bit, as {@link #REACHED_WARNING} for {@link #criticalThreshold()}. */
    int REACHED_CRITICAL = 1 << 7;

    /** {@link #open} status bit, as {@link #REACHED_WARNING} for the cap + 1 ({@link #machinesOverCap()}). */
    int REACHED_OVER_CAP = 1 << 8;

    /** {@link #close} status: the connection was live and is now closed. */
    int CLOSED = 1;

    /** {@link #close} status: no live connection had that id; nothing changed. */
    int NOT_FOUND = 0;

    /** How many violating connections {@link #recentViolations()} keeps. */
    int RECENT_VIOLATIONS = 16;

    /**
     * The most concurrent connections one machine may hold to one destination IP.
     *
     * @return the cap given at construction.
     */
    int destinationCap();

    /**
     * Connections a machine may hold to one destination before it counts as 80% saturated: {@code ceil(0.8 cap)}.
     *
     * @return the 80% threshold.
     */
    default int warningThreshold()
    {
        return (destinationCap() * 80 + 99) / 100;
    }

    /**
     * Connections a machine may hold to one destination before it counts as 95% saturated: {@code ceil(0.95 cap)}.
     *
     * @return the 95% threshold.
     */
    default int criticalThreshold()
    {
        return (destinationCap() * 95 + 99) / 100;
    }

    /**
     * Registers a machine or changes its allowed port range, keeping its live connections.
     *
     * @param machine   the machine handle, 0..{@link DestinationLedger#MAX_MACHINE}.
     * @param firstPort the first port of its block (1 for a machine without a block).
     * @param lastPort  the last port of its block (65535 for a machine without a block).
     * @return true if the machine was not registered before.
     * @throws IllegalArgumentException if the handle or the range is invalid.
     */
    boolean registerMachine(int machine, int firstPort, int lastPort);

    /**
     * Forgets a machine and all its connections.
     *
     * @param machine the machine handle.
     * @return how many live connections were dropped (0 if the machine was not registered).
     */
    int unregisterMachine(int machine);

    /**
     * Whether a machine is registered.
     *
     * @param machine the machine handle.
     * @return true if registered.
     */
    boolean isRegistered(int machine);

    /**
     * Records a connection to an IPv4 destination (conntrack NEW, or an entry of a resync dump).
     *
     * @param connId         the conntrack id (CTA_ID).
     * @param machine        the machine handle.
     * @param destination    the destination IPv4 address bits.
     * @param translatedPort the translated source port (the reply tuple's destination port), 0..65535: a u16 as
     *                       conntrack gives it; the fast ledger keeps only those 16 bits.
     * @return status bits: {@link #OPENED}, {@link #DUPLICATE}, {@link #REPLACED}, {@link #VIOLATION},
     * {@link #OVER_CAP}, the {@code REACHED_*} bits, or {@link #UNKNOWN_MACHINE}.
     */
    int open(long connId, int machine, int destination, int translatedPort);

    /**
     * Records a connection to an IPv6 destination (conntrack NEW, or an entry of a resync dump).
     *
     * @param connId          the conntrack id (CTA_ID).
     * @param machine         the machine handle.
     * @param destinationHigh the first 64 bits of the destination.
     * @param destinationLow  the last 64 bits of the destination.
     * @param translatedPort  the translated source port, 0..65535.
     * @return status bits as for {@link #open(long, int, int, int)}.
     */
    int open(long connId, int machine, long destinationHigh, long destinationLow, int translatedPort);

    /**
     * Records the end of a connection (conntrack DESTROY, or an update to a state {@code ct count} no longer
     * counts such as TIME_WAIT; the later DESTROY is then a harmless {@link #NOT_FOUND}).
     *
     * @param connId the conntrack id.
     * @return {@link #CLOSED} or {@link #NOT_FOUND}.
     */
    int close(long connId);

    /** Forgets every connection; machines stay registered and cumulative counters keep their values. */
    void clear();

    /**
     * Starts a resync: every connection live now is dropped by {@link #endResync()} unless it is opened again
     * (by the dump or by a live event) before then.
     */
    void beginResync();

    /**
     * Ends a resync, dropping every connection not opened since {@link #beginResync()}. Without a resync in
     * progress it does nothing.
     *
     * @return how many connections were dropped.
     */
    int endResync();

    /**
     * Live connections from a machine to an IPv4 destination.
     *
     * @param machine     the machine handle.
     * @param destination the IPv4 address bits.
     * @return the count, 0 if none.
     */
    int count(int machine, int destination);

    /**
     * Live connections from a machine to an IPv6 destination.
     *
     * @param machine         the machine handle.
     * @param destinationHigh the first 64 bits.
     * @param destinationLow  the last 64 bits.
     * @return the count, 0 if none.
     */
    int count(int machine, long destinationHigh, long destinationLow);

    /**
     * The highest count over all destinations of a machine. May scan every destination entry: the event path
     * learns of threshold crossings from {@link #open}'s {@code REACHED_*} bits instead.
     *
     * @param machine the machine handle.
     * @return the busiest destination's count, 0 if none.
     */
    int busiestCount(int machine);

    /**
     * The busiest count of every machine handle below {@code byMachine.length} ({@link #busiestCount} of each), in
     * one pass over the destination entries: what a once-a-second metrics snapshot needs.
     *
     * @param byMachine filled with the busiest count per handle, 0 for machines without connections.
     */
    void busiestCounts(int[] byMachine);

    /**
     * Machines whose busiest destination is at or above {@link #warningThreshold()}.
     *
     * @return the number of machines.
     */
    int machinesAtWarning();

    /**
     * Machines whose busiest destination is at or above {@link #criticalThreshold()}.
     *
     * @return the number of machines.
     */
    int machinesAtCritical();

    /**
     * Machines whose busiest destination is over the cap (the kernel's meters were reset by a reload, or the
     * cap was lowered).
     *
     * @return the number of machines.
     */
    int machinesOverCap();

    /**
     * A machine's busiest destinations for the CLI, by count descending, then address ascending; allocates.
     *
     * @param machine the machine handle.
     * @param limit   the most entries to return.
     * @return a new list.
     */
    List<DestinationUsage> topDestinations(int machine, int limit);

    /**
     * The last violating connections, oldest first, at most {@link #RECENT_VIOLATIONS}; allocates.
     *
     * @return a new list.
     */
    List<Violation> recentViolations();

    /**
     * Live connections, all machines.
     *
     * @return the gauge value.
     */
    int liveConnections();

    /**
     * Live (machine, destination) entries, all machines.
     *
     * @return the gauge value.
     */
    int liveDestinations();

    /**
     * Live connections of one machine.
     *
     * @param machine the machine handle.
     * @return the count, 0 if not registered.
     */
    int machineConnections(int machine);

    /**
     * Connections counted by {@link #open}, replacements included.
     *
     * @return the cumulative counter.
     */
    long opens();

    /**
     * Connections removed by {@link #close}.
     *
     * @return the cumulative counter.
     */
    long closes();

    /**
     * Opens of an id already live with the same tuple.
     *
     * @return the cumulative counter.
     */
    long duplicateOpens();

    /**
     * Opens of a live id with another tuple.
     *
     * @return the cumulative counter.
     */
    long replacedOpens();

    /**
     * Closes of an id that was not live.
     *
     * @return the cumulative counter.
     */
    long unknownCloses();

    /**
     * Opens whose translated port lay outside the machine's range (DESIGN invariant 2).
     *
     * @return the cumulative counter.
     */
    long violations();

    /**
     * Opens that left a (machine, destination) over the cap (DESIGN invariant 5 seen from the ledger).
     *
     * @return the cumulative counter.
     */
    long overCapOpens();

    /**
     * Opens refused because the machine was not registered.
     *
     * @return the cumulative counter.
     */
    long unknownMachineOpens();

    /**
     * Connections dropped by resync sweeps.
     *
     * @return the cumulative counter.
     */
    long sweptConnections();
}
