package dev.egressd.agent;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The start-up's log line, and the marker scripts/egressd takes a class-data archive up by. */
class StartupPhasesTest
{
    @TempDir
    Path dir;

    @Test
    void theLineNamesEachPhaseInOrderThenTheDaemonsTotal()
    {
        final StartupPhases phases = new StartupPhases(System.nanoTime());
        phases.done("state");
        phases.done("kernel");
        assertThat(phases.line()).matches(
            "(jvm\\+config \\d+ ms, )?state \\d+ ms, kernel \\d+ ms, daemon \\d+ ms; process CPU \\d+ ms");
    }

    @Test
    void theStepsMarkedBeforeTheDaemonsStartSplitTheJvmsStartFromTheConfigsAndAreTakenOnce()
    {
        StartupPhases.mark("cli"); // left by a start that did not begin in main() (a test's): not this start's
        StartupPhases.mark("logging");
        assertThat(new StartupPhases(System.nanoTime()).line()).doesNotContain("cli").doesNotContain("logging");
        StartupPhases.mark("config"); // and one that failed before its daemon started
        StartupPhases.mark(StartupPhases.MAIN);
        StartupPhases.mark("cli");
        StartupPhases.mark("checks");
        final StartupPhases phases = new StartupPhases(System.nanoTime());
        phases.done("state");
        assertThat(phases.line()).matches(
            "jvm \\d+ ms, cli \\d+ ms, checks \\d+ ms, state \\d+ ms, daemon \\d+ ms; process CPU \\d+ ms");
        // the marks belong to the process's start: a later start-up line (a test's daemon) has none of them
        assertThat(new StartupPhases(System.nanoTime()).line()).doesNotContain("cli");
    }

    @Test
    void theProcessCpuIsReadFromProc()
    {
        final long before = StartupPhases.processCpuMillis();
        long spin = 0;
        final long until = System.nanoTime() + 200_000_000L;
        while (System.nanoTime() < until)
        {
            spin += System.nanoTime() % 7;
        }
        assertThat(spin).isPositive();
        assertThat(before).isNotNegative();
        assertThat(StartupPhases.processCpuMillis()).as("200 ms spent on the CPU").isGreaterThan(before);
    }

    @Test
    void aServingStartLeavesTheMarkerTheLauncherAskedForAndNothingWhenItAskedForNone()
    {
        final Path marker = dir.resolve("daemon.jsa.served");
        final String was = System.getProperty("egressd.cds.served");
        try
        {
            System.clearProperty("egressd.cds.served");
            StartupPhases.served();
            assertThat(dir).isEmptyDirectory();
            System.setProperty("egressd.cds.served", marker.toString());
            StartupPhases.served();
            assertThat(marker).exists();
            // a marker that cannot be written (no such directory) is no reason to fail a start
            System.setProperty("egressd.cds.served", dir.resolve("gone/daemon.jsa.served").toString());
            StartupPhases.served();
            assertThat(dir.resolve("gone")).doesNotExist();
        }
        finally
        {
            if (was == null)
            {
                System.clearProperty("egressd.cds.served");
            }
            else
            {
                System.setProperty("egressd.cds.served", was);
            }
        }
    }
}
