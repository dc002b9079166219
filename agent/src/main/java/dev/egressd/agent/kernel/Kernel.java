package dev.egressd.agent.kernel;

import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;

import java.util.List;
import java.util.Map;

/**
 * The data plane as the control loop sees it: egressd's nftables table plus the egress addresses on the uplink.
 * {@link NftKernel} is the real one (nft and rtnetlink); {@link MemoryKernel} the in-memory one ({@code --dry-run},
 * tests).
 *
 * <p>A handle is used from one thread: the control loop's for changes; the reconcile's reads and checks may use a
 * second handle, opened by {@link #reader()} on the thread that reads (reconcile/KernelReads).
 */
public interface Kernel
{
    /**
     * Makes sure the static part of the table (table, chains, sets, maps, rules) exists, recreating it if someone
     * deleted it.
     *
     * @return true if it had to be created or repaired.
     * @throws KernelException if the kernel cannot be programmed.
     */
    boolean ensureTable() throws KernelException;

    /**
     * Reads back what the kernel holds.
     *
     * @return the actual plan: map and set elements, and egressd's addresses on the uplink.
     * @throws KernelException if it cannot be read.
     */
    KernelPlan read() throws KernelException;

    /**
     * Applies changes: the nft part in one atomic transaction; uplink addresses added before and removed after it
     * (the order {@link dev.egressd.core.plan.PlanDiff} gives). Returns only once the kernel holds the change.
     *
     * @param changes the changes, in order.
     * @throws KernelException if they could not all be applied; the nft part is then unchanged.
     */
    void apply(List<PlanChange> changes) throws KernelException;

    /**
     * The table's named counters (spoofed, unmapped, cap refusals...).
     *
     * @return counter name to packets; empty if unknown.
     * @throws KernelException if they cannot be read.
     */
    default Map<String, Long> counters() throws KernelException
    {
        return Map.of();
    }

    /**
     * The ARP sysctls that pair addresses on {@code lo} need (docs/region.md, "Addresses on lo"), as the last read
     * found them.
     *
     * @return null when not checked (pair addresses on the uplink, or no real kernel), {@code ok}, or the problem in
     *         one line naming each key.
     */
    default String arpSysctls()
    {
        return null;
    }

    /**
     * The addresses the host holds or routes as its own, as the last read found them: no pair or guest may have one
     * (docs/api.md, "Addresses that are the host's"). Safe to call from any thread.
     *
     * @return the snapshot; {@link HostAddresses#NONE} when not known (no real kernel, or nothing read yet).
     */
    default HostAddresses hostAddresses()
    {
        return HostAddresses.NONE;
    }

    /**
     * Opens a handle on the same kernel for the reconcile's reads and checks ({@link #ensureTable()},
     * {@link #read()}, {@link #counters()}, {@link #arpSysctls()}), on the calling thread and in its network
     * namespace, so that a read does not hold up the changes on this handle's thread. It never applies changes.
     * The default shares this handle: right for a kernel that may be called from two threads (the in-memory one).
     * A handle that is {@link AutoCloseable} is closed by its opener, on its thread.
     *
     * @return the reading handle.
     * @throws KernelException if it cannot be opened.
     */
    default Kernel reader() throws KernelException
    {
        return this;
    }

    /**
     * The ruleset's generation id: the kernel moves it with every committed nf_tables transaction in the
     * namespace, egressd's or anyone's (one small netlink request).
     *
     * @return the id, or -1 when it is not known (then nothing is inferred from it).
     */
    default long generation()
    {
        return -1;
    }

    /**
     * The ruleset generation the last successful {@link #apply} committed its transaction at, read on this handle
     * right after the transaction's ack: the generation before it plus one when nobody else committed in between.
     *
     * @return the generation, or -1 when unknown (no generation, or the last apply failed).
     */
    default long appliedGeneration()
    {
        return -1;
    }

    /**
     * Whether the last successful {@link #apply} committed an nf_tables transaction; when it did not (it changed
     * only uplink addresses, which are not nf_tables), {@link #appliedGeneration()} is the generation as the apply
     * left it, the one before it if nobody else committed.
     *
     * @return true if it committed one.
     */
    default boolean appliedTransaction()
    {
        return true;
    }

    /**
     * A fingerprint of the table's fixed part as this configuration renders it (chains, rules, sets' types), so a
     * start can tell whether the table a stop left is still the one it wants.
     *
     * @return the fingerprint, or null when there is none (then a start always reads the table).
     */
    default String tableFingerprint()
    {
        return null;
    }

    /**
     * What the kernel holds when its table is known, without reading it, to hold the table elements of
     * {@code table} (a start that trusts the stop's record: docs/operations.md, "Start-up"): those, with the
     * uplink addresses as they are read now (the ruleset's generation does not cover them).
     *
     * @param table a plan whose table elements the table holds (its uplink elements are ignored).
     * @return the plan.
     * @throws KernelException if the addresses cannot be read.
     */
    default KernelPlan readTrusting(final KernelPlan table) throws KernelException
    {
        return read();
    }
}
