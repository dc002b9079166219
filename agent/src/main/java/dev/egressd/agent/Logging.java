package dev.egressd.agent;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.encoder.JsonEncoder;
import ch.qos.logback.classic.encoder.PatternLayoutEncoder;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.ConsoleAppender;
import ch.qos.logback.core.encoder.Encoder;
import ch.qos.logback.core.encoder.EncoderBase;
import dev.egressd.agent.refusals.RefusalLog;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * How egressd's log lines look, chosen at start: every logger writes to stderr, as text ({@code log-format = text})
 * or one JSON object a line ({@code json}: logback's {@link JsonEncoder}, with timestamp, level, thread and logger),
 * and, when stderr is the journal's stream, each line starts with its syslog priority ({@code <3>} for ERROR), which
 * journald takes off and stores as the entry's priority (systemd.exec(5), {@code SyslogLevelPrefix=}, on by default),
 * so {@code journalctl -p err} shows the errors.
 */
public final class Logging
{
    /** The text layout (and the one before {@link #apply}: {@link LoggingDefaults}). */
    static final String TEXT_PATTERN = "%d{HH:mm:ss.SSS} %-5level %logger{24} - %msg%n";

    /** Under journald the journal stamps each entry itself: no time of day in the line. */
    static final String JOURNAL_TEXT_PATTERN = "%-5level %logger{24} - %msg%n";

    /** The appender's name, so that a second {@link #apply} replaces its own appenders only. */
    private static final String APPENDER = "egressd";

    private Logging()
    {
    }

    /**
     * The layout chosen.
     *
     * @param json    {@code log-format = json}.
     * @param journal stderr is the journal's stream: prefix each line with its priority.
     */
    public record Layout(boolean json, boolean journal)
    {
    }

    /**
     * Whether stderr is connected to the journal: systemd sets {@code JOURNAL_STREAM} to the {@code device:inode} of
     * the stream it connected stdout and stderr to; it is the journal only if fd 2 is still that stream (a child
     * whose stderr was redirected inherits the variable; systemd.exec(5), "JOURNAL_STREAM").
     *
     * @param env         the environment.
     * @param stderrStat  the {@code device:inode} of fd 2, or null if unknown.
     * @return true to prefix priorities.
     */
    static boolean journal(final Map<String, String> env, final String stderrStat)
    {
        final String stream = env.get("JOURNAL_STREAM");
        return stream != null && !stream.isBlank() && stream.strip().equals(stderrStat);
    }

    /**
     * The {@code device:inode} of this process' stderr, as {@code JOURNAL_STREAM} writes it (decimal).
     *
     * @return the pair, or null if fd 2 cannot be looked at.
     */
    static String stderrStat()
    {
        try
        {
            final Map<String, Object> a = Files.readAttributes(Path.of("/proc/self/fd/2"), "unix:dev,ino");
            return Long.toUnsignedString(((Number)a.get("dev")).longValue()) + ":"
                + Long.toUnsignedString(((Number)a.get("ino")).longValue());
        }
        catch (final IOException | UnsupportedOperationException | IllegalArgumentException e)
        {
            return null;
        }
    }

    /**
     * What goes before a line printed on stderr outside the logger (start-up errors): {@code <3>} under the journal.
     *
     * @return the prefix, or "".
     */
    public static String errorPrefix()
    {
        return journal(System.getenv(), stderrStat()) ? "<3>" : "";
    }

    /**
     * The layout for this process.
     *
     * @param logFormat {@code text} or {@code json}.
     * @return the layout.
     */
    public static Layout layout(final String logFormat)
    {
        return new Layout("json".equals(logFormat), journal(System.getenv(), stderrStat()));
    }

    /**
     * Puts the layout in place: the root logger's appenders become one stderr appender with it, and the refusal log
     * goes through it too. Does nothing when SLF4J is not bound to logback (or a
     * {@code -Dlogback.configurationFile} names the operator's own configuration).
     *
     * @param layout the layout.
     */
    public static void apply(final Layout layout)
    {
        apply(layout, "System.err");
    }

    /**
     * As {@link #apply(Layout)}, to another console stream ({@code egressd router} logs to stdout).
     *
     * @param layout the layout.
     * @param target {@code System.err} or {@code System.out}.
     */
    public static void apply(final Layout layout, final String target)
    {
        if (!(LoggerFactory.getILoggerFactory() instanceof LoggerContext ctx)
            || System.getProperty("logback.configurationFile") != null)
        {
            return;
        }
        final ch.qos.logback.classic.Logger root = ctx.getLogger(Logger.ROOT_LOGGER_NAME);
        final ConsoleAppender<ILoggingEvent> appender = new ConsoleAppender<>();
        appender.setContext(ctx);
        appender.setName(APPENDER);
        appender.setTarget(target);
        appender.setEncoder(encoder(ctx, layout, false));
        appender.start();
        root.detachAndStopAllAppenders();
        root.addAppender(appender);
        final ch.qos.logback.classic.Logger refusals = ctx.getLogger(RefusalLog.LOGGER);
        refusals.detachAndStopAllAppenders();
        if (layout.json())
        {
            // its message is already a JSON object: carried as one ("refusal"), not as an escaped string
            final ConsoleAppender<ILoggingEvent> own = new ConsoleAppender<>();
            own.setContext(ctx);
            own.setName(APPENDER + "-refusals");
            own.setTarget(target);
            own.setEncoder(encoder(ctx, layout, true));
            own.start();
            refusals.addAppender(own);
            refusals.setAdditive(false);
        }
        else
        {
            refusals.setAdditive(true);
        }
    }

    /**
     * The encoder of a layout.
     *
     * @param ctx      the logger context.
     * @param layout   the layout.
     * @param refusals for the refusal log under {@code json}: its message (a JSON object) goes in as {@code refusal}.
     * @return a started encoder.
     */
    static Encoder<ILoggingEvent> encoder(final LoggerContext ctx, final Layout layout, final boolean refusals)
    {
        final Encoder<ILoggingEvent> inner;
        if (layout.json())
        {
            final JsonEncoder json = refusals ? new RefusalJsonEncoder() : new JsonEncoder();
            json.setWithSequenceNumber(false);
            json.setWithNanoseconds(false);
            json.setWithContext(false);
            json.setWithMDC(false);
            json.setWithMarkers(false);
            json.setWithArguments(false);
            json.setWithMessage(false);
            json.setWithFormattedMessage(!refusals);
            json.setContext(ctx);
            inner = json;
        }
        else
        {
            final PatternLayoutEncoder text = new PatternLayoutEncoder();
            text.setPattern(layout.journal() ? JOURNAL_TEXT_PATTERN : TEXT_PATTERN);
            text.setContext(ctx);
            inner = text;
        }
        inner.start();
        if (!layout.journal())
        {
            return inner;
        }
        final PriorityPrefixEncoder prefixed = new PriorityPrefixEncoder(inner);
        prefixed.setContext(ctx);
        prefixed.start();
        return prefixed;
    }

    /**
     * The syslog priority of a level: ERROR 3 (err), WARN 4 (warning), INFO 6 (info), DEBUG and TRACE 7 (debug).
     *
     * @param level the level.
     * @return the priority.
     */
    static int priority(final Level level)
    {
        if (level.isGreaterOrEqual(Level.ERROR))
        {
            return 3;
        }
        if (level.isGreaterOrEqual(Level.WARN))
        {
            return 4;
        }
        return level.isGreaterOrEqual(Level.INFO) ? 6 : 7;
    }

    /**
     * Prefixes every line of another encoder's output with {@code <N>}: journald splits what it reads at newlines,
     * so each line of a stack trace is an entry of its own and carries the priority too.
     */
    static final class PriorityPrefixEncoder extends EncoderBase<ILoggingEvent>
    {
        private final Encoder<ILoggingEvent> inner;

        PriorityPrefixEncoder(final Encoder<ILoggingEvent> inner)
        {
            this.inner = inner;
        }

        @Override
        public byte[] headerBytes()
        {
            return null;
        }

        @Override
        public byte[] encode(final ILoggingEvent event)
        {
            final String text = new String(inner.encode(event), StandardCharsets.UTF_8);
            final String prefix = "<" + priority(event.getLevel()) + ">";
            final StringBuilder b = new StringBuilder(text.length() + 8);
            int start = 0;
            while (start < text.length())
            {
                final int end = text.indexOf('\n', start);
                final int stop = end < 0 ? text.length() : end + 1;
                b.append(prefix).append(text, start, stop);
                start = stop;
            }
            if (b.length() > 0 && b.charAt(b.length() - 1) != '\n')
            {
                b.append('\n');
            }
            return b.toString().getBytes(StandardCharsets.UTF_8);
        }

        @Override
        public byte[] footerBytes()
        {
            return null;
        }
    }

    /** The JSON line of a refusal log event: its message, a JSON object, as the {@code refusal} member. */
    static final class RefusalJsonEncoder extends JsonEncoder
    {
        @Override
        protected void appendCustomFields(final StringBuilder sb, final ILoggingEvent event)
        {
            final String message = event.getFormattedMessage();
            if (message != null && message.startsWith("{") && message.endsWith("}"))
            {
                sb.append(",\"refusal\":").append(message);
            }
            else
            {
                // not one of RefusalLog's objects: keep it, escaped
                sb.append(",\"formattedMessage\":")
                    .append(com.fasterxml.jackson.databind.node.TextNode.valueOf(String.valueOf(message)));
            }
        }
    }
}
