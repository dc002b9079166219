package dev.egressd.agent.natives;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Runtime;

/**
 * Loads libc once and reports, Netty style, whether it could: {@link #isAvailable()},
 * {@link #ensureAvailability()}, {@link #unavailabilityCause()}.
 */
public final class Natives
{
    private Natives()
    {
    }

    private static final class Holder
    {
        static final LibC LIBC;
        static final Throwable CAUSE;

        static
        {
            LibC libc = null;
            Throwable cause = null;
            try
            {
                libc = LibraryLoader.create(LibC.class).failImmediately().load("c");
            }
            catch (final Throwable t)
            {
                cause = t;
            }
            LIBC = libc;
            CAUSE = cause;
        }
    }

    /**
     * Whether libc could be loaded.
     *
     * @return true if native calls are possible.
     */
    public static boolean isAvailable()
    {
        return Holder.LIBC != null;
    }

    /**
     * Why libc could not be loaded.
     *
     * @return the cause, or null when available.
     */
    public static Throwable unavailabilityCause()
    {
        return Holder.CAUSE;
    }

    /** Throws when libc could not be loaded. */
    public static void ensureAvailability()
    {
        if (!isAvailable())
        {
            throw new IllegalStateException("libc could not be loaded through JNR-FFI", Holder.CAUSE);
        }
    }

    /**
     * The loaded libc.
     *
     * @return libc.
     */
    public static LibC libc()
    {
        ensureAvailability();
        return Holder.LIBC;
    }

    /**
     * The JNR runtime libc was loaded into, for allocating native memory.
     *
     * @return the runtime.
     */
    public static Runtime runtime()
    {
        return Runtime.getRuntime(libc());
    }

    /**
     * The errno the calling thread's last native call left.
     *
     * @return errno.
     */
    public static int errno()
    {
        return Runtime.getRuntime(libc()).getLastError();
    }

    /**
     * The text of an errno.
     *
     * @param errno an errno value.
     * @return strerror's text, or "errno N" when libc is unavailable.
     */
    public static String strerror(final int errno)
    {
        return isAvailable() ? libc().strerror(errno) : "errno " + errno;
    }
}
