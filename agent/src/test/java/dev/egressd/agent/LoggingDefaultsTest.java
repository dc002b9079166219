package dev.egressd.agent;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.encoder.PatternLayoutEncoder;
import ch.qos.logback.classic.spi.Configurator;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.Appender;
import ch.qos.logback.core.ConsoleAppender;
import java.util.ArrayList;
import java.util.List;
import java.util.ServiceLoader;
import org.junit.jupiter.api.Test;
import org.slf4j.Logger;

/** Logback's configuration before the layout is chosen, set up in code instead of read from a logback.xml. */
class LoggingDefaultsTest
{
    @Test
    void logbackFindsItAsAService()
    {
        final List<Class<?>> found = new ArrayList<>();
        ServiceLoader.load(Configurator.class).forEach(c -> found.add(c.getClass()));
        assertThat(found).contains(LoggingDefaults.class);
    }

    @Test
    void everyLoggerGoesToStderrAsTextAtInfoWithTheLibrariesAtWarn()
    {
        final LoggerContext ctx = new LoggerContext();
        final LoggingDefaults defaults = new LoggingDefaults();
        defaults.setContext(ctx);
        assertThat(defaults.configure(ctx)).isEqualTo(Configurator.ExecutionStatus.DO_NOT_INVOKE_NEXT_IF_ANY);
        final ch.qos.logback.classic.Logger root = ctx.getLogger(Logger.ROOT_LOGGER_NAME);
        assertThat(root.getLevel()).isEqualTo(Level.INFO);
        final Appender<ILoggingEvent> appender = root.getAppender(LoggingDefaults.APPENDER);
        assertThat(appender).isInstanceOf(ConsoleAppender.class);
        assertThat(appender.isStarted()).isTrue();
        final ConsoleAppender<ILoggingEvent> console = (ConsoleAppender<ILoggingEvent>)appender;
        assertThat(console.getTarget()).isEqualTo("System.err");
        assertThat(((PatternLayoutEncoder)console.getEncoder()).getPattern()).isEqualTo(Logging.TEXT_PATTERN);
        assertThat(ctx.getLogger("io.netty.channel").getEffectiveLevel()).isEqualTo(Level.WARN);
        assertThat(ctx.getLogger("jnr.ffi").getEffectiveLevel()).isEqualTo(Level.WARN);
        assertThat(ctx.getLogger("dev.egressd.agent.Daemon").getEffectiveLevel()).isEqualTo(Level.INFO);
    }

    @Test
    void anOperatorsOwnConfigurationFileIsLeftToLogback()
    {
        final String was = System.getProperty("logback.configurationFile");
        final LoggerContext ctx = new LoggerContext();
        final LoggingDefaults defaults = new LoggingDefaults();
        defaults.setContext(ctx);
        try
        {
            System.setProperty("logback.configurationFile", "/etc/egressd/logback.xml");
            assertThat(defaults.configure(ctx)).isEqualTo(Configurator.ExecutionStatus.INVOKE_NEXT_IF_ANY);
            assertThat(ctx.getLogger(Logger.ROOT_LOGGER_NAME).iteratorForAppenders().hasNext()).isFalse();
        }
        finally
        {
            if (was == null)
            {
                System.clearProperty("logback.configurationFile");
            }
            else
            {
                System.setProperty("logback.configurationFile", was);
            }
        }
    }
}
