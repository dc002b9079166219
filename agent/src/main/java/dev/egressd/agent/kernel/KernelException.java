package dev.egressd.agent.kernel;

import java.io.IOException;

/**
 * The kernel could not be read or programmed (the API answers 503). The message starts with the part that refused
 * ({@code nft: ...}, {@code rtnetlink: ...}), which {@link #source()} also gives; the original error is the cause.
 */
public final class KernelException extends IOException
{
    private static final long serialVersionUID = 1L;

    /** The part of the kernel that refused; each part's errors are mapped where that part is called. */
    public enum Source
    {
        /** egressd's nftables table (libnftables). */
        NFT("nft: "),
        /** The egress addresses on the uplink (rtnetlink). */
        RTNETLINK("rtnetlink: "),
        /** Not a kernel part: an unexpected failure around the call, or a test's. */
        UNKNOWN("");

        private final String prefix;

        Source(final String prefix)
        {
            this.prefix = prefix;
        }
    }

    private final Source source;

    /**
     * A failure of one part of the kernel.
     *
     * @param source the part that refused; its name starts the message.
     * @param detail what failed, e.g. the part's own message.
     * @param cause  the part's own exception, or null.
     */
    public KernelException(final Source source, final String detail, final Throwable cause)
    {
        super(source.prefix + detail, cause);
        this.source = source;
    }

    /**
     * A failure not owed to one part of the kernel.
     *
     * @param message what failed.
     * @param cause   the underlying error, or null.
     */
    public KernelException(final String message, final Throwable cause)
    {
        this(Source.UNKNOWN, message, cause);
    }

    /**
     * A failure not owed to one part of the kernel.
     *
     * @param message what failed.
     */
    public KernelException(final String message)
    {
        this(Source.UNKNOWN, message, null);
    }

    /**
     * The part of the kernel that refused.
     *
     * @return nft, rtnetlink, or unknown.
     */
    public Source source()
    {
        return source;
    }
}
