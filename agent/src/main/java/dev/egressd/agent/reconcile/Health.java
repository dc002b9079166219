package dev.egressd.agent.reconcile;

/**
 * Health as of the last reconcile or mutation: an immutable value the loop thread replaces, read from any thread.
 *
 * @param kernel              the kernel's status.
 * @param reconciles          reconcile runs so far.
 * @param repairs             reconciles that had to change the kernel.
 * @param consecutiveFailures kernel errors in a row.
 * @param lastError           the last kernel error, or null.
 * @param lastRepair          what the last repair changed, or null.
 */
public record Health(KernelStatus kernel, long reconciles, long repairs, int consecutiveFailures, String lastError,
    String lastRepair)
{
    /** Before the first sync. */
    static final Health STARTING = new Health(KernelStatus.STARTING, 0, 0, 0, null, null);
}
