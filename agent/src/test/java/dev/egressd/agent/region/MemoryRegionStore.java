package dev.egressd.agent.region;

import dev.egressd.agent.region.RegionKeys.AppValue;
import dev.egressd.agent.region.RegionKeys.HostValue;
import dev.egressd.agent.region.RegionKeys.MachineValue;
import dev.egressd.agent.region.RegionKeys.PairValue;
import dev.egressd.agent.region.RegionKeys.RouterValue;
import dev.egressd.agent.region.RegionKeys.SlotValue;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An in-memory {@link RegionStore} with etcd's semantics as {@link EtcdRegionStore} uses them, for tests of the
 * code above the store: one revision per write, create and mod revisions, leases that expire, a history that watches
 * replay and that {@link Backend#compact(long)} cuts, and a switch ({@link Backend#setAvailable(boolean)}) that makes
 * every call throw {@link RegionUnavailableException} (a write's outcome then unknown, as after a timeout) and
 * interrupts watches until it is turned back.
 *
 * <p>Several stores (hosts) may share one {@link Backend} (the etcd cluster), each with its own thread for watch
 * deliveries, its own lease and its own stats.
 */
public final class MemoryRegionStore implements RegionStore
{
    /** The shared "etcd": keys with revisions, history, leases. */
    public static final class Backend implements AutoCloseable
    {
        private final TreeMap<String, Entry> kv = new TreeMap<>();
        private final List<Event> history = new ArrayList<>();
        private final Map<Long, Lease> leases = new HashMap<>();
        private final List<MemoryRegionStore> clients = new ArrayList<>();
        private final ScheduledExecutorService sweeper = Executors.newSingleThreadScheduledExecutor(r ->
        {
            final Thread t = new Thread(r, "memory-region-leases");
            t.setDaemon(true);
            return t;
        });
        private long revision = 1;
        private long compactedBefore;
        private long nextLease = 1;
        private boolean available = true;
        /** How many times it was switched off: a watch that saw fewer was cut off in between. */
        private long outages;
        private boolean failNextWriteAfterApplying;

        /** A backend with lease expiry checked every 50 ms. */
        public Backend()
        {
            sweeper.scheduleWithFixedDelay(this::expireLeases, 50, 50, TimeUnit.MILLISECONDS);
        }

        /**
         * Turns the backend off (every call throws, watches are interrupted) or on again (watches resume from where
         * they were; leases are renewed in full, as etcd does when its leader starts).
         *
         * @param available whether it answers.
         */
        public void setAvailable(final boolean available)
        {
            synchronized (this)
            {
                if (this.available && !available)
                {
                    outages++;
                }
                this.available = available;
                if (available)
                {
                    final long now = System.nanoTime();
                    leases.values().forEach(l -> l.expiresAt = now + l.ttlNanos);
                }
            }
            notifyClients();
        }

        /** The next write is applied and then answered with an unknown outcome, as a write whose answer was lost. */
        public synchronized void failNextWriteAfterApplying()
        {
            failNextWriteAfterApplying = true;
        }

        /**
         * Forgets the history before a revision: a watch that needs it is told {@link Listener#compacted()}.
         *
         * @param before the first revision kept.
         */
        public void compact(final long before)
        {
            synchronized (this)
            {
                compactedBefore = Math.max(compactedBefore, before);
            }
            notifyClients();
        }

        /** @return the current revision. */
        public synchronized long revision()
        {
            return revision;
        }

        @Override
        public void close()
        {
            sweeper.shutdownNow();
        }

        private void expireLeases()
        {
            final List<String> expired = new ArrayList<>();
            synchronized (this)
            {
                if (!available)
                {
                    return;
                }
                final long now = System.nanoTime();
                for (final Iterator<Lease> it = leases.values().iterator(); it.hasNext();)
                {
                    final Lease lease = it.next();
                    if (now - lease.expiresAt >= 0)
                    {
                        it.remove();
                        kv.forEach((k, e) ->
                        {
                            if (e.lease == lease.id)
                            {
                                expired.add(k);
                            }
                        });
                    }
                }
                if (!expired.isEmpty())
                {
                    revision++;
                    expired.forEach(k ->
                    {
                        kv.remove(k);
                        history.add(new Event(revision, k, null));
                    });
                }
            }
            if (!expired.isEmpty())
            {
                notifyClients();
            }
        }

        private void notifyClients()
        {
            final List<MemoryRegionStore> all;
            synchronized (this)
            {
                all = new ArrayList<>(clients);
            }
            all.forEach(MemoryRegionStore::poke);
        }

        /** Applies one transaction's writes at one new revision. */
        private long apply(final Map<String, Object> puts, final Map<String, Long> putLeases, final List<String> deletes)
        {
            revision++;
            puts.forEach((k, v) ->
            {
                final Entry old = kv.get(k);
                kv.put(k, new Entry(v, old == null ? revision : old.create, revision,
                    putLeases.getOrDefault(k, 0L)));
                history.add(new Event(revision, k, v));
            });
            for (final String k : deletes)
            {
                if (kv.remove(k) != null)
                {
                    history.add(new Event(revision, k, null));
                }
            }
            return revision;
        }
    }

    private record Entry(Object value, long create, long mod, long lease)
    {
    }

    private record Event(long revision, String key, Object value)
    {
    }

    private static final class Lease
    {
        final long id;
        final long ttlNanos;
        long expiresAt;

        Lease(final long id, final long ttlNanos)
        {
            this.id = id;
            this.ttlNanos = ttlNanos;
            this.expiresAt = System.nanoTime() + ttlNanos;
        }
    }

    private final Backend backend;
    private final RegionKeys keys;
    private final Duration leaseTtl;
    private final ScheduledExecutorService thread;
    private final List<MemoryWatch> watches = new ArrayList<>();
    private final AtomicLong requests = new AtomicLong();
    private final AtomicLong failures = new AtomicLong();
    private final AtomicLong conflicts = new AtomicLong();
    private final AtomicLong nanos = new AtomicLong();
    private String host;
    private long leaseId;
    private String router;
    private long routerApplied;
    private long routerLeaseId;
    private volatile boolean closed;

    /**
     * A store (one host's client) on a backend.
     *
     * @param backend  the shared backend.
     * @param region   the region.
     * @param leaseTtl the TTL of this host's liveness lease.
     */
    public MemoryRegionStore(final Backend backend, final String region, final Duration leaseTtl)
    {
        this.backend = backend;
        this.keys = new RegionKeys(EtcdRegionStore.DEFAULT_PREFIX, region);
        this.leaseTtl = leaseTtl;
        this.thread = Executors.newSingleThreadScheduledExecutor(r ->
        {
            final Thread t = new Thread(r, "memory-region-" + region);
            t.setDaemon(true);
            return t;
        });
        synchronized (backend)
        {
            backend.clients.add(this);
        }
    }

    /** A store on a backend of its own, with a 10 s lease. */
    public MemoryRegionStore(final String region)
    {
        this(new Backend(), region, EtcdRegionStore.DEFAULT_LEASE_TTL);
    }

    /** @return the backend, to switch it off or compact it. */
    public Backend backend()
    {
        return backend;
    }

    // ---------------------------------------------------------------------------------------------------------

    /** Starts a request: counts it and throws when the backend is off. Call with the backend's lock held. */
    private void begin(final String what, final boolean write) throws RegionUnavailableException
    {
        requests.incrementAndGet();
        if (closed)
        {
            throw new IllegalStateException("the region store is closed");
        }
        if (!backend.available)
        {
            failures.incrementAndGet();
            throw new RegionUnavailableException(what + ": the region store is unavailable", write, null);
        }
    }

    /** Ends a write: the simulated lost answer, if one was asked for. */
    private void endWrite(final String what) throws RegionUnavailableException
    {
        if (backend.failNextWriteAfterApplying)
        {
            backend.failNextWriteAfterApplying = false;
            failures.incrementAndGet();
            throw new RegionUnavailableException(what + ": the answer was lost", true, null);
        }
    }

    private long write(final Map<String, Object> puts, final List<String> deletes)
    {
        final long rev = backend.apply(puts, Map.of(), deletes);
        backend.notifyClients();
        return rev;
    }

    private Entry get(final String key)
    {
        return backend.kv.get(key);
    }

    private SlotRecord record(final SlotId id, final Entry e)
    {
        final SlotValue v = (SlotValue) e.value;
        return new SlotRecord(id, v.host(), v.machine(), v.leaving(), v.quarantineUntil(), e.mod);
    }

    @Override
    public RegionSnapshot read() throws RegionUnavailableException
    {
        final long start = System.nanoTime();
        try
        {
            synchronized (backend)
            {
                begin("read the region", false);
                final Map<String, RegionApp> apps = new TreeMap<>();
                final Map<Ipv4Address, RegionPair> pairs = new TreeMap<>();
                final Map<SlotId, SlotRecord> slots = new TreeMap<>();
                final Map<String, HostRecord> hosts = new TreeMap<>();
                final Map<String, RouterRecord> routers = new TreeMap<>();
                for (final Map.Entry<String, Entry> e : backend.kv.subMap(keys.base(), keys.base() + '\uffff')
                    .entrySet())
                {
                    final String key = e.getKey().substring(keys.base().length());
                    if (key.startsWith(RegionKeys.APPS))
                    {
                        final String id = key.substring(RegionKeys.APPS.length());
                        apps.put(id, new RegionApp(id, ((AppValue) e.getValue().value).failClosed()));
                    }
                    else if (key.startsWith(RegionKeys.PAIRS))
                    {
                        final RegionPair pair = pair((PairValue) e.getValue().value);
                        pairs.put(pair.pair().ipv4(), pair);
                    }
                    else if (key.startsWith(RegionKeys.SLOTS))
                    {
                        final SlotId id = RegionKeys.parseSlot(key.substring(RegionKeys.SLOTS.length()));
                        slots.put(id, record(id, e.getValue()));
                    }
                    else if (key.startsWith(RegionKeys.HOSTS))
                    {
                        final String id = key.substring(RegionKeys.HOSTS.length());
                        final HostValue v = (HostValue) e.getValue().value;
                        hosts.put(id, new HostRecord(id, v.addresses(), backend.kv.containsKey(keys.alive(id)),
                            v.mark()));
                    }
                    else if (key.startsWith(RegionKeys.ROUTERS))
                    {
                        final String id = key.substring(RegionKeys.ROUTERS.length());
                        routers.put(id, new RouterRecord(id, ((RouterValue) e.getValue().value).applied()));
                    }
                }
                return new RegionSnapshot(backend.revision, apps, pairs, slots, hosts, routers);
            }
        }
        finally
        {
            nanos.addAndGet(System.nanoTime() - start);
        }
    }

    @Override
    public ClaimAnswer claim(final SlotId slot, final String host, final String machine)
        throws RegionUnavailableException
    {
        RegionKeys.slot("slot", slot);
        RegionKeys.id("host", host);
        RegionKeys.id("machine", machine);
        synchronized (backend)
        {
            begin("claim " + slot, true);
            final Entry s = get(keys.slot(slot));
            final Entry m = get(keys.machine(machine));
            final SlotRecord current = s == null ? null : record(slot, s);
            final boolean quarantineOver = current != null && current.quarantined()
                && current.quarantineUntilMillis() <= System.currentTimeMillis();
            if ((s == null || quarantineOver) && m == null)
            {
                final Map<String, Object> puts = new TreeMap<>();
                puts.put(keys.slot(slot), new SlotValue(host, machine, false, 0));
                puts.put(keys.machine(machine), new MachineValue(host, slot.pair().toString(), slot.block()));
                final long rev = write(puts, List.of());
                endWrite("claim " + slot);
                return new Claimed(new SlotRecord(slot, host, machine, false, 0, rev));
            }
            if (current != null && host.equals(current.host()) && machine.equals(current.machine())
                && !current.leaving())
            {
                return new Claimed(current);
            }
            conflicts.incrementAndGet();
            if (s != null && !quarantineOver)
            {
                return new Taken(current);
            }
            final MachineValue elsewhere = (MachineValue) m.value;
            return new MachineElsewhere(elsewhere.host(), new SlotId(Ipv4Address.parse(elsewhere.pair()),
                elsewhere.block()));
        }
    }

    @Override
    public boolean release(final SlotId slot, final String host, final String machine)
        throws RegionUnavailableException
    {
        RegionKeys.slot("slot", slot);
        synchronized (backend)
        {
            begin("release " + slot, true);
            final Entry s = get(keys.slot(slot));
            if (s == null)
            {
                return true;
            }
            final SlotValue v = (SlotValue) s.value;
            if (!host.equals(v.host()) || !machine.equals(v.machine()))
            {
                return false;
            }
            write(Map.of(), List.of(keys.slot(slot), keys.machine(machine)));
            endWrite("release " + slot);
            return true;
        }
    }

    @Override
    public boolean markLeaving(final SlotId slot, final String host, final String machine)
        throws RegionUnavailableException
    {
        RegionKeys.slot("slot", slot);
        synchronized (backend)
        {
            begin("mark " + slot + " leaving", true);
            final Entry s = get(keys.slot(slot));
            if (s == null)
            {
                return false;
            }
            if (s.value.equals(new SlotValue(host, machine, true, 0)))
            {
                return true;
            }
            if (!s.value.equals(new SlotValue(host, machine, false, 0)))
            {
                return false;
            }
            write(Map.of(keys.slot(slot), new SlotValue(host, machine, true, 0)), List.of());
            endWrite("mark " + slot + " leaving");
            return true;
        }
    }

    @Override
    public ClaimAnswer handover(final String machine, final String fromHost, final String toHost)
        throws RegionUnavailableException
    {
        return handover(machine, fromHost, toHost, -1);
    }

    /**
     * As {@link EtcdRegionStore#handover(String, String, String, long)}: fenced by the leaving slot's mod revision.
     *
     * @param machine     the machine.
     * @param fromHost    the host it comes from.
     * @param toHost      this host.
     * @param modRevision the leaving slot's mod revision, or -1 for whichever is current.
     * @return the answer.
     * @throws RegionUnavailableException when switched off.
     */
    public ClaimAnswer handover(final String machine, final String fromHost, final String toHost,
        final long modRevision) throws RegionUnavailableException
    {
        synchronized (backend)
        {
            begin("handover " + machine, true);
            final Entry m = get(keys.machine(machine));
            if (m == null)
            {
                conflicts.incrementAndGet();
                return new Taken(null);
            }
            final MachineValue index = (MachineValue) m.value;
            final SlotId slot = new SlotId(Ipv4Address.parse(index.pair()), index.block());
            final Entry s = get(keys.slot(slot));
            final SlotRecord current = s == null ? null : record(slot, s);
            if (current != null && toHost.equals(current.host()) && machine.equals(current.machine())
                && !current.leaving() && toHost.equals(index.host()))
            {
                return new Claimed(current);
            }
            if (current == null || !fromHost.equals(current.host()) || !machine.equals(current.machine())
                || !current.leaving() || modRevision >= 0 && current.modRevision() != modRevision)
            {
                conflicts.incrementAndGet();
                return new Taken(current);
            }
            final Map<String, Object> puts = new TreeMap<>();
            puts.put(keys.slot(slot), new SlotValue(toHost, machine, false, 0));
            puts.put(keys.machine(machine), new MachineValue(toHost, index.pair(), index.block()));
            final long rev = write(puts, List.of());
            endWrite("handover " + slot);
            return new Claimed(new SlotRecord(slot, toHost, machine, false, 0, rev));
        }
    }

    @Override
    public List<SlotId> quarantineHost(final String host, final long untilMillis) throws RegionUnavailableException
    {
        return quarantine(host, untilMillis).slots();
    }

    @Override
    public Quarantine quarantine(final String host, final long untilMillis) throws RegionUnavailableException
    {
        synchronized (backend)
        {
            begin("quarantine host " + host, true);
            final List<SlotId> quarantined = new ArrayList<>();
            final Map<String, Object> puts = new TreeMap<>();
            final List<String> deletes = new ArrayList<>();
            for (final Map.Entry<String, Entry> e : backend.kv.subMap(keys.base(), keys.base() + '\uffff').entrySet())
            {
                final String key = e.getKey().substring(keys.base().length());
                if (key.startsWith(RegionKeys.SLOTS) && host.equals(((SlotValue) e.getValue().value).host()))
                {
                    quarantined.add(RegionKeys.parseSlot(key.substring(RegionKeys.SLOTS.length())));
                    puts.put(e.getKey(), new SlotValue(null, null, false, untilMillis));
                }
                else if (key.startsWith(RegionKeys.MACHINES) && host.equals(((MachineValue) e.getValue().value).host()))
                {
                    deletes.add(e.getKey());
                }
                else if (key.startsWith(RegionKeys.MARKS) && host.equals(e.getValue().value))
                {
                    deletes.add(e.getKey());
                }
            }
            deletes.add(keys.host(host));
            deletes.add(keys.alive(host));
            final long rev = write(puts, deletes);
            endWrite("quarantine host " + host);
            return new Quarantine(quarantined, rev);
        }
    }

    @Override
    public void putApp(final RegionApp app) throws RegionUnavailableException
    {
        RegionKeys.id("app", app.id());
        synchronized (backend)
        {
            begin("put app " + app.id(), true);
            write(Map.of(keys.app(app.id()), new AppValue(app.failClosed())), List.of());
            endWrite("put app");
        }
    }

    @Override
    public RegionPair createPair(final RegionPair pair) throws RegionUnavailableException
    {
        RegionKeys.id("app", pair.app());
        synchronized (backend)
        {
            begin("create pair " + pair.pair().ipv4(), true);
            final Entry e = get(keys.pair(pair.pair().ipv4()));
            if (e == null)
            {
                write(Map.of(keys.pair(pair.pair().ipv4()), value(pair)), List.of());
                endWrite("create pair");
                return null;
            }
            final RegionPair existing = pair((PairValue) e.value);
            return existing.app().equals(pair.app()) && existing.pair().equals(pair.pair()) ? null : existing;
        }
    }

    @Override
    public boolean setDrained(final Ipv4Address ipv4, final boolean drained) throws RegionUnavailableException
    {
        synchronized (backend)
        {
            begin("drain pair " + ipv4, true);
            final Entry e = get(keys.pair(ipv4));
            if (e == null)
            {
                return false;
            }
            final RegionPair existing = pair((PairValue) e.value);
            write(Map.of(keys.pair(ipv4), value(new RegionPair(existing.app(), existing.pair(), drained))), List.of());
            endWrite("drain pair");
            return true;
        }
    }

    @Override
    public void deletePair(final Ipv4Address ipv4) throws RegionUnavailableException
    {
        synchronized (backend)
        {
            begin("delete pair " + ipv4, true);
            write(Map.of(), List.of(keys.pair(ipv4)));
            endWrite("delete pair");
        }
    }

    @Override
    public HostRecord registerHost(final HostRecord record) throws RegionUnavailableException
    {
        RegionKeys.id("host", record.id());
        final HostRecord registered;
        synchronized (backend)
        {
            begin("register host " + record.id(), true);
            if (host != null && !host.equals(record.id()))
            {
                throw new IllegalStateException("host: this store registered " + host + " already");
            }
            final boolean first = host == null;
            host = record.id();
            final Entry old = get(keys.host(host));
            int mark = old == null ? 0 : ((HostValue) old.value).mark();
            if (mark > 0 && get(keys.mark(mark)) != null && !host.equals(get(keys.mark(mark)).value))
            {
                mark = 0; // its mark is another host's: a new one
            }
            if (mark == 0)
            {
                mark = 1;
                while (mark <= MAX_HOST_MARK && get(keys.mark(mark)) != null)
                {
                    mark++;
                }
                if (mark > MAX_HOST_MARK)
                {
                    throw new RegionUnavailableException("register host " + host + ": all " + MAX_HOST_MARK
                        + " host marks are taken", false, null);
                }
            }
            final Map<String, Object> puts = new TreeMap<>();
            puts.put(keys.host(host), new HostValue(List.copyOf(record.addresses()), mark));
            puts.put(keys.mark(mark), host);
            write(puts, List.of());
            registered = new HostRecord(host, List.copyOf(record.addresses()), true, mark);
            keepAlive();
            if (first)
            {
                final long period = leaseTtl.toMillis() / 3;
                thread.scheduleWithFixedDelay(() ->
                {
                    synchronized (backend)
                    {
                        if (backend.available && !closed)
                        {
                            keepAlive();
                        }
                    }
                }, period, period, TimeUnit.MILLISECONDS);
            }
        }
        backend.notifyClients();
        return registered;
    }

    @Override
    public void publishRouter(final String id, final long applied) throws RegionUnavailableException
    {
        RegionKeys.id("router", id);
        if (applied < 0)
        {
            throw new IllegalArgumentException("applied: " + applied + " is not a revision (0 or more)");
        }
        synchronized (backend)
        {
            begin("publish router " + id, true);
            if (router != null && !router.equals(id))
            {
                throw new IllegalStateException("router: this store publishes router " + router + " already, not "
                    + id);
            }
            final boolean first = router == null;
            router = id;
            routerApplied = applied;
            if (backend.leases.get(routerLeaseId) == null)
            {
                routerLeaseId = backend.nextLease++;
                backend.leases.put(routerLeaseId, new Lease(routerLeaseId, leaseTtl.toNanos()));
            }
            backend.apply(Map.of(keys.router(id), new RouterValue(applied)), Map.of(keys.router(id), routerLeaseId),
                List.of());
            if (first)
            {
                final long period = leaseTtl.toMillis() / 3;
                thread.scheduleWithFixedDelay(() ->
                {
                    synchronized (backend)
                    {
                        if (backend.available && !closed)
                        {
                            routerAlive();
                        }
                    }
                }, period, period, TimeUnit.MILLISECONDS);
            }
            endWrite("publish router " + id);
        }
        backend.notifyClients();
    }

    /** Renews the router's lease, or grants a new one and writes its key again when it expired. Lock held. */
    private void routerAlive()
    {
        final Lease lease = backend.leases.get(routerLeaseId);
        if (lease != null)
        {
            lease.expiresAt = System.nanoTime() + lease.ttlNanos;
            return;
        }
        routerLeaseId = backend.nextLease++;
        backend.leases.put(routerLeaseId, new Lease(routerLeaseId, leaseTtl.toNanos()));
        backend.apply(Map.of(keys.router(router), new RouterValue(routerApplied)),
            Map.of(keys.router(router), routerLeaseId), List.of());
        backend.notifyClients();
    }

    /** Renews this host's lease, or grants a new one with the alive key when it expired. Backend lock held. */
    private void keepAlive()
    {
        final Lease lease = backend.leases.get(leaseId);
        if (lease != null)
        {
            lease.expiresAt = System.nanoTime() + lease.ttlNanos;
            return;
        }
        leaseId = backend.nextLease++;
        backend.leases.put(leaseId, new Lease(leaseId, leaseTtl.toNanos()));
        backend.apply(Map.of(keys.alive(host), new RegionKeys.AliveValue(System.currentTimeMillis())),
            Map.of(keys.alive(host), leaseId), List.of());
        backend.notifyClients();
    }

    // ---------------------------------------------------------------------------------------------------------

    @Override
    public AutoCloseable watch(final long fromRevision, final Listener listener)
    {
        final MemoryWatch watch = new MemoryWatch(fromRevision, listener);
        synchronized (watches)
        {
            watches.add(watch);
        }
        poke();
        return () ->
        {
            synchronized (watches)
            {
                watches.remove(watch);
            }
            watch.stopped = true;
        };
    }

    /** Wakes the watches on the store's thread: new history, a switch, a compaction. */
    private void poke()
    {
        final List<MemoryWatch> all;
        synchronized (watches)
        {
            all = new ArrayList<>(watches);
        }
        for (final MemoryWatch w : all)
        {
            try
            {
                thread.execute(w::pull);
            }
            catch (final RejectedExecutionException e)
            {
                return;
            }
        }
    }

    /** A watch; its state is touched on the store's thread only. */
    private final class MemoryWatch
    {
        private final Listener listener;
        private long next;
        private long outagesSeen;
        private volatile boolean stopped;
        private final Map<String, HostValue> addresses = new HashMap<>();
        private final Map<String, Boolean> alive = new HashMap<>();
        private boolean loaded;

        MemoryWatch(final long from, final Listener listener)
        {
            this.next = from;
            this.listener = listener;
            synchronized (backend)
            {
                this.outagesSeen = backend.outages;
            }
        }

        void pull()
        {
            if (stopped || closed)
            {
                return;
            }
            final List<Event> events = new ArrayList<>();
            synchronized (backend)
            {
                if (outagesSeen != backend.outages)
                {
                    // The stream broke (once per outage, as etcd's watch does); nothing is lost.
                    outagesSeen = backend.outages;
                    listener.interrupted("the region store was unavailable");
                }
                if (!backend.available)
                {
                    return;
                }
                if (next < backend.compactedBefore)
                {
                    stopped = true;
                    listener.compacted();
                    return;
                }
                for (final Event e : backend.history)
                {
                    if (e.revision < next && !loaded)
                    {
                        track(e);
                    }
                    else if (e.revision >= next && e.key.startsWith(keys.base()))
                    {
                        events.add(e);
                    }
                }
                loaded = true;
                next = backend.revision + 1;
            }
            final List<RegionChange> changes = new ArrayList<>();
            for (final Event e : events)
            {
                final RegionChange c = change(e);
                if (c != null)
                {
                    changes.add(c);
                }
            }
            if (!changes.isEmpty())
            {
                listener.changed(List.copyOf(changes));
            }
        }

        private void track(final Event e)
        {
            if (!e.key.startsWith(keys.base()))
            {
                return;
            }
            final String key = e.key.substring(keys.base().length());
            if (key.startsWith(RegionKeys.HOSTS))
            {
                final String id = key.substring(RegionKeys.HOSTS.length());
                if (e.value == null)
                {
                    addresses.remove(id);
                }
                else
                {
                    addresses.put(id, (HostValue) e.value);
                }
            }
            else if (key.startsWith(RegionKeys.ALIVE))
            {
                final String id = key.substring(RegionKeys.ALIVE.length());
                if (e.value == null)
                {
                    alive.remove(id);
                }
                else
                {
                    alive.put(id, true);
                }
            }
        }

        private RegionChange change(final Event e)
        {
            final String key = e.key.substring(keys.base().length());
            track(e);
            if (key.startsWith(RegionKeys.APPS))
            {
                final String id = key.substring(RegionKeys.APPS.length());
                return new AppChange(e.revision, id, e.value == null ? null
                    : new RegionApp(id, ((AppValue) e.value).failClosed()));
            }
            if (key.startsWith(RegionKeys.PAIRS))
            {
                return new PairChange(e.revision, Ipv4Address.parse(key.substring(RegionKeys.PAIRS.length())),
                    e.value == null ? null : pair((PairValue) e.value));
            }
            if (key.startsWith(RegionKeys.SLOTS))
            {
                final SlotId id = RegionKeys.parseSlot(key.substring(RegionKeys.SLOTS.length()));
                if (e.value == null)
                {
                    return new SlotChange(e.revision, id, null);
                }
                final SlotValue v = (SlotValue) e.value;
                return new SlotChange(e.revision, id, new SlotRecord(id, v.host(), v.machine(), v.leaving(),
                    v.quarantineUntil(), e.revision));
            }
            if (key.startsWith(RegionKeys.HOSTS))
            {
                final String id = key.substring(RegionKeys.HOSTS.length());
                final HostValue v = (HostValue) e.value;
                return new HostChange(e.revision, id, v == null ? null
                    : new HostRecord(id, v.addresses(), alive.containsKey(id), v.mark()));
            }
            if (key.startsWith(RegionKeys.ALIVE))
            {
                final String id = key.substring(RegionKeys.ALIVE.length());
                final HostValue v = addresses.get(id);
                return v == null ? null : new HostChange(e.revision, id, new HostRecord(id, v.addresses(),
                    e.value != null, v.mark()));
            }
            if (key.startsWith(RegionKeys.ROUTERS))
            {
                final String id = key.substring(RegionKeys.ROUTERS.length());
                return new RouterChange(e.revision, id, e.value == null ? null
                    : new RouterRecord(id, ((RouterValue) e.value).applied()));
            }
            return null;
        }
    }

    // ---------------------------------------------------------------------------------------------------------

    @Override
    public Stats stats()
    {
        return new Stats(requests.get(), failures.get(), conflicts.get(), nanos.get());
    }

    @Override
    public void close()
    {
        closed = true;
        synchronized (backend)
        {
            backend.clients.remove(this);
        }
        thread.shutdownNow();
    }

    private static PairValue value(final RegionPair pair)
    {
        return new PairValue(pair.app(), pair.pair().ipv4().toString(), pair.pair().ipv6().toString(),
            pair.pair().region(), pair.drained());
    }

    private static RegionPair pair(final PairValue v)
    {
        return new RegionPair(v.app(), new EgressPair(Ipv4Address.parse(v.ipv4()), Ipv6Address.parse(v.ipv6()),
            v.region()), v.drained());
    }
}
