package dev.egressd.agent.testing;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressd.agent.kernel.nft.NftNatives;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What a {@link Privileged} test needs, checked in one place: a test calls one of these first and is skipped when
 * the host lacks it, or fails when {@code EGRESSD_REQUIRE_PRIVILEGED=1} (CI) forbids skipping.
 */
public final class Requirements
{
    /** The environment variable that turns a missing requirement from a skip into a failure. */
    public static final String REQUIRE_VARIABLE = "EGRESSD_REQUIRE_PRIVILEGED";

    /** The tools the lab's scripts and observations use. */
    private static final List<String> LAB_TOOLS = List.of("ip", "nft", "conntrack", "ping", "python3");

    private Requirements()
    {
    }

    /**
     * Whether a missing requirement is a failure rather than a skip.
     *
     * @return true under {@code EGRESSD_REQUIRE_PRIVILEGED=1}.
     */
    public static boolean required()
    {
        return "1".equals(System.getenv(REQUIRE_VARIABLE));
    }

    /** Root, to create network namespaces (CAP_NET_ADMIN and CAP_SYS_ADMIN). */
    public static void root()
    {
        require(missingRoot());
    }

    /** Root with libnftables, {@code ip} and {@code nft}: the in-process kernel tests in one namespace. */
    public static void rootWithNftables()
    {
        final List<String> missing = missingRoot();
        missingNftables(missing);
        for (final String tool : List.of("ip", "nft"))
        {
            if (findTool(tool) == null)
            {
                missing.add(tool + " missing (apt-get install iproute2 nftables)");
            }
        }
        require(missing);
    }

    /**
     * What a whole {@link Lab} needs: root, the lab's tools, {@code scripts/lab} and libnftables, and any further
     * tools the test uses.
     *
     * @param extraTools further tools, e.g. {@code promtool}.
     */
    public static void lab(final String... extraTools)
    {
        final List<String> missing = missingRoot();
        final List<String> absent = new ArrayList<>();
        for (final String tool : LAB_TOOLS)
        {
            if (findTool(tool) == null)
            {
                absent.add(tool);
            }
        }
        if (!absent.isEmpty())
        {
            missing.add("tools " + absent + " (run scripts/install-deps)");
        }
        if (projectDir() == null)
        {
            missing.add("scripts/lab (set EGRESSD_PROJECT_DIR to the project root)");
        }
        missingNftables(missing);
        for (final String tool : extraTools)
        {
            if (findTool(tool) == null)
            {
                missing.add("tool " + tool);
            }
        }
        require(missing);
    }

    /**
     * etcd's server binary, for the tests of the region store against a real etcd (Debian's etcd-server, which
     * scripts/install-deps installs). No root needed: the test's etcd listens on free loopback ports.
     *
     * @return its absolute path.
     */
    public static Path etcd()
    {
        final Path usr = Path.of("/usr/bin/etcd");
        final Path path = Files.isExecutable(usr) ? usr : findTool("etcd");
        if (path == null)
        {
            require(List.of("etcd (apt-get install etcd-server, or run scripts/install-deps)"));
        }
        return path;
    }

    /**
     * A host tool the test runs, e.g. {@code promtool} (Debian package prometheus) or {@code systemd-analyze}.
     *
     * @param name the tool's name.
     * @param hint how to install it.
     * @return its absolute path.
     */
    public static Path tool(final String name, final String hint)
    {
        final Path path = findTool(name);
        if (path == null)
        {
            require(List.of(name + " (" + hint + ")"));
        }
        return path;
    }

    /**
     * Where a tool is: the first executable of that name on the PATH, then in /usr/sbin, /sbin, /usr/bin, /bin.
     *
     * @param name the tool's name.
     * @return its absolute path, or null when it is not installed.
     */
    public static Path findTool(final String name)
    {
        final String path = System.getenv().getOrDefault("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin";
        for (final String dir : path.split(":"))
        {
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, name)))
            {
                return Path.of(dir, name).toAbsolutePath();
            }
        }
        return null;
    }

    /**
     * The project's root: {@code EGRESSD_PROJECT_DIR} (Maven sets it), else the nearest directory up from here
     * with an executable {@code scripts/lab}.
     *
     * @return the directory, or null when there is none.
     */
    public static Path projectDir()
    {
        final String env = System.getenv("EGRESSD_PROJECT_DIR");
        if (env != null && Files.isExecutable(Path.of(env, "scripts", "lab")))
        {
            return Path.of(env);
        }
        for (Path dir = Path.of("").toAbsolutePath(); dir != null; dir = dir.getParent())
        {
            if (Files.isExecutable(dir.resolve("scripts").resolve("lab")))
            {
                return dir;
            }
        }
        return null;
    }

    private static List<String> missingRoot()
    {
        final List<String> missing = new ArrayList<>();
        try
        {
            final int uid = euid();
            if (uid != 0)
            {
                missing.add("root (CAP_NET_ADMIN and CAP_SYS_ADMIN to create network namespaces; uid " + uid + ")");
            }
        }
        catch (final IOException e)
        {
            missing.add("root (cannot read the uid: " + e + ")");
        }
        return missing;
    }

    private static void missingNftables(final List<String> missing)
    {
        if (!NftNatives.isAvailable())
        {
            missing.add("libnftables (" + NftNatives.unavailabilityCause() + ")");
        }
    }

    /** The effective uid, from /proc: no native call, so it works where the natives do not load. */
    private static int euid() throws IOException
    {
        for (final String line : Files.readAllLines(Path.of("/proc/self/status")))
        {
            if (line.startsWith("Uid:"))
            {
                return Integer.parseInt(line.substring(4).trim().split("\\s+")[1]);
            }
        }
        throw new IOException("no Uid line in /proc/self/status");
    }

    private static void require(final List<String> missing)
    {
        if (missing.isEmpty())
        {
            return;
        }
        final String message = "privileged test needs: " + String.join("; ", missing);
        if (required())
        {
            fail(message + " (" + REQUIRE_VARIABLE + "=1 forbids skipping it)");
        }
        assumeTrue(false, message + ", skipped");
    }
}
