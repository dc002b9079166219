package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.KernelException;
import dev.egressd.core.plan.KernelPlan;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.Map;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * The reconcile's reads of the kernel, off the writer: the check of the table's fixed part, the read of its elements
 * and addresses, and its counters run on a reader thread with a kernel handle of its own ({@link Kernel#reader()},
 * opened there, in that thread's network namespace), and the result goes back to the loop thread, where the
 * {@link Reconciler} takes the diff. So a change never waits behind a read (docs/design.md, "The control plane").
 *
 * <p>Until {@link #onThread} is called the read runs on the caller's thread and the result is delivered at once (tests
 * with direct executors, and the first sync at start-up, which always reads on the writer).
 *
 * <p><strong>Watchdog.</strong> A read that does not come back within {@link #deadlineNanos} (30 s, or ten times the
 * last read's whole cost if that is longer) is abandoned by {@link #abandonIfStuck} (the loop asks at each
 * reconcile): its result, if it ever comes, is dropped; its reader thread is shut down and its kernel handle closed
 * on that thread when the read returns (never from another thread, where the descriptor could already be reused);
 * the next read goes to a fresh reader thread that opens a fresh handle. The loop reports the kernel unavailable,
 * naming the stuck step (docs/reliability.md, "A read that never returns").
 *
 * <p>{@link #start}, {@link #abandonIfStuck} and {@link #inFlight} on the loop thread only; the rest on the reader
 * thread.
 */
final class KernelReads
{
    private static final Logger LOG = LoggerFactory.getLogger(KernelReads.class);

    /**
     * What one read found.
     *
     * @param revision  the plan revision when the read was started.
     * @param recreated whether the check created or repaired the table's fixed part.
     * @param actual    what the kernel held, or null if the read failed.
     * @param readNanos what the read (without the check) cost.
     * @param counters  the table's named counters, or null if they could not be read.
     * @param failure   why the check or the read failed, or null.
     * @param generation the ruleset's generation id as the check began ({@link Kernel#generation()}), or -1.
     * @param trusted   whether the generation was the latest proven one ({@link #proven(long)}): then the table was
     *                  neither checked nor read, and {@code actual} holds only the uplink addresses
     *                  ({@link Kernel#readTrusting}).
     */
    record Result(long revision, boolean recreated, KernelPlan actual, long readNanos, Map<String, Long> counters,
        KernelException failure, long generation, boolean trusted)
    {
        Result(final long revision, final boolean recreated, final KernelPlan actual, final long readNanos,
            final Map<String, Long> counters, final KernelException failure, final long generation)
        {
            this(revision, recreated, actual, readNanos, counters, failure, generation, false);
        }

        Result(final long revision, final boolean recreated, final KernelPlan actual, final long readNanos,
            final Map<String, Long> counters, final KernelException failure)
        {
            this(revision, recreated, actual, readNanos, counters, failure, -1);
        }
    }

    /** How often, and how long apart, a read that finds the generation one past the proof looks again. */
    static final int CATCH_UP_TRIES = 3;
    private static final long CATCH_UP_NANOS = TimeUnit.MICROSECONDS.toNanos(200);

    /** A read out longer than this (or ten times the last read's cost, if longer) is stuck. */
    static final long DEADLINE_NANOS = TimeUnit.SECONDS.toNanos(30);
    private static final int DEADLINE_FACTOR = 10;

    /** One reader thread and the kernel handle it opened; a stuck one is abandoned whole. */
    private static final class Reader
    {
        final ExecutorService executor;
        /** Opened on the reader thread at its first read; the writer's own when reads are inline. */
        volatile Kernel handle;
        /** Whether the last counter reading failed (logged once until one succeeds). Reader thread only. */
        boolean countersFailing;

        Reader(final ExecutorService executor)
        {
            this.executor = executor;
        }
    }

    /** One read out: what it is doing (for the error that names a stuck one), and whether it was abandoned. */
    private static final class Attempt
    {
        final long started;
        volatile String step = "queued for the reader thread";
        /** Loop thread only. */
        boolean abandoned;

        Attempt(final long started)
        {
            this.started = started;
        }
    }

    private final Kernel kernel;
    private final LongSupplier nanoTime;
    private Executor reader = Runnable::run;
    private Executor deliver = Runnable::run;
    /** The reader thread of the reads (null when inline); replaced when one is stuck. */
    private volatile Reader current;
    /** Inline reads' state (no thread, no watchdog). */
    private final Reader inline = new Reader(null);
    private Supplier<ExecutorService> freshReaders = KernelReads::newReaderThread;
    private long deadlineNanos = DEADLINE_NANOS;
    /** The last completed read's whole cost (check, read, counters); loop thread only. */
    private long lastCost;
    /** The read out, or null; loop thread only. */
    private Attempt out;
    private final AtomicLong stuck = new AtomicLong();
    /** The latest proven generation ({@link #proven(long)}), or -1. */
    private volatile long proven = -1;

    KernelReads(final Kernel kernel, final LongSupplier nanoTime)
    {
        this.kernel = kernel;
        this.nanoTime = nanoTime;
    }

    /**
     * Moves the reads to a reader thread; each result is handed to the loop through its executor.
     *
     * @param readerThread the reader (one thread, in the writer's network namespace); shut down by {@link #close}.
     * @param loop         the loop's executor.
     */
    void onThread(final ExecutorService readerThread, final Executor loop)
    {
        current = new Reader(readerThread);
        reader = readerThread;
        deliver = loop;
    }

    /**
     * Sets the watchdog: the deadline and where a fresh reader thread comes from (the loop thread calls it, so a new
     * thread starts in the loop's network namespace).
     *
     * @param deadline     a read out longer than this is stuck (or ten times the last read's cost, if longer).
     * @param readers      makes a fresh single reader thread.
     */
    void watchdog(final long deadline, final Supplier<ExecutorService> readers)
    {
        deadlineNanos = deadline;
        freshReaders = readers;
    }

    /** A reader thread as the daemon's first one: named egressd-reader, a daemon thread. */
    private static ExecutorService newReaderThread()
    {
        return Executors.newSingleThreadExecutor(r ->
        {
            final Thread t = new Thread(r, "egressd-reader");
            t.setDaemon(true);
            return t;
        });
    }

    /**
     * Whether a read is out (started, its result not yet handed back). Loop thread only.
     *
     * @return true while one is.
     */
    boolean inFlight()
    {
        return out != null;
    }

    /**
     * Abandons the read out if it has been out longer than the deadline: its result will be dropped, its reader
     * thread stops after it (closing its handle there), and the next read starts on a fresh reader thread with a
     * fresh handle. Loop thread only.
     *
     * @param now the loop's clock.
     * @return what was stuck, for the health's last error; null if no read is out or it is not late.
     */
    String abandonIfStuck(final long now)
    {
        final Attempt a = out;
        final Reader r = current;
        final long deadline = Math.max(deadlineNanos, DEADLINE_FACTOR * lastCost);
        if (a == null || r == null || now - a.started < deadline)
        {
            return null;
        }
        a.abandoned = true;
        out = null;
        stuck.incrementAndGet();
        r.executor.shutdown(); // its thread ends once the stuck read returns, if it ever does
        final ExecutorService fresh = freshReaders.get();
        current = new Reader(fresh);
        reader = fresh;
        final String what = "the kernel read on egressd-reader (" + a.step + ") has not returned after "
            + TimeUnit.NANOSECONDS.toSeconds(now - a.started) + " s: abandoned, the next read uses a fresh reader"
            + " handle";
        LOG.error("{}", what);
        return what;
    }

    /**
     * Reads abandoned by the watchdog so far.
     *
     * @return the count.
     */
    long stuckReads()
    {
        return stuck.get();
    }

    /**
     * Starts a read; its result goes to {@code done} on the loop thread (at once when reads are not on a thread).
     * Loop thread only.
     *
     * @param revision the plan revision now.
     * @param done     takes the result.
     * @return false if the reader is gone (shut down): nothing was started.
     */
    boolean start(final long revision, final Consumer<Result> done)
    {
        final Attempt attempt = new Attempt(nanoTime.getAsLong());
        final Reader r = current == null ? inline : current;
        out = attempt;
        try
        {
            reader.execute(() ->
            {
                final Result result = read(r, attempt, revision);
                try
                {
                    deliver.execute(() ->
                    {
                        if (attempt.abandoned)
                        {
                            LOG.warn("a kernel read abandoned as stuck came back after {} ms; its result is dropped",
                                TimeUnit.NANOSECONDS.toMillis(nanoTime.getAsLong() - attempt.started));
                            return;
                        }
                        out = null;
                        lastCost = nanoTime.getAsLong() - attempt.started;
                        done.accept(result);
                    });
                }
                catch (final RejectedExecutionException e)
                {
                    LOG.debug("the loop stopped before a read's result came back");
                }
                finally
                {
                    if (r != inline && r.executor.isShutdown())
                    {
                        closeHandle(r); // abandoned (or closing): this thread's handle goes with it
                    }
                }
            });
            return true;
        }
        catch (final RejectedExecutionException e)
        {
            out = null;
            return false;
        }
    }

    /** On the reader thread. */
    /**
     * Publishes the latest ruleset generation at which the kernel was proven to hold the plan: a read that finds
     * the ruleset at it neither checks nor reads the table, only the uplink addresses and the counters
     * (docs/design.md, "The control plane"). Read by the reader when it has the generation, so the writer's
     * batches committed between a read's start and its generation request do not make it whole. Any thread.
     *
     * @param generation the generation, or -1 for none (every read whole).
     */
    void proven(final long generation)
    {
        proven = generation;
    }

    private Result read(final Reader r, final Attempt attempt, final long revision)
    {
        boolean recreated = false;
        try
        {
            Kernel handle = r.handle;
            if (handle == null)
            {
                attempt.step = "opening the reader's kernel handle";
                // inline, the reads run on the writer's thread: its own handle serves them
                handle = r == inline ? kernel : kernel.reader();
                r.handle = handle;
            }
            // before the check: a read that finds the table as the plan wants proves it at this generation (a change
            // by anyone in between moves the id past it)
            long generation = handle.generation();
            long p = proven;
            for (int i = 0; r != inline && i < CATCH_UP_TRIES && p >= 0 && generation == Reconciler.nextGeneration(p);
                 i++)
            {
                // one past the proof: most likely the writer's own batch, committed but its proof not published yet
                // (inline, on the writer's own thread, it cannot be: nothing to wait for)
                // (it reads the generation back first, a netlink round trip). Under a steady stream of changes that
                // window is hit often enough to read the whole table several times a minute; it closes within
                // microseconds unless the writer lost its core, so look again shortly, generation first.
                LockSupport.parkNanos(CATCH_UP_NANOS);
                generation = handle.generation();
                p = proven;
            }
            // nobody committed since the kernel was proven to hold the plan: the table is as proven, only the
            // addresses (which the generation does not cover) are read
            final boolean trusted = p >= 0 && generation == p;
            final KernelPlan actual;
            final long start;
            if (trusted)
            {
                attempt.step = "reading the uplink addresses (readTrusting)";
                start = nanoTime.getAsLong();
                actual = handle.readTrusting(KernelPlan.empty());
            }
            else
            {
                attempt.step = "checking the table (ensureTable)";
                recreated = handle.ensureTable();
                attempt.step = "reading the table's elements and addresses (read)";
                start = nanoTime.getAsLong();
                actual = handle.read();
            }
            final long nanos = nanoTime.getAsLong() - start;
            attempt.step = "reading the table's counters (counters)";
            Map<String, Long> counters;
            try
            {
                counters = handle.counters();
            }
            catch (final KernelException | RuntimeException e)
            {
                counters = null; // the totals keep their last values
                if (!r.countersFailing)
                {
                    LOG.warn("cannot read the table's counters, metrics keep the last values: {}", e.getMessage());
                    r.countersFailing = true;
                }
            }
            if (counters != null)
            {
                r.countersFailing = false;
            }
            attempt.step = "done";
            return new Result(revision, recreated, actual, nanos, counters, null, generation, trusted);
        }
        catch (final KernelException e)
        {
            return new Result(revision, recreated, null, 0, null, e);
        }
        catch (final RuntimeException e)
        {
            LOG.error("reconcile read failed", e);
            return new Result(revision, recreated, null, 0, null, new KernelException(e.toString(), e));
        }
    }

    /**
     * The ARP sysctls as the last read found them.
     *
     * @return what the reading handle says, or the kernel's before the first read.
     */
    String arpSysctls()
    {
        final Reader r = current == null ? inline : current;
        final Kernel h = r.handle;
        return h != null ? h.arpSysctls() : kernel.arpSysctls();
    }

    /** Closes a reader's handle; on that reader's thread. */
    private void closeHandle(final Reader r)
    {
        final Kernel h = r.handle;
        r.handle = null;
        if (h != kernel && h instanceof AutoCloseable c)
        {
            try
            {
                c.close();
            }
            catch (final Exception e)
            {
                LOG.warn("closing the reading kernel: {}", e.toString());
            }
        }
    }

    /** Closes the reading handle on its thread and stops the reader (waits up to 5 s for a read out). */
    void close()
    {
        final Reader r = current;
        if (r == null)
        {
            return;
        }
        try
        {
            r.executor.execute(() -> closeHandle(r));
        }
        catch (final RejectedExecutionException e)
        {
            // already stopped
        }
        r.executor.shutdown();
        try
        {
            r.executor.awaitTermination(5, TimeUnit.SECONDS);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
    }
}
