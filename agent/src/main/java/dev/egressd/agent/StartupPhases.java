package dev.egressd.agent;

import java.time.Duration;
import java.time.Instant;

/**
 * Where a start-up's time went, for its log line (docs/operations.md, "Start-up"): the JVM's own start (from the
 * process's start time, as the kernel counts it, to {@link Daemon#start()}) and then each phase of the daemon's.
 */
final class StartupPhases
{
    /**
     * The steps before {@link Daemon#start()} (the command line, the config, logging, the kernel checks), marked by
     * {@link Egressd} as they end; the first mark, {@code main}, ends the JVM's own start. Empty when the daemon is
     * started from a test, whose line then has no such phases.
     */
    private static final java.util.List<Object[]> MARKS = new java.util.ArrayList<>();

    /** The first mark's name: {@link Egressd#main} began. */
    static final String MAIN = "main";

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
        final java.util.Optional<Instant> started = ProcessHandle.current().info().startInstant();
        final java.util.List<Object[]> marks;
        synchronized (MARKS)
        {
            marks = new java.util.ArrayList<>(MARKS);
            MARKS.clear();
        }
        if (marks.isEmpty() || !MAIN.equals(marks.get(0)[0]))
        {
            // no marks, or not from main(): a daemon started another way (a test)
            started.ifPresent(s -> line.append("jvm+config ")
                .append(Math.max(0, Duration.between(s, Instant.now()).toMillis())).append(" ms"));
            return;
        }
        // the JVM's own start: from the process's start to main(), by the wall clock (as the process's start is)
        long previous = (Long) marks.get(0)[1];
        final long mainWall = (Long) marks.get(0)[2];
        started.ifPresent(s -> line.append("jvm ").append(Math.max(0, mainWall - s.toEpochMilli())).append(" ms"));
        for (final Object[] mark : marks.subList(1, marks.size()))
        {
            final long at = (Long) mark[1];
            line.append(line.isEmpty() ? "" : ", ").append(mark[0]).append(' ').append((at - previous) / 1_000_000)
                .append(" ms");
            previous = at;
        }
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
     * A step before the daemon's start ended now (the first, {@code main}, is the JVM's start). Only the marks
     * of the process's own start are kept: the next {@link StartupPhases} of a start-up takes them.
     *
     * @param name the step's name.
     */
    static void mark(final String name)
    {
        synchronized (MARKS)
        {
            if (MAIN.equals(name))
            {
                MARKS.clear(); // a new start: what an earlier one left (a start that failed early) is not this one's
            }
            if (MARKS.size() < 16)
            {
                MARKS.add(new Object[] {name, System.nanoTime(), System.currentTimeMillis()});
            }
        }
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
        final long cpu = processCpuMillis();
        return line + (line.isEmpty() ? "" : ", ") + total + " " + (last - t0) / 1_000_000 + " ms"
            + (cpu < 0 ? "" : "; process CPU " + cpu + " ms");
    }

    /**
     * The CPU the process took so far, all its threads (the compilers' too), user + system: on a shared machine a
     * steadier figure than the phases' wall times.
     *
     * @return milliseconds, or -1 where {@code /proc/self/stat} cannot be read.
     */
    static long processCpuMillis()
    {
        try
        {
            final String stat = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/self/stat"));
            // the fields after the command's closing parenthesis (the command may hold spaces); utime and stime
            // are the 14th and 15th of the line, in clock ticks of 1/100 s (USER_HZ, fixed for /proc)
            final String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            return (Long.parseLong(f[11]) + Long.parseLong(f[12])) * 10;
        }
        catch (final java.io.IOException | RuntimeException e)
        {
            return -1;
        }
    }
}
