package dev.egressd.agent.reconcile;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/** One reconcile of a loop whose reads run on a reader thread of their own, waited for from a test's thread. */
final class ReconcileOnce
{
    /** Runs a task on the loop's thread and waits for it. */
    @FunctionalInterface
    interface OnLoop
    {
        void run(Callable<?> task) throws Exception;
    }

    private ReconcileOnce()
    {
    }

    /**
     * Starts a reconcile on the loop thread and waits until its read came back and was taken there. The reads are
     * paced (a reconcile is due again at most four times a read's cost after the last), so it asks again until one
     * starts; whether to ask is checked on the loop thread, where the result is taken, so that once it was no
     * second read is started (one still out when this returns could land between the caller's next steps).
     */
    static void andWait(final ControlLoop loop, final OnLoop on) throws Exception
    {
        final long runs = loop.reconcileRuns();
        final long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (loop.reconcileRuns() == runs)
        {
            on.run(() ->
            {
                if (loop.reconcileRuns() == runs)
                {
                    loop.reconcile();
                }
                return null;
            });
            assertThat(System.nanoTime()).as("a reconcile came back").isLessThan(until);
            Thread.sleep(2);
        }
        on.run(() -> null); // the task that took the result has finished
    }
}
