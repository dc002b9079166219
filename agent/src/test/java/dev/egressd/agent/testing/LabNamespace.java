package dev.egressd.agent.testing;

import dev.egressd.agent.natives.NetNamespace;

import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Test fixture for the in-process kernel tests (netlink, nft, the kernel facade): one throw-away network namespace
 * made with the {@code ip} command (fixtures may shell out to {@code ip} and {@code nft}; product code never does).
 * Every command runs with {@code -n NAME} or {@code ip netns exec NAME}, so nothing touches the root namespace.
 * {@link #close()} deletes the namespace. A test checks {@link Requirements#root()} or
 * {@link Requirements#rootWithNftables()} first. The daemon and data-plane tests use the whole {@link Lab} instead.
 */
public final class LabNamespace implements AutoCloseable
{
    private final String name;

    private LabNamespace(final String name)
    {
        this.name = name;
    }

    /**
     * Creates {@code egr-<random>} with lo up.
     *
     * @return the namespace.
     * @throws IOException if ip fails.
     */
    public static LabNamespace create() throws IOException
    {
        return create(null);
    }

    /**
     * Creates {@code egr-<tag>-<random>} with lo up, so that the namespaces of one test or one suite can be told
     * apart (and never collide with another's).
     *
     * @param tag a short tag, or null for none.
     * @return the namespace.
     * @throws IOException if ip fails.
     */
    public static LabNamespace create(final String tag) throws IOException
    {
        final String name = "egr-" + (tag == null ? "" : tag + "-")
            + Long.toHexString(ThreadLocalRandom.current().nextLong() & 0xFFFFFFFFFL);
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
     * Creates a namespace as {@link #create()} with a veth pair (uplink, upeer) inside, both down: veth, because
     * the dummy module is not loaded on every kernel we run on.
     *
     * @return the namespace.
     * @throws IOException if ip fails.
     */
    public static LabNamespace withUplink() throws IOException
    {
        return withUplink(null);
    }

    /**
     * As {@link #withUplink()}, named as {@link #create(String)}.
     *
     * @param tag a short tag, or null for none.
     * @return the namespace.
     * @throws IOException if ip fails.
     */
    public static LabNamespace withUplink(final String tag) throws IOException
    {
        final LabNamespace ns = create(tag);
        try
        {
            ns.ip("link", "add", "uplink", "type", "veth", "peer", "name", "upeer");
        }
        catch (final IOException | RuntimeException e)
        {
            ns.close();
            throw e;
        }
        return ns;
    }

    /**
     * Closes what a test opened on a namespace's thread (a libnftables context, a netlink socket: they belong to
     * the namespace of the thread that opened them), if it was opened.
     *
     * @param ns     the namespace handle it was opened in, or null.
     * @param opened what to close, or null.
     * @throws IOException if closing fails.
     */
    public static void closeIn(final NetNamespace ns, final AutoCloseable opened) throws IOException
    {
        if (ns != null && opened != null)
        {
            ns.call(() ->
            {
                opened.close();
                return null;
            });
        }
    }

    /** Closes opened in ns, then the handle, then deletes the namespace, each step even if one before failed. */
    private static void tearDownClosing(final LabNamespace lab, final NetNamespace ns, final AutoCloseable opened)
        throws IOException
    {
        try
        {
            closeIn(ns, opened);
        }
        finally
        {
            try
            {
                if (ns != null)
                {
                    ns.close();
                }
            }
            finally
            {
                if (lab != null)
                {
                    lab.close();
                }
            }
        }
    }

    /**
     * The usual teardown: closes what the test opened in the namespace (a libnftables context, a netlink socket:
     * each in the order given, even if one before failed; nulls skipped), then the handle, then deletes the
     * namespace, each step even if the one before failed.
     *
     * @param lab    the namespace, or null.
     * @param ns     the handle entered into it, or null.
     * @param opened what was opened in it, each or null.
     * @throws IOException if a step fails (the first failure; the later ones suppressed in it).
     */
    public static void tearDown(final LabNamespace lab, final NetNamespace ns, final AutoCloseable... opened)
        throws IOException
    {
        tearDownClosing(lab, ns, () ->
        {
            Exception first = null;
            for (final AutoCloseable each : opened)
            {
                try
                {
                    if (each != null)
                    {
                        each.close();
                    }
                }
                catch (final Exception e)
                {
                    if (first == null)
                    {
                        first = e;
                    }
                    else
                    {
                        first.addSuppressed(e);
                    }
                }
            }
            if (first != null)
            {
                throw first;
            }
        });
    }

    /**
     * Adds an up link named {@code link}: a dummy where the kernel has the dummy driver, else one end of a veth
     * pair (peer {@code link}p, also up), which behaves the same for addresses. This machine's kernel was built
     * without CONFIG_DUMMY ("Unknown device type").
     *
     * @param link the link name.
     * @throws IOException if ip fails.
     */
    public void addLink(final String link) throws IOException
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

    /**
     * The namespace's name.
     *
     * @return the name, for {@link NetNamespace#enter}.
     */
    public String name()
    {
        return name;
    }

    /**
     * Runs {@code ip -n NAME args...}.
     *
     * @param args the ip arguments.
     * @return stdout.
     * @throws IOException if it fails.
     */
    public String ip(final String... args) throws IOException
    {
        final List<String> command = new ArrayList<>(List.of("ip", "-n", name));
        command.addAll(List.of(args));
        return run(command.toArray(String[]::new));
    }

    /**
     * Starts {@code ip netns exec NAME args...} in the background.
     *
     * @param args the command.
     * @return the process.
     * @throws IOException if it cannot start.
     */
    public Process spawn(final String... args) throws IOException
    {
        return new ProcessBuilder(inside(args)).redirectErrorStream(true).start();
    }

    /**
     * Runs {@code ip netns exec NAME args...} to completion.
     *
     * @param args the command.
     * @return stdout.
     * @throws IOException if it fails.
     */
    public String exec(final String... args) throws IOException
    {
        return run(inside(args).toArray(String[]::new));
    }

    private List<String> inside(final String... args)
    {
        final List<String> command = new ArrayList<>(List.of("ip", "netns", "exec", name));
        command.addAll(List.of(args));
        return command;
    }

    @Override
    public void close() throws IOException
    {
        run("ip", "netns", "del", name);
    }

    private static String run(final String... command) throws IOException
    {
        return Shell.must(Duration.ofSeconds(30), List.of(command));
    }
}
