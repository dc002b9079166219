package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.KernelException;
import dev.egressd.core.plan.KernelPlan;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.Map;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.LongSupplier;

/**
 * The reconcile's reads of the kernel, off the writer: the check of the table's fixed part, the read of its elements
 * and addresses, and its counters run on a reader thread with a kernel handle of its own ({@link Kernel#reader()},
 * opened there, in that thread's network namespace), and the result goes back to the loop thread, where the
 * {@link Reconciler} takes the diff. So a change never waits behind a read (docs/design.md, "The control plane").
 *
 * <p>Until {@link #onThread} is called the read runs on the caller's thread and the result is delivered at once (tests
 * with direct executors, and the first sync at start-up, which always reads on the writer).
 *
 * <p>{@link #start} and {@link #written} on the loop thread only; the rest on the reader thread.
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
     */
    record Result(long revision, boolean recreated, KernelPlan actual, long readNanos, Map<String, Long> counters,
        KernelException failure)
    {
    }

    private final Kernel kernel;
    private final LongSupplier nanoTime;
    private Executor reader = Runnable::run;
    private Executor deliver = Runnable::run;
    private ExecutorService owned;
    /** The reading handle: opened on the reader thread at its first read; the writer's own when reads are inline. */
    private volatile Kernel handle;
    /** Whether the last counter reading failed (logged once until one succeeds). Reader thread only. */
    private boolean countersFailing;
    /** Whether a read is out; loop thread only. */
    private boolean inFlight;

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
        reader = readerThread;
        owned = readerThread;
        deliver = loop;
    }

    /**
     * Whether a read is out (started, its result not yet handed back). Loop thread only.
     *
     * @return true while one is.
     */
    boolean inFlight()
    {
        return inFlight;
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
        inFlight = true;
        try
        {
            reader.execute(() ->
            {
                final Result result = read(revision);
                try
                {
                    deliver.execute(() ->
                    {
                        inFlight = false;
                        done.accept(result);
                    });
                }
                catch (final RejectedExecutionException e)
                {
                    LOG.debug("the loop stopped before a read's result came back");
                }
            });
            return true;
        }
        catch (final RejectedExecutionException e)
        {
            inFlight = false;
            return false;
        }
    }

    /** On the reader thread. */
    private Result read(final long revision)
    {
        boolean recreated = false;
        try
        {
            if (handle == null)
            {
                // inline, the reads run on the writer's thread: its own handle serves them
                handle = owned == null ? kernel : kernel.reader();
            }
            recreated = handle.ensureTable();
            final long start = nanoTime.getAsLong();
            final KernelPlan actual = handle.read();
            final long nanos = nanoTime.getAsLong() - start;
            Map<String, Long> counters;
            try
            {
                counters = handle.counters();
            }
            catch (final KernelException | RuntimeException e)
            {
                counters = null; // the totals keep their last values
                if (!countersFailing)
                {
                    LOG.warn("cannot read the table's counters, metrics keep the last values: {}", e.getMessage());
                    countersFailing = true;
                }
            }
            if (counters != null)
            {
                countersFailing = false;
            }
            return new Result(revision, recreated, actual, nanos, counters, null);
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
        final Kernel h = handle;
        return h != null ? h.arpSysctls() : kernel.arpSysctls();
    }

    /** Closes the reading handle on its thread and stops the reader (waits up to 5 s for a read out). */
    void close()
    {
        if (owned == null)
        {
            return;
        }
        try
        {
            owned.execute(() ->
            {
                if (handle != kernel && handle instanceof AutoCloseable c)
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
                handle = null;
            });
        }
        catch (final RejectedExecutionException e)
        {
            // already stopped
        }
        owned.shutdown();
        try
        {
            owned.awaitTermination(5, TimeUnit.SECONDS);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
    }
}
