package dev.egressd.agent.testing;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * One role of the built jar (the daemon, the router) as its own process with its output in a log file: what
 * starting, killing, stopping and reading the end of the log have in common. A subclass says how it is started and
 * when it is ready. Started through {@code ip netns exec}, which execs, so the process is the JVM itself and
 * {@link #kill9()} is a real {@code kill -9} of it.
 */
public abstract class JarProcess implements AutoCloseable
{
    private final String name;
    private final Path log;
    private Process process;

    /**
     * @param name what the failure messages call it, e.g. {@code egressd router}.
     * @param log  its log file (appended to across starts).
     */
    protected JarProcess(final String name, final Path log)
    {
        this.name = name;
        this.log = log;
    }

    /**
     * The built jar: {@code -Degressd.jar} (failsafe sets it), else {@code agent/target/egressd.jar}.
     *
     * @return the jar; the test fails when it is missing.
     */
    public static Path jar()
    {
        final String property = System.getProperty("egressd.jar");
        Path jar = property != null ? Path.of(property) : null;
        if (jar == null || !Files.isRegularFile(jar))
        {
            final String dir = System.getenv().getOrDefault("EGRESSD_PROJECT_DIR", "..");
            jar = Path.of(dir, "agent", "target", "egressd.jar");
        }
        if (!Files.isRegularFile(jar))
        {
            fail("egressd.jar not built (" + jar + "): these tests run in the integration-test phase, after package");
        }
        return jar.toAbsolutePath();
    }

    /** @return the java launcher of the JVM running the tests. */
    protected static String java()
    {
        return Path.of(System.getProperty("java.home"), "bin", "java").toString();
    }

    /**
     * Starts the command with its output appended to the log, after a line naming it.
     *
     * @param cmd the command.
     * @return {@link System#nanoTime()} at the start.
     * @throws IOException if it cannot be started.
     */
    protected final long launch(final List<String> cmd) throws IOException
    {
        Files.writeString(log, "=== start " + String.join(" ", cmd) + "\n", StandardOpenOption.CREATE,
            StandardOpenOption.APPEND);
        final long t0 = System.nanoTime();
        process = new ProcessBuilder(cmd).redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        return t0;
    }

    /** Fails the test, with the end of the log, if the process exited while it was starting. */
    protected final void failIfExited()
    {
        if (!process.isAlive())
        {
            fail(name + " exited with " + process.exitValue() + " during start-up:\n" + tail());
        }
    }

    /** kill -9: no shutdown hook, no last write; the kernel keeps what it had. */
    public void kill9() throws InterruptedException
    {
        process.destroyForcibly();
        if (!process.waitFor(10, TimeUnit.SECONDS))
        {
            fail(name + " did not die on SIGKILL");
        }
    }

    /**
     * SIGTERM: it stops and leaves the kernel state.
     *
     * @return the exit code.
     * @throws InterruptedException if interrupted.
     */
    public int stop() throws InterruptedException
    {
        process.destroy();
        if (!process.waitFor(15, TimeUnit.SECONDS))
        {
            process.destroyForcibly();
            fail(name + " did not stop on SIGTERM");
        }
        return process.exitValue();
    }

    /** @return whether the process runs. */
    public boolean running()
    {
        return process != null && process.isAlive();
    }

    /** @return its log file. */
    public Path log()
    {
        return log;
    }

    /** @return the end of its log, for a failure message. */
    public String tail()
    {
        try
        {
            final List<String> lines = Files.readAllLines(log);
            return String.join("\n", lines.subList(Math.max(0, lines.size() - 40), lines.size()));
        }
        catch (final IOException e)
        {
            return "(no log: " + e + ")";
        }
    }

    @Override
    public void close()
    {
        if (process != null && process.isAlive())
        {
            process.destroyForcibly();
            try
            {
                process.waitFor(10, TimeUnit.SECONDS);
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
            }
        }
    }
}
