package dev.egressd.agent.region;

/**
 * The region's store did not answer within its deadline, or refused. When {@link #outcomeUnknown()} is true the
 * request may have been applied: re-read (or repeat an idempotent request) before doing anything else.
 */
public final class RegionUnavailableException extends Exception
{
    private static final long serialVersionUID = 1L;

    private final boolean outcomeUnknown;

    /**
     * Creates the exception.
     *
     * @param message        what failed, for logs and API answers.
     * @param outcomeUnknown whether the request may have been applied.
     * @param cause          the cause, or null.
     */
    public RegionUnavailableException(final String message, final boolean outcomeUnknown, final Throwable cause)
    {
        super(message, cause);
        this.outcomeUnknown = outcomeUnknown;
    }

    /** @return whether the request may have been applied. */
    public boolean outcomeUnknown()
    {
        return outcomeUnknown;
    }
}
