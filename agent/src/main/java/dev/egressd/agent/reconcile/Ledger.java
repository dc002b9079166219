package dev.egressd.agent.reconcile;

import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.alloc.SlotLedger;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Machine;

/**
 * Who owns the apps, pairs and slots: this host alone ({@link LocalLedger}, the default: the state file is the
 * record) or the region's etcd ({@link RegionLedger}, docs/region.md). The loop calls it on its own thread: the
 * API's changes to region objects go through it, and it is told when a mutation commits or rolls back, so what it
 * wrote to the owner of record follows the loop's all-or-nothing rule.
 */
public interface Ledger
{
    /**
     * What the allocator asks before it takes a slot.
     *
     * @return the slot ledger.
     */
    SlotLedger slots();

    /**
     * This host's id in the region, or null with the local ledger.
     *
     * @return the id.
     */
    String hostId();

    /**
     * Whether the running mutation changed only what other hosts hold (their slots in this host's view): nothing in
     * this host's kernel plan or state file, so the loop may skip both.
     *
     * @return true if the kernel and the state need nothing.
     */
    default boolean localUnchanged()
    {
        return false;
    }

    /**
     * Whether several mutations may share one commit ({@link ControlLoop}'s group commit): {@link #begin()} once,
     * the mutations one after the other, then one {@link #committed()} or {@link #rolledBack()} for all of them.
     * A ledger that undoes per mutation (a refusal rolls back what that one mutation claimed) must say no: its
     * mutations then commit one by one.
     *
     * @return true if mutations may be grouped.
     */
    default boolean groupsMutations()
    {
        return false;
    }

    /**
     * The region revision the running mutation's writes reached so far (claims, handovers, quarantines), and forget
     * it: the loop takes it after each mutation for its answer ({@link MutationResult.Ok#revision()}).
     *
     * @return the revision, or 0 when it wrote nothing to a region.
     */
    default long takeRevision()
    {
        return 0;
    }

    /**
     * The revision of the region slot a machine of this host holds, as this host's cache has it (loop thread).
     *
     * @param machineId the machine.
     * @return the slot's mod revision, or 0 when it holds none (the local ledger, a machine-scoped pair, waiting).
     */
    default long slotRevision(final String machineId)
    {
        return 0;
    }

    /**
     * Waits, off the caller's thread, until the region's routers steer by a revision ({@code router-confirm-ms}).
     * Any thread.
     *
     * @param revision the revision.
     * @return the steering; {@link Steering#NOT_STEERED} at once with the local ledger.
     */
    default java.util.concurrent.CompletableFuture<Steering> steering(final long revision)
    {
        return java.util.concurrent.CompletableFuture.completedFuture(Steering.NOT_STEERED);
    }

    /** A mutation starts: forget what the previous one did. */
    void begin();

    /** The mutation is in the kernel and on disk: finish what waits for that (releases, handovers). */
    void committed();

    /** The mutation was undone: undo what it wrote to the owner of record (claims). */
    void rolledBack();

    /**
     * A new allocator was rebuilt from the state file (start-up, rollback): give it what the state file does not
     * hold (the other hosts' slots).
     *
     * @param allocator the new allocator.
     */
    void attach(EgressAllocator allocator);

    /**
     * Whether a machine new to this host may be placed here: in region mode, not while the region's ledger says it
     * holds a slot on another host (it must be handed over from there).
     *
     * @param machineId the machine.
     * @return null if it may, else the refusal.
     */
    default Outcome.Refusal admit(final String machineId)
    {
        return null;
    }

    /**
     * Creates or changes an app.
     *
     * @param allocator  the loop's allocator.
     * @param app        the app.
     * @param failClosed whether it fails closed.
     * @return the outcome.
     */
    Outcome putApp(EgressAllocator allocator, String app, boolean failClosed);

    /**
     * Adds an app pair.
     *
     * @param allocator the loop's allocator.
     * @param app       the app.
     * @param pair      the pair.
     * @return the outcome.
     */
    Outcome addPair(EgressAllocator allocator, String app, EgressPair pair);

    /**
     * Releases an app pair.
     *
     * @param allocator the loop's allocator.
     * @param app       the app.
     * @param ipv4      the pair.
     * @return the outcome.
     */
    Outcome releasePair(EgressAllocator allocator, String app, Ipv4Address ipv4);

    /**
     * Drains or undrains an app pair.
     *
     * @param allocator the loop's allocator.
     * @param app       the app.
     * @param ipv4      the pair.
     * @param drained   the new state.
     * @return the outcome.
     */
    Outcome setDrained(EgressAllocator allocator, String app, Ipv4Address ipv4, boolean drained);

    /**
     * Takes a machine over from the host it leaves, keeping its pair and block (region mode only).
     *
     * @param allocator the loop's allocator.
     * @param machine   the machine.
     * @param fromHost  the host it comes from.
     * @return the outcome.
     */
    Outcome handover(EgressAllocator allocator, Machine machine, String fromHost);

    /**
     * Removes a machine that moves to another host: its kernel state goes, its slot stays its own, marked
     * leaving, for the new host's handover (region mode only).
     *
     * @param allocator the loop's allocator.
     * @param machineId the machine.
     * @return the outcome.
     */
    Outcome removeForHandover(EgressAllocator allocator, String machineId);

    /**
     * Deletes another host the operator confirmed fenced or powered off: its slots wait out the quarantine, then
     * are free (region mode only).
     *
     * @param allocator the loop's allocator.
     * @param host      the host.
     * @return the outcome.
     */
    Outcome deleteHost(EgressAllocator allocator, String host);

    /**
     * Once a second on the loop thread: whether {@link #tick(EgressAllocator)} has work.
     *
     * @param allocator the loop's allocator.
     * @return true if a tick would change something or retry something.
     */
    boolean wantsTick(EgressAllocator allocator);

    /**
     * Retries what waits on the owner of record (placements, releases) and ends quarantines.
     *
     * @param allocator the loop's allocator.
     * @return the outcome.
     */
    Outcome tick(EgressAllocator allocator);
}
