package dev.egressd.agent.api;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import org.slf4j.LoggerFactory;

import java.util.List;

/** What one class logs while a test runs. */
final class LogCapture implements AutoCloseable
{
    private final Logger logger;
    private final ListAppender<ILoggingEvent> appender = new ListAppender<>();

    private LogCapture(final Logger logger)
    {
        this.logger = logger;
        appender.start();
        logger.addAppender(appender);
    }

    static LogCapture of(final Class<?> type)
    {
        return new LogCapture((Logger)LoggerFactory.getLogger(type));
    }

    /** The messages logged at WARN or above, formatted. */
    synchronized List<String> warnings()
    {
        return appender.list.stream().filter(e -> e.getLevel().isGreaterOrEqual(Level.WARN))
            .map(ILoggingEvent::getFormattedMessage).toList();
    }

    @Override
    public void close()
    {
        logger.detachAppender(appender);
    }
}
