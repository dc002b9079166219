package dev.egressd.agent.state;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * What a clean stop saw of the kernel, {@code <state-dir>/kernel-seen}: the ruleset's generation id at which the
 * kernel's table was last found holding the desired plan (nothing applied since), in which boot and network
 * namespace, and fingerprints of the table's fixed part and of the desired plan. The next start takes it (reads and
 * deletes it: it is good for one start) and, when everything matches, trusts the table without reading it
 * (docs/operations.md, "Start-up"); any difference or a missing or unreadable record means the full read, as
 * without it. It holds nothing the state needs: losing it costs one full read.
 *
 * @param bootId          the kernel's boot id, or null where it cannot be read.
 * @param bootMillis      when the host booted, by the wall clock (ms), or -1.
 * @param netns           the network namespace ({@code dev:inode} of its nsfs file).
 * @param generation      the ruleset's generation id.
 * @param table           the fingerprint of the table's fixed part (its configuration as rendered).
 * @param plan            the fingerprint of the desired plan the table held.
 */
public record KernelSeen(String bootId, long bootMillis, String netns, long generation, String table, String plan)
{
    /** The record's file in the state directory. */
    public static final String FILE = "kernel-seen";
    /** The format written; another one is not used. */
    static final String FORMAT = "1";
    /** Two boot times this close (the wall clock's slew over a stop) are the same boot. */
    static final long BOOT_SLACK_MILLIS = 1000;

    private static final Logger LOG = LoggerFactory.getLogger(KernelSeen.class);

    /**
     * Why this record (written at the stop) does not vouch for the kernel seen now.
     *
     * @param now the same facts, as they are now (its table and plan fingerprints computed now).
     * @return null when everything matches, else the first difference, for the log.
     */
    public String mismatch(final KernelSeen now)
    {
        if (bootId != null && now.bootId != null)
        {
            if (!bootId.equals(now.bootId))
            {
                return "another boot (boot id " + now.bootId + ", was " + bootId + ")";
            }
        }
        else if (bootMillis < 0 || now.bootMillis < 0 || Math.abs(bootMillis - now.bootMillis) > BOOT_SLACK_MILLIS)
        {
            return "another boot, or the boot time is unknown (booted at " + now.bootMillis + " ms, was "
                + bootMillis + ")";
        }
        if (netns == null || !netns.equals(now.netns))
        {
            return "another network namespace (" + now.netns + ", was " + netns + ")";
        }
        if (generation < 0 || generation != now.generation)
        {
            return "the ruleset's generation moved (" + now.generation + ", was " + generation + ")";
        }
        if (!Objects.equals(table, now.table) || table == null)
        {
            return "the table's fixed part is configured otherwise";
        }
        if (!Objects.equals(plan, now.plan) || plan == null)
        {
            return "the state differs from the one the stop left";
        }
        return null;
    }

    /**
     * Writes the record (a temporary file renamed over it: a reader sees a whole record or none). Not forced to
     * disk: after a crash of the host the boot differs anyway.
     *
     * @param dir the state directory.
     * @throws IOException if it cannot be written.
     */
    public void writeTo(final Path dir) throws IOException
    {
        final Map<String, String> lines = new LinkedHashMap<>();
        lines.put("format", FORMAT);
        lines.put("boot-id", bootId == null ? "" : bootId);
        lines.put("boot-millis", Long.toString(bootMillis));
        lines.put("netns", netns == null ? "" : netns);
        lines.put("generation", Long.toString(generation));
        lines.put("table", table == null ? "" : table);
        lines.put("plan", plan == null ? "" : plan);
        final StringBuilder text = new StringBuilder();
        lines.forEach((k, v) -> text.append(k).append('=').append(v).append('\n'));
        final Path temp = dir.resolve(FILE + ".tmp");
        Files.writeString(temp, text, StandardCharsets.UTF_8);
        Files.move(temp, dir.resolve(FILE), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /**
     * Reads the record and deletes it: it vouches for one start only (that start changes the kernel, and a later
     * stop writes a new one).
     *
     * @param dir the state directory.
     * @return the record, or null when there is none or it cannot be read (logged).
     */
    public static KernelSeen take(final Path dir)
    {
        final Path file = dir.resolve(FILE);
        final String text;
        try
        {
            text = Files.readString(file, StandardCharsets.UTF_8);
        }
        catch (final NoSuchFileException e)
        {
            return null;
        }
        catch (final IOException e)
        {
            LOG.warn("{} cannot be read ({}); the kernel is read at start", file, e.toString());
            return null;
        }
        finally
        {
            try
            {
                Files.deleteIfExists(file);
            }
            catch (final IOException e)
            {
                LOG.warn("{} cannot be deleted ({}); the kernel is read at start", file, e.toString());
            }
        }
        return parse(text, file);
    }

    /** The record from its text; null (logged) if it is not a whole record of this format. */
    static KernelSeen parse(final String text, final Path file)
    {
        final Map<String, String> v = new LinkedHashMap<>();
        for (final String line : text.split("\n"))
        {
            final int eq = line.indexOf('=');
            if (eq > 0)
            {
                v.put(line.substring(0, eq), line.substring(eq + 1));
            }
        }
        if (!FORMAT.equals(v.get("format")))
        {
            LOG.info("{} has format {}, not {}; the kernel is read at start", file, v.get("format"), FORMAT);
            return null;
        }
        try
        {
            return new KernelSeen(blankNull(v.get("boot-id")), Long.parseLong(v.get("boot-millis")),
                blankNull(v.get("netns")), Long.parseLong(v.get("generation")), blankNull(v.get("table")),
                blankNull(v.get("plan")));
        }
        catch (final RuntimeException e)
        {
            LOG.warn("{} is not a whole record ({}); the kernel is read at start", file, e.toString());
            return null;
        }
    }

    private static String blankNull(final String s)
    {
        return s == null || s.isEmpty() ? null : s;
    }
}
