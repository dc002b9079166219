package dev.egressd.agent.natives;

/** A user or group lookup through NSS that failed (not "no such group": an error, e.g. the directory is down). */
public final class NssException extends NativeException
{
    private static final long serialVersionUID = 1L;

    /**
     * An exception for a failed lookup.
     *
     * @param call  what was looked up, e.g. {@code getgrnam_r(egressd-api)}.
     * @param errno the error number it returned.
     */
    public NssException(final String call, final int errno)
    {
        super(call, errno);
    }
}
