package dev.egressd.agent.netlink;

import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.natives.NativeException;
import dev.egressd.agent.natives.Natives;

/**
 * The kernel refused a netlink request: the errno from struct nlmsgerr (or from the socket call), with
 * the kernel's extended-ack text when it sent one. Predicates follow knftables' {@code IsNotFound} /
 * {@code IsAlreadyExists}, so callers can make operations idempotent without comparing numbers.
 */
public final class NetlinkException extends NativeException
{
    private static final long serialVersionUID = 1L;

    private final String kernelMessage;

    /**
     * An exception for a refused request.
     *
     * @param operation     what was asked, e.g. {@code RTM_NEWADDR 203.0.113.10/32 dev up0}.
     * @param errno         the positive errno.
     * @param kernelMessage the extended-ack text, or null.
     */
    public NetlinkException(final String operation, final int errno, final String kernelMessage)
    {
        super(operation + " failed: " + Natives.strerror(errno) + " (errno " + errno + ")"
            + (kernelMessage == null || kernelMessage.isEmpty() ? "" : ": " + kernelMessage), errno, true);
        this.kernelMessage = kernelMessage;
    }

    /**
     * An exception with a message of its own, e.g. naming a missing interface.
     *
     * @param message the message.
     * @param errno   the errno behind it.
     * @param cause   the original exception, or null.
     */
    public NetlinkException(final String message, final int errno, final Throwable cause)
    {
        super(message, errno, true);
        this.kernelMessage = null;
        initCause(cause);
    }

    /**
     * The kernel's extended-ack text (NLMSGERR_ATTR_MSG).
     *
     * @return the text, or null when the kernel sent none.
     */
    public String kernelMessage()
    {
        return kernelMessage;
    }

    /**
     * Whether the object already exists (EEXIST).
     *
     * @return true for EEXIST.
     */
    public boolean isAlreadyExists()
    {
        return errno() == LibC.EEXIST;
    }

    /**
     * Whether the object (address, interface, conntrack entry) does not exist: ENOENT, ENODEV,
     * EADDRNOTAVAIL (what RTM_DELADDR returns for a missing address) or ESRCH.
     *
     * @return true for those errnos.
     */
    public boolean isNotFound()
    {
        final int e = errno();
        return e == LibC.ENOENT || e == LibC.ENODEV || e == LibC.EADDRNOTAVAIL || e == LibC.ESRCH;
    }
}
