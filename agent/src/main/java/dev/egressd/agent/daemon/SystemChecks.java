package dev.egressd.agent.daemon;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Start-up checks of what the process can do, each failing with one clear sentence. */
public final class SystemChecks
{
    /** CAP_NET_ADMIN's bit in the capability sets (linux/capability.h). */
    public static final int CAP_NET_ADMIN = 12;

    private SystemChecks()
    {
    }

    /**
     * Whether the effective capability set in a {@code /proc/<pid>/status} text holds a capability.
     *
     * @param status     the status file's text.
     * @param capability the capability number.
     * @return true if held.
     */
    public static boolean hasCapability(final String status, final int capability)
    {
        for (final String line : status.split("\n"))
        {
            if (line.startsWith("CapEff:"))
            {
                final long bits = Long.parseUnsignedLong(line.substring("CapEff:".length()).trim(), 16);
                return (bits & (1L << capability)) != 0;
            }
        }
        return false;
    }

    /**
     * Checks that this process may program the network stack.
     *
     * @return null if it may, else a sentence saying what is missing.
     */
    public static String checkNetAdmin()
    {
        try
        {
            if (hasCapability(Files.readString(Path.of("/proc/self/status")), CAP_NET_ADMIN))
            {
                return null;
            }
            return "egressd needs CAP_NET_ADMIN: run it as root or through its systemd unit "
                + "(AmbientCapabilities=CAP_NET_ADMIN)";
        }
        catch (final IOException | RuntimeException e)
        {
            return "cannot read /proc/self/status to check CAP_NET_ADMIN: " + e;
        }
    }
}
