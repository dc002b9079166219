package dev.egressd.agent;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.classic.spi.LoggingEvent;
import ch.qos.logback.core.encoder.Encoder;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.egressd.agent.refusals.RefusalLog;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/** The log layouts: text or JSON, with journald priority prefixes when stderr is the journal. */
class LoggingTest
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private final LoggerContext ctx = new LoggerContext();

    private String encode(final Logging.Layout layout, final boolean refusals, final Level level, final String message,
        final Throwable thrown)
    {
        final Encoder<ILoggingEvent> encoder = Logging.encoder(ctx, layout, refusals);
        final LoggingEvent event = new LoggingEvent("fqcn", ctx.getLogger(refusals ? RefusalLog.LOGGER
            : "dev.egressd.agent.reconcile.Reconciler"), level, message, thrown, null);
        return new String(encoder.encode(event), StandardCharsets.UTF_8);
    }

    @Test
    void theJournalIsStderrOnlyWhenJournalStreamNamesIt()
    {
        assertThat(Logging.journal(Map.of(), "64768:1234")).isFalse();
        assertThat(Logging.journal(Map.of("JOURNAL_STREAM", "64768:1234"), "64768:1234")).isTrue();
        // inherited by a process whose stderr went elsewhere
        assertThat(Logging.journal(Map.of("JOURNAL_STREAM", "64768:1234"), "64768:999")).isFalse();
        assertThat(Logging.journal(Map.of("JOURNAL_STREAM", "64768:1234"), null)).isFalse();
        assertThat(Logging.journal(Map.of("JOURNAL_STREAM", ""), "")).isFalse();
    }

    @Test
    void stderrStatIsDeviceColonInode()
    {
        final String stat = Logging.stderrStat();
        assertThat(stat).matches("[0-9]+:[0-9]+");
        // this test's JVM is not run by systemd with its stderr on the journal
        assertThat(Logging.layout("text")).isEqualTo(new Logging.Layout(false,
            Logging.journal(System.getenv(), stat)));
        assertThat(Logging.layout("json").json()).isTrue();
    }

    @Test
    void prioritiesAreSyslogs()
    {
        assertThat(Logging.priority(Level.ERROR)).isEqualTo(3);
        assertThat(Logging.priority(Level.WARN)).isEqualTo(4);
        assertThat(Logging.priority(Level.INFO)).isEqualTo(6);
        assertThat(Logging.priority(Level.DEBUG)).isEqualTo(7);
        assertThat(Logging.priority(Level.TRACE)).isEqualTo(7);
    }

    @Test
    void textOutsideTheJournalIsAsBefore()
    {
        assertThat(encode(new Logging.Layout(false, false), false, Level.WARN, "kernel unavailable", null))
            .matches("[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3} WARN  d\\.e\\.a\\.r\\.Reconciler - kernel unavailable\n");
    }

    @Test
    void textUnderTheJournalPrefixesEveryLineWithItsPriority()
    {
        assertThat(encode(new Logging.Layout(false, true), false, Level.INFO, "serving", null))
            .isEqualTo("<6>INFO  d.e.a.r.Reconciler - serving\n");
        final String error = encode(new Logging.Layout(false, true), false, Level.ERROR, "start-up failed",
            new IllegalStateException("boom"));
        assertThat(error).startsWith("<3>ERROR d.e.a.r.Reconciler - start-up failed\n"
            + "<3>java.lang.IllegalStateException: boom\n")
            .endsWith("\n");
        for (final String line : error.split("\n"))
        {
            assertThat(line).as("a stack trace line is an entry too").startsWith("<3>");
        }
        assertThat(encode(new Logging.Layout(false, true), false, Level.WARN, "a", null)).startsWith("<4>WARN ");
        assertThat(encode(new Logging.Layout(false, true), false, Level.DEBUG, "a", null)).startsWith("<7>DEBUG");
    }

    @Test
    void jsonIsOneObjectALineWithTimestampAndLevel() throws Exception
    {
        final String line = encode(new Logging.Layout(true, false), false, Level.WARN, "kernel \"unavailable\"\nretry",
            new IllegalStateException("boom"));
        assertThat(line).endsWith("\n");
        assertThat(line.strip()).doesNotContain("\n");
        final JsonNode json = JSON.readTree(line);
        assertThat(json.path("timestamp").asLong()).isCloseTo(System.currentTimeMillis(),
            org.assertj.core.data.Offset.offset(60_000L));
        assertThat(json.path("level").asText()).isEqualTo("WARN");
        assertThat(json.path("loggerName").asText()).isEqualTo("dev.egressd.agent.reconcile.Reconciler");
        assertThat(json.path("formattedMessage").asText()).isEqualTo("kernel \"unavailable\"\nretry");
        assertThat(json.path("throwable").path("message").asText()).isEqualTo("boom");
        assertThat(json.has("context")).isFalse();
        final String journal = encode(new Logging.Layout(true, true), false, Level.ERROR, "x", null);
        assertThat(journal).startsWith("<3>{");
        assertThat(JSON.readTree(journal.substring(3)).path("level").asText()).isEqualTo("ERROR");
    }

    @Test
    void aJsonRefusalLineCarriesItsObjectNotAnEscapedString() throws Exception
    {
        final String refusal = "{\"kind\":\"refusal\",\"reason\":\"cap_refused\",\"machine\":\"m1\",\"count\":3}";
        final JsonNode json = JSON.readTree(encode(new Logging.Layout(true, false), true, Level.INFO, refusal, null));
        assertThat(json.path("level").asText()).isEqualTo("INFO");
        assertThat(json.path("loggerName").asText()).isEqualTo(RefusalLog.LOGGER);
        assertThat(json.has("timestamp")).isTrue();
        assertThat(json.path("refusal").path("reason").asText()).isEqualTo("cap_refused");
        assertThat(json.path("refusal").path("count").asInt()).isEqualTo(3);
        assertThat(json.has("formattedMessage")).isFalse();
        final JsonNode other = JSON.readTree(encode(new Logging.Layout(true, false), true, Level.INFO, "plain", null));
        assertThat(other.path("formattedMessage").asText()).isEqualTo("plain");
    }

    @Test
    void applyMakesEveryLoggerJsonAndBack() throws Exception
    {
        final PrintStream saved = System.err;
        final ByteArrayOutputStream err = new ByteArrayOutputStream();
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        try
        {
            Logging.apply(new Logging.Layout(true, false));
            LoggerFactory.getLogger("dev.egressd.agent.Daemon").info("serving {}", "/run/egressd/api.sock");
            LoggerFactory.getLogger("io.netty.Something").warn("netty warns");
            new RefusalLog(RefusalLog.Format.JSON).refusal("pending", "m9", "shop", null, 1, "no slot");
        }
        finally
        {
            Logging.apply(new Logging.Layout(false, false));
            System.setErr(saved);
        }
        final String[] lines = err.toString(StandardCharsets.UTF_8).split("\n");
        assertThat(lines).hasSize(3);
        final JsonNode first = JSON.readTree(lines[0]);
        assertThat(first.path("formattedMessage").asText()).isEqualTo("serving /run/egressd/api.sock");
        assertThat(first.path("level").asText()).isEqualTo("INFO");
        assertThat(JSON.readTree(lines[1]).path("level").asText()).isEqualTo("WARN");
        final JsonNode refusal = JSON.readTree(lines[2]);
        assertThat(refusal.path("refusal").path("machine").asText()).isEqualTo("m9");
        assertThat(refusal.has("timestamp")).isTrue();
    }
}
