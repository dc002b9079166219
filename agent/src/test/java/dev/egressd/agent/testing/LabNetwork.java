package dev.egressd.agent.testing;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * What the parts of a namespace lab ({@link Destination}, {@link Guest}, {@link DaemonProcess}) need of it: its
 * namespaces by short name, running commands inside them, and the project's scripts. Implemented by the
 * single-host {@link Lab} and the {@link RegionLab}.
 */
public interface LabNetwork
{
    /**
     * The full name of a lab namespace.
     *
     * @param shortName e.g. {@code dst}, {@code g1}.
     * @return the namespace name.
     */
    String ns(String shortName);

    /**
     * The command line that runs a command inside a lab namespace.
     *
     * @param nsShortName the namespace.
     * @param cmd         the command.
     * @return {@code ip netns exec NS cmd...}.
     */
    List<String> inside(String nsShortName, String... cmd);

    /**
     * One of the lab's scripts.
     *
     * @param name e.g. {@code lab-client.py}.
     * @return its path under {@code scripts/}.
     */
    Path script(String name);

    /**
     * Runs a command inside a lab namespace with a timeout.
     *
     * @param timeout     the longest it may run; then it is killed and the exit code is -1.
     * @param nsShortName the namespace.
     * @param cmd         the command.
     * @return its exit code and output.
     */
    Shell.Exec execWithin(Duration timeout, String nsShortName, String... cmd);

    /**
     * Runs a command inside a lab namespace, its stdout and stderr read apart.
     *
     * @param timeout     the longest it may run; then it is killed and the exit code is -1.
     * @param nsShortName the namespace.
     * @param cmd         the command.
     * @return its exit code, stdout and stderr.
     */
    Shell.Output execApart(Duration timeout, String nsShortName, String... cmd);
}
