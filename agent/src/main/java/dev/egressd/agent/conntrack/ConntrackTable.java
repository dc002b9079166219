package dev.egressd.agent.conntrack;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * How full the kernel's conntrack table is, read from {@code /proc} of the namespace egressd runs in: the entry count
 * and {@code nf_conntrack_max} ({@code /proc/sys/net/netfilter}), and the drop and insert-failed statistics
 * ({@code /proc/net/stat/nf_conntrack}, summed over CPUs). A full table drops new connections silently (nothing
 * egressd programs refuses them), so this is the only place egressd can see it. {@link #sample()} logs a warning
 * each time the table crosses {@link #WARN_PERCENT} of its maximum, and again after it fell below and rose again.
 *
 * <p>Threading: {@link #sample()} runs on one thread (the conntrack monitor's, once a second); {@link #last()} may
 * be read from any.
 */
public final class ConntrackTable
{
    /** The share of {@code nf_conntrack_max} at which the table is reported as nearly full. */
    public static final int WARN_PERCENT = 90;

    private static final Logger LOG = LoggerFactory.getLogger(ConntrackTable.class);

    /**
     * One reading.
     *
     * @param entries      entries in the table.
     * @param max          {@code nf_conntrack_max}.
     * @param drops        packets dropped because the table was full (kernel statistic {@code drop}, all CPUs).
     * @param insertFailed entries that could not be inserted (kernel statistic {@code insert_failed}, all CPUs).
     */
    public record Fill(long entries, long max, long drops, long insertFailed)
    {
        /**
         * The fill in whole percent of the maximum (rounded down).
         *
         * @return the percentage, 0 when the maximum is 0.
         */
        public long percent()
        {
            return max <= 0 ? 0 : entries * 100 / max;
        }

        /**
         * Whether the table holds at least {@link #WARN_PERCENT} of its maximum.
         *
         * @return true when nearly full.
         */
        public boolean nearlyFull()
        {
            return max > 0 && entries * 100 >= max * WARN_PERCENT;
        }
    }

    private final Path proc;
    private volatile Fill last;
    private boolean warned;

    /**
     * A reader of the given {@code /proc}.
     *
     * @param proc the proc root ({@code /proc}, or a directory laid out like it in tests).
     */
    public ConntrackTable(final Path proc)
    {
        this.proc = proc;
    }

    /**
     * The reader of this process's {@code /proc}, that is of the namespace egressd runs in.
     *
     * @return the reader.
     */
    public static ConntrackTable system()
    {
        return new ConntrackTable(Path.of("/proc"));
    }

    /**
     * The last reading.
     *
     * @return the fill, or null before the first reading or when conntrack is not loaded.
     */
    public Fill last()
    {
        return last;
    }

    /**
     * Reads the table's fill now, keeps it as {@link #last()} and warns when it has just crossed
     * {@link #WARN_PERCENT}.
     *
     * @return the fill, or null when the files cannot be read (conntrack not loaded).
     */
    public Fill sample()
    {
        Fill fill;
        try
        {
            final long entries = parseNumber(read("sys/net/netfilter/nf_conntrack_count"), "nf_conntrack_count");
            final long max = parseNumber(read("sys/net/netfilter/nf_conntrack_max"), "nf_conntrack_max");
            long[] stats;
            try
            {
                stats = parseStats(read("net/stat/nf_conntrack"));
            }
            catch (final IOException | IllegalArgumentException e)
            {
                stats = new long[] {0, 0};
            }
            fill = new Fill(entries, max, stats[0], stats[1]);
        }
        catch (final IOException | IllegalArgumentException e)
        {
            fill = null;
        }
        last = fill;
        if (fill != null && fill.nearlyFull() && !warned)
        {
            warned = true;
            LOG.warn("conntrack table {}% full ({} of {} entries): new connections are dropped once it is full; "
                + "raise net.netfilter.nf_conntrack_max", fill.percent(), fill.entries(), fill.max());
        }
        else if (warned && (fill == null || !fill.nearlyFull()))
        {
            warned = false;
            if (fill != null)
            {
                LOG.info("conntrack table back to {}% full ({} of {} entries)", fill.percent(), fill.entries(),
                    fill.max());
            }
        }
        return fill;
    }

    /**
     * Reads a /proc file whole. A sysctl file reports size 0 and answers only a read at offset 0 (a read further on is
     * end of file), so the first read must ask for the whole value: {@code Files.readString} asks for one byte first
     * and would read {@code "2"} of {@code "262144"}.
     */
    private String read(final String file) throws IOException
    {
        try (InputStream in = Files.newInputStream(proc.resolve(file)))
        {
            final ByteArrayOutputStream out = new ByteArrayOutputStream();
            final byte[] buf = new byte[8192];
            int n;
            while ((n = in.read(buf)) > 0)
            {
                out.write(buf, 0, n);
            }
            return out.toString(StandardCharsets.US_ASCII);
        }
    }

    /**
     * Parses a {@code /proc/sys} number file.
     *
     * @param text the file's content.
     * @param name the file's name, for the error.
     * @return the number.
     * @throws IllegalArgumentException if the text is not a non-negative decimal number.
     */
    static long parseNumber(final String text, final String name)
    {
        try
        {
            final long n = Long.parseLong(text.strip());
            if (n < 0)
            {
                throw new IllegalArgumentException(name + ": negative: " + text.strip());
            }
            return n;
        }
        catch (final NumberFormatException e)
        {
            throw new IllegalArgumentException(name + ": not a number: " + text.strip(), e);
        }
    }

    /**
     * Parses {@code /proc/net/stat/nf_conntrack}: a header naming the columns, then one line of hexadecimal values
     * per CPU. The columns are found by name, since their set and order differ between kernels.
     *
     * @param text the file's content.
     * @return {drop, insert_failed}, each summed over the CPUs (0 for a column the kernel does not have).
     * @throws IllegalArgumentException if the text has no header or a value is not hexadecimal.
     */
    static long[] parseStats(final String text)
    {
        final String[] lines = text.strip().split("\n");
        if (lines.length == 0 || lines[0].isBlank())
        {
            throw new IllegalArgumentException("nf_conntrack stats: empty");
        }
        final String[] header = lines[0].trim().split("\\s+");
        int drop = -1;
        int insertFailed = -1;
        for (int i = 0; i < header.length; i++)
        {
            if ("drop".equals(header[i]))
            {
                drop = i;
            }
            else if ("insert_failed".equals(header[i]))
            {
                insertFailed = i;
            }
        }
        final long[] sums = new long[2];
        for (int l = 1; l < lines.length; l++)
        {
            if (lines[l].isBlank())
            {
                continue;
            }
            final String[] values = lines[l].trim().split("\\s+");
            sums[0] += column(values, drop, l);
            sums[1] += column(values, insertFailed, l);
        }
        return sums;
    }

    private static long column(final String[] values, final int index, final int line)
    {
        if (index < 0)
        {
            return 0;
        }
        if (index >= values.length)
        {
            throw new IllegalArgumentException("nf_conntrack stats: line " + (line + 1) + " has " + values.length
                + " columns, the header more");
        }
        try
        {
            return Long.parseUnsignedLong(values[index], 16);
        }
        catch (final NumberFormatException e)
        {
            throw new IllegalArgumentException("nf_conntrack stats: line " + (line + 1) + ": not hexadecimal: "
                + values[index], e);
        }
    }
}
