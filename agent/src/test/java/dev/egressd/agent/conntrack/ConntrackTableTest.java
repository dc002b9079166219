package dev.egressd.agent.conntrack;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class ConntrackTableTest
{
    /** A 6.x kernel's /proc/net/stat/nf_conntrack on two CPUs (the entries column repeats the global count). */
    static final String STATS = """
        entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
        000003e8  00000000 00000000 00000000 0000000d 00000080 00000000 00000000 00000000 00000002 0000001f 00000000 00000000  00000000 00000000 00000000 00000000
        000003e8  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000a00 00000000 00000000  00000000 00000000 00000000 00000000
        """;

    /** An older kernel's layout: other columns, another order. */
    static final String OLD_STATS = """
        entries  searched found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
        00000010  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 ffffffff 00000001 00000000 00000000  00000000 00000000 00000000 00000000
        """;

    @TempDir
    Path proc;

    @Test
    void statsAreSummedOverCpusFromHex()
    {
        assertThat(ConntrackTable.parseStats(STATS)).containsExactly(0x1f + 0xa00, 3);
        assertThat(ConntrackTable.parseStats(OLD_STATS)).containsExactly(1, 0xffffffffL);
        assertThat(ConntrackTable.parseStats("entries found\n00000001 00000002\n")).containsExactly(0, 0);
    }

    @Test
    void badStatsAndNumbersNameWhatIsWrong()
    {
        assertThatThrownBy(() -> ConntrackTable.parseStats(""))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("empty");
        assertThatThrownBy(() -> ConntrackTable.parseStats("insert_failed drop\n0000000z 00000001\n"))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("line 2: not hexadecimal: 0000000z");
        assertThatThrownBy(() -> ConntrackTable.parseStats("insert_failed drop\n00000001\n"))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("line 2 has 1 columns");
        assertThat(ConntrackTable.parseNumber("262144\n", "nf_conntrack_max")).isEqualTo(262144);
        assertThatThrownBy(() -> ConntrackTable.parseNumber("lots\n", "nf_conntrack_max"))
            .isInstanceOf(IllegalArgumentException.class).hasMessage("nf_conntrack_max: not a number: lots");
    }

    private void write(final long count, final long max, final String stats) throws IOException
    {
        Files.createDirectories(proc.resolve("sys/net/netfilter"));
        Files.writeString(proc.resolve("sys/net/netfilter/nf_conntrack_count"), count + "\n");
        Files.writeString(proc.resolve("sys/net/netfilter/nf_conntrack_max"), max + "\n");
        if (stats != null)
        {
            Files.createDirectories(proc.resolve("net/stat"));
            Files.writeString(proc.resolve("net/stat/nf_conntrack"), stats);
        }
    }

    @Test
    void aSysctlFileIsReadWhole() throws IOException
    {
        // A /proc/sys file reports size 0 and answers only a read at offset 0: a reader that asks for one byte first
        // (Files.readString does) gets "2" of "262144". Real sysctl files with several digits stand in for conntrack's.
        final Path count = Path.of("/proc/sys/kernel/pid_max");
        final Path max = Path.of("/proc/sys/fs/nr_open");
        org.junit.jupiter.api.Assumptions.assumeTrue(Files.isReadable(count) && Files.isReadable(max), "no /proc/sys");
        Files.createDirectories(proc.resolve("sys/net/netfilter"));
        Files.createSymbolicLink(proc.resolve("sys/net/netfilter/nf_conntrack_count"), count);
        Files.createSymbolicLink(proc.resolve("sys/net/netfilter/nf_conntrack_max"), max);
        final long expectedCount = wholeNumber(count);
        final long expectedMax = wholeNumber(max);
        assertThat(expectedCount).as("a value of several digits").isGreaterThan(9);
        assertThat(expectedMax).as("a value of several digits").isGreaterThan(9);
        final ConntrackTable.Fill fill = new ConntrackTable(proc).sample();
        assertThat(fill).isNotNull();
        assertThat(fill.entries()).isEqualTo(expectedCount);
        assertThat(fill.max()).isEqualTo(expectedMax);
    }

    /** One read of up to 64 bytes at offset 0, which a sysctl file answers whole. */
    private static long wholeNumber(final Path file) throws IOException
    {
        try (java.io.FileInputStream in = new java.io.FileInputStream(file.toFile()))
        {
            final byte[] buf = new byte[64];
            final int n = in.read(buf);
            return Long.parseLong(new String(buf, 0, n, java.nio.charset.StandardCharsets.US_ASCII).strip());
        }
    }

    @Test
    void sampleReadsTheFilesAndIsUnknownWithoutConntrack() throws IOException
    {
        final ConntrackTable table = new ConntrackTable(proc);
        assertThat(table.sample()).isNull();
        assertThat(table.last()).isNull();
        write(1000, 262144, STATS);
        assertThat(table.sample()).isEqualTo(new ConntrackTable.Fill(1000, 262144, 0xa1f, 3));
        assertThat(table.last().percent()).isZero();
        Files.delete(proc.resolve("net/stat/nf_conntrack"));
        assertThat(table.sample()).isEqualTo(new ConntrackTable.Fill(1000, 262144, 0, 0));
    }

    @Test
    void warnsOncePerCrossingOfNinetyPercent() throws IOException
    {
        final Logger logger = (Logger)LoggerFactory.getLogger(ConntrackTable.class);
        final ListAppender<ILoggingEvent> appender = new ListAppender<>();
        appender.start();
        logger.addAppender(appender);
        try
        {
            final ConntrackTable table = new ConntrackTable(proc);
            write(899, 1000, STATS);
            assertThat(table.sample().nearlyFull()).isFalse();
            write(900, 1000, STATS);
            assertThat(table.sample().nearlyFull()).isTrue();
            write(1000, 1000, STATS);
            table.sample();
            write(500, 1000, STATS);
            table.sample();
            write(950, 1000, STATS);
            table.sample();
            final List<String> warnings = appender.list.stream().filter(e -> e.getLevel() == Level.WARN)
                .map(ILoggingEvent::getFormattedMessage).toList();
            assertThat(warnings).containsExactly(
                "conntrack table 90% full (900 of 1000 entries): new connections are dropped once it is full; "
                    + "raise net.netfilter.nf_conntrack_max",
                "conntrack table 95% full (950 of 1000 entries): new connections are dropped once it is full; "
                    + "raise net.netfilter.nf_conntrack_max");
        }
        finally
        {
            logger.detachAppender(appender);
        }
    }

    @Test
    void theMonitorPublishesTheFillOnceASecond() throws IOException
    {
        write(42, 1000, STATS);
        final ConntrackMonitor monitor = new ConntrackMonitor(null, 1024,
            new dev.egressd.agent.refusals.RefusalLog(dev.egressd.agent.refusals.RefusalLog.Format.TEXT),
            System::nanoTime).table(new ConntrackTable(proc));
        assertThat(monitor.published().table()).isNull();
        assertThat(monitor.queries().table()).isNull();
        monitor.step();
        assertThat(monitor.published().table()).isEqualTo(new ConntrackTable.Fill(42, 1000, 0xa1f, 3));
        assertThat(monitor.queries().table().entries()).isEqualTo(42);
    }
}
