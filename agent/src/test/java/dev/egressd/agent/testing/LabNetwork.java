package dev.egressd.agent.testing;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * What the parts of a namespace lab ({@link Destination}, {@link Guest}, {@link DaemonProcess}) need of it: its
 * namespaces by short name, running commands inside them, and the project's scripts. Implemented by the
 * single-host {@link Lab} and the {@link RegionLab}; both name their namespaces {@code <prefix>-<short name>} (as
 * {@code scripts/lab} makes them), so all but the prefix is said once, here.
 */
public interface LabNetwork
{
    /** How long one command in a lab namespace may run before it is killed. */
    Duration EXEC_TIMEOUT = Duration.ofSeconds(20);

    /**
     * The lab's prefix.
     *
     * @return the prefix of every namespace name.
     */
    String prefix();

    /**
     * The full name of a lab namespace.
     *
     * @param shortName e.g. {@code host}, {@code dst}, {@code g1}.
     * @return e.g. {@code e1k2-host}.
     */
    default String ns(final String shortName)
    {
        return prefix() + "-" + shortName;
    }

    /**
     * The command line that runs a command inside a lab namespace.
     *
     * @param nsShortName the namespace.
     * @param cmd         the command.
     * @return {@code ip netns exec NS cmd...}.
     */
    default List<String> inside(final String nsShortName, final String... cmd)
    {
        final List<String> full = new ArrayList<>(List.of("ip", "netns", "exec", ns(nsShortName)));
        full.addAll(Arrays.asList(cmd));
        return full;
    }

    /**
     * One of the project's scripts.
     *
     * @param name e.g. {@code lab-client.py}.
     * @return its path under {@code scripts/}.
     */
    default Path script(final String name)
    {
        return Requirements.projectDir().resolve("scripts").resolve(name);
    }

    /**
     * Runs a command inside a lab namespace with a timeout.
     *
     * @param timeout     the longest it may run; then it is killed and the exit code is -1.
     * @param nsShortName the namespace.
     * @param cmd         the command.
     * @return its exit code and output.
     */
    default Shell.Exec execWithin(final Duration timeout, final String nsShortName, final String... cmd)
    {
        try
        {
            return Shell.run(timeout, inside(nsShortName, cmd));
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Runs a command inside a lab namespace, its stdout and stderr read apart.
     *
     * @param timeout     the longest it may run; then it is killed and the exit code is -1.
     * @param nsShortName the namespace.
     * @param cmd         the command.
     * @return its exit code, stdout and stderr.
     */
    default Shell.Output execApart(final Duration timeout, final String nsShortName, final String... cmd)
    {
        try
        {
            return Shell.runApart(timeout, inside(nsShortName, cmd));
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Runs a command inside a lab namespace within {@link #EXEC_TIMEOUT}.
     *
     * @param nsShortName the namespace.
     * @param cmd         the command.
     * @return its exit code and output.
     */
    default Shell.Exec exec(final String nsShortName, final String... cmd)
    {
        return execWithin(EXEC_TIMEOUT, nsShortName, cmd);
    }

    /**
     * Runs a command in a lab namespace and fails the test unless it exits with 0.
     *
     * @param nsShortName the namespace.
     * @param cmd         the command.
     * @return its output.
     */
    default String must(final String nsShortName, final String... cmd)
    {
        final Shell.Exec exec = exec(nsShortName, cmd);
        if (!exec.ok())
        {
            fail("in " + nsShortName + ": " + String.join(" ", cmd) + " -> " + exec.exitCode() + ": " + exec.output());
        }
        return exec.output();
    }
}
