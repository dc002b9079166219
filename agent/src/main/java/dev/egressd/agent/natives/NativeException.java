package dev.egressd.agent.natives;

import java.io.IOException;

/** A failed system call: the call's name, its errno and strerror, as jnr-enxio and Netty report them. */
public class NativeException extends IOException
{
    private static final long serialVersionUID = 1L;

    private final int errno;

    /**
     * An exception for a failed call.
     *
     * @param method what was called, e.g. {@code sendto(NETLINK_ROUTE)}.
     * @param errno  the errno it left.
     */
    public NativeException(final String method, final int errno)
    {
        super(method + " failed: " + Natives.strerror(errno) + " (errno " + errno + ")");
        this.errno = errno;
    }

    /**
     * An exception with a message of its own.
     *
     * @param message the message.
     * @param errno   the errno.
     * @param ignored distinguishes this constructor.
     */
    protected NativeException(final String message, final int errno, final boolean ignored)
    {
        super(message);
        this.errno = errno;
    }

    /**
     * The errno of the failed call.
     *
     * @return the errno value, e.g. 17 for EEXIST.
     */
    public int errno()
    {
        return errno;
    }
}
