package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.KernelException;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * Puts the kernel in line with the desired plan, as Cilium's egress gateway reconciles: ensure (the table and its
 * fixed part) → read → add what is missing → remove what is unused ({@link PlanDiff} orders the changes so).
 * It does so for every mutation ({@link #sync(boolean)}) and once a second on its own ({@link #reconcile()}),
 * which repairs drift, lets drained addresses go, paces the reads by their cost, backs off (1 s doubling to 30 s)
 * on repeated kernel errors and keeps the health.
 *
 * <p>Loop thread only (the reads of a reconcile run where {@link KernelReads} puts them); {@link #health()},
 * {@link #runs()}, {@link #failures()} and {@link #counters()} are read from any thread.
 */
final class Reconciler
{
    private static final Logger LOG = LoggerFactory.getLogger(Reconciler.class);
    private static final long SECOND = 1_000_000_000L;
    private static final long MAX_BACKOFF = 30 * SECOND;

    private final Kernel kernel;
    private final KernelReads reads;
    private final DesiredPlan desired;
    private final DrainingAddresses draining;
    private final LongSupplier nanoTime;
    private final CounterTotals counters = new CounterTotals();

    private long nextAttempt;
    /** When the reconcile loop may read the kernel again (reads are paced by their cost). */
    private long nextRead;
    /** What the reconcile loop's last read cost. */
    private long lastReadNanos = Long.MAX_VALUE;
    /**
     * Whether the kernel holds the desired plan as of its last {@link DesiredPlan#mark()} (what it held after the
     * last successful read or apply); false when unknown.
     */
    private boolean known;
    /**
     * The last read that found the kernel holding the desired plan with nothing to repair, by identity: a kernel
     * whose read saw nothing changed (the ruleset generation and the uplink addresses as before) returns the same
     * plan object again. Null when none.
     */
    private KernelPlan quietRead;
    /** The plan revision and the desired plan's version at {@link #quietRead}. */
    private long quietRevision;
    private long quietVersion;
    /**
     * The ruleset generation at which a read last found the kernel holding the desired plan (or a start trusted it
     * there), with the plan revision and desired version then; -1 when none. A stop records it when nothing moved
     * since (docs/operations.md, "Start-up").
     */
    private long provenGeneration = -1;
    private long provenRevision;
    private long provenVersion;
    /**
     * Whether a read of the kernel stands behind {@link #provenGeneration} (or a chain of the writer's own
     * transactions from one): only then may a reconcile's read skip the table. A trusted start's proof is the stop's
     * record, which the first read checks whole (docs/operations.md, "Start-up").
     */
    private boolean provenByRead;
    /**
     * The writer's own run of transactions: since the ruleset generation {@code chainFrom}, every nf_tables commit
     * in the namespace was one of this writer's applies, the last of them at {@code chainAt} (each apply's
     * generation was the one before plus one). Both -1 when not known (a failed apply, a generation not read).
     * Kept whether or not the kernel is proven, so that a whole read that overlapped the writer's own commits can
     * prove it again ({@link #readDone}).
     */
    private long chainFrom = -1;
    private long chainAt = -1;
    /** Reads that read the table whole (the generation was not the proven one). */
    private volatile long tableReads;
    /**
     * Reconciles that found nothing changed and skipped the plan build and the diff, and those whose read found the
     * latest proven generation and skipped the table.
     */
    private volatile long idleSkips;
    /** The plan's revision: bumped by every list of changes the writer applies (or tries to). */
    private long revision;
    /** The elements (kind|key) the writer changed since the read that is out was started; null when none is. */
    private Set<String> touchedSinceRead;

    private volatile Health health = Health.STARTING;
    private volatile long runs;
    private volatile long failures;
    private volatile long lastSuccessMillis;
    private volatile ReconcileObserver reconcileObserver = ReconcileObserver.NONE;

    /**
     * Creates the reconciler; it touches the kernel only when asked.
     *
     * @param kernel   the kernel (the writer's handle).
     * @param reads    the reconcile's reads (off the writer once {@link KernelReads#onThread} is set).
     * @param desired  the plan the kernel should hold, draining addresses included (computed afresh each call).
     * @param draining the draining addresses: a mutation starts them, a reconcile ends them.
     * @param nanoTime the loop's clock.
     */
    Reconciler(final Kernel kernel, final KernelReads reads, final Supplier<KernelPlan> desired,
        final DrainingAddresses draining, final LongSupplier nanoTime)
    {
        this(kernel, reads, DesiredPlan.rebuiltBy(desired), draining, nanoTime);
    }

    /**
     * Creates the reconciler over a desired plan that can say what changed ({@link DesiredPlanCache}).
     *
     * @param kernel   the kernel (the writer's handle).
     * @param reads    the reconcile's reads.
     * @param desired  the plan the kernel should hold, draining addresses included.
     * @param draining the draining addresses.
     * @param nanoTime the loop's clock.
     */
    Reconciler(final Kernel kernel, final KernelReads reads, final DesiredPlan desired,
        final DrainingAddresses draining, final LongSupplier nanoTime)
    {
        this.kernel = kernel;
        this.reads = reads;
        this.desired = desired;
        this.draining = draining;
        this.nanoTime = nanoTime;
        this.nextRead = nanoTime.getAsLong();
    }

    /**
     * Puts the kernel in line with the desired plan.
     *
     * <p>A mutation diffs against what the kernel held after the last read or apply (the desired plan at its last
     * mark, so the diff is the desired plan's changes since: {@link DesiredPlan#changesSinceMark()}) rather
     * than reading it back: a read costs O(table) (measured by {@code scripts/bench-kernel}: a read of the sets
     * 14 ms at 100 machines and 0.15 s at 4,000, a deep read of the whole table 34 ms and 0.54 s, where applying
     * one change costs 3 and 10 ms). If the kernel was changed behind
     * egressd's back, the transaction fails atomically (nft refuses to delete what is missing or to add a key
     * that holds other data), and the change is retried once against a fresh read. Drift that a mutation does not
     * touch is the reconcile loop's to repair, as before.
     *
     * @param fromMutation whether a mutation asked (uplink addresses it stops using then linger for the drain
     *                     time) rather than the reconcile loop.
     * @return the changes applied.
     * @throws KernelException if the kernel failed.
     */
    List<PlanChange> sync(final boolean fromMutation) throws KernelException
    {
        if (fromMutation && known)
        {
            try
            {
                return syncFromMark();
            }
            catch (final KernelException e)
            {
                LOG.info("the kernel differs from what egressd last saw ({}); reading it back", e.getMessage());
            }
        }
        kernel.ensureTable();
        return syncFrom(kernel.read(), fromMutation);
    }

    /** A mutation's sync when the kernel holds the plan of the last mark: only what changed since. */
    private List<PlanChange> syncFromMark() throws KernelException
    {
        final long before = markProven();
        known = false; // unknown until the apply below succeeds
        List<PlanChange> changes = desired.changesSinceMark();
        if (draining.startDraining(changes))
        {
            changes = desired.changesSinceMark();
        }
        final long after = changes.isEmpty() ? before : applyFrom(before, changes);
        desired.mark();
        known = true;
        keepProof(after);
        return changes;
    }

    /** The generation at which the kernel is proven to hold the plan of the last mark, or -1. */
    private long markProven()
    {
        return provenGeneration >= 0 && revision == provenRevision ? provenGeneration : -1;
    }

    /**
     * Applies changes to a kernel that held the last mark's plan at {@code before} (-1: not proven), and says at
     * which generation it holds the plan with them, if it can tell: when this batch was the only transaction since
     * {@code before} (the kernel adds one per committed transaction; none, for only addresses, leaves it as it
     * was). Anything else (someone's commit before ours or between ours and the generation request, a generation
     * that could not be read) proves nothing, and the next read is whole; a refused batch throws.
     */
    private long applyFrom(final long before, final List<PlanChange> changes) throws KernelException
    {
        apply(changes);
        if (before < 0)
        {
            return -1;
        }
        final long after = kernel.appliedGeneration();
        final long expected = kernel.appliedTransaction() ? nextGeneration(before) : before;
        return after == expected ? after : -1;
    }

    /** After a mark: the kernel holds its plan at {@code generation} (-1: not known), by the proof it came from. */
    private void keepProof(final long generation)
    {
        if (generation >= 0)
        {
            final boolean byRead = provenByRead;
            proven(generation);
            provenByRead = byRead;
            if (!byRead)
            {
                reads.proven(-1);
            }
        }
    }

    /** The generation after {@code generation}: the kernel's id is 32 bits and wraps. */
    static long nextGeneration(final long generation)
    {
        return (generation + 1) & 0xFFFFFFFFL;
    }

    private List<PlanChange> syncFrom(final KernelPlan actual, final boolean fromMutation) throws KernelException
    {
        known = false; // unknown until the apply below succeeds
        KernelPlan plan = desired.plan();
        if (fromMutation && draining.startDraining(actual, plan))
        {
            plan = desired.plan();
        }
        final List<PlanChange> changes = PlanDiff.between(actual, plan);
        if (!changes.isEmpty())
        {
            apply(changes);
        }
        desired.mark();
        known = true;
        return changes;
    }

    /** The writer's every change to the kernel: a new revision, noted for the read that is out. */
    private void apply(final List<PlanChange> changes) throws KernelException
    {
        revision++;
        if (touchedSinceRead != null)
        {
            for (final PlanChange c : changes)
            {
                touchedSinceRead.add(key(c));
            }
        }
        try
        {
            kernel.apply(changes);
        }
        catch (final KernelException | RuntimeException e)
        {
            chainFrom = -1; // what a failed apply committed, if anything, is not known
            chainAt = -1;
            throw e;
        }
        follow(kernel.appliedGeneration(), kernel.appliedTransaction());
    }

    /**
     * Extends the writer's run of its own transactions by an apply that left the ruleset at {@code after}, or
     * starts a new run there when someone else committed since the last one (from {@code after} on, only this
     * writer's commits are counted in it).
     */
    private void follow(final long after, final boolean transaction)
    {
        if (after < 0)
        {
            chainFrom = -1;
            chainAt = -1;
        }
        else if (chainAt >= 0 && after == (transaction ? nextGeneration(chainAt) : chainAt))
        {
            chainAt = after;
        }
        else
        {
            chainFrom = after;
            chainAt = after;
        }
    }

    /**
     * Whether every nf_tables commit since {@code generation} was one of this writer's own (a run of them goes back
     * to it, and the kernel is still at the run's last: nobody committed after it either).
     */
    private boolean ownCommitsSince(final long generation)
    {
        if (chainFrom < 0 || generation < 0)
        {
            return false;
        }
        // the id is 32 bits and wraps: distances from the run's first generation
        final long into = (generation - chainFrom) & 0xFFFFFFFFL;
        final long length = (chainAt - chainFrom) & 0xFFFFFFFFL;
        return into <= length && kernel.generation() == chainAt;
    }

    /** Whether every change adds an element (none removes or replaces one). */
    private static boolean onlyAdds(final List<PlanChange> changes)
    {
        for (final PlanChange c : changes)
        {
            if (c.op() != PlanChange.Op.ADD)
            {
                return false;
            }
        }
        return true;
    }

    private static String key(final PlanChange change)
    {
        return change.element().kind() + "|" + change.element().key();
    }

    /**
     * The plan's revision: bumped by every list of changes the writer applied or tried to.
     *
     * @return the revision.
     */
    long revision()
    {
        return revision;
    }

    /**
     * The first sync at start-up: draining addresses restored from the state file stay only if the kernel still
     * holds them, then the kernel gets the desired plan.
     *
     * @throws KernelException if the kernel failed.
     */
    void initialSync() throws KernelException
    {
        // a read that finds nothing to change proves the table at the generation before it (anyone's change since,
        // a repair of the fixed part included, moves the id past it); taken after the table is there, so that a
        // start that creates it proves it too (the sync's own check then finds nothing to do)
        kernel.ensureTable();
        final long generation = kernel.generation();
        final long before = revision;
        if (draining.awaitingKernelCheck())
        {
            kernel.ensureTable();
            draining.keepOnlyHeld(kernel.read());
        }
        sync(false);
        if (revision == before)
        {
            proven(generation);
        }
    }

    /**
     * The first sync at start-up when the stop's record vouches that the kernel's table holds the desired plan at
     * {@code generation} (docs/operations.md, "Start-up"): the table is neither checked nor read, only the uplink
     * addresses ({@link Kernel#readTrusting}); the reconcile's first read checks and reads it all.
     *
     * @param generation the ruleset generation the record and the kernel agree on.
     * @throws KernelException if the kernel failed.
     */
    void initialSyncTrusting(final long generation) throws KernelException
    {
        // the table holds the plan's table elements by the record: only the uplink addresses are read and diffed
        KernelPlan want = desired.plan();
        final KernelPlan uplinks = kernel.readTrusting(KernelPlan.empty());
        if (draining.awaitingKernelCheck())
        {
            final List<PlanElement> held = new ArrayList<>(want.elements());
            held.removeIf(e -> e instanceof PlanElement.Uplink4 || e instanceof PlanElement.Uplink6);
            held.addAll(uplinks.elements());
            draining.keepOnlyHeld(KernelPlan.of(held));
            want = desired.plan();
        }
        final List<PlanElement> wanted = new ArrayList<>(want.elements("uplink4").values());
        wanted.addAll(want.elements("uplink6").values());
        known = false; // unknown until the apply below succeeds
        final List<PlanChange> changes = PlanDiff.between(uplinks, KernelPlan.of(wanted));
        if (!changes.isEmpty())
        {
            apply(changes);
        }
        desired.mark();
        known = true;
        if (changes.isEmpty())
        {
            // nothing applied (an address change would not move the generation either, but it is a change)
            proven(generation);
            provenByRead = false; // the record's word: the first read checks it whole
            reads.proven(-1);
        }
    }

    private void proven(final long generation)
    {
        provenByRead = true;
        reads.proven(generation);
        provenGeneration = generation;
        provenRevision = revision;
        provenVersion = desired.version();
    }

    /**
     * The ruleset generation at which the kernel was last found holding the desired plan, if the writer applied
     * nothing and the desired plan did not move since. Loop thread only.
     *
     * @return the generation, or -1.
     */
    long provenGeneration()
    {
        LOG.debug("proven generation {}: known {}, revision {} (then {}), desired version {} (then {})",
            provenGeneration, known, revision, provenRevision, desired.version(), provenVersion);
        return provenGeneration >= 0 && known && revision == provenRevision && desired.version() == provenVersion
            ? provenGeneration : -1;
    }

    /** The first sync and the state it committed are done: the kernel is in sync. */
    void markInSync()
    {
        health = new Health(KernelStatus.IN_SYNC, 1, 0, 0, null, null);
    }

    /**
     * One reconcile: starts a read of the kernel ({@link KernelReads}, off the writer when it is on a thread of its
     * own); the diff is taken and drift repaired when its result is back on the loop thread ({@link #readDone}).
     * Nothing while a read is out, while backing off after failures, or before the pace of the reads allows one.
     */
    void reconcile()
    {
        final long now = nanoTime.getAsLong();
        if (reads.inFlight())
        {
            // the read watchdog: a read out past its deadline is abandoned, and the kernel is unavailable until a
            // read on a fresh reader comes back (docs/reliability.md, "A read that never returns")
            final String stuck = reads.abandonIfStuck(now);
            if (stuck != null)
            {
                touchedSinceRead = null;
                failures++;
                failed(new KernelException(stuck));
            }
            return;
        }
        if (health.consecutiveFailures() > 0 && now - nextAttempt < 0 || now - nextRead < 0)
        {
            return;
        }
        touchedSinceRead = new java.util.HashSet<>();
        if (!reads.start(revision, result -> readDone(result, now)))
        {
            touchedSinceRead = null; // the reader is stopped: the daemon is stopping
        }
    }

    /**
     * A read is back, on the loop thread: repair drift, expire drained addresses, keep the health.
     *
     * <p>The read saw the kernel as of the revision it was started at; changes applied since then went to the kernel
     * from this thread, each against what the kernel held then ({@link #sync}). If the revision moved, the diff is
     * taken only over the elements no change has touched since the read started: for those, the plan and the
     * kernel are as the read found them (but for someone's hand, which the next read sees). The touched ones were
     * just written, and are judged by the next read. Dropping the whole read instead would starve the repair under
     * a steady stream of changes, when every read overlaps one.
     */
    private void readDone(final KernelReads.Result read, final long started)
    {
        final Set<String> touched = touchedSinceRead;
        touchedSinceRead = null;
        runs++;
        final Map<PlanElement, DrainingAddresses.Deadline> expiredDrains = draining.expire(nanoTime.getAsLong());
        final List<PlanElement> expired = new ArrayList<>(expiredDrains.keySet());
        try
        {
            if (read.failure() != null)
            {
                throw read.failure();
            }
            // A read costs O(table) (at 4,000 machines 0.15 s, and 0.55 s when it is a deep one, at most one in five
            // reads there): pace the reads so they take about a quarter of a thread at most. By the cheaper of the
            // last two reads, so that one deep read (or the first read of a cold JVM) does not hold the next shallow
            // one back by four times its own cost. Small hosts read every second.
            final long readNanos = read.readNanos();
            nextRead = started + 4 * Math.min(readNanos, lastReadNanos);
            lastReadNanos = readNanos;
            final long version = desired.version();
            if (read.trusted())
            {
                trustedReadDone(read, touched, expiredDrains);
                done(read, started);
                return;
            }
            if (known && read.actual() == quietRead && !read.recreated() && read.revision() == revision
                && revision == quietRevision && version == quietVersion)
            {
                // The kernel read as the last quiet one (same generation, same addresses), the writer applied
                // nothing since, and the desired plan did not move (a drain that ended would have moved it): the
                // diff is empty without taking it.
                idleSkips++;
                proven(read.generation());
                inSync();
                done(read, started);
                return;
            }
            quietRead = null;
            tableReads++;
            final KernelPlan plan = desired.plan();
            final boolean moved = read.revision() != revision;
            List<PlanChange> changes = PlanDiff.between(read.actual(), plan);
            if (moved && touched != null && !touched.isEmpty())
            {
                final List<PlanChange> untouched = new ArrayList<>(changes.size());
                for (final PlanChange c : changes)
                {
                    if (!touched.contains(key(c)))
                    {
                        untouched.add(c);
                    }
                }
                changes = untouched;
            }
            final boolean wasKnown = known;
            if (!changes.isEmpty())
            {
                known = false; // unknown until the apply below succeeds
                apply(changes);
            }
            // the kernel now holds the plan if the read saw it whole, or if every change since held it too
            known = !moved || wasKnown;
            if (known)
            {
                desired.mark();
            }
            if (!moved && changes.isEmpty() && !read.recreated())
            {
                quietRead = read.actual();
                quietRevision = revision;
                quietVersion = version;
                proven(read.generation());
            }
            else if (known && !read.recreated() && onlyAdds(changes) && ownCommitsSince(read.generation()))
            {
                // Every commit since the read began was the writer's own (the repair's included), so an element no
                // change touched since then held still while the set was dumped: the read saw it as it is, unless
                // the dump skipped it (a dump runs over several messages, and a delete in between shifts where the
                // next one resumes), and those the diff adds back (an add of an element that is there with the same
                // data changes nothing). The touched ones hold what the writer's accepted batches put there. So the
                // kernel holds the plan at the run's last generation: proven again, although changes never stopped.
                proven(chainAt);
            }
            final Set<PlanChange> drift = new LinkedHashSet<>(changes);
            drift.removeIf(c -> c.op() == PlanChange.Op.REMOVE && expired.contains(c.element()));
            if (changes.size() != drift.size())
            {
                LOG.info("released drained egress addresses: {}", expired);
            }
            final Health h = health;
            final boolean recreated = read.recreated();
            if (recreated || !drift.isEmpty())
            {
                final String repair = (recreated ? "created or repaired the table's fixed part; " : "")
                    + drift.size() + " changes: " + drift;
                LOG.warn("reconcile repaired drift: {}", repair);
                health = new Health(KernelStatus.REPAIRED_DRIFT, h.reconciles() + 1, h.repairs() + 1, 0, null,
                    repair);
            }
            else
            {
                inSync();
            }
        }
        catch (final KernelException e)
        {
            failures++;
            draining.putBack(expiredDrains); // already due: the next successful reconcile removes them
            failed(e);
            finished(started, false);
            return;
        }
        catch (final RuntimeException e)
        {
            failures++;
            LOG.error("reconcile failed", e);
            failed(new KernelException(e.toString(), e));
            finished(started, false);
            return;
        }
        done(read, started);
    }

    /**
     * A read that found the ruleset at the latest proven generation: the table held the plan then
     * and was not read; only the uplink addresses were, which the generation does not cover. They are diffed as a
     * whole read's would be (but for the addresses the writer touched since the read started). The table's own
     * changes are the desired plan's since the mark, which the kernel holds (a drain that ended).
     */
    private void trustedReadDone(final KernelReads.Result read, final Set<String> touched,
        final Map<PlanElement, DrainingAddresses.Deadline> expiredDrains) throws KernelException
    {
        if (!known)
        {
            // a change failed since the read started: what the kernel holds is not known, the next read is whole
            draining.putBack(expiredDrains); // already due: the next read removes them
            provenGeneration = -1;
            reads.proven(-1);
            nextRead = nanoTime.getAsLong();
            return;
        }
        final List<PlanElement> held = new ArrayList<>();
        for (final PlanElement e : read.actual().elements())
        {
            if (e instanceof PlanElement.Uplink4 || e instanceof PlanElement.Uplink6)
            {
                held.add(e);
            }
        }
        final KernelPlan want = desired.plan();
        final List<PlanElement> wanted = new ArrayList<>(want.elements("uplink4").values());
        wanted.addAll(want.elements("uplink6").values());
        final List<PlanChange> changes = new ArrayList<>();
        for (final PlanChange c : desired.changesSinceMark())
        {
            if (!(c.element() instanceof PlanElement.Uplink4) && !(c.element() instanceof PlanElement.Uplink6))
            {
                changes.add(c);
            }
        }
        for (final PlanChange c : PlanDiff.between(KernelPlan.of(held), KernelPlan.of(wanted)))
        {
            if (read.revision() == revision || touched == null || !touched.contains(key(c)))
            {
                changes.add(c);
            }
        }
        idleSkips++;
        if (changes.isEmpty())
        {
            inSync();
            return;
        }
        final long before = markProven();
        known = false; // unknown until the apply below succeeds
        final long after = applyFrom(before, changes);
        desired.mark();
        known = true;
        keepProof(after);
        final Set<PlanChange> drift = new LinkedHashSet<>(changes);
        drift.removeIf(c -> c.op() == PlanChange.Op.REMOVE && expiredDrains.containsKey(c.element()));
        if (changes.size() != drift.size())
        {
            LOG.info("released drained egress addresses: {}", expiredDrains.keySet());
        }
        final Health h = health;
        if (drift.isEmpty())
        {
            inSync();
            return;
        }
        final String repair = drift.size() + " changes: " + drift;
        LOG.warn("reconcile repaired drift: {}", repair);
        health = new Health(KernelStatus.REPAIRED_DRIFT, h.reconciles() + 1, h.repairs() + 1, 0, null, repair);
    }

    private void done(final KernelReads.Result read, final long started)
    {
        if (read.counters() != null)
        {
            counters.add(read.counters());
        }
        finished(started, true);
    }

    private void inSync()
    {
        final Health h = health;
        if (h.kernel() == KernelStatus.UNAVAILABLE)
        {
            LOG.info("the kernel is back after {} failures", h.consecutiveFailures());
        }
        health = new Health(KernelStatus.IN_SYNC, h.reconciles() + 1, h.repairs(), 0, null, h.lastRepair());
    }

    /**
     * Reconciles that found the kernel and the desired plan as the last quiet one and skipped the plan build and
     * the diff.
     *
     * @return the cumulative count.
     */
    long idleSkips()
    {
        return idleSkips;
    }

    /**
     * Reconcile reads that read the table whole: the ruleset's generation was not the one the kernel was last
     * proven to hold the plan at.
     *
     * @return the cumulative count.
     */
    long tableReads()
    {
        return tableReads;
    }

    private void finished(final long started, final boolean ok)
    {
        if (ok)
        {
            lastSuccessMillis = System.currentTimeMillis();
        }
        reconcileObserver.reconciled(nanoTime.getAsLong() - started, ok);
    }

    /**
     * When the last successful reconcile pass ended.
     *
     * @return milliseconds since the epoch; 0 before the first.
     */
    long lastSuccessMillis()
    {
        return lastSuccessMillis;
    }

    /**
     * Sets who is told about every pass run.
     *
     * @param observer the observer, or null for none.
     */
    void observeReconciles(final ReconcileObserver observer)
    {
        reconcileObserver = observer == null ? ReconcileObserver.NONE : observer;
    }

    /**
     * The kernel failed (a reconcile, or a mutation's change): unavailable, and the next reconcile waits 1 s
     * doubling with each failure in a row up to 30 s. Logged at the first failure and at every power of two.
     *
     * @param e the failure.
     */
    void failed(final KernelException e)
    {
        final Health h = health;
        final int failed = h.consecutiveFailures() + 1;
        final long backoff = Math.min(MAX_BACKOFF, SECOND << Math.min(failed - 1, 5));
        nextAttempt = nanoTime.getAsLong() + backoff;
        if (failed == 1 || Integer.bitCount(failed) == 1)
        {
            LOG.error("kernel unavailable ({} in a row, next try in {} ms): {}", failed, backoff / 1_000_000,
                e.getMessage());
        }
        health = new Health(KernelStatus.UNAVAILABLE, h.reconciles() + 1, h.repairs(), failed, e.getMessage(),
            h.lastRepair());
    }

    /**
     * Reads abandoned by the read watchdog so far.
     *
     * @return the count.
     */
    long stuckReads()
    {
        return reads.stuckReads();
    }

    /**
     * The health as of the last reconcile or mutation.
     *
     * @return the health.
     */
    Health health()
    {
        return health;
    }

    /**
     * Reconcile passes run so far (passes skipped while backing off are not counted).
     *
     * @return the cumulative count.
     */
    long runs()
    {
        return runs;
    }

    /**
     * Reconcile passes that failed.
     *
     * @return the cumulative count.
     */
    long failures()
    {
        return failures;
    }

    /**
     * The totals of the table's named counters, read after each successful reconcile.
     *
     * @return counter name to packets; empty until the first read.
     */
    Map<String, Long> counters()
    {
        return counters.totals();
    }
}
