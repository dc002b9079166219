package dev.egressd.agent.testing;

import dev.egressd.agent.natives.NetNamespace;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

/**
 * A fresh network-namespace lab for one privileged test, built by {@code scripts/lab}: routed guests
 * {@code P-g1..P-gN}, the worker host {@code P-host} and the destination {@code P-dst}. Everything is removed in
 * {@link #close()}, also after a failure, and by a JVM shutdown hook as a last resort. The root namespace's network
 * is never touched.
 *
 * <p>This class is the topology and running commands inside it; what the parts do is theirs: a guest's traffic
 * ({@link #guest}), what the destination saw ({@link #destination}), the host's conntrack table
 * ({@link #hostConntrack}). The tools of the fixture ({@code ip}, {@code conntrack}, {@code ping},
 * {@code python3}) are for setting up and observing only; what is under test programs the kernel itself.
 */
public final class Lab implements LabNetwork, AutoCloseable
{
    private final String prefix;
    private final int guests;
    private final Destination destination;
    private final Thread shutdownHook;
    private NetNamespace host;
    private boolean closed;

    private Lab(final String prefix, final int guests, final Path workDir)
    {
        this.prefix = prefix;
        this.guests = guests;
        this.destination = new Destination(this, workDir);
        this.shutdownHook = new Thread(this::destroyQuietly, "lab-" + prefix + "-cleanup");
    }

    /**
     * Checks the requirements ({@link Requirements#lab}) and builds a lab with a random prefix.
     *
     * @param guests     the number of guests (g1..gN, guest i has 10.77.0.(i+1) and fd77::(i+1)).
     * @param extraTools further tools the test needs, e.g. {@code promtool}.
     * @return the running lab; close it.
     * @throws IOException if the lab cannot be built (it is removed again).
     */
    public static Lab create(final int guests, final String... extraTools) throws IOException
    {
        return tagged("e", guests, extraTools);
    }

    /**
     * As {@link #create}, with a prefix that starts with a tag ({@code <tag><random>}, 8 characters at most, as
     * {@code scripts/lab} wants), so that one suite's namespaces can be told apart from another's.
     *
     * @param tag        1-6 lower-case letters.
     * @param guests     the number of guests.
     * @param extraTools further tools the test needs.
     * @return the running lab; close it.
     * @throws IOException if the lab cannot be built (it is removed again).
     */
    public static Lab tagged(final String tag, final int guests, final String... extraTools) throws IOException
    {
        Requirements.lab(extraTools);
        String prefix;
        do
        {
            // short and random: concurrent builds and other people's labs keep other prefixes
            final int random = "e".equals(tag) ? 3 : 8 - tag.length();
            prefix = tag + Integer.toString(ThreadLocalRandom.current().nextInt((int)Math.pow(36, random)), 36);
        }
        while (Files.exists(Path.of("/run/netns", prefix + "-host")));
        final Lab lab = new Lab(prefix, guests, Files.createTempDirectory("egressd-lab-" + prefix));
        Runtime.getRuntime().addShutdownHook(lab.shutdownHook);
        try
        {
            lab.start();
        }
        catch (final IOException | RuntimeException | Error e)
        {
            lab.close();
            throw e;
        }
        return lab;
    }

    private void start() throws IOException
    {
        final Shell.Exec created = Shell.run(EXEC_TIMEOUT, List.of(script("lab").toString(), "create", "--prefix",
            prefix, "--guests", Integer.toString(guests)));
        if (created.exitCode() != 0)
        {
            throw new IOException("scripts/lab create failed (" + created.exitCode() + "): " + created.output());
        }
        destination.start();
    }

    @Override
    public String prefix()
    {
        return prefix;
    }

    /**
     * A guest, to send traffic from.
     *
     * @param number the guest number (1 = g1).
     * @return the guest.
     */
    public Guest guest(final int number)
    {
        return new Guest(this, number);
    }

    /**
     * The destination: what reached its services.
     *
     * @return the destination.
     */
    public Destination destination()
    {
        return destination;
    }

    /**
     * The host's conntrack table, as {@code conntrack -L} lists it.
     *
     * @return the table.
     */
    public HostConntrack hostConntrack()
    {
        return new HostConntrack(this);
    }

    /**
     * A thread inside the host namespace, for the code under test (entered once, closed with the lab).
     *
     * @return the host namespace.
     * @throws IOException if it cannot be entered.
     */
    public synchronized NetNamespace host() throws IOException
    {
        if (host == null)
        {
            host = NetNamespace.enter(ns("host"));
        }
        return host;
    }

    /**
     * The usual teardown of a test that runs code in the host namespace: closes what it opened there (on the host
     * namespace's thread, where a libnftables context or netlink socket belongs), then removes the lab, also when
     * the first step fails.
     *
     * @param lab          the lab, or null if it was never made.
     * @param openedInHost what the test opened in the host namespace, or null.
     * @throws IOException if a step fails.
     */
    public static void tearDown(final Lab lab, final AutoCloseable openedInHost) throws IOException
    {
        if (lab == null)
        {
            return;
        }
        try
        {
            if (openedInHost != null)
            {
                LabNamespace.closeIn(lab.host(), openedInHost);
            }
        }
        finally
        {
            lab.close();
        }
    }

    @Override
    public synchronized void close()
    {
        if (closed)
        {
            return;
        }
        closed = true;
        destroyQuietly();
        try
        {
            Runtime.getRuntime().removeShutdownHook(shutdownHook);
        }
        catch (final IllegalStateException e)
        {
            // the JVM is already shutting down: the hook runs (or ran) destroyQuietly itself
        }
    }

    private void destroyQuietly()
    {
        if (host != null)
        {
            host.close();
        }
        destination.stop();
        try
        {
            final Shell.Exec exec = Shell.run(EXEC_TIMEOUT, List.of(script("lab").toString(), "destroy", "--prefix",
                prefix));
            if (!exec.ok())
            {
                System.err.println("lab " + prefix + ": destroy failed: " + exec.output());
            }
        }
        catch (final IOException | RuntimeException e)
        {
            System.err.println("lab " + prefix + ": destroy failed: " + e);
        }
    }
}
