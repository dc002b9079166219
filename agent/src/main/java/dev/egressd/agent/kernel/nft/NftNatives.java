package dev.egressd.agent.kernel.nft;

import jnr.ffi.LibraryLoader;

/**
 * Loads libnftables once and reports, Netty style, whether it could: {@link #isAvailable()},
 * {@link #ensureAvailability()}, {@link #unavailabilityCause()}.
 *
 * <p>The library is loaded by its soname {@code libnftables.so.1}: the runtime package
 * ({@code libnftables1}) ships only that name; the unversioned {@code libnftables.so} comes with the
 * -dev package, which a production host does not have.
 */
public final class NftNatives
{
    /** The soname loaded. */
    public static final String SONAME = "libnftables.so.1";

    /** What an operator should do when the library is missing. */
    public static final String MISSING_MESSAGE = SONAME + " not found: apt-get install libnftables1";

    private NftNatives()
    {
    }

    private static final class Holder
    {
        static final LibNftables LIB;
        static final Throwable CAUSE;

        static
        {
            LibNftables lib = null;
            Throwable cause = null;
            try
            {
                lib = LibraryLoader.create(LibNftables.class).failImmediately().load(SONAME);
            }
            catch (final Throwable t)
            {
                // Tell "not installed" (the operator's fix) apart from a binding bug (ours).
                final String text = String.valueOf(t.getMessage());
                final boolean missing = text.contains("cannot open shared object") || text.contains("not found")
                    || text.contains("No such file");
                cause = new UnsatisfiedLinkError((missing ? MISSING_MESSAGE : SONAME + " could not be bound")
                    + " (" + t + ")");
                cause.initCause(t);
            }
            LIB = lib;
            CAUSE = cause;
        }
    }

    /**
     * Whether libnftables could be loaded.
     *
     * @return true if {@link LibNftablesClient#open()} can work.
     */
    public static boolean isAvailable()
    {
        return Holder.LIB != null;
    }

    /**
     * Why libnftables could not be loaded.
     *
     * @return the cause (its message says what to install), or null when available.
     */
    public static Throwable unavailabilityCause()
    {
        return Holder.CAUSE;
    }

    /**
     * Throws when libnftables could not be loaded.
     *
     * @throws IllegalStateException with {@link #MISSING_MESSAGE} and the loader's cause.
     */
    public static void ensureAvailability()
    {
        if (!isAvailable())
        {
            throw new IllegalStateException(Holder.CAUSE.getMessage(), Holder.CAUSE);
        }
    }

    static LibNftables lib()
    {
        ensureAvailability();
        return Holder.LIB;
    }
}
