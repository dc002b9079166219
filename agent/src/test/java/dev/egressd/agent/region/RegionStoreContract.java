package dev.egressd.agent.region;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.fail;

import dev.egressd.agent.region.RegionStore.AppChange;
import dev.egressd.agent.region.RegionStore.ClaimAnswer;
import dev.egressd.agent.region.RegionStore.Claimed;
import dev.egressd.agent.region.RegionStore.HostChange;
import dev.egressd.agent.region.RegionStore.HostRecord;
import dev.egressd.agent.region.RegionStore.MachineElsewhere;
import dev.egressd.agent.region.RegionStore.PairChange;
import dev.egressd.agent.region.RegionStore.RegionApp;
import dev.egressd.agent.region.RegionStore.RegionChange;
import dev.egressd.agent.region.RegionStore.RegionPair;
import dev.egressd.agent.region.RegionStore.RegionSnapshot;
import dev.egressd.agent.region.RegionStore.RouterChange;
import dev.egressd.agent.region.RegionStore.RouterRecord;
import dev.egressd.agent.region.RegionStore.SlotChange;
import dev.egressd.agent.region.RegionStore.SlotId;
import dev.egressd.agent.region.RegionStore.SlotRecord;
import dev.egressd.agent.region.RegionStore.Taken;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * What every {@link RegionStore} promises, run against etcd ({@code EtcdRegionStoreTest}) and against
 * {@link MemoryRegionStore} ({@code MemoryRegionStoreTest}), so the in-memory store that unit tests above the store
 * use behaves as the real one does.
 */
abstract class RegionStoreContract
{
    private static final AtomicInteger REGIONS = new AtomicInteger();
    protected static final Duration LEASE_TTL = Duration.ofSeconds(10);

    private final List<RegionStore> opened = Collections.synchronizedList(new ArrayList<>());
    private final String region = "r" + ProcessHandle.current().pid() + "-" + REGIONS.incrementAndGet();

    /** A new client of the same store (another host's view), for the region. */
    protected abstract RegionStore open(String region, Duration leaseTtl, Duration deadline);

    /** The store stops answering. */
    protected abstract void down();

    /** The store answers again. */
    protected abstract void up();

    /** The store dies at once and comes back on the same data (for etcd: SIGKILL, start). */
    protected abstract void killAndRestart();

    /** Forgets history before a revision. */
    protected abstract void compact(RegionStore store, long revision) throws Exception;

    /** A handover fenced by the revision the caller saw. */
    protected abstract ClaimAnswer handoverAt(RegionStore store, String machine, String from, String to, long rev)
        throws Exception;

    /** @return the deadline the implementation holds calls to while down. */
    protected abstract Duration shortDeadline();

    protected final RegionStore open()
    {
        return track(open(region, LEASE_TTL, EtcdRegionStore.DEFAULT_DEADLINE));
    }

    protected final RegionStore track(final RegionStore store)
    {
        opened.add(store);
        return store;
    }

    protected final String region()
    {
        return region;
    }

    @AfterEach
    void closeStores()
    {
        up();
        opened.forEach(RegionStore::close);
    }

    static SlotId slot(final String ipv4, final int block)
    {
        return new SlotId(Ipv4Address.parse(ipv4), block);
    }

    // ---------------------------------------------------------------------------------------------------------

    @Test
    void aClaimIsExclusiveIdempotentAndOneSlotPerMachine() throws Exception
    {
        final RegionStore h1 = open();
        final RegionStore h2 = open();
        final SlotId s0 = slot("203.0.113.5", 0);
        final SlotId s1 = slot("203.0.113.5", 1);

        final ClaimAnswer first = h1.claim(s0, "h1", "m1");
        assertThat(first).isInstanceOf(Claimed.class);
        final SlotRecord held = ((Claimed) first).slot();
        assertThat(held).isEqualTo(new SlotRecord(s0, "h1", "m1", false, 0, held.modRevision()));
        assertThat(held.modRevision()).isPositive();

        // Repeated after an unknown outcome: the same slot, nothing written again.
        assertThat(h1.claim(s0, "h1", "m1")).isEqualTo(first);

        final ClaimAnswer taken = h2.claim(s0, "h2", "m2");
        assertThat(taken).isEqualTo(new Taken(held));

        // m1 holds s0: neither this host nor another one may give it a second slot.
        assertThat(h1.claim(s1, "h1", "m1")).isEqualTo(new MachineElsewhere("h1", s0));
        assertThat(h2.claim(s1, "h2", "m1")).isEqualTo(new MachineElsewhere("h1", s0));

        final RegionSnapshot snapshot = h2.read();
        assertThat(snapshot.slots()).containsOnlyKeys(s0);
        assertThat(snapshot.slots().get(s0)).isEqualTo(held);
        assertThat(h2.stats().conflicts()).isEqualTo(2);
        assertThat(h1.stats().conflicts()).isEqualTo(1);
        assertThat(h1.stats().requests()).isGreaterThanOrEqualTo(3);
    }

    @Test
    void aReleaseComparesTheHolder() throws Exception
    {
        final RegionStore store = open();
        final SlotId s0 = slot("203.0.113.5", 0);
        assertThat(store.claim(s0, "h1", "m1")).isInstanceOf(Claimed.class);

        assertThat(store.release(s0, "h2", "m1")).isFalse();
        assertThat(store.release(s0, "h1", "m9")).isFalse();
        assertThat(store.read().slots()).containsKey(s0);

        assertThat(store.release(s0, "h1", "m1")).isTrue();
        assertThat(store.read().slots()).isEmpty();
        assertThat(store.release(s0, "h1", "m1")).as("not there: released already").isTrue();
        // The machine key went with the slot: m1 may claim again.
        assertThat(store.claim(slot("203.0.113.5", 7), "h1", "m1")).isInstanceOf(Claimed.class);
    }

    @Test
    void aLeavingSlotIsHandedOverNeverFreedAndAStaleRevisionIsRefused() throws Exception
    {
        final RegionStore h1 = open();
        final RegionStore h2 = open();
        final SlotId s0 = slot("203.0.113.5", 0);
        assertThat(h1.claim(s0, "h1", "m1")).isInstanceOf(Claimed.class);

        assertThat(h2.handover("m1", "h1", "h2")).as("not leaving yet")
            .isInstanceOfSatisfying(Taken.class, t -> assertThat(t.holder().host()).isEqualTo("h1"));
        assertThat(h1.markLeaving(s0, "h2", "m1")).isFalse();
        assertThat(h1.markLeaving(s0, "h1", "m1")).isTrue();
        assertThat(h1.markLeaving(s0, "h1", "m1")).as("already").isTrue();
        final SlotRecord leaving = h2.read().slots().get(s0);
        assertThat(leaving.leaving()).isTrue();
        assertThat(leaving.host()).isEqualTo("h1");

        assertThat(h2.handover("m1", "h3", "h2")).as("from the wrong host").isEqualTo(new Taken(leaving));
        assertThat(handoverAt(h2, "m1", "h1", "h2", leaving.modRevision() - 1)).as("a stale revision")
            .isEqualTo(new Taken(leaving));
        assertThat(h2.handover("m9", "h1", "h2")).as("a machine with no slot").isEqualTo(new Taken(null));

        final ClaimAnswer moved = h2.handover("m1", "h1", "h2");
        assertThat(moved).isInstanceOfSatisfying(Claimed.class, c ->
        {
            assertThat(c.slot().host()).isEqualTo("h2");
            assertThat(c.slot().machine()).isEqualTo("m1");
            assertThat(c.slot().leaving()).isFalse();
            assertThat(c.slot().modRevision()).isGreaterThan(leaving.modRevision());
        });
        assertThat(h2.handover("m1", "h1", "h2")).as("repeated").isEqualTo(moved);
        assertThat(h1.handover("m1", "h1", "h3")).as("replayed elsewhere")
            .isEqualTo(new Taken(((Claimed) moved).slot()));
        assertThat(h1.release(s0, "h1", "m1")).as("the old host cannot release it any more").isFalse();
        // The machine index moved with the slot.
        assertThat(h1.claim(slot("203.0.113.5", 1), "h1", "m1")).isEqualTo(new MachineElsewhere("h2", s0));

        // The same value again (marked, released, claimed, marked) at another revision: the old token is refused.
        assertThat(h2.markLeaving(s0, "h2", "m1")).isTrue();
        final long firstMark = h2.read().slots().get(s0).modRevision();
        assertThat(h2.release(s0, "h2", "m1")).isTrue();
        assertThat(h2.claim(s0, "h2", "m1")).isInstanceOf(Claimed.class);
        assertThat(h2.markLeaving(s0, "h2", "m1")).isTrue();
        final SlotRecord secondMark = h1.read().slots().get(s0);
        assertThat(handoverAt(h1, "m1", "h2", "h1", firstMark)).isEqualTo(new Taken(secondMark));
        assertThat(handoverAt(h1, "m1", "h2", "h1", secondMark.modRevision())).isInstanceOf(Claimed.class);
    }

    @Test
    void aDeletedHostsSlotsWaitOutTheirQuarantineThenMayBeClaimed() throws Exception
    {
        final RegionStore h1 = open();
        final RegionStore h2 = open();
        h1.registerHost(new HostRecord("h1", List.of("192.0.2.11"), true));
        // More slots than one transaction may carry, so the store must batch.
        final List<SlotId> held = new ArrayList<>();
        for (int i = 0; i < 70; i++)
        {
            final SlotId s = slot(i < 64 ? "203.0.113.5" : "203.0.113.6", i % 64);
            assertThat(h1.claim(s, "h1", "m" + i)).isInstanceOf(Claimed.class);
            held.add(s);
        }
        assertThat(h2.claim(slot("203.0.113.6", 10), "h2", "other")).isInstanceOf(Claimed.class);

        final long until = System.currentTimeMillis() + 3_000;
        assertThat(h2.quarantineHost("h1", until)).containsExactlyInAnyOrderElementsOf(held);

        final RegionSnapshot after = h2.read();
        assertThat(after.hosts()).doesNotContainKey("h1");
        assertThat(after.slots()).hasSize(71);
        assertThat(held).allSatisfy(s ->
        {
            final SlotRecord r = after.slots().get(s);
            assertThat(r.quarantined()).isTrue();
            assertThat(r.machine()).isNull();
            assertThat(r.quarantineUntilMillis()).isEqualTo(until);
        });
        assertThat(after.slots().get(slot("203.0.113.6", 10)).host()).isEqualTo("h2");

        final SlotId s0 = held.get(0);
        assertThat(h2.claim(s0, "h2", "m100")).as("still quarantined")
            .isInstanceOfSatisfying(Taken.class, t -> assertThat(t.holder().quarantined()).isTrue());
        // The machine keys went with the host: a machine of h1 may start over elsewhere.
        assertThat(h2.claim(slot("203.0.113.7", 0), "h2", "m0")).isInstanceOf(Claimed.class);

        awaitTrue(() -> System.currentTimeMillis() > until, Duration.ofSeconds(10));
        assertThat(h2.claim(s0, "h2", "m100")).isInstanceOfSatisfying(Claimed.class,
            c -> assertThat(c.slot().host()).isEqualTo("h2"));
        assertThat(h2.read().slots().get(s0).machine()).isEqualTo("m100");
    }

    @Test
    void appsAndPairsAreCreatedDrainedAndDeleted() throws Exception
    {
        final RegionStore store = open();
        store.putApp(new RegionApp("web", true));
        store.putApp(new RegionApp("db", false));
        final Ipv4Address ipv4 = Ipv4Address.parse("203.0.113.10");
        final RegionPair pair = new RegionPair("web", new EgressPair(ipv4, Ipv6Address.parse("2001:db8::10"),
            region()), false);
        assertThat(store.createPair(pair)).isNull();
        assertThat(store.createPair(pair)).as("the same pair again").isNull();
        final RegionPair other = new RegionPair("db", pair.pair(), false);
        assertThat(store.createPair(other)).as("another app's").isEqualTo(pair);

        assertThat(store.setDrained(ipv4, true)).isTrue();
        assertThat(store.setDrained(Ipv4Address.parse("203.0.113.99"), true)).isFalse();
        RegionSnapshot snapshot = store.read();
        assertThat(snapshot.apps()).containsOnlyKeys("web", "db");
        assertThat(snapshot.apps().get("web").failClosed()).isTrue();
        assertThat(snapshot.apps().get("db").failClosed()).isFalse();
        assertThat(snapshot.pairs()).containsOnlyKeys(ipv4);
        assertThat(snapshot.pairs().get(ipv4)).isEqualTo(new RegionPair("web", pair.pair(), true));
        assertThat(store.createPair(pair)).as("same pair, drained or not").isNull();

        store.deletePair(ipv4);
        snapshot = store.read();
        assertThat(snapshot.pairs()).isEmpty();
        assertThat(snapshot.apps()).hasSize(2);
    }

    @Test
    void aSnapshotHoldsEverythingAtOneRevision() throws Exception
    {
        final RegionStore store = open();
        final long before = store.read().revision();
        store.putApp(new RegionApp("web", false));
        store.registerHost(new HostRecord("h1", List.of("192.0.2.11", "2001:db8::11"), true));
        final SlotId s3 = slot("203.0.113.5", 3);
        final SlotRecord held = ((Claimed) store.claim(s3, "h1", "m1")).slot();

        final RegionSnapshot snapshot = store.read();
        assertThat(snapshot.revision()).isGreaterThanOrEqualTo(held.modRevision()).isGreaterThan(before);
        assertThat(snapshot.apps()).containsOnlyKeys("web");
        assertThat(snapshot.slots()).containsExactly(java.util.Map.entry(s3, held));
        assertThat(snapshot.hosts()).containsOnlyKeys("h1");
        assertThat(snapshot.hosts().get("h1")).isEqualTo(new HostRecord("h1", List.of("192.0.2.11",
            "2001:db8::11"), true, 1));
        // Another region's keys are not this region's.
        final RegionStore elsewhere = track(open(region() + "x", LEASE_TTL, EtcdRegionStore.DEFAULT_DEADLINE));
        assertThat(elsewhere.read().slots()).isEmpty();
    }

    @Test
    void aWatchDeliversEachChangeOnceInOrderOnTheStoresThread() throws Exception
    {
        final RegionStore store = open();
        final RegionStore other = open();
        final Recorder recorder = new Recorder();
        final long from = store.read().revision() + 1;
        final AutoCloseable watch = store.watch(from, recorder);
        try
        {
            other.putApp(new RegionApp("web", true));
            final Ipv4Address ipv4 = Ipv4Address.parse("203.0.113.10");
            other.createPair(new RegionPair("web", new EgressPair(ipv4, Ipv6Address.parse("2001:db8::10"),
                region()), false));
            final SlotId s0 = slot("203.0.113.10", 0);
            final SlotId s1 = slot("203.0.113.10", 1);
            final SlotRecord r0 = ((Claimed) other.claim(s0, "h2", "m1")).slot();
            final SlotRecord r1 = ((Claimed) other.claim(s1, "h2", "m2")).slot();
            other.release(s0, "h2", "m1");
            other.registerHost(new HostRecord("h2", List.of("192.0.2.12"), true));

            final List<RegionChange> changes = recorder.take(7, Duration.ofSeconds(20));
            assertThat(changes.get(0)).isInstanceOfSatisfying(AppChange.class,
                c -> assertThat(c.value()).isEqualTo(new RegionApp("web", true)));
            assertThat(changes.get(1)).isInstanceOfSatisfying(PairChange.class,
                c -> assertThat(c.ipv4()).isEqualTo(ipv4));
            assertThat(changes.get(2)).isEqualTo(new SlotChange(r0.modRevision(), s0, r0));
            assertThat(changes.get(3)).isEqualTo(new SlotChange(r1.modRevision(), s1, r1));
            assertThat(changes.get(4)).isInstanceOfSatisfying(SlotChange.class, c ->
            {
                assertThat(c.id()).isEqualTo(s0);
                assertThat(c.value()).isNull();
            });
            assertThat(changes.get(5)).isInstanceOfSatisfying(HostChange.class,
                c -> assertThat(c.value()).isEqualTo(new HostRecord("h2", List.of("192.0.2.12"), false, 1)));
            assertThat(changes.get(6)).isInstanceOfSatisfying(HostChange.class,
                c -> assertThat(c.value()).isEqualTo(new HostRecord("h2", List.of("192.0.2.12"), true, 1)));
            assertThat(changes).extracting(RegionChange::revision).isSorted().doesNotHaveDuplicates()
                .allSatisfy(r -> assertThat(r).isGreaterThanOrEqualTo(from));
            assertThat(recorder.threads).hasSize(1).doesNotContain(Thread.currentThread().getName());
            assertThat(recorder.compacted.get()).isZero();
        }
        finally
        {
            watch.close();
        }
    }

    @Test
    void aWatchResumesAfterTheStoreDiedAndCameBack() throws Exception
    {
        final RegionStore store = open();
        final Recorder recorder = new Recorder();
        final long from = store.read().revision() + 1;
        final AutoCloseable watch = store.watch(from, recorder);
        try
        {
            final SlotId s0 = slot("203.0.113.5", 0);
            final SlotId s1 = slot("203.0.113.5", 1);
            store.claim(s0, "h1", "m1");
            assertThat(recorder.take(1, Duration.ofSeconds(10)).get(0))
                .isInstanceOfSatisfying(SlotChange.class, c -> assertThat(c.id()).isEqualTo(s0));

            killAndRestart();
            awaitTrue(() -> recorder.interrupted.get() > 0, Duration.ofSeconds(20));
            final ClaimAnswer answer = eventually(() -> store.claim(s1, "h1", "m2"), Duration.ofSeconds(60));
            assertThat(answer).isInstanceOf(Claimed.class);

            final List<RegionChange> after = recorder.take(1, Duration.ofSeconds(60));
            assertThat(after.get(0)).isEqualTo(new SlotChange(((Claimed) answer).slot().modRevision(), s1,
                ((Claimed) answer).slot()));
            assertThat(recorder.all).extracting(RegionChange::revision).doesNotHaveDuplicates().isSorted();
            assertThat(recorder.compacted.get()).isZero();
        }
        finally
        {
            watch.close();
        }
    }

    @Test
    void aWatchFromACompactedRevisionIsToldToReadAgain() throws Exception
    {
        final RegionStore store = open();
        final long from = store.read().revision() + 1;
        final SlotId s0 = slot("203.0.113.5", 0);
        for (int i = 0; i < 3; i++)
        {
            store.claim(s0, "h1", "m1");
            store.release(s0, "h1", "m1");
        }
        final long now = store.read().revision();
        compact(store, now);
        final Recorder recorder = new Recorder();
        final AutoCloseable watch = store.watch(from, recorder);
        try
        {
            awaitTrue(() -> recorder.compacted.get() == 1, Duration.ofSeconds(20), recorder.problems::toString);
            assertThat(recorder.all).isEmpty();
        }
        finally
        {
            watch.close();
        }
        // From the snapshot's revision on, the watch works.
        final Recorder fresh = new Recorder();
        final AutoCloseable second = store.watch(store.read().revision() + 1, fresh);
        try
        {
            store.claim(s0, "h1", "m1");
            assertThat(fresh.take(1, Duration.ofSeconds(10)).get(0)).isInstanceOf(SlotChange.class);
            assertThat(fresh.compacted.get()).isZero();
        }
        finally
        {
            second.close();
        }
    }

    @Test
    void whileTheStoreIsDownEveryCallFailsWithinTheDeadline() throws Exception
    {
        final RegionStore store = track(open(region(), LEASE_TTL, shortDeadline()));
        final SlotId s0 = slot("203.0.113.5", 0);
        store.claim(s0, "h1", "m1");
        down();
        final long bound = shortDeadline().toMillis() + 1_000;
        final Ipv4Address ipv4 = Ipv4Address.parse("203.0.113.10");
        final RegionPair pair = new RegionPair("web", new EgressPair(ipv4, Ipv6Address.parse("2001:db8::10"),
            region()), false);
        record Call(String name, Boolean unknownOutcome, ThrowingCall call)
        {
        }
        final List<Call> calls = List.of(
            new Call("read", false, store::read),
            new Call("claim", true, () -> store.claim(slot("203.0.113.5", 1), "h1", "m2")),
            new Call("release", true, () -> store.release(s0, "h1", "m1")),
            new Call("markLeaving", true, () -> store.markLeaving(s0, "h1", "m1")),
            new Call("handover", null, () -> store.handover("m1", "h1", "h2")),
            new Call("quarantineHost", null, () -> store.quarantineHost("h9", 0)),
            new Call("putApp", true, () ->
            {
                store.putApp(new RegionApp("web", false));
                return null;
            }),
            new Call("createPair", true, () -> store.createPair(pair)),
            new Call("setDrained", null, () -> store.setDrained(ipv4, true)),
            new Call("deletePair", true, () ->
            {
                store.deletePair(ipv4);
                return null;
            }),
            new Call("registerHost", true, () ->
            {
                store.registerHost(new HostRecord("h1", List.of(), true));
                return null;
            }),
            new Call("publishRouter", true, () ->
            {
                store.publishRouter("r1", 1);
                return null;
            }));
        for (final Call call : calls)
        {
            final long start = System.nanoTime();
            assertThatThrownBy(call.call()::run).as(call.name()).isInstanceOfSatisfying(RegionUnavailableException.class,
                e ->
                {
                    if (call.unknownOutcome() != null)
                    {
                        assertThat(e.outcomeUnknown()).as(call.name() + " outcome unknown")
                            .isEqualTo(call.unknownOutcome());
                    }
                });
            assertThat(Duration.ofNanos(System.nanoTime() - start).toMillis()).as(call.name() + " ms").isLessThan(bound);
        }
        assertThat(store.stats().failures()).isGreaterThanOrEqualTo(calls.size());
        up();
        final RegionSnapshot back = eventually(store::read, Duration.ofSeconds(60));
        assertThat(back.slots()).containsKey(s0);
    }

    @Test
    void aHostIsAliveWhileItsStoreRunsAndNotOnceItsLeaseExpires() throws Exception
    {
        final Duration ttl = Duration.ofSeconds(3);
        final RegionStore host = track(open(region(), ttl, EtcdRegionStore.DEFAULT_DEADLINE));
        final RegionStore observer = open();
        host.registerHost(new HostRecord("h1", List.of("192.0.2.11"), true));
        assertThat(observer.read().hosts().get("h1")).isEqualTo(new HostRecord("h1", List.of("192.0.2.11"), true, 1));
        // Kept alive past its TTL.
        Thread.sleep(ttl.toMillis() + 1_000);
        assertThat(observer.read().hosts().get("h1").alive()).isTrue();

        host.close();
        // Not revoked: a daemon restarting within the TTL never looks dead.
        assertThat(observer.read().hosts().get("h1").alive()).isTrue();
        awaitTrue(() -> !observer.read().hosts().get("h1").alive(), ttl.plusSeconds(10));
        assertThat(observer.read().hosts().get("h1").addresses()).as("the host key is durable")
            .containsExactly("192.0.2.11");
    }

    @Test
    void hostMarksAreUniqueUnderARaceKeptOnReRegistrationAndFreedByADelete() throws Exception
    {
        // Two "data centres" of four hosts each (a store is one host's client), all registering at once.
        final int hosts = 8;
        final List<RegionStore> stores = new ArrayList<>();
        for (int i = 0; i < hosts; i++)
        {
            stores.add(open());
        }
        final RegionStore observer = open();
        final Recorder recorder = new Recorder();
        final AutoCloseable watch = observer.watch(observer.read().revision() + 1, recorder);
        final ExecutorService pool = Executors.newFixedThreadPool(hosts);
        try
        {
            final CountDownLatch go = new CountDownLatch(1);
            final List<Future<HostRecord>> registered = new ArrayList<>();
            for (int i = 0; i < hosts; i++)
            {
                final RegionStore store = stores.get(i);
                final String id = (i % 2 == 0 ? "a" : "b") + i;
                registered.add(pool.submit(() ->
                {
                    go.await();
                    return store.registerHost(new HostRecord(id, List.of("192.0.2." + (20 + id.length())), true));
                }));
            }
            go.countDown();
            final java.util.Map<String, Integer> marks = new java.util.TreeMap<>();
            for (final Future<HostRecord> f : registered)
            {
                final HostRecord r = f.get(60, TimeUnit.SECONDS);
                assertThat(r.alive()).isTrue();
                marks.put(r.id(), r.mark());
            }
            // Lowest free first, and a lost race moves on: exactly 1..8, no two hosts on one mark.
            assertThat(marks.values()).containsExactlyInAnyOrder(1, 2, 3, 4, 5, 6, 7, 8);
            final RegionSnapshot snapshot = observer.read();
            assertThat(snapshot.hosts()).hasSize(hosts);
            snapshot.hosts().values().forEach(h -> assertThat(h.mark()).as(h.id()).isEqualTo(marks.get(h.id())));
            // The watch tells each host key with its mark.
            final List<RegionChange> told = recorder.take(hosts, Duration.ofSeconds(20));
            assertThat(told).allSatisfy(c -> assertThat(c).isInstanceOfSatisfying(HostChange.class,
                h -> assertThat(h.value().mark()).isEqualTo(marks.get(h.id()))));

            // Re-registration (the same store again, or a restarted daemon's new store) keeps the mark.
            final String a0 = "a0";
            assertThat(stores.get(0).registerHost(new HostRecord(a0, List.of("192.0.2.99"), true)).mark())
                .isEqualTo(marks.get(a0));
            final RegionStore restarted = open();
            assertThat(restarted.registerHost(new HostRecord(a0, List.of("192.0.2.99"), true)))
                .isEqualTo(new HostRecord(a0, List.of("192.0.2.99"), true, marks.get(a0)));
            assertThat(observer.read().hosts().get(a0).mark()).isEqualTo(marks.get(a0));

            // A deleted host's mark is free again: the next new host gets the lowest free one, which is it.
            final String b3 = "b3";
            observer.quarantineHost(b3, System.currentTimeMillis());
            assertThat(observer.read().hosts()).doesNotContainKey(b3);
            final RegionStore newcomer = open();
            assertThat(newcomer.registerHost(new HostRecord("c1", List.of(), true)).mark()).isEqualTo(marks.get(b3));
            final RegionStore another = open();
            assertThat(another.registerHost(new HostRecord("c2", List.of(), true)).mark()).isEqualTo(hosts + 1);
        }
        finally
        {
            pool.shutdownNow();
            watch.close();
        }
    }

    @Test
    void aRouterIsPublishedOnItsOwnLeaseSeenInReadsAndWatchesAndGoneOnceItStops() throws Exception
    {
        final Duration ttl = Duration.ofSeconds(3);
        final RegionStore router = track(open(region(), ttl, EtcdRegionStore.DEFAULT_DEADLINE));
        final RegionStore observer = open();
        final Recorder recorder = new Recorder();
        final AutoCloseable watch = observer.watch(observer.read().revision() + 1, recorder);
        try
        {
            // A router process never registers a host: its key stands alone.
            router.publishRouter("r1", 5);
            assertThat(observer.read().routers()).containsExactly(java.util.Map.entry("r1", new RouterRecord("r1", 5)));
            assertThat(observer.read().hosts()).isEmpty();
            final RegionChange first = recorder.take(1, Duration.ofSeconds(20)).get(0);
            assertThat(first).isInstanceOfSatisfying(RouterChange.class,
                c -> assertThat(c.value()).isEqualTo(new RouterRecord("r1", 5)));

            router.publishRouter("r1", first.revision());
            final RegionChange second = recorder.take(1, Duration.ofSeconds(20)).get(0);
            assertThat(second).isEqualTo(new RouterChange(second.revision(), "r1",
                new RouterRecord("r1", first.revision())));
            assertThatThrownBy(() -> router.publishRouter("r2", 1)).as("one router per store")
                .isInstanceOf(IllegalStateException.class);
            assertThatThrownBy(() -> router.publishRouter("r/1", 1)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("router");

            // Kept alive past its TTL, without a new publication.
            Thread.sleep(ttl.toMillis() + 1_000);
            assertThat(observer.read().routers()).containsKey("r1");

            router.close();
            awaitTrue(() -> observer.read().routers().isEmpty(), ttl.plusSeconds(10));
            final List<RegionChange> gone = new ArrayList<>();
            awaitTrue(() ->
            {
                // drainTo, not a copy then clear: an event delivered between the two would be lost.
                recorder.queue.drainTo(gone);
                return gone.stream().anyMatch(c -> c instanceof RouterChange r && r.value() == null);
            }, Duration.ofSeconds(10));
            assertThat(gone).filteredOn(c -> c instanceof RouterChange).last()
                .isEqualTo(new RouterChange(gone.get(gone.size() - 1).revision(), "r1", null));
        }
        finally
        {
            watch.close();
        }
    }

    @Test
    void twoHostsRacingForTheSameSlotsNeverBothWin() throws Exception
    {
        final RegionStore a = open();
        final RegionStore b = open();
        final ExecutorService pool = Executors.newFixedThreadPool(2);
        try
        {
            for (int round = 0; round < 20; round++)
            {
                final String ipv4 = "198.51.100." + (round + 1);
                final CountDownLatch go = new CountDownLatch(1);
                final int r = round;
                final Future<List<ClaimAnswer>> fa = pool.submit(() -> claimAll(a, ipv4, "ha", "a" + r, go));
                final Future<List<ClaimAnswer>> fb = pool.submit(() -> claimAll(b, ipv4, "hb", "b" + r, go));
                go.countDown();
                final List<ClaimAnswer> wa = fa.get(60, TimeUnit.SECONDS);
                final List<ClaimAnswer> wb = fb.get(60, TimeUnit.SECONDS);
                int won = 0;
                for (int block = 0; block < 64; block++)
                {
                    final boolean aWon = wa.get(block) instanceof Claimed;
                    final boolean bWon = wb.get(block) instanceof Claimed;
                    assertThat(aWon && bWon).as("slot %s/%d won by both", ipv4, block).isFalse();
                    assertThat(aWon || bWon).as("slot %s/%d won by neither", ipv4, block).isTrue();
                    final ClaimAnswer loser = aWon ? wb.get(block) : wa.get(block);
                    final String winner = aWon ? "a" + r + "-" + block : "b" + r + "-" + block;
                    assertThat(loser).isInstanceOfSatisfying(Taken.class,
                        t -> assertThat(t.holder().machine()).isEqualTo(winner));
                    won++;
                }
                assertThat(won).isEqualTo(64);
            }
            final RegionSnapshot snapshot = a.read();
            assertThat(snapshot.slots()).hasSize(20 * 64);
            assertThat(a.stats().conflicts() + b.stats().conflicts()).isEqualTo(20 * 64);
        }
        finally
        {
            pool.shutdownNow();
        }
    }

    private static List<ClaimAnswer> claimAll(final RegionStore store, final String ipv4, final String host,
        final String machines, final CountDownLatch go) throws Exception
    {
        go.await();
        final List<ClaimAnswer> answers = new ArrayList<>();
        for (int block = 0; block < 64; block++)
        {
            answers.add(store.claim(slot(ipv4, block), host, machines + "-" + block));
        }
        return answers;
    }

    // ---------------------------------------------------------------------------------------------------------

    @FunctionalInterface
    interface ThrowingCall
    {
        Object run() throws Exception;
    }

    @FunctionalInterface
    interface Check
    {
        boolean ok() throws Exception;
    }

    static void awaitTrue(final Check check, final Duration within) throws Exception
    {
        awaitTrue(check, within, () -> "");
    }

    static void awaitTrue(final Check check, final Duration within, final Supplier<String> context) throws Exception
    {
        final long end = System.nanoTime() + within.toNanos();
        Exception last = null;
        while (System.nanoTime() < end)
        {
            try
            {
                if (check.ok())
                {
                    return;
                }
            }
            catch (final RegionUnavailableException e)
            {
                last = e;
            }
            Thread.sleep(50);
        }
        fail("not true within " + within + (last == null ? "" : " (last: " + last.getMessage() + ")") + " "
            + context.get());
    }

    @SuppressWarnings("unchecked")
    static <T> T eventually(final ThrowingCall call, final Duration within) throws Exception
    {
        final long end = System.nanoTime() + within.toNanos();
        RegionUnavailableException last = null;
        while (System.nanoTime() < end)
        {
            try
            {
                return (T) call.run();
            }
            catch (final RegionUnavailableException e)
            {
                last = e;
                Thread.sleep(100);
            }
        }
        throw new AssertionError("the store did not come back within " + within, last);
    }

    /** Records what a watch delivers. */
    static final class Recorder implements RegionStore.Listener
    {
        final BlockingQueue<RegionChange> queue = new LinkedBlockingQueue<>();
        final List<RegionChange> all = Collections.synchronizedList(new ArrayList<>());
        final Set<String> threads = ConcurrentHashMap.newKeySet();
        final AtomicInteger compacted = new AtomicInteger();
        final AtomicInteger interrupted = new AtomicInteger();
        final List<String> problems = Collections.synchronizedList(new ArrayList<>());

        @Override
        public void changed(final List<RegionChange> changes)
        {
            threads.add(Thread.currentThread().getName());
            all.addAll(changes);
            queue.addAll(changes);
        }

        @Override
        public void compacted()
        {
            compacted.incrementAndGet();
        }

        @Override
        public void interrupted(final String problem)
        {
            problems.add(problem);
            interrupted.incrementAndGet();
        }

        List<RegionChange> take(final int count, final Duration within) throws InterruptedException
        {
            final List<RegionChange> taken = new ArrayList<>();
            final long end = System.nanoTime() + within.toNanos();
            while (taken.size() < count)
            {
                final RegionChange c = queue.poll(Math.max(0, end - System.nanoTime()), TimeUnit.NANOSECONDS);
                if (c == null)
                {
                    fail("got " + taken.size() + " of " + count + " changes within " + within + ": " + taken);
                }
                taken.add(c);
            }
            return taken;
        }
    }
}
