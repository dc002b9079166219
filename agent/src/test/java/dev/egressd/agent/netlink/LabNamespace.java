package dev.egressd.agent.netlink;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressd.agent.natives.Natives;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * Test fixture: a throw-away network namespace made with the {@code ip} command (fixtures may shell
 * out; product code never does). Every command runs with {@code -n NAME} or {@code ip netns exec NAME},
 * so nothing touches the root namespace. {@link #close()} deletes the namespace.
 */
final class LabNamespace implements AutoCloseable
{
    private final String name;

    private LabNamespace(final String name)
    {
        this.name = name;
    }

    /** Skips when not root, or fails when EGRESSD_REQUIRE_PRIVILEGED=1 says privileged tests must run. */
    static void requireRoot()
    {
        final boolean root = Natives.isAvailable() && Natives.libc().geteuid() == 0;
        if (!root && "1".equals(System.getenv("EGRESSD_REQUIRE_PRIVILEGED")))
        {
            fail("privileged test needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN to create network namespaces), "
                + "and EGRESSD_REQUIRE_PRIVILEGED=1 forbids skipping it");
        }
        assumeTrue(root, "privileged test: not root, skipped");
    }

    /**
     * Creates {@code egr-nl-<random>} with lo up.
     *
     * @return the namespace.
     * @throws IOException if ip fails.
     */
    static LabNamespace create() throws IOException
    {
        final String name = "egr-nl-" + Long.toHexString(ThreadLocalRandom.current().nextLong() & 0xFFFFFFFFFL);
        run("ip", "netns", "add", name);
        final LabNamespace ns = new LabNamespace(name);
        try
        {
            ns.ip("link", "set", "lo", "up");
        }
        catch (final IOException | RuntimeException e)
        {
            ns.close();
            throw e;
        }
        return ns;
    }

    /**
     * Adds an up link named {@code name}: a dummy where the kernel has the dummy driver, else one end of
     * a veth pair (peer {@code name}p, also up), which behaves the same for addresses. This machine's
     * kernel was built without CONFIG_DUMMY ("Unknown device type").
     */
    void addLink(final String link) throws IOException
    {
        try
        {
            ip("link", "add", link, "type", "dummy");
        }
        catch (final IOException e)
        {
            if (!e.getMessage().contains("Unknown device type"))
            {
                throw e;
            }
            ip("link", "add", link, "type", "veth", "peer", "name", link + "p");
            ip("link", "set", link + "p", "up");
        }
        ip("link", "set", link, "up");
    }

    String name()
    {
        return name;
    }

    /** Runs {@code ip -n NAME args...} and returns stdout. */
    String ip(final String... args) throws IOException
    {
        final List<String> command = new ArrayList<>(List.of("ip", "-n", name));
        command.addAll(List.of(args));
        return run(command.toArray(String[]::new));
    }

    /** Starts {@code ip netns exec NAME args...} in the background. */
    Process spawn(final String... args) throws IOException
    {
        final List<String> command = new ArrayList<>(List.of("ip", "netns", "exec", name));
        command.addAll(List.of(args));
        return new ProcessBuilder(command).redirectErrorStream(true).start();
    }

    /** Runs {@code ip netns exec NAME args...} to completion and returns stdout. */
    String exec(final String... args) throws IOException
    {
        final List<String> command = new ArrayList<>(List.of("ip", "netns", "exec", name));
        command.addAll(List.of(args));
        return run(command.toArray(String[]::new));
    }

    @Override
    public void close() throws IOException
    {
        run("ip", "netns", "del", name);
    }

    static String run(final String... command) throws IOException
    {
        final Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        try
        {
            if (!p.waitFor(30, TimeUnit.SECONDS))
            {
                p.destroyForcibly();
                throw new IOException("timed out: " + String.join(" ", command));
            }
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted: " + String.join(" ", command), e);
        }
        final String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (p.exitValue() != 0)
        {
            throw new IOException(String.join(" ", command) + " exited " + p.exitValue() + ": " + out);
        }
        return out;
    }
}
