package dev.egressd.agent.nft;

import dev.egressd.agent.natives.Natives;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Test fixture: a throwaway network namespace with an "uplink" link inside (public: the kernel package's
 * tests use it too). Fixtures may shell out to
 * {@code ip} and {@code nft}; product code never does.
 */
public final class LabNamespace implements AutoCloseable
{
    private final String name;

    private LabNamespace(final String name)
    {
        this.name = name;
    }

    /**
     * Skips the test (or fails it when EGRESSD_REQUIRE_PRIVILEGED=1) unless we are root with libnftables,
     * {@code ip} and {@code nft} at hand.
     */
    public static void requirePrivileged()
    {
        final List<String> missing = new ArrayList<>();
        if (!Natives.isAvailable() || Natives.libc().geteuid() != 0)
        {
            missing.add("not root");
        }
        if (!NftNatives.isAvailable())
        {
            missing.add(String.valueOf(NftNatives.unavailabilityCause()));
        }
        for (final String tool : List.of("/usr/sbin/ip", "/usr/sbin/nft"))
        {
            if (!new java.io.File(tool).canExecute() && !new java.io.File(tool.replace("/usr", "")).canExecute())
            {
                missing.add(tool + " missing (apt-get install iproute2 nftables)");
            }
        }
        if (missing.isEmpty())
        {
            return;
        }
        final String message = "privileged test needs: " + String.join("; ", missing);
        if ("1".equals(System.getenv("EGRESSD_REQUIRE_PRIVILEGED")))
        {
            fail(message + " (EGRESSD_REQUIRE_PRIVILEGED=1)");
        }
        assumeTrue(false, message);
    }

    /**
     * Creates {@code egr-nft-<random>} with a veth pair (uplink, upeer) inside: veth, because the dummy
     * module is not loaded on every kernel we run on.
     */
    public static LabNamespace create() throws IOException
    {
        final String name = "egr-nft-" + Integer.toHexString(ThreadLocalRandom.current().nextInt(0x100000, 0xFFFFFF));
        sh("ip", "netns", "add", name);
        final LabNamespace ns = new LabNamespace(name);
        try
        {
            sh("ip", "-n", name, "link", "add", "uplink", "type", "veth", "peer", "name", "upeer");
        }
        catch (final IOException | RuntimeException e)
        {
            ns.close();
            throw e;
        }
        return ns;
    }

    public String name()
    {
        return name;
    }

    /** Runs a command inside the namespace ({@code ip netns exec}). */
    public String exec(final String... command) throws IOException
    {
        final List<String> args = new ArrayList<>(List.of("ip", "netns", "exec", name));
        args.addAll(List.of(command));
        return sh(args.toArray(String[]::new));
    }

    static String sh(final String... command) throws IOException
    {
        final Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
        final String output;
        try
        {
            output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!process.waitFor(30, TimeUnit.SECONDS))
            {
                process.destroyForcibly();
                throw new IOException("timed out: " + String.join(" ", command));
            }
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted: " + String.join(" ", command), e);
        }
        if (process.exitValue() != 0)
        {
            throw new IOException(String.join(" ", command) + " failed (" + process.exitValue() + "): " + output);
        }
        return output;
    }

    @Override
    public void close() throws IOException
    {
        sh("ip", "netns", "del", name);
    }
}
