package dev.egressd.agent.testing;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The real egressd, as its own process from the built jar, inside a lab's host namespace
 * ({@code ip netns exec P-host java -jar egressd.jar ...}; {@code ip netns exec} execs, so the process is the JVM
 * itself and {@link #kill9()} is a real {@code kill -9} of the daemon). The fixture may shell out; the daemon never does.
 */
public final class DaemonProcess extends JarProcess
{
    private final LabNetwork lab;
    private final String nsShortName;
    private final Path stateDir;
    private final Path socket;
    private final List<String> extra;
    private long startedMillis = -1;

    /**
     * A daemon with {@code --dry-run} (an in-memory kernel) in the test's own namespace: it programs nothing, so it
     * needs no lab; for tests of the API and the region ledger where packets are not the point.
     *
     * @param workDir its state directory, socket and log go here.
     * @param extra   more flags.
     * @return the daemon, not started.
     * @throws IOException if the directory cannot be made.
     */
    public static DaemonProcess dryRun(final Path workDir, final String... extra) throws IOException
    {
        final String[] all = Arrays.copyOf(extra, extra.length + 1);
        all[extra.length] = "--dry-run";
        return new DaemonProcess((Lab) null, workDir, all);
    }

    public DaemonProcess(final Lab lab, final Path workDir, final String... extra) throws IOException
    {
        this(lab, "host", workDir, extra);
    }

    /**
     * A daemon in one namespace of a lab, e.g. a host {@code h2} of a {@link RegionLab}.
     *
     * @param lab         the lab.
     * @param nsShortName the namespace it runs in.
     * @param workDir     its state directory, socket and log go here.
     * @param extra       more flags.
     * @throws IOException if the directory cannot be made.
     */
    public DaemonProcess(final LabNetwork lab, final String nsShortName, final Path workDir, final String... extra)
        throws IOException
    {
        super("egressd", workDir.resolve("egressd.log"));
        this.lab = lab;
        this.nsShortName = nsShortName;
        this.stateDir = Files.createDirectories(workDir.resolve("state"));
        this.socket = workDir.resolve("api.sock");
        this.extra = Arrays.asList(extra);
    }

    /**
     * Runs {@code egressd --teardown} with this daemon's settings in the host namespace.
     *
     * @param confirm whether to pass {@code --yes}.
     * @return its exit code and output.
     */
    public Shell.Exec teardown(final boolean confirm)
    {
        final List<String> cmd = new ArrayList<>(List.of(java(), "-jar", jar().toString(), "--teardown",
            "--region", "ord", "--uplink", "uplink", "--state-dir", stateDir.toString()));
        if (confirm)
        {
            cmd.add("--yes");
        }
        return lab.execWithin(Lab.EXEC_TIMEOUT, nsShortName, cmd.toArray(String[]::new));
    }

    public ApiClient api()
    {
        return new ApiClient(socket);
    }

    public Path socket()
    {
        return socket;
    }

    /**
     * Runs the real egressctl from the built jar against this daemon, inside the lab's host namespace (where the
     * daemon runs, so that {@code check} sees the uplink's addresses): {@code ip netns exec P-host java -cp
     * egressd.jar dev.egressd.agent.cli.Egressctl --socket S ARGS}, with the JVM options of
     * {@code scripts/egressctl} (one compiler tier, serial GC) for a fast start.
     *
     * @param args the command and its options, e.g. {@code conns m1 --json}.
     * @return its exit code, stdout and stderr.
     */
    public Shell.Output egressctl(final String... args)
    {
        final List<String> cmd = new ArrayList<>(List.of(
            java(), "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC", "-Xshare:auto", "-cp", jar().toString(), "dev.egressd.agent.cli.Egressctl",
            "--socket", socket.toString()));
        cmd.addAll(Arrays.asList(args));
        if (lab == null)
        {
            try
            {
                return Shell.runApart(java.time.Duration.ofSeconds(60), cmd);
            }
            catch (final IOException e)
            {
                throw new java.io.UncheckedIOException(e);
            }
        }
        return lab.execApart(java.time.Duration.ofSeconds(60), nsShortName, cmd.toArray(String[]::new));
    }

    /**
     * Starts the daemon and waits until {@code GET /v1/health} answers 200.
     *
     * @return milliseconds from process start to the API's first answer.
     * @throws Exception if it does not come up within 30 s.
     */
    public long start() throws Exception
    {
        final List<String> cmd = new ArrayList<>(lab == null ? List.of() : List.of("ip", "netns", "exec", lab.ns(nsShortName)));
        cmd.addAll(List.of(java(), "-jar", jar().toString(),
            "--region", "ord", "--uplink", "uplink", "--state-dir", stateDir.toString(),
            "--api-socket", socket.toString(), "--metrics-listen", "off"));
        cmd.addAll(extra);
        final long t0 = launch(cmd);
        final long deadline = t0 + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline)
        {
            failIfExited();
            try
            {
                if (Files.exists(socket) && api().get("/v1/health").status() == 200)
                {
                    startedMillis = (System.nanoTime() - t0) / 1_000_000;
                    return startedMillis;
                }
            }
            catch (final IOException e)
            {
                // not listening yet
            }
            Thread.sleep(5);
        }
        fail("egressd did not answer within 30 s:\n" + tail());
        return -1;
    }

    /**
     * The daemon's own account of its last start-up ("serving ... after N ms": state, kernel, first reconcile, API),
     * i.e. the process start-up time without the JVM's own start.
     *
     * @return N, or -1 if not logged.
     */
    public long loggedStartMillis()
    {
        try
        {
            long ms = -1;
            final java.util.regex.Pattern p = java.util.regex.Pattern.compile("serving .* after (\\d+) ms");
            for (final String line : Files.readAllLines(log()))
            {
                final java.util.regex.Matcher m = p.matcher(line);
                if (m.find())
                {
                    ms = Long.parseLong(m.group(1));
                }
            }
            return ms;
        }
        catch (final IOException e)
        {
            return -1;
        }
    }
}
