package dev.egressd.agent.reconcile;

/**
 * Told about every mutation once it is answered, on the loop thread: it must be quick and must not throw (the
 * metrics binder counts changes and records their latency).
 */
@FunctionalInterface
public interface ChangeObserver
{
    /** Observes nothing. */
    ChangeObserver NONE = (operation, outcome, nanosToKernel) ->
    {
    };

    /** How a mutation was answered. */
    enum Outcome
    {
        /** The kernel holds the change and the state is on disk. */
        OK("ok"),
        /** Invalid or impossible: nothing changed. */
        REFUSED("refused"),
        /** The kernel or the disk failed: nothing changed. */
        UNAVAILABLE("unavailable");

        private final String label;

        Outcome(final String label)
        {
            this.label = label;
        }

        /**
         * The metric tag's value.
         *
         * @return e.g. {@code ok}.
         */
        public String label()
        {
            return label;
        }
    }

    /**
     * A mutation was answered.
     *
     * @param operation     what it did.
     * @param outcome       how it was answered.
     * @param nanosToKernel for {@link Outcome#OK}: nanoseconds from the request being queued to the kernel holding
     *                      the change; otherwise -1.
     */
    void changed(Operation operation, Outcome outcome, long nanosToKernel);
}
