package dev.egressd.agent.refusals;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.LongSupplier;

/**
 * The refusal log: one structured line for every refusal (an API request the allocator refused, a
 * machine left pending, kernel counters that moved: cap refusals, spoof drops, fail-closed refusals) and every limit
 * crossed (a machine's busiest destination reaching 80% or 95% of the cap, a translated port outside the block),
 * with machine, app, reason and the tuple where known, on the SLF4J logger {@value #LOGGER}.
 *
 * <p>Rate-limited per reason by a token bucket ({@link #BURST} lines at once, then {@link #PER_SECOND} a second), so
 * a storm of one kind cannot flood the journal nor hide the others; what was held back is reported as one
 * {@code suppressed} line, when the reason gets a token again or at the next {@link #flush()} (the conntrack monitor
 * calls it every second). It carries both figures: {@code lines}, the lines held back, and {@code count}, the sum of
 * their counts (a kernel counter line stands for many packets: 3 held-back lines may be 4,000 refusals).
 *
 * <p>Two formats ({@code log-format}): {@code text}, {@code key=value} pairs, and {@code json}, one JSON object a
 * line: {@code {"kind":"refusal","reason":"cap_refused","machine":null,"app":null,"tuple":null,"count":3,
 * "detail":"..."}}. Thread-safe (every method is synchronized): refusals are rare, and the hot conntrack path only
 * calls in when a limit is crossed.
 */
public final class RefusalLog
{
    /** The logger name, so the refusal log can be routed or filtered on its own. */
    public static final String LOGGER = "egressd.refusals";

    /** Lines of one reason let through at once. */
    public static final int BURST = 10;

    /** Lines of one reason let through per second after the burst. */
    public static final int PER_SECOND = 2;

    /** Output format. */
    public enum Format
    {
        /** {@code key=value} pairs. */
        TEXT,
        /** One JSON object per line. */
        JSON;

        /**
         * Parses the config value.
         *
         * @param text {@code text} or {@code json}.
         * @return the format.
         */
        public static Format of(final String text)
        {
            return valueOf(text.toUpperCase(Locale.ROOT));
        }
    }

    /** A refusal: something egressd or the kernel did not let through. */
    public static final String REFUSAL = "refusal";

    /** A limit crossed: something let through, but close to or beyond a limit. */
    public static final String LIMIT = "limit";

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long SECOND = 1_000_000_000L;

    private final Format format;
    private final Consumer<String> sink;
    private final LongSupplier nanoTime;
    private final Map<String, Bucket> buckets = new HashMap<>();
    private long lines;
    private long suppressed;

    private static final class Bucket
    {
        double tokens = BURST;
        long refilledAt;
        long suppressed;
        long suppressedCount;
        String lastKind;
    }

    /**
     * A refusal log writing to the {@value #LOGGER} logger at INFO.
     *
     * @param format the line format.
     */
    public RefusalLog(final Format format)
    {
        this(format, LoggerFactory.getLogger(LOGGER)::info, System::nanoTime);
    }

    /**
     * A refusal log with its own sink and clock, for tests.
     *
     * @param format   the line format.
     * @param sink     receives each line.
     * @param nanoTime the clock.
     */
    public RefusalLog(final Format format, final Consumer<String> sink, final LongSupplier nanoTime)
    {
        this.format = format;
        this.sink = sink;
        this.nanoTime = nanoTime;
    }

    /**
     * The logger the default sink writes to.
     *
     * @return the {@value #LOGGER} logger.
     */
    public static Logger logger()
    {
        return LoggerFactory.getLogger(LOGGER);
    }

    /**
     * Logs a refusal.
     *
     * @param reason  a short code, e.g. {@code cap_refused}, {@code pending}, {@code api_pair_full}.
     * @param machine the machine id, or null.
     * @param app     the app id, or null.
     * @param tuple   the connection tuple, or null.
     * @param count   how many events the line stands for (kernel counter deltas), 1 otherwise.
     * @param detail  a human explanation.
     * @return whether the line was written (false: rate-limited).
     */
    public synchronized boolean refusal(final String reason, final String machine, final String app,
        final String tuple, final long count, final String detail)
    {
        return line(REFUSAL, reason, machine, app, tuple, count, detail);
    }

    /**
     * Logs a limit crossed.
     *
     * @param reason  a short code, e.g. {@code destination_cap_80}, {@code block_violation}.
     * @param machine the machine id, or null.
     * @param app     the app id, or null.
     * @param tuple   the connection tuple, or null.
     * @param detail  a human explanation.
     * @return whether the line was written (false: rate-limited).
     */
    public synchronized boolean limit(final String reason, final String machine, final String app,
        final String tuple, final String detail)
    {
        return line(LIMIT, reason, machine, app, tuple, 1, detail);
    }

    /** Writes the {@code suppressed} summary of every reason that held lines back and has a token again. */
    public synchronized void flush()
    {
        final long now = nanoTime.getAsLong();
        for (final Map.Entry<String, Bucket> e : buckets.entrySet())
        {
            final Bucket b = e.getValue();
            refill(b, now);
            if (b.suppressed > 0 && b.tokens >= 1)
            {
                b.tokens -= 1;
                summary(e.getKey(), b);
            }
        }
    }

    /**
     * The line format.
     *
     * @return text or JSON.
     */
    public Format format()
    {
        return format;
    }

    /**
     * Lines written so far (summaries included).
     *
     * @return the count.
     */
    public synchronized long lines()
    {
        return lines;
    }

    /**
     * Lines held back by the rate limit so far.
     *
     * @return the count.
     */
    public synchronized long suppressed()
    {
        return suppressed;
    }

    private boolean line(final String kind, final String reason, final String machine, final String app,
        final String tuple, final long count, final String detail)
    {
        final long now = nanoTime.getAsLong();
        final Bucket b = buckets.computeIfAbsent(reason, r ->
        {
            final Bucket nb = new Bucket();
            nb.refilledAt = now;
            return nb;
        });
        refill(b, now);
        b.lastKind = kind;
        if (b.tokens < 1)
        {
            b.suppressed++;
            b.suppressedCount += count;
            suppressed++;
            return false;
        }
        b.tokens -= 1;
        if (b.suppressed > 0)
        {
            summary(reason, b);
        }
        write(kind, reason, machine, app, tuple, count, detail, -1);
        return true;
    }

    private static void refill(final Bucket b, final long now)
    {
        final long elapsed = now - b.refilledAt;
        if (elapsed > 0)
        {
            b.tokens = Math.min(BURST, b.tokens + (double)elapsed * PER_SECOND / SECOND);
            b.refilledAt = now;
        }
    }

    private void summary(final String reason, final Bucket b)
    {
        write("suppressed", reason, null, null, null, b.suppressedCount, "suppressed " + b.suppressed + " similar "
            + b.lastKind + " lines carrying a count of " + b.suppressedCount + " (reason " + reason + ", rate limit "
            + BURST + " then " + PER_SECOND + "/s)", b.suppressed);
        b.suppressed = 0;
        b.suppressedCount = 0;
    }

    /**
     * Writes one line.
     *
     * @param suppressedLines for a {@code suppressed} summary, the lines it stands for; -1 for any other line.
     */
    private void write(final String kind, final String reason, final String machine, final String app,
        final String tuple, final long count, final String detail, final long suppressedLines)
    {
        lines++;
        if (format == Format.JSON)
        {
            final ObjectNode node = JSON.createObjectNode();
            node.put("kind", kind);
            node.put("reason", reason);
            node.put("machine", machine);
            node.put("app", app);
            node.put("tuple", tuple);
            if (suppressedLines >= 0)
            {
                node.put("lines", suppressedLines);
            }
            node.put("count", count);
            node.put("detail", detail);
            try
            {
                sink.accept(JSON.writeValueAsString(node));
            }
            catch (final JsonProcessingException e)
            {
                throw new IllegalStateException(e);
            }
            return;
        }
        final StringBuilder sb = new StringBuilder(128);
        sb.append(kind).append(" reason=").append(reason);
        if (machine != null)
        {
            sb.append(" machine=").append(machine);
        }
        if (app != null)
        {
            sb.append(" app=").append(app);
        }
        if (tuple != null)
        {
            sb.append(" tuple=\"").append(tuple).append('"');
        }
        if (suppressedLines >= 0)
        {
            sb.append(" lines=").append(suppressedLines);
        }
        if (count != 1 || suppressedLines >= 0)
        {
            sb.append(" count=").append(count);
        }
        if (detail != null)
        {
            sb.append(" detail=\"").append(detail.replace("\"", "'")).append('"');
        }
        sink.accept(sb.toString());
    }
}
