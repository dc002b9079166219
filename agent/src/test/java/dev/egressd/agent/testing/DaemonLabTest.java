package dev.egressd.agent.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.AfterEach;

/**
 * What the tests against the running daemon share: a fresh lab per test with the built {@code egressd.jar} started
 * in its host namespace, and a teardown that closes what the test opened (last first), kills the daemon, removes
 * the lab and the daemon's work directory, also when the test or one of those steps fails.
 */
public abstract class DaemonLabTest
{
    /** Closed after each test, last added first, before the daemon is killed and the lab removed. */
    protected final List<AutoCloseable> cleanup = new ArrayList<>();
    protected Lab lab;
    protected DaemonProcess daemon;
    protected ApiClient api;
    protected Path workDir;

    /**
     * Starts egressd in a lab's host namespace, with its state in a fresh work directory.
     *
     * @param created the lab, which this test now owns (removed after it).
     * @param flags   egressd flags beyond the lab's.
     * @return how long the daemon took from process start to answering its API, ms.
     * @throws Exception if it does not start.
     */
    protected long start(final Lab created, final String... flags) throws Exception
    {
        lab = created;
        workDir = Files.createTempDirectory("egressd-" + getClass().getSimpleName() + "-" + lab.prefix());
        daemon = new DaemonProcess(lab, workDir, flags);
        final long ms = daemon.start();
        api = daemon.api();
        return ms;
    }

    @AfterEach
    protected final void removeDaemonAndLab() throws Exception
    {
        try
        {
            Collections.reverse(cleanup);
            for (final AutoCloseable c : cleanup)
            {
                try
                {
                    c.close();
                }
                catch (final Exception e)
                {
                    System.err.println("cleanup: " + e);
                }
            }
        }
        finally
        {
            try
            {
                if (daemon != null)
                {
                    daemon.close();
                }
            }
            finally
            {
                if (lab != null)
                {
                    lab.close();
                }
                deleteWorkDir();
            }
        }
    }

    private void deleteWorkDir() throws IOException
    {
        if (workDir != null)
        {
            try (var files = Files.walk(workDir))
            {
                files.sorted(Collections.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }
}
