package dev.egressd.agent.natives;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * Which boot of the host and which network namespace this is: the ruleset's generation id counts from the start of
 * its namespace, so a generation recorded at a stop means something at the next start only in the same boot and the
 * same namespace (docs/operations.md, "Start-up").
 */
public final class Boot
{
    /** The kernel's id of this boot: a random UUID drawn at boot. */
    static final Path BOOT_ID = Path.of("/proc/sys/kernel/random/boot_id");
    /** The calling thread's network namespace (nsfs: its device and inode name the namespace while it lives). */
    static final Path NETNS = Path.of("/proc/thread-self/ns/net");

    private Boot()
    {
    }

    /**
     * The boot id.
     *
     * @return the kernel's boot id, or null where {@code /proc/sys} is not visible (the unit's {@code ProcSubset=pid}).
     */
    public static String bootId()
    {
        try
        {
            final String id = Files.readString(BOOT_ID, StandardCharsets.US_ASCII).strip();
            return id.isEmpty() ? null : id;
        }
        catch (final IOException | RuntimeException e)
        {
            return null;
        }
    }

    /**
     * When the host booted, by the wall clock: the wall clock now less the time since boot
     * ({@code CLOCK_BOOTTIME}). Within one boot it moves only as the wall clock is stepped or slewed (by
     * milliseconds over a short stop); another boot gives another time, later by at least the last boot's uptime.
     *
     * @return milliseconds since the epoch, or -1 if the clock cannot be read.
     */
    public static long bootMillis()
    {
        if (!Natives.isAvailable())
        {
            return -1;
        }
        final long[] timespec = new long[2];
        final long wall = System.currentTimeMillis();
        if (Natives.libc().clock_gettime(LibC.CLOCK_BOOTTIME, timespec) != 0)
        {
            return -1;
        }
        return wall - (timespec[0] * 1000 + timespec[1] / 1_000_000);
    }

    /**
     * The calling thread's network namespace.
     *
     * @return {@code <device>:<inode>} of its nsfs file, or null if it cannot be looked at.
     */
    public static String netns()
    {
        try
        {
            final Map<String, Object> a = Files.readAttributes(NETNS, "unix:dev,ino");
            return Long.toUnsignedString(((Number)a.get("dev")).longValue()) + ":"
                + Long.toUnsignedString(((Number)a.get("ino")).longValue());
        }
        catch (final IOException | RuntimeException e)
        {
            return null;
        }
    }
}
