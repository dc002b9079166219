package dev.egressd.agent.reconcile;

import dev.egressd.agent.region.RegionStore.RouterChange;
import dev.egressd.agent.region.RegionStore.RouterRecord;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;
import java.util.function.LongSupplier;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The region's live routers and the revision each one's kernel applied ({@code routers/<id>}, on each router's
 * lease), and the answers that wait for them: {@link #await(long)} completes once every live router applied a
 * revision, or when {@code router-confirm-ms} passed.
 *
 * <p>Thread-safe. It is fed by the region feed's thread (never through the control loop, whose thread must not wait
 * for routers and need not run for them), and a waiting answer is completed on its own timer thread, so neither the
 * feed nor the loop runs what an answer does next (building and writing it).
 */
public final class RouterRevisions implements AutoCloseable
{
    private static final Logger LOG = LoggerFactory.getLogger(RouterRevisions.class);

    /** The default of {@code router-confirm-ms}. */
    public static final int DEFAULT_CONFIRM_MILLIS = 3000;

    private record Waiter(long revision, long since, CompletableFuture<Steering> answer, ScheduledFuture<?>[] timeout)
    {
    }

    private final long confirmMillis;
    private final LongSupplier nanoTime;
    private final ScheduledExecutorService timer;
    private final Map<String, Long> applied = new TreeMap<>();
    private final List<Waiter> waiters = new ArrayList<>();
    /** The snapshot's revision: a router change at or before it is older than what the snapshot said. */
    private long resetRevision;
    private volatile BiConsumer<Steering.State, Long> observer = (s, n) -> { };

    /**
     * Creates the table.
     *
     * @param confirmMillis how long an answer waits for the routers ({@code router-confirm-ms}); 0: not at all.
     * @param nanoTime      the clock.
     */
    public RouterRevisions(final long confirmMillis, final LongSupplier nanoTime)
    {
        if (confirmMillis < 0)
        {
            throw new IllegalArgumentException("router-confirm-ms: " + confirmMillis + " is negative");
        }
        this.confirmMillis = confirmMillis;
        this.nanoTime = nanoTime;
        this.timer = Executors.newSingleThreadScheduledExecutor(r ->
        {
            final Thread t = new Thread(r, "egressd-steering");
            t.setDaemon(true);
            return t;
        });
    }

    /** @return how long an answer waits for the routers, ms. */
    public long confirmMillis()
    {
        return confirmMillis;
    }

    /**
     * Where each answer's wait is reported (the metrics): its state and nanoseconds.
     *
     * @param observer the observer; it must not block.
     */
    public void observe(final BiConsumer<Steering.State, Long> observer)
    {
        this.observer = observer;
    }

    /**
     * Replaces the table with a full read's routers.
     *
     * @param revision the read's revision.
     * @param routers  the routers.
     */
    public void reset(final long revision, final Map<String, RouterRecord> routers)
    {
        synchronized (this)
        {
            applied.clear();
            routers.forEach((id, r) -> applied.put(id, r.applied()));
            resetRevision = revision;
        }
        settle();
    }

    /**
     * A router published a revision, stopped, or its lease expired.
     *
     * @param change the change.
     */
    public void changed(final RouterChange change)
    {
        synchronized (this)
        {
            if (change.revision() <= resetRevision)
            {
                return; // older than the full read that replaced the table
            }
            if (change.value() == null)
            {
                applied.remove(change.id());
            }
            else
            {
                applied.put(change.id(), change.value().applied());
            }
        }
        settle();
    }

    /** @return the live routers and their applied revisions, by id. */
    public synchronized Map<String, Long> applied()
    {
        return new TreeMap<>(applied);
    }

    /**
     * Waits (without blocking the caller) until every live router applied a revision.
     *
     * @param revision the revision.
     * @return {@link Steering.State#NO_ROUTER} at once when no router exists, {@link Steering.State#CONFIRMED} at
     *     once or when the last one caught up, {@link Steering.State#UNCONFIRMED} with the routers behind after
     *     {@code router-confirm-ms}.
     */
    public CompletableFuture<Steering> await(final long revision)
    {
        final long since = nanoTime.getAsLong();
        final Waiter waiter;
        synchronized (this)
        {
            final Steering now = settled(revision, since, false);
            if (now != null)
            {
                return done(now);
            }
            if (confirmMillis == 0)
            {
                return done(new Steering(Steering.State.UNCONFIRMED, revision, behind(revision), 0));
            }
            waiter = new Waiter(revision, since, new CompletableFuture<>(), new ScheduledFuture<?>[1]);
            waiters.add(waiter);
        }
        try
        {
            waiter.timeout()[0] = timer.schedule(() -> timedOut(waiter), confirmMillis, TimeUnit.MILLISECONDS);
        }
        catch (final RejectedExecutionException e)
        {
            timedOut(waiter); // closed: answer now
        }
        return waiter.answer();
    }

    private void timedOut(final Waiter waiter)
    {
        final Steering answer;
        synchronized (this)
        {
            if (!waiters.remove(waiter))
            {
                return;
            }
            answer = new Steering(Steering.State.UNCONFIRMED, waiter.revision(), behind(waiter.revision()),
                nanoTime.getAsLong() - waiter.since());
        }
        LOG.warn("region: routers {} did not apply revision {} within {} ms; the placement is answered unconfirmed",
            answer.waitingFor(), waiter.revision(), confirmMillis);
        complete(waiter.answer(), answer);
    }

    /** Completes the waiters the table now satisfies, on the timer thread. */
    private void settle()
    {
        final List<Waiter> ready = new ArrayList<>();
        final List<Steering> answers = new ArrayList<>();
        synchronized (this)
        {
            for (final Iterator<Waiter> it = waiters.iterator(); it.hasNext();)
            {
                final Waiter w = it.next();
                final Steering s = settled(w.revision(), w.since(), true);
                if (s != null)
                {
                    it.remove();
                    ready.add(w);
                    answers.add(s);
                }
            }
        }
        for (int i = 0; i < ready.size(); i++)
        {
            final Waiter w = ready.get(i);
            final Steering s = answers.get(i);
            if (w.timeout()[0] != null)
            {
                w.timeout()[0].cancel(false);
            }
            try
            {
                timer.execute(() -> complete(w.answer(), s));
            }
            catch (final RejectedExecutionException e)
            {
                complete(w.answer(), s);
            }
        }
    }

    /** The answer if there is one now, else null. Lock held. */
    private Steering settled(final long revision, final long since, final boolean waited)
    {
        final long nanos = waited ? nanoTime.getAsLong() - since : 0;
        if (applied.isEmpty())
        {
            return new Steering(Steering.State.NO_ROUTER, revision, List.of(), nanos);
        }
        return behind(revision).isEmpty() ? new Steering(Steering.State.CONFIRMED, revision, List.of(), nanos) : null;
    }

    private List<String> behind(final long revision)
    {
        final List<String> behind = new ArrayList<>();
        applied.forEach((id, r) ->
        {
            if (r < revision)
            {
                behind.add(id);
            }
        });
        return behind;
    }

    private CompletableFuture<Steering> done(final Steering answer)
    {
        final CompletableFuture<Steering> f = new CompletableFuture<>();
        complete(f, answer);
        return f;
    }

    private void complete(final CompletableFuture<Steering> future, final Steering answer)
    {
        try
        {
            observer.accept(answer.state(), answer.waitNanos());
        }
        catch (final RuntimeException e)
        {
            LOG.warn("steering observer failed", e);
        }
        future.complete(answer);
    }

    /** @return answers waiting now. */
    public synchronized int waiting()
    {
        return waiters.size();
    }

    @Override
    public void close()
    {
        final List<Waiter> left;
        synchronized (this)
        {
            left = new ArrayList<>(waiters);
        }
        timer.shutdownNow();
        left.forEach(this::timedOut);
    }
}
