package dev.egressd.agent.reconcile;

/**
 * Told about every reconcile pass run, on the loop thread: it must be quick and must not throw (the metrics binder
 * records the duration in a histogram, as kube-proxy's sync duration).
 */
@FunctionalInterface
public interface ReconcileObserver
{
    /** Observes nothing. */
    ReconcileObserver NONE = (nanos, ok) ->
    {
    };

    /**
     * A pass ended.
     *
     * @param nanos how long it took: ensure the table, read, diff, apply, read the counters.
     * @param ok    false when the kernel could not be read or programmed.
     */
    void reconciled(long nanos, boolean ok);
}
