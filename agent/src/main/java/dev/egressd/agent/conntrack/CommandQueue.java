package dev.egressd.agent.conntrack;

import dev.egressd.core.ledger.ConnectionLedger;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/**
 * How other threads reach the monitor thread: work queued here runs on that thread between two polls. A read of the
 * ledger carries its answer back in a {@link CompletableFuture}; once the queue is stopped, a read is failed, never
 * left unanswered (the API would otherwise wait for ever).
 */
final class CommandQueue
{
    /** A read queued for the monitor thread; failed, not lost, when the monitor stops. */
    private static final class Query<T> implements Runnable
    {
        private final CompletableFuture<T> future = new CompletableFuture<>();
        private final Function<ConnectionLedger, T> read;
        private final ConnectionLedger ledger;

        Query(final Function<ConnectionLedger, T> read, final ConnectionLedger ledger)
        {
            this.read = read;
            this.ledger = ledger;
        }

        @Override
        public void run()
        {
            try
            {
                future.complete(read.apply(ledger));
            }
            catch (final RuntimeException e)
            {
                future.completeExceptionally(e);
            }
        }

        void fail()
        {
            future.completeExceptionally(new IllegalStateException("the conntrack monitor is stopped"));
        }
    }

    private final LinkedBlockingQueue<Runnable> commands = new LinkedBlockingQueue<>();
    private final ConnectionLedger ledger;
    /** Set once the monitor stops (closed, or its thread ended): reads are refused from then on. */
    private volatile boolean stopped;

    /**
     * A queue whose reads see the given ledger.
     *
     * @param ledger the ledger the monitor thread owns.
     */
    CommandQueue(final ConnectionLedger ledger)
    {
        this.ledger = ledger;
    }

    /**
     * Queues work for the monitor thread (a machine update, say); dropped if the monitor stops first.
     *
     * @param command the work.
     */
    void add(final Runnable command)
    {
        commands.add(command);
    }

    /**
     * Queues a read of the ledger.
     *
     * @param read the read; it must not keep the ledger.
     * @param <T>  its result.
     * @return the result, or failed at once when the monitor has stopped.
     */
    <T> CompletableFuture<T> query(final Function<ConnectionLedger, T> read)
    {
        final Query<T> q = new Query<>(read, ledger);
        if (stopped)
        {
            q.fail();
            return q.future;
        }
        commands.add(q);
        // The monitor may have stopped between the check and the add, after its last drain: then nothing would
        // ever run the query. Failing it here is harmless if the thread did run it (a completed future stays so).
        if (stopped && commands.remove(q))
        {
            q.fail();
        }
        return q.future;
    }

    /**
     * Runs every queued command; monitor thread.
     *
     * @return how many ran.
     */
    int drain()
    {
        int n = 0;
        Runnable c;
        while ((c = commands.poll()) != null)
        {
            c.run();
            n++;
        }
        return n;
    }

    /**
     * Waits for one command and runs it (a monitor without a kernel has nothing else to wait on).
     *
     * @param millis how long to wait.
     * @return whether one ran.
     * @throws InterruptedException if interrupted while waiting.
     */
    boolean runNext(final long millis) throws InterruptedException
    {
        return runNext(millis, TimeUnit.MILLISECONDS);
    }

    /**
     * Waits up to the time for one command and runs it.
     *
     * @param time how long to wait.
     * @param unit its unit.
     * @return whether one ran.
     * @throws InterruptedException if interrupted while waiting.
     */
    boolean runNext(final long time, final TimeUnit unit) throws InterruptedException
    {
        final Runnable c = commands.poll(time, unit);
        if (c != null)
        {
            c.run();
        }
        return c != null;
    }

    /** Refuses reads from now on (the monitor is closing, or its thread has ended). */
    void stop()
    {
        stopped = true;
    }

    /** Wakes a thread waiting in {@link #runNext}. */
    void wake()
    {
        commands.add(() ->
        {
            // wakes a monitor without a kernel from its wait on this queue
        });
    }

    /** Fails every read still queued (nothing will run them) and drops the rest. */
    void failQueued()
    {
        Runnable c;
        while ((c = commands.poll()) != null)
        {
            if (c instanceof Query<?> q)
            {
                q.fail();
            }
        }
    }
}
