package dev.egressd.agent.reconcile;

import dev.egressd.core.alloc.Outcome;

/**
 * Thrown on the loop thread by a {@link Ledger} in the middle of a mutation the owner of record refused or could not
 * take: the loop undoes the mutation (allocator and kernel), so nothing changes, and answers with
 * {@link #refusal()} when there is one, else "region ledger unavailable".
 */
public final class LedgerException extends RuntimeException
{
    private static final long serialVersionUID = 1L;

    private final transient Outcome.Refusal refusal;

    /**
     * The owner of record could not be reached (or did not answer within its deadline).
     *
     * @param message why.
     */
    public LedgerException(final String message)
    {
        super(message);
        this.refusal = null;
    }

    /**
     * The owner of record refused (e.g. the address is another app's pair in the region).
     *
     * @param refusal the refusal to answer with.
     */
    public LedgerException(final Outcome.Refusal refusal)
    {
        super(refusal.message());
        this.refusal = refusal;
    }

    /** @return the refusal, or null when the ledger was unavailable. */
    public Outcome.Refusal refusal()
    {
        return refusal;
    }
}
