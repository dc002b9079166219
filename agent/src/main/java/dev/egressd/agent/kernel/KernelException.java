package dev.egressd.agent.kernel;

import java.io.IOException;

/** The kernel could not be read or programmed (the API answers 503). */
public final class KernelException extends IOException
{
    /**
     * Creates the exception.
     *
     * @param message what failed.
     * @param cause   the underlying error, or null.
     */
    public KernelException(final String message, final Throwable cause)
    {
        super(message, cause);
    }

    /**
     * Creates the exception.
     *
     * @param message what failed.
     */
    public KernelException(final String message)
    {
        super(message);
    }
}
