package dev.egressd.agent.reconcile;

import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.region.RegionStore.ClaimAnswer;
import dev.egressd.agent.region.RegionStore.Claimed;
import dev.egressd.agent.region.RegionStore.HostRecord;
import dev.egressd.agent.region.RegionStore.MachineElsewhere;
import dev.egressd.agent.region.RegionStore.RegionApp;
import dev.egressd.agent.region.RegionStore.RegionChange;
import dev.egressd.agent.region.RegionStore.RegionPair;
import dev.egressd.agent.region.RegionStore.RegionSnapshot;
import dev.egressd.agent.region.RegionStore.SlotId;
import dev.egressd.agent.region.RegionStore.SlotRecord;
import dev.egressd.agent.region.RegionStore.Taken;
import dev.egressd.agent.region.RegionUnavailableException;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.alloc.Outcome.Done;
import dev.egressd.core.alloc.Outcome.Reason;
import dev.egressd.core.alloc.Outcome.Refusal;
import dev.egressd.core.alloc.SlotLedger;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Machine;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.LongSupplier;

/**
 * The region ledger (docs/region.md): etcd owns the region's apps, pairs and slots; this host keeps a cache of them,
 * fed by {@link RegionFeed}, and asks etcd before it takes a slot.
 *
 * <p>Everything here runs on the loop thread, except {@link #available()}, {@link #unavailable(String)} and the
 * figures for the metrics ({@link #revision()}, {@link #pendingReleases()}). The rules it keeps:
 * <ul>
 *   <li>A claim is one etcd transaction; a lost race is {@link SlotLedger.Claim#TAKEN} (the allocator tries the
 *       next slot); a claim whose outcome is unknown (deadline passed) makes the ledger unavailable until the feed
 *       has read everything again, so it is re-read before it is retried; never two owners.</li>
 *   <li>While etcd cannot be reached, no claim is even tried (each would cost the deadline): new machines wait
 *       with "region ledger unavailable"; everything placed keeps working, the kernel needs nothing from etcd.</li>
 *   <li>Releases wait until the mutation is in the kernel and on disk ({@link #committed()}), so a slot is never
 *       free in the region while this host may still send from it; one that cannot be sent is retried.</li>
 *   <li>For the slots it does not own, etcd wins: a local machine on a slot that etcd gives to another host is
 *       moved off it, logged at error level and counted ({@link #slotConflicts()}).</li>
 * </ul>
 */
public final class RegionLedger implements Ledger, SlotLedger
{
    private static final Logger LOG = LoggerFactory.getLogger(RegionLedger.class);

    /** The pending reason's start, and the API's answer, while etcd cannot be reached. */
    public static final String UNAVAILABLE_TEXT = "region ledger unavailable";

    /** The holder shown for a slot that waits out a deleted host's quarantine. */
    public static final String QUARANTINE = EgressAllocator.QUARANTINE;

    private record Release(SlotId slot, String machine, boolean leaving)
    {
    }

    /**
     * What {@code GET /v1/region} shows, published after every change on the loop thread.
     *
     * @param host            this host's id.
     * @param region          the region.
     * @param available       whether etcd answers (claims are tried).
     * @param problem         why not, or null.
     * @param revision        the last etcd revision applied to the cache.
     * @param hosts           the region's hosts.
     * @param slotsByHost     held slots per host (quarantined ones under {@code "(quarantine)"}).
     * @param pendingReleases releases not yet accepted by etcd.
     * @param mismatches      this host's machines whose slot the cache does not give to them.
     * @param routers         the region's live routers and the revision each applied, by id.
     */
    public record View(String host, String region, boolean available, String problem, long revision,
        List<HostRecord> hosts, Map<String, Integer> slotsByHost, int pendingReleases, List<String> mismatches,
        Map<String, Long> routers)
    {
    }

    private final RegionStore store;
    private final String host;
    private final String region;
    private final int quarantineSeconds;
    private final LongSupplier wallMillis;
    private final RouterRevisions routers;

    private volatile boolean available;
    private volatile String problem = "not read yet";
    private volatile Runnable onUnavailable = () -> { };
    private volatile long publishedRevision;
    private volatile int publishedPendingReleases;
    private volatile long slotConflicts;
    private volatile long lastApplyNanos = -1;

    // the cache of the region, loop thread only
    private final Map<String, RegionApp> apps = new TreeMap<>();
    private final Map<Ipv4Address, RegionPair> pairs = new TreeMap<>();
    private final Map<SlotId, SlotRecord> slots = new TreeMap<>();
    private final Map<String, HostRecord> hosts = new TreeMap<>();
    /** The revision of this host's last claim of each slot: watched events older than it are stale echoes. */
    private final Map<SlotId, Long> ownRevisions = new HashMap<>();
    private long revision;

    // the running mutation, loop thread only
    private final List<Release> claimed = new ArrayList<>();
    private final List<Release> releases = new ArrayList<>();
    private final List<Release> releasedEarly = new ArrayList<>();
    private final Set<String> leaving = new HashSet<>();
    private final ArrayDeque<Release> pendingReleases = new ArrayDeque<>();
    /** The running mutation applied only other hosts' slot changes that moved no machine of this host. */
    private boolean foreignOnly;
    /** The highest revision the running mutation's own writes reached ({@link #takeRevision()}). */
    private long mutationRevision;

    /**
     * Creates the ledger; it is unavailable until the feed's first read.
     *
     * @param store             the region's store.
     * @param host              this host's id.
     * @param region            the region.
     * @param quarantineSeconds how long a deleted host's blocks wait.
     * @param wallMillis        the wall clock (quarantines end at a wall-clock time, written in etcd).
     */
    public RegionLedger(final RegionStore store, final String host, final String region, final int quarantineSeconds,
        final LongSupplier wallMillis)
    {
        this(store, host, region, quarantineSeconds, wallMillis,
            new RouterRevisions(RouterRevisions.DEFAULT_CONFIRM_MILLIS, System::nanoTime));
    }

    /**
     * Creates the ledger; it is unavailable until the feed's first read.
     *
     * @param store             the region's store.
     * @param host              this host's id.
     * @param region            the region.
     * @param quarantineSeconds how long a deleted host's blocks wait.
     * @param wallMillis        the wall clock (quarantines end at a wall-clock time, written in etcd).
     * @param routers           the routers' table that placements wait on ({@code router-confirm-ms}); closed with
     *                          the ledger.
     */
    public RegionLedger(final RegionStore store, final String host, final String region, final int quarantineSeconds,
        final LongSupplier wallMillis, final RouterRevisions routers)
    {
        this.routers = Objects.requireNonNull(routers, "routers");
        this.store = Objects.requireNonNull(store, "store");
        this.host = Objects.requireNonNull(host, "host");
        this.region = Objects.requireNonNull(region, "region");
        this.quarantineSeconds = quarantineSeconds;
        this.wallMillis = wallMillis;
        publish();
    }

    /**
     * What to run when etcd stops answering (the feed then reads everything again once it is back).
     *
     * @param action the action; it must not block.
     */
    void onUnavailable(final Runnable action)
    {
        onUnavailable = action;
    }

    /** @return whether claims are tried (etcd answered and the cache was rebuilt since its last failure). */
    public boolean available()
    {
        return available;
    }

    /**
     * Marks etcd unreachable: no claim is tried until {@link #resync} has run again.
     *
     * @param why the failure.
     */
    void unavailable(final String why)
    {
        final boolean was = available;
        problem = why;
        available = false;
        if (was)
        {
            LOG.error("{}: {}; placed machines keep their egress, new ones wait", UNAVAILABLE_TEXT, why);
            onUnavailable.run();
        }
    }

    /** @return slots etcd gave to another host while a machine of this host held them. */
    public long slotConflicts()
    {
        return slotConflicts;
    }

    /** @return nanoseconds between the arrival of the last watched change and its application, or -1. */
    public long lastApplyNanos()
    {
        return lastApplyNanos;
    }

    /** @return the store's round-trip figures. */
    public RegionStore.Stats storeStats()
    {
        return store.stats();
    }

    /** @return the last etcd revision applied to this host's cache (any thread). */
    public long revision()
    {
        return publishedRevision;
    }

    /** @return releases not yet accepted by etcd (any thread). */
    public int pendingReleases()
    {
        return publishedPendingReleases;
    }

    /** @return the region. */
    public String region()
    {
        return region;
    }

    /** @return the region's live routers and their applied revisions (any thread; the feed updates it). */
    public RouterRevisions routers()
    {
        return routers;
    }

    /** Stops the routers' timer: waiting answers are answered unconfirmed. */
    public void close()
    {
        routers.close();
    }

    @Override
    public long takeRevision()
    {
        final long r = mutationRevision;
        mutationRevision = 0;
        return r;
    }

    private void wrote(final long revision)
    {
        mutationRevision = Math.max(mutationRevision, revision);
    }

    @Override
    public long slotRevision(final String machineId)
    {
        for (final SlotRecord s : slots.values())
        {
            if (host.equals(s.host()) && machineId.equals(s.machine()))
            {
                return s.modRevision();
            }
        }
        return 0;
    }

    @Override
    public java.util.concurrent.CompletableFuture<Steering> steering(final long revision)
    {
        return routers.await(revision);
    }

    @Override
    public SlotLedger slots()
    {
        return this;
    }

    @Override
    public String hostId()
    {
        return host;
    }

    // ------------------------------------------------------------------------------------------ SlotLedger

    @Override
    public Claim claim(final Ipv4Address pair, final int block, final String machineId)
    {
        if (!available)
        {
            return Claim.UNAVAILABLE;
        }
        final SlotId id = new SlotId(pair, block);
        try
        {
            ClaimAnswer answer = store.claim(id, host, machineId);
            if (answer instanceof MachineElsewhere elsewhere && host.equals(elsewhere.host())
                && elsewhere.slot() != null && !elsewhere.slot().equals(id)
                && (releaseEarly(elsewhere.slot(), machineId) || releaseLeftover(elsewhere.slot(), machineId)))
            {
                // the machine moves on this host (new app or pin; its old slot goes first, in this mutation), or
                // etcd still holds a slot for it that this host let go of (a claim whose answer was lost)
                answer = store.claim(id, host, machineId);
            }
            else if (answer instanceof Taken t && t.holder() != null && host.equals(t.holder().host())
                && releaseEarly(id, t.holder().machine()))
            {
                // this operation freed the slot (a removed machine) and gives it to a waiting one: the release
                // goes first, so the slot passes between this host's machines without looking taken
                answer = store.claim(id, host, machineId);
            }
            if (answer instanceof Claimed c)
            {
                slots.put(id, c.slot());
                ownRevisions.put(id, c.slot().modRevision());
                wrote(c.slot().modRevision());
                claimed.add(new Release(id, machineId, false));
                return Claim.CLAIMED;
            }
            if (answer instanceof Taken t)
            {
                if (t.holder() != null)
                {
                    slots.put(id, t.holder());
                }
                return Claim.TAKEN;
            }
            final MachineElsewhere elsewhere = (MachineElsewhere)answer;
            LOG.warn("machine {} already holds slot {} of {} on host {} in the region ledger; not placed here",
                machineId, elsewhere.slot().block(), elsewhere.slot().pair(), elsewhere.host());
            return Claim.TAKEN;
        }
        catch (final RegionUnavailableException e)
        {
            unavailable("claim of slot " + block + " of " + pair + ": " + e.getMessage());
            return Claim.UNAVAILABLE;
        }
    }

    private boolean releaseEarly(final SlotId slot, final String machineId)
    {
        for (int i = 0; i < releases.size(); i++)
        {
            final Release r = releases.get(i);
            if (r.slot().equals(slot) && r.machine().equals(machineId) && !r.leaving())
            {
                try
                {
                    store.release(slot, host, machineId);
                    slots.remove(slot);
                    releases.remove(i);
                    releasedEarly.add(r);
                    return true;
                }
                catch (final RegionUnavailableException e)
                {
                    unavailable("release of slot " + slot.block() + " of " + slot.pair() + ": " + e.getMessage());
                    return false;
                }
            }
        }
        return false;
    }

    /**
     * Releases a slot etcd gives to a machine of this host that does not hold it here (the machine asks for a new
     * slot, so it holds none): a claim whose answer was lost, committed after all.
     */
    private boolean releaseLeftover(final SlotId slot, final String machineId) throws RegionUnavailableException
    {
        LOG.info("region: slot {} of {} is still machine {}'s in etcd but not here (a lost answer); released",
            slot.block(), slot.pair(), machineId);
        if (store.release(slot, host, machineId))
        {
            slots.remove(slot);
            return true;
        }
        return false;
    }

    @Override
    public void release(final Ipv4Address pair, final int block, final String machineId)
    {
        releases.add(new Release(new SlotId(pair, block), machineId, leaving.contains(machineId)));
    }

    // ------------------------------------------------------------------------------------- mutation hooks

    @Override
    public boolean localUnchanged()
    {
        return foreignOnly;
    }

    @Override
    public void begin()
    {
        foreignOnly = false;
        claimed.clear();
        releases.clear();
        releasedEarly.clear();
        leaving.clear();
    }

    @Override
    public void committed()
    {
        for (final Release r : releases)
        {
            if (!send(r))
            {
                pendingReleases.add(r);
            }
        }
        begin();
        publish();
    }

    @Override
    public void rolledBack()
    {
        for (final Release r : claimed)
        {
            if (!send(r))
            {
                pendingReleases.add(r);
            }
        }
        for (final Release r : releasedEarly)
        {
            // the rebuilt allocator holds it again: hold it in etcd again (idempotent; etcd wins if taken meanwhile)
            reclaim(r.slot(), r.machine());
        }
        begin();
    }

    private boolean send(final Release r)
    {
        if (!available)
        {
            return false;
        }
        try
        {
            if (r.leaving())
            {
                store.markLeaving(r.slot(), host, r.machine());
            }
            else if (store.release(r.slot(), host, r.machine()))
            {
                slots.remove(r.slot());
            }
            return true;
        }
        catch (final RegionUnavailableException e)
        {
            unavailable("release of slot " + r.slot().block() + " of " + r.slot().pair() + ": " + e.getMessage());
            return false;
        }
    }

    /** Claims a slot this host holds again (idempotent); returns the other holder when it is taken, else null. */
    private SlotRecord reclaim(final SlotId id, final String machine)
    {
        if (!available)
        {
            return null;
        }
        try
        {
            final ClaimAnswer answer = store.claim(id, host, machine);
            if (answer instanceof Claimed c)
            {
                slots.put(id, c.slot());
                ownRevisions.put(id, c.slot().modRevision());
                wrote(c.slot().modRevision());
            }
            else if (answer instanceof Taken t && t.holder() != null && !host.equals(t.holder().host()))
            {
                slots.put(id, t.holder());
                return t.holder();
            }
        }
        catch (final RegionUnavailableException e)
        {
            unavailable("claim of slot " + id.block() + " of " + id.pair() + ": " + e.getMessage());
        }
        return null;
    }

    @Override
    public void attach(final EgressAllocator allocator)
    {
        allocator.regionReasons(true);
        for (final SlotRecord s : slots.values())
        {
            if (!host.equals(s.host()) && pairs.containsKey(s.id().pair()))
            {
                holdForeign(allocator, s);
            }
        }
    }

    // ----------------------------------------------------------------------------------- region objects

    private void requireAvailable()
    {
        if (!available)
        {
            throw new LedgerException(UNAVAILABLE_TEXT + ": " + problem);
        }
    }

    private LedgerException failed(final String what, final RegionUnavailableException e)
    {
        unavailable(what + ": " + e.getMessage());
        return new LedgerException(UNAVAILABLE_TEXT + ": " + what + ": " + e.getMessage()
            + (e.outcomeUnknown() ? " (outcome unknown: it is read again once etcd answers)" : ""));
    }

    @Override
    public Outcome putApp(final EgressAllocator allocator, final String app, final boolean failClosed)
    {
        requireAvailable();
        final Outcome outcome = allocator.upsertApp(app, failClosed);
        if (!outcome.ok())
        {
            return outcome;
        }
        final RegionApp value = new RegionApp(app, failClosed);
        if (!value.equals(apps.get(app)))
        {
            try
            {
                store.putApp(value);
            }
            catch (final RegionUnavailableException e)
            {
                throw failed("put app " + app, e);
            }
            apps.put(app, value);
        }
        return outcome;
    }

    @Override
    public Outcome addPair(final EgressAllocator allocator, final String app, final EgressPair pair)
    {
        requireAvailable();
        final RegionPair known = pairs.get(pair.ipv4());
        if (known != null && !known.app().equals(app))
        {
            return otherApp(known);
        }
        final Outcome outcome = allocator.addPair(app, pair);
        if (!outcome.ok())
        {
            return outcome;
        }
        try
        {
            if (!apps.containsKey(app))
            {
                final RegionApp value = new RegionApp(app, failClosed(allocator, app));
                store.putApp(value);
                apps.put(app, value);
            }
            final RegionPair value = new RegionPair(app, pair, false);
            final RegionPair existing = known != null ? null : store.createPair(value);
            if (existing != null && !existing.equals(value))
            {
                throw new LedgerException(otherApp(existing));
            }
            if (known == null)
            {
                pairs.put(pair.ipv4(), value);
            }
        }
        catch (final RegionUnavailableException e)
        {
            throw failed("add pair " + pair.ipv4(), e);
        }
        attach(allocator);
        return outcome;
    }

    private Refusal otherApp(final RegionPair pair)
    {
        return new Refusal(Reason.ADDRESS_IN_USE, "ipv4", "ipv4 " + pair.pair().ipv4() + " is already an egress pair of app "
            + pair.app() + " in region " + region);
    }

    private static boolean failClosed(final EgressAllocator allocator, final String app)
    {
        for (final EgressAllocator.AppView v : allocator.apps())
        {
            if (v.id().equals(app))
            {
                return v.failClosed();
            }
        }
        return true;
    }

    @Override
    public Outcome releasePair(final EgressAllocator allocator, final String app, final Ipv4Address ipv4)
    {
        requireAvailable();
        final Outcome outcome = allocator.releasePair(app, ipv4);
        if (!outcome.ok())
        {
            return outcome;
        }
        try
        {
            store.deletePair(ipv4);
        }
        catch (final RegionUnavailableException e)
        {
            throw failed("release pair " + ipv4, e);
        }
        pairs.remove(ipv4);
        return outcome;
    }

    @Override
    public Outcome setDrained(final EgressAllocator allocator, final String app, final Ipv4Address ipv4,
        final boolean drained)
    {
        requireAvailable();
        final Outcome outcome = allocator.setDrained(app, ipv4, drained);
        if (!outcome.ok())
        {
            return outcome;
        }
        try
        {
            store.setDrained(ipv4, drained);
        }
        catch (final RegionUnavailableException e)
        {
            throw failed((drained ? "drain" : "undrain") + " pair " + ipv4, e);
        }
        final RegionPair known = pairs.get(ipv4);
        if (known != null)
        {
            pairs.put(ipv4, new RegionPair(known.app(), known.pair(), drained));
        }
        return outcome;
    }

    @Override
    public Refusal admit(final String machineId)
    {
        for (final SlotRecord s : slots.values())
        {
            if (machineId.equals(s.machine()) && s.host() != null && !host.equals(s.host()))
            {
                return new Refusal(Reason.ALREADY_EXISTS, "from_host", "machine " + machineId + " holds slot "
                    + s.id().block() + " of " + s.id().pair() + " on host " + s.host() + (s.leaving()
                        ? ": take it over with from_host " + s.host()
                        : ": remove it there with DELETE /v1/machines/" + machineId + "?handover=true, then send it "
                            + "here with from_host " + s.host()));
            }
        }
        return null;
    }

    @Override
    public Outcome handover(final EgressAllocator allocator, final Machine machine, final String fromHost)
    {
        if (fromHost.equals(host))
        {
            return new Refusal(Reason.INVALID, "from_host", "from_host " + fromHost + " is this host");
        }
        if (allocator.machine(machine.id()).isPresent())
        {
            return new Refusal(Reason.ALREADY_EXISTS, "from_host", "machine " + machine.id()
                + " is already on this host; a handover brings a machine that is not here yet");
        }
        requireAvailable();
        final ClaimAnswer answer;
        try
        {
            answer = store.handover(machine.id(), fromHost, host);
        }
        catch (final RegionUnavailableException e)
        {
            throw failed("handover of machine " + machine.id() + " from " + fromHost, e);
        }
        if (!(answer instanceof Claimed claimedSlot))
        {
            final String holder = answer instanceof Taken t && t.holder() != null
                ? "its slot is held by " + (t.holder().quarantined() ? "a quarantine"
                    : "machine " + t.holder().machine() + " on host " + t.holder().host()
                    + (t.holder().leaving() ? " (leaving)" : " (not leaving)"))
                : "it holds no slot on host " + fromHost;
            return new Refusal(Reason.SLOT_TAKEN, "from_host", "machine " + machine.id() + " cannot be handed over from "
                + fromHost + ": " + holder + "; remove it there first with DELETE /v1/machines/" + machine.id()
                + "?handover=true");
        }
        final SlotRecord slot = claimedSlot.slot();
        slots.put(slot.id(), slot);
        ownRevisions.put(slot.id(), slot.modRevision());
        wrote(slot.modRevision());
        // One step: releasing the other host's hold first would let a machine waiting here claim the block.
        final Outcome restored = allocator.handOver(machine, slot.id().pair(), slot.id().block());
        if (!restored.ok())
        {
            LOG.error("machine {} was handed over from {} in the region ledger but cannot be placed here: {}",
                machine.id(), fromHost, ((Refusal)restored).message());
            throw new LedgerException((Refusal)restored);
        }
        LOG.info("machine {} handed over from host {}: slot {} of {} kept", machine.id(), fromHost,
            slot.id().block(), slot.id().pair());
        return restored;
    }

    @Override
    public Outcome removeForHandover(final EgressAllocator allocator, final String machineId)
    {
        requireAvailable();
        final var view = allocator.machine(machineId);
        if (view.isPresent() && view.get().egress().scope() != dev.egressd.core.model.Scope.APP)
        {
            return new Refusal(Reason.INVALID, "handover", "machine " + machineId
                + " holds no app slot: remove it without handover");
        }
        leaving.add(machineId);
        return allocator.removeMachine(machineId);
    }

    @Override
    public Outcome deleteHost(final EgressAllocator allocator, final String other)
    {
        if (other.equals(host))
        {
            return new Refusal(Reason.INVALID, "host", "host " + other + " is this host: delete it from another host");
        }
        final boolean known = hosts.containsKey(other)
            || slots.values().stream().anyMatch(s -> other.equals(s.host()));
        if (!known)
        {
            return new Refusal(Reason.INVALID, "host", "host " + other + " is not known in region " + region);
        }
        requireAvailable();
        final long until = wallMillis.getAsLong() + quarantineSeconds * 1000L;
        final List<SlotId> quarantined;
        try
        {
            final RegionStore.Quarantine done = store.quarantine(other, until);
            quarantined = done.slots();
            // a store that cannot tell the revision: the cache's, so the answer waits for something real at least
            wrote(done.revision() > 0 ? done.revision() : revision);
        }
        catch (final RegionUnavailableException e)
        {
            throw failed("delete host " + other, e);
        }
        hosts.remove(other);
        for (final SlotId id : quarantined)
        {
            final SlotRecord q = new SlotRecord(id, null, null, false, until, 0);
            slots.put(id, q);
            if (pairs.containsKey(id.pair()))
            {
                holdForeign(allocator, q);
            }
        }
        LOG.warn("host {} deleted from region {} (operator confirmed it fenced or off): {} slots quarantined for {} s",
            other, region, quarantined.size(), quarantineSeconds);
        return Done.NOTHING;
    }

    // -------------------------------------------------------------------------------------------- ticks

    @Override
    public boolean wantsTick(final EgressAllocator allocator)
    {
        if (!available)
        {
            return false;
        }
        return !pendingReleases.isEmpty() || quarantineOver() != null || allocator.anyWaitingWithFreeSlot();
    }

    private SlotRecord quarantineOver()
    {
        final long now = wallMillis.getAsLong();
        for (final SlotRecord s : slots.values())
        {
            if (s.quarantined() && s.quarantineUntilMillis() <= now)
            {
                return s;
            }
        }
        return null;
    }

    @Override
    public Outcome tick(final EgressAllocator allocator)
    {
        final Changes changes = new Changes();
        while (!pendingReleases.isEmpty() && available)
        {
            if (!send(pendingReleases.peek()))
            {
                break;
            }
            pendingReleases.poll();
        }
        for (SlotRecord over = quarantineOver(); over != null; over = quarantineOver())
        {
            slots.remove(over.id());
            changes.add(allocator.releaseForeign(over.id().pair(), over.id().block()));
        }
        changes.add(allocator.retryWaiting());
        publish();
        return changes.done();
    }

    // -------------------------------------------------------------------------------- feed (loop thread)

    /**
     * Applies watched changes to the cache and the allocator.
     *
     * @param allocator the loop's allocator.
     * @param batch     the changes, in revision order.
     * @param arrived   when they arrived (nanoTime), for the lag figure.
     * @param nanoTime  the clock.
     * @return the outcome: always done (a change that does not apply is logged).
     */
    Outcome apply(final EgressAllocator allocator, final List<RegionChange> batch, final long arrived,
        final LongSupplier nanoTime)
    {
        final Changes changes = new Changes();
        boolean onlyOthersSlots = true;
        for (final RegionChange change : batch)
        {
            onlyOthersSlots &= change instanceof RegionStore.RouterChange
                || change instanceof RegionStore.SlotChange s
                && (s.value() == null ? !host.equals(slotHost(s.id())) : !host.equals(s.value().host()));
            revision = Math.max(revision, change.revision());
            if (change instanceof RegionStore.AppChange a)
            {
                if (a.value() == null)
                {
                    apps.remove(a.id());
                }
                else
                {
                    apps.put(a.id(), a.value());
                    changes.add(allocator.upsertApp(a.id(), a.value().failClosed()));
                }
            }
            else if (change instanceof RegionStore.PairChange p)
            {
                applyPair(allocator, changes, p.ipv4(), p.value());
            }
            else if (change instanceof RegionStore.SlotChange s)
            {
                if (s.revision() <= ownRevisions.getOrDefault(s.id(), 0L))
                {
                    continue; // older than this host's own claim of the slot: a late echo, not the present
                }
                applySlot(allocator, changes, s.id(), s.value());
            }
            else if (change instanceof RegionStore.RouterChange r)
            {
                routers.changed(r); // the feed sends them straight to the table; harmless if one comes this way
            }
            else if (change instanceof RegionStore.HostChange h)
            {
                if (h.value() == null)
                {
                    hosts.remove(h.id());
                }
                else
                {
                    hosts.put(h.id(), h.value());
                }
            }
        }
        lastApplyNanos = Math.max(0, nanoTime.getAsLong() - arrived);
        publish();
        final Done done = changes.done();
        // other hosts' slots only, and no machine here moved: the kernel plan and the state file are as they were
        foreignOnly = onlyOthersSlots && done.changed().isEmpty() && claimed.isEmpty() && releases.isEmpty();
        return done;
    }

    private void applyPair(final EgressAllocator allocator, final Changes changes, final Ipv4Address ipv4,
        final RegionPair value)
    {
        if (value == null)
        {
            final RegionPair old = pairs.remove(ipv4);
            if (old != null && hasPair(allocator, old.app(), ipv4))
            {
                changes.add(allocator.releasePair(old.app(), ipv4));
            }
            return;
        }
        pairs.put(ipv4, value);
        if (!hasPair(allocator, value.app(), ipv4))
        {
            final RegionApp app = apps.get(value.app());
            if (app != null)
            {
                changes.add(allocator.upsertApp(app.id(), app.failClosed()));
            }
            changes.add(allocator.addPair(value.app(), value.pair()));
            for (final SlotRecord s : slots.values())
            {
                if (s.id().pair().equals(ipv4) && !host.equals(s.host()))
                {
                    holdForeign(allocator, s);
                }
            }
        }
        changes.add(allocator.setDrained(value.app(), ipv4, value.drained()));
    }

    private static boolean hasPair(final EgressAllocator allocator, final String app, final Ipv4Address ipv4)
    {
        for (final EgressAllocator.PairView v : allocator.pairs())
        {
            if (v.pair().ipv4().equals(ipv4))
            {
                return v.app().equals(app);
            }
        }
        return false;
    }

    private void applySlot(final EgressAllocator allocator, final Changes changes, final SlotId id,
        final SlotRecord value)
    {
        final SlotRecord old = value == null ? slots.remove(id) : slots.put(id, value);
        if (value == null)
        {
            if (old != null && !host.equals(old.host()))
            {
                changes.add(allocator.releaseForeign(id.pair(), id.block()));
            }
            else if (old != null && holds(allocator, id, old.machine()))
            {
                // this host's slot vanished from etcd, not by its own release (those leave the cache first):
                // claim it again before another host can, or let etcd win if one already did
                LOG.warn("region: slot {} of {} held here by machine {} was deleted in etcd; claiming it again",
                    id.block(), id.pair(), old.machine());
                final SlotRecord holder = reclaim(id, old.machine());
                if (holder != null)
                {
                    changes.add(holdForeign(allocator, holder));
                }
            }
            return;
        }
        if (host.equals(value.host()))
        {
            return; // ours: the allocator already holds it (or a leftover the next full read releases)
        }
        if (pairs.containsKey(id.pair()))
        {
            changes.add(holdForeign(allocator, value));
        }
    }

    private String slotHost(final SlotId id)
    {
        final SlotRecord s = slots.get(id);
        return s == null ? null : s.host();
    }

    private static boolean holds(final EgressAllocator allocator, final SlotId id, final String machine)
    {
        return machine != null && allocator.egress(machine).map(e -> e.scope() == dev.egressd.core.model.Scope.APP
            && e.pair().ipv4().equals(id.pair()) && e.block() == id.block()).orElse(false);
    }

    private Outcome holdForeign(final EgressAllocator allocator, final SlotRecord s)
    {
        final long before = allocator.regionConflicts();
        final Outcome outcome = allocator.holdForeign(s.id().pair(), s.id().block(),
            s.quarantined() ? QUARANTINE : s.host(), s.quarantined() ? null : s.machine());
        if (allocator.regionConflicts() != before)
        {
            slotConflicts += allocator.regionConflicts() - before;
            LOG.error("REGION CONFLICT: the region ledger gives slot {} of {} to {} (revision {}); this host ({})'s "
                + "machine on it was moved off (etcd wins for the slots this host does not own; its own last claim of "
                + "the slot: revision {})", s.id().block(), s.id().pair(),
                s.quarantined() ? "a quarantine" : "machine " + s.machine() + " on host " + s.host(), s.modRevision(),
                host, ownRevisions.get(s.id()));
        }
        if (!outcome.ok())
        {
            LOG.warn("region: slot {} of {} held by {} not applied: {}", s.id().block(), s.id().pair(), s.host(),
                ((Refusal)outcome).message());
        }
        return outcome;
    }

    /**
     * Rebuilds the cache from a full read (start-up, after an outage or a compaction) and puts the allocator in
     * line with it: etcd wins for pairs and for the slots this host does not own; this host's slots that etcd lost
     * are claimed again, and those etcd still gives to machines this host no longer has are released.
     *
     * @param allocator the loop's allocator.
     * @param snapshot  the read.
     * @return the outcome: always done.
     */
    Outcome resync(final EgressAllocator allocator, final RegionSnapshot snapshot)
    {
        final Changes changes = new Changes();
        // etcd just answered the full read: the claims and releases below (and the settles they cause) go to it
        available = true;
        problem = null;
        apps.clear();
        apps.putAll(snapshot.apps());
        pairs.clear();
        pairs.putAll(snapshot.pairs());
        hosts.clear();
        hosts.putAll(snapshot.hosts());
        routers.reset(snapshot.revision(), snapshot.routers());
        final Map<SlotId, SlotRecord> previous = new HashMap<>(slots);
        slots.clear();
        slots.putAll(snapshot.slots());
        ownRevisions.clear();
        revision = snapshot.revision();
        for (final RegionApp app : snapshot.apps().values())
        {
            changes.add(allocator.upsertApp(app.id(), app.failClosed()));
        }
        // pairs: etcd is the record
        for (final EgressAllocator.PairView v : allocator.pairs())
        {
            final RegionPair p = pairs.get(v.pair().ipv4());
            if (p == null || !p.app().equals(v.app()))
            {
                LOG.warn("region: pair {} of app {} is not in the region ledger; released here", v.pair().ipv4(),
                    v.app());
                changes.add(allocator.releasePair(v.app(), v.pair().ipv4()));
            }
        }
        for (final RegionPair p : pairs.values())
        {
            applyPair(allocator, changes, p.pair().ipv4(), p);
        }
        // the other hosts' slots
        for (final SlotRecord old : previous.values())
        {
            if (!host.equals(old.host()) && !slots.containsKey(old.id()) && pairs.containsKey(old.id().pair()))
            {
                changes.add(allocator.releaseForeign(old.id().pair(), old.id().block()));
            }
        }
        final Set<SlotId> local = new LinkedHashSet<>();
        for (final EgressAllocator.PairView v : allocator.pairs())
        {
            for (final EgressAllocator.SlotHolder h : v.slots())
            {
                final SlotId id = new SlotId(v.pair().ipv4(), h.block());
                if (h.host() == null)
                {
                    local.add(id);
                    final SlotRecord s = slots.get(id);
                    if (s == null)
                    {
                        LOG.warn("region: slot {} of {} held here by machine {} is not in the region ledger; claiming "
                            + "it again", h.block(), id.pair(), h.machine());
                        final SlotRecord holder = reclaim(id, h.machine());
                        if (holder != null)
                        {
                            changes.add(holdForeign(allocator, holder)); // taken meanwhile: etcd wins, loudly
                        }
                    }
                }
                else if (!slots.containsKey(id))
                {
                    changes.add(allocator.releaseForeign(id.pair(), id.block()));
                }
            }
        }
        for (final SlotRecord s : new ArrayList<>(slots.values()))
        {
            if (host.equals(s.host()))
            {
                if (!local.contains(s.id()) && !s.leaving())
                {
                    LOG.info("region: slot {} of {} is still this host's for machine {}, which is gone; released",
                        s.id().block(), s.id().pair(), s.machine());
                    if (!send(new Release(s.id(), s.machine(), false)))
                    {
                        pendingReleases.add(new Release(s.id(), s.machine(), false));
                    }
                }
            }
            else if (pairs.containsKey(s.id().pair()))
            {
                changes.add(holdForeign(allocator, s));
            }
        }
        changes.add(allocator.retryWaiting());
        publish();
        return changes.done();
    }

    /** Publishes the figures other threads read (metrics): cheap, after every change. */
    private void publish()
    {
        publishedRevision = revision;
        publishedPendingReleases = pendingReleases.size();
    }

    /**
     * What {@code GET /v1/region} shows; on the loop thread (it walks the allocator's pairs, so it is built when
     * asked, not after every watched change).
     *
     * @param allocator the loop's allocator.
     * @return the view.
     */
    public View view(final EgressAllocator allocator)
    {
        final Map<String, Integer> byHost = new TreeMap<>();
        for (final SlotRecord s : slots.values())
        {
            byHost.merge(s.quarantined() ? QUARANTINE : s.host(), 1, Integer::sum);
        }
        final List<String> mismatches = new ArrayList<>();
        for (final EgressAllocator.PairView v : allocator.pairs())
        {
            for (final EgressAllocator.SlotHolder h : v.slots())
            {
                if (h.host() == null)
                {
                    final SlotRecord s = slots.get(new SlotId(v.pair().ipv4(), h.block()));
                    if (s == null || !host.equals(s.host()) || !h.machine().equals(s.machine()))
                    {
                        mismatches.add("machine " + h.machine() + " on slot " + h.block() + " of "
                            + v.pair().ipv4() + ": the region ledger says "
                            + (s == null ? "free" : s.quarantined() ? "quarantined" : s.host() + "/" + s.machine()));
                    }
                }
            }
        }
        return new View(host, region, available, problem, revision, List.copyOf(hosts.values()), byHost,
            pendingReleases.size(), mismatches, routers.applied());
    }

    /** Collects the machines changed by several allocator calls into one outcome. */
    private static final class Changes
    {
        private final LinkedHashSet<String> changed = new LinkedHashSet<>();

        void add(final Outcome outcome)
        {
            if (outcome instanceof Done done)
            {
                changed.addAll(done.changed());
            }
        }

        Done done()
        {
            return changed.isEmpty() ? Done.NOTHING : new Done(List.copyOf(changed));
        }
    }
}
