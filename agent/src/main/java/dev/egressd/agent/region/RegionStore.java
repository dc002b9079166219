package dev.egressd.agent.region;

import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;

import java.util.List;
import java.util.Map;

/**
 * The region's owner of record (etcd in production, {@code MemoryRegionStore} in unit tests): the region's apps,
 * pairs, slots and hosts, under {@code <prefix>/<region>/}. Every call answers within the store's deadline or
 * throws {@link RegionUnavailableException}; none blocks for longer. See docs/region.md for the keys.
 *
 * <p>A slot key never carries a lease: a slot passes from one owner to the next only by a compare-and-swap (a
 * handover) or by an explicit release, never because a host stopped renewing something.
 */
public interface RegionStore extends AutoCloseable
{
    /** One block of one app pair. */
    record SlotId(Ipv4Address pair, int block) implements Comparable<SlotId>
    {
        @Override
        public int compareTo(final SlotId o)
        {
            final int c = pair.compareTo(o.pair);
            return c != 0 ? c : Integer.compare(block, o.block);
        }
    }

    /**
     * A slot key's value.
     *
     * @param id                    the slot.
     * @param host                  the host whose machine holds it; null while quarantined.
     * @param machine               the machine; null while quarantined.
     * @param leaving               the holder's host removed the machine's kernel state for a handover.
     * @param quarantineUntilMillis wall-clock end of the quarantine after a host was deleted; 0 when held.
     * @param modRevision           the key's mod revision (the fencing token a release or handover compares).
     */
    record SlotRecord(SlotId id, String host, String machine, boolean leaving, long quarantineUntilMillis,
        long modRevision)
    {
        /** @return whether the slot waits out a quarantine (no holder). */
        public boolean quarantined()
        {
            return host == null;
        }
    }

    /** An app: its id and whether its machines without a slot are refused traffic. */
    record RegionApp(String id, boolean failClosed)
    {
    }

    /** An app-scoped pair of the region: its app, addresses (region included) and drain flag. */
    record RegionPair(String app, EgressPair pair, boolean drained)
    {
    }

    /**
     * A host of the region.
     *
     * @param id        the host id.
     * @param addresses the addresses the router reaches it by (its uplink addresses).
     * @param alive     whether its liveness key (on a lease) exists.
     * @param mark      the host's number in the region (1..{@link #MAX_HOST_MARK}), unique while its host key
     *                  exists: every router steers the host's blocks with this packet mark and routing table;
     *                  0 until the store assigned one at registration.
     */
    record HostRecord(String id, List<String> addresses, boolean alive, int mark)
    {
        /** A host before the store assigned its mark (what a host registers with). */
        public HostRecord(final String id, final List<String> addresses, final boolean alive)
        {
            this(id, addresses, alive, 0);
        }
    }

    /** The largest host mark: marks index the routers' routing tables above their base. */
    int MAX_HOST_MARK = 4095;

    /**
     * A router of the region, from its key on the router's own lease.
     *
     * @param id      the router's id.
     * @param applied the region revision whose slots and hosts the router's kernel steers (it applied every change
     *                up to and including it).
     */
    record RouterRecord(String id, long applied)
    {
    }

    /** Everything under the region's prefix at one revision. */
    record RegionSnapshot(long revision, Map<String, RegionApp> apps, Map<Ipv4Address, RegionPair> pairs,
        Map<SlotId, SlotRecord> slots, Map<String, HostRecord> hosts, Map<String, RouterRecord> routers)
    {
    }

    /** One key's change, as a watch reports it; {@code value} null means deleted. */
    sealed interface RegionChange
    {
        /** @return the revision of the change. */
        long revision();
    }

    /** An app key changed. */
    record AppChange(long revision, String id, RegionApp value) implements RegionChange
    {
    }

    /** A pair key changed. */
    record PairChange(long revision, Ipv4Address ipv4, RegionPair value) implements RegionChange
    {
    }

    /** A slot key changed. */
    record SlotChange(long revision, SlotId id, SlotRecord value) implements RegionChange
    {
    }

    /** A host key (durable) or its liveness key (on the host's lease) changed; value null: the host key is gone. */
    record HostChange(long revision, String id, HostRecord value) implements RegionChange
    {
    }

    /** A router's key (on its lease) changed; value null: the router stopped or its lease expired. */
    record RouterChange(long revision, String id, RouterRecord value) implements RegionChange
    {
    }

    /** What a watch delivers, on the store's own thread. */
    interface Listener
    {
        /**
         * Changes of one revision or more, in revision order.
         *
         * @param changes the changes.
         */
        void changed(List<RegionChange> changes);

        /** The watch's start revision was compacted away: read everything again and watch from there. */
        void compacted();

        /**
         * The watch failed and is retried by the store; nothing is lost (it resumes from the last revision seen).
         *
         * @param problem why.
         */
        void interrupted(String problem);
    }

    /** The answer to a claim or a handover. */
    sealed interface ClaimAnswer
    {
    }

    /** The slot is the machine's now (or already was: a repeated claim after an unknown outcome). */
    record Claimed(SlotRecord slot) implements ClaimAnswer
    {
    }

    /** Another machine, or a quarantine, holds the slot. */
    record Taken(SlotRecord holder) implements ClaimAnswer
    {
    }

    /** The machine already holds another slot of the region (on this host or another one). */
    record MachineElsewhere(String host, SlotId slot) implements ClaimAnswer
    {
    }

    /**
     * Reads everything under the region's prefix.
     *
     * @return the snapshot and its revision.
     * @throws RegionUnavailableException past the deadline, or etcd refused.
     */
    RegionSnapshot read() throws RegionUnavailableException;

    /**
     * Watches the region's keys from a revision (the snapshot's + 1) until closed. Resumes by itself after an
     * error from the last revision delivered.
     *
     * @param fromRevision the first revision to deliver.
     * @param listener     the listener.
     * @return closes the watch.
     */
    AutoCloseable watch(long fromRevision, Listener listener);

    /**
     * Claims a free slot for a machine: one transaction that writes the slot key and the machine key only if both
     * are absent (or the slot's quarantine is over). Idempotent: a claim of a slot the machine already holds on this
     * host answers {@link Claimed}.
     *
     * @param slot    the slot.
     * @param host    this host.
     * @param machine the machine.
     * @return the answer.
     * @throws RegionUnavailableException past the deadline (the outcome is unknown: re-read or repeat the claim,
     *                                    which is idempotent) or unreachable.
     */
    ClaimAnswer claim(SlotId slot, String host, String machine) throws RegionUnavailableException;

    /**
     * Releases a slot if the host's machine still holds it (compare the value), deleting the slot key and the
     * machine's key in one transaction.
     *
     * @param slot    the slot.
     * @param host    the host.
     * @param machine the machine.
     * @return true if it was released or was not there; false if someone else holds it (nothing changed).
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    boolean release(SlotId slot, String host, String machine) throws RegionUnavailableException;

    /**
     * Marks a held slot as leaving (the old host removed the machine's kernel state and flows): a handover to
     * another host may now take it. Compares the value.
     *
     * @param slot    the slot.
     * @param host    the host that holds it.
     * @param machine the machine.
     * @return true if marked (or already was).
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    boolean markLeaving(SlotId slot, String host, String machine) throws RegionUnavailableException;

    /**
     * Hands a machine's slot over from the host it leaves to this one, comparing the old value (leaving) and its
     * mod revision: the slot never passes through "free".
     *
     * @param machine  the machine.
     * @param fromHost the host it comes from.
     * @param toHost   this host.
     * @return {@link Claimed} with the slot on success; {@link Taken} with the current value when the slot is not
     *     (or no longer) the machine's leaving slot on {@code fromHost}.
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    ClaimAnswer handover(String machine, String fromHost, String toHost) throws RegionUnavailableException;

    /**
     * Deletes a host the operator confirmed fenced or powered off: each of its slots becomes a quarantined slot
     * (no holder) until the given time, its machine keys and its host key are deleted.
     *
     * @param host        the host.
     * @param untilMillis the quarantine's end, wall clock.
     * @return the slots quarantined.
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    List<SlotId> quarantineHost(String host, long untilMillis) throws RegionUnavailableException;

    /**
     * What {@link #quarantine(String, long)} did.
     *
     * @param slots    the slots quarantined.
     * @param revision the revision of its last write (the host's keys deleted), which routers must apply before
     *                 the host's steering is gone from them; 0 when the store cannot tell.
     */
    record Quarantine(List<SlotId> slots, long revision)
    {
    }

    /**
     * {@link #quarantineHost(String, long)}, and the revision its writes reached (also deletes the host's
     * {@code marks/<n>} key, freeing its mark). The default cannot tell the revision: a store that can overrides it.
     *
     * @param host        the host.
     * @param untilMillis the quarantine's end, wall clock.
     * @return the slots quarantined and the revision.
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    default Quarantine quarantine(final String host, final long untilMillis) throws RegionUnavailableException
    {
        return new Quarantine(quarantineHost(host, untilMillis), 0);
    }

    /**
     * Creates or updates an app.
     *
     * @param app the app.
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    void putApp(RegionApp app) throws RegionUnavailableException;

    /**
     * Creates a pair if its IPv4 key is absent.
     *
     * @param pair the pair.
     * @return null if created or the same pair already exists; else the existing different pair.
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    RegionPair createPair(RegionPair pair) throws RegionUnavailableException;

    /**
     * Sets a pair's drain flag.
     *
     * @param ipv4    the pair.
     * @param drained the flag.
     * @return false if the pair does not exist.
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    boolean setDrained(Ipv4Address ipv4, boolean drained) throws RegionUnavailableException;

    /**
     * Deletes a pair key (each host then releases its own slots on it).
     *
     * @param ipv4 the pair.
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    void deletePair(Ipv4Address ipv4) throws RegionUnavailableException;

    /**
     * Registers this host: its durable key (addresses and mark) and its liveness key on a lease the store keeps
     * alive (and re-grants after an outage) until closed. The first registration assigns the host the lowest mark
     * no other host key holds (one transaction with a {@code marks/<n>} key, created only if absent); a later one
     * keeps it.
     *
     * @param host the host (its mark is ignored).
     * @return the host as registered, with its mark.
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    HostRecord registerHost(HostRecord host) throws RegionUnavailableException;

    /**
     * Publishes that this router's kernel steers the region as of a revision: {@code routers/<id>}, on the
     * router's own lease (kept alive, re-granted after an outage, until closed), so a router that stops stops
     * counting. Hosts wait for every live router's revision before they say a placement's steering is confirmed.
     *
     * <p>Every publication is a change under the region's prefix, so the router's own watch delivers it back as a
     * {@link RouterChange}: a router must ignore RouterChanges (they never change what it steers), or each publish
     * would make it apply and publish again, forever.
     *
     * @param router  the router's id (a store publishes for one router only; a host id may be reused as one).
     * @param applied the last region revision applied.
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    void publishRouter(String router, long applied) throws RegionUnavailableException;

    /**
     * Round trips so far, with their total time and failures, for the metrics.
     *
     * @return the figures.
     */
    Stats stats();

    /**
     * Round-trip figures.
     *
     * @param requests  requests sent.
     * @param failures  requests that failed or passed their deadline.
     * @param conflicts claims and handovers answered with another holder.
     * @param nanos     total time of all requests.
     */
    record Stats(long requests, long failures, long conflicts, long nanos)
    {
    }

    @Override
    void close();
}
