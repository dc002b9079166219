package dev.egressd.agent;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.encoder.PatternLayoutEncoder;
import ch.qos.logback.classic.spi.Configurator;
import ch.qos.logback.classic.spi.ConfiguratorRank;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.ConsoleAppender;
import ch.qos.logback.core.spi.ContextAwareBase;
import org.slf4j.Logger;

/**
 * Logback's configuration until {@link Logging#apply} puts the chosen layout in place: every logger to stderr as
 * text ({@link Logging#TEXT_PATTERN}), INFO, Netty and JNR at WARN. Set up in code, found by logback as a service
 * ({@code META-INF/services}), instead of a {@code logback.xml}: reading that file (logback's XML configurator, its
 * model and its reflection) cost a start 0.1 s of CPU, for a configuration replaced right after
 * (docs/operations.md, "Start-up"). A {@code -Dlogback.configurationFile=FILE} still wins: then this does nothing
 * and logback reads that file, as before.
 */
@ConfiguratorRank(ConfiguratorRank.CUSTOM_NORMAL_PRIORITY)
public final class LoggingDefaults extends ContextAwareBase implements Configurator
{
    /** The appender's name, as the configuration file had it. */
    static final String APPENDER = "STDERR";

    /** Logback makes it, through {@link java.util.ServiceLoader}. */
    public LoggingDefaults()
    {
    }

    @Override
    public ExecutionStatus configure(final LoggerContext ctx)
    {
        if (System.getProperty("logback.configurationFile") != null)
        {
            return ExecutionStatus.INVOKE_NEXT_IF_ANY; // the operator's own file, read by logback's next configurator
        }
        final PatternLayoutEncoder encoder = new PatternLayoutEncoder();
        encoder.setContext(ctx);
        encoder.setPattern(Logging.TEXT_PATTERN);
        encoder.start();
        final ConsoleAppender<ILoggingEvent> appender = new ConsoleAppender<>();
        appender.setContext(ctx);
        appender.setName(APPENDER);
        appender.setTarget("System.err");
        appender.setEncoder(encoder);
        appender.start();
        final ch.qos.logback.classic.Logger root = ctx.getLogger(Logger.ROOT_LOGGER_NAME);
        root.setLevel(Level.INFO);
        root.addAppender(appender);
        // libraries quieter
        ctx.getLogger("io.netty").setLevel(Level.WARN);
        ctx.getLogger("jnr").setLevel(Level.WARN);
        return ExecutionStatus.DO_NOT_INVOKE_NEXT_IF_ANY;
    }
}
