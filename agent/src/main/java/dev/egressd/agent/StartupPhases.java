package dev.egressd.agent;

import java.time.Duration;
import java.time.Instant;

/**
 * Where a start-up's time went, for its log line (docs/operations.md, "Start-up"): the JVM's own start (from the
 * process's start time, as the kernel counts it, to {@link Daemon#start()}) and then each phase of the daemon's.
 */
final class StartupPhases
{
    private final StringBuilder line = new StringBuilder();
    private final long t0;
    private long last;

    /**
     * Starts counting.
     *
     * @param t0 {@link System#nanoTime()} when {@link Daemon#start()} began.
     */
    StartupPhases(final long t0)
    {
        this(t0, true);
    }

    /**
     * Starts counting.
     *
     * @param t0  {@link System#nanoTime()} when the first phase began.
     * @param jvm whether the first phase is the JVM's own start (a start-up); false for the stop's phases.
     */
    StartupPhases(final long t0, final boolean jvm)
    {
        this.t0 = t0;
        this.last = t0;
        if (!jvm)
        {
            return;
        }
        // the process's start time has the kernel's clock-tick resolution (10 ms): enough for a phase of the start
        ProcessHandle.current().info().startInstant().ifPresent(started ->
            line.append("jvm+config ").append(Math.max(0, Duration.between(started, Instant.now()).toMillis())).append(" ms"));
    }

    /**
     * A phase ended now.
     *
     * @param name its name.
     */
    void done(final String name)
    {
        final long now = System.nanoTime();
        line.append(line.isEmpty() ? "" : ", ").append(name).append(' ').append((now - last) / 1_000_000).append(" ms");
        last = now;
    }

    /**
     * The start got as far as serving: if scripts/egressd asked this JVM for a class-data archive at its exit
     * ({@code -Degressd.cds.served=FILE}), leaves the marker it looks for at the next start, which takes the
     * archive up only then: the archive then holds the classes a running daemon loads, not those of a start that
     * failed early (docs/operations.md, "Start-up").
     */
    static void served()
    {
        final String marker = System.getProperty("egressd.cds.served");
        if (marker == null)
        {
            return;
        }
        try
        {
            java.nio.file.Files.write(java.nio.file.Path.of(marker), new byte[0]);
        }
        catch (final java.io.IOException | RuntimeException e)
        {
            org.slf4j.LoggerFactory.getLogger(StartupPhases.class).debug("class-data archive marker {}: {}", marker,
                e.toString());
        }
    }

    /**
     * The line: each phase with its milliseconds, then the daemon's total (the JVM's start excluded).
     *
     * @return the line.
     */
    String line()
    {
        return line("daemon");
    }

    /**
     * The line: each phase with its milliseconds, then the total under a name.
     *
     * @param total the total's name.
     * @return the line.
     */
    String line(final String total)
    {
        return line + (line.isEmpty() ? "" : ", ") + total + " " + (last - t0) / 1_000_000 + " ms";
    }
}
