package dev.egressd.core.alloc;

import dev.egressd.core.model.Ipv4Address;

/**
 * The owner of record of app slots, as the allocator sees it: asked before a slot is taken, told when one is given
 * up. With the local ledger (the default) this host is the only one placing machines on its pairs, so every claim
 * succeeds and the state file is the record. In region mode the implementation asks etcd, where the slots of every
 * host of the region are kept; it lives in the agent, so nat-core stays free of I/O.
 *
 * <p>Called on the allocator's (single) thread, in the middle of an operation: an implementation answers within
 * its own deadline and never throws.
 */
public interface SlotLedger
{
    /** What the owner of record said about a claim. */
    enum Claim
    {
        /** The slot is this machine's (newly, or it already was). */
        CLAIMED,
        /** Another machine of the region holds the slot: try another one. */
        TAKEN,
        /** The ledger cannot be reached, or the claim's outcome is unknown: the machine waits. */
        UNAVAILABLE
    }

    /**
     * Asks for a slot for a machine of this host.
     *
     * @param pair      the app pair's IPv4 address.
     * @param block     the block index.
     * @param machineId the machine.
     * @return the answer.
     */
    Claim claim(Ipv4Address pair, int block, String machineId);

    /**
     * Gives up a slot this host's machine held (removed, moved to another pair or app, or its pair released).
     * The implementation retries on its own if the owner of record cannot be reached now.
     *
     * @param pair      the app pair's IPv4 address.
     * @param block     the block index.
     * @param machineId the machine that held it.
     */
    void release(Ipv4Address pair, int block, String machineId);

    /** The single-host ledger: this host owns every slot of its pairs; the state file is the record. */
    SlotLedger LOCAL = new SlotLedger()
    {
        @Override
        public Claim claim(final Ipv4Address pair, final int block, final String machineId)
        {
            return Claim.CLAIMED;
        }

        @Override
        public void release(final Ipv4Address pair, final int block, final String machineId)
        {
        }

        @Override
        public String toString()
        {
            return "local";
        }
    };
}
