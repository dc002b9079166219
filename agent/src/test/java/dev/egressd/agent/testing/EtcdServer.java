package dev.egressd.agent.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A single-member etcd of the test's own ({@code /usr/bin/etcd}, Debian's etcd-server), on free loopback client
 * and peer ports with its data under a temporary directory. It never uses the packaged etcd's 127.0.0.1:2379 nor
 * its data. A test may {@link #stop()} or {@link #kill()} it and {@link #start()} it again on the same ports and
 * data, to see what a client does while etcd is away. {@link #close()} kills it and removes its directory.
 *
 * <p>The binary is found by {@link Requirements#etcd()}, which skips (or under CI fails) a test without it.
 */
public final class EtcdServer implements AutoCloseable
{
    private static final Duration HEALTHY_WITHIN = Duration.ofSeconds(30);
    private static final String NAME = "egressd-test";

    private final Path binary;
    private final Path dir;
    private final int clientPort;
    private final int peerPort;
    private final LabNetwork lab;
    private final String nsShortName;
    private final String host;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(1)).build();
    private Process process;

    private EtcdServer(final Path binary, final Path dir, final int clientPort, final int peerPort)
    {
        this(binary, dir, clientPort, peerPort, null, null, "127.0.0.1");
    }

    private EtcdServer(final Path binary, final Path dir, final int clientPort, final int peerPort,
        final LabNetwork lab, final String nsShortName, final String host)
    {
        this.binary = binary;
        this.dir = dir;
        this.clientPort = clientPort;
        this.peerPort = peerPort;
        this.lab = lab;
        this.nsShortName = nsShortName;
        this.host = host;
    }

    /**
     * Starts a new etcd inside a lab namespace ({@code ip netns exec}, which execs: the process is etcd itself, so
     * {@link #stop()} and {@link #kill()} signal etcd), listening for clients on {@code host:2379} there (the
     * namespace is the lab's own, so the usual ports are free) and for its peer on that namespace's loopback.
     * Hosts in other lab namespaces reach it by the lab's routes; the test's own namespace cannot, so health is
     * asked with {@code curl} inside the namespace.
     *
     * @param lab         the lab.
     * @param nsShortName the namespace, e.g. {@code rtr}.
     * @param host        the address to listen on there.
     * @return the running server.
     */
    public static EtcdServer createIn(final LabNetwork lab, final String nsShortName, final String host)
    {
        final Path binary = Requirements.etcd();
        final Path dir;
        try
        {
            dir = Files.createTempDirectory("egressd-etcd-");
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
        final EtcdServer server = new EtcdServer(binary, dir, 2379, 2380, lab, nsShortName, host);
        try
        {
            server.start();
            return server;
        }
        catch (final RuntimeException e)
        {
            server.close();
            throw e;
        }
    }

    /**
     * Starts a new etcd and waits until it answers healthy.
     *
     * @return the running server.
     */
    public static EtcdServer create()
    {
        final Path binary = Requirements.etcd();
        final Path dir;
        try
        {
            dir = Files.createTempDirectory("egressd-etcd-");
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
        // Two ports found free now may be taken before etcd binds them: try a few pairs.
        IllegalStateException last = null;
        for (int attempt = 0; attempt < 3; attempt++)
        {
            final int[] ports = freePorts();
            final EtcdServer server = new EtcdServer(binary, dir, ports[0], ports[1]);
            try
            {
                server.start();
                return server;
            }
            catch (final IllegalStateException e)
            {
                last = e;
                server.kill();
                deleteTree(dir.resolve("data"));
            }
        }
        deleteTree(dir);
        throw last;
    }

    /** @return the client URL, {@code http://127.0.0.1:<port>} (or the lab address it listens on). */
    public String endpoint()
    {
        return "http://" + host + ":" + clientPort;
    }

    /** @return the client port. */
    public int clientPort()
    {
        return clientPort;
    }

    /** @return whether the process runs. */
    public synchronized boolean running()
    {
        return process != null && process.isAlive();
    }

    /** Starts etcd (again) on the same ports and data directory, and waits until it is healthy. */
    public synchronized void start()
    {
        if (running())
        {
            return;
        }
        final String peer = "http://127.0.0.1:" + peerPort;
        final List<String> command = new java.util.ArrayList<>(List.of(binary.toString(),
            "--name", NAME,
            "--data-dir", dir.resolve("data").toString(),
            "--listen-client-urls", endpoint(),
            "--advertise-client-urls", endpoint(),
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", NAME + "=" + peer,
            "--initial-cluster-state", "new",
            "--logger", "zap",
            "--log-level", "warn"));
        final ProcessBuilder builder = new ProcessBuilder(lab == null ? command
            : lab.inside(nsShortName, command.toArray(String[]::new)));
        // etcd reads ETCD_* variables as flags: a developer's shell must not reconfigure the test's etcd.
        final Map<String, String> env = builder.environment();
        env.keySet().removeIf(k -> k.startsWith("ETCD"));
        builder.redirectErrorStream(true);
        builder.redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("etcd.log").toFile()));
        try
        {
            process = builder.start();
        }
        catch (final IOException e)
        {
            throw new IllegalStateException("cannot start " + binary + ": " + e.getMessage(), e);
        }
        awaitHealthy();
    }

    /** Stops etcd with SIGTERM (SIGKILL after 10 s) and waits for the process to end. */
    public synchronized void stop()
    {
        end(false);
    }

    /** Kills etcd with SIGKILL and waits for the process to end. */
    public synchronized void kill()
    {
        end(true);
    }

    @Override
    public synchronized void close()
    {
        kill();
        deleteTree(dir);
    }

    /** @return the end of etcd's log, for a failure message. */
    public String logTail()
    {
        try
        {
            final List<String> lines = Files.readAllLines(dir.resolve("etcd.log"), StandardCharsets.UTF_8);
            return String.join("\n", lines.subList(Math.max(0, lines.size() - 20), lines.size()));
        }
        catch (final IOException e)
        {
            return "(no log: " + e.getMessage() + ")";
        }
    }

    private void end(final boolean forcibly)
    {
        final Process p = process;
        if (p == null)
        {
            return;
        }
        try
        {
            if (forcibly)
            {
                p.destroyForcibly();
            }
            else
            {
                p.destroy();
                if (!p.waitFor(10, TimeUnit.SECONDS))
                {
                    p.destroyForcibly();
                }
            }
            if (!p.waitFor(10, TimeUnit.SECONDS))
            {
                throw new IllegalStateException("etcd pid " + p.pid() + " did not exit");
            }
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            p.destroyForcibly();
        }
        process = null;
    }

    private void awaitHealthy()
    {
        final long deadline = System.nanoTime() + HEALTHY_WITHIN.toNanos();
        final HttpRequest health = HttpRequest.newBuilder(URI.create(endpoint() + "/health"))
            .timeout(Duration.ofSeconds(1)).build();
        String last = "no answer";
        while (System.nanoTime() < deadline)
        {
            if (!process.isAlive())
            {
                throw new IllegalStateException("etcd exited with " + process.exitValue() + " before it was healthy:\n"
                    + logTail());
            }
            if (lab != null)
            {
                final Shell.Exec asked = lab.execWithin(Duration.ofSeconds(3), nsShortName, "curl", "-s", "-m", "1",
                    endpoint() + "/health");
                if (asked.ok() && asked.output().replace(" ", "").contains("\"health\":\"true\""))
                {
                    return;
                }
                last = asked.output();
                sleep(100);
                continue;
            }
            try
            {
                final HttpResponse<String> answer = http.send(health, HttpResponse.BodyHandlers.ofString());
                if (answer.statusCode() == 200 && answer.body().replace(" ", "").contains("\"health\":\"true\""))
                {
                    return;
                }
                last = answer.statusCode() + " " + answer.body();
            }
            catch (final IOException e)
            {
                last = e.toString();
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted waiting for etcd", e);
            }
            sleep(100);
        }
        throw new IllegalStateException("etcd on " + endpoint() + " not healthy within " + HEALTHY_WITHIN.toSeconds()
            + " s (" + last + "):\n" + logTail());
    }

    private static int[] freePorts()
    {
        try (ServerSocket a = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
            ServerSocket b = new ServerSocket(0, 1, InetAddress.getLoopbackAddress()))
        {
            return new int[] {a.getLocalPort(), b.getLocalPort()};
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }

    private static void sleep(final long millis)
    {
        try
        {
            Thread.sleep(millis);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
    }

    private static void deleteTree(final Path root)
    {
        if (!Files.exists(root))
        {
            return;
        }
        try (Stream<Path> paths = Files.walk(root))
        {
            for (final Path p : (Iterable<Path>) paths.sorted(Comparator.reverseOrder())::iterator)
            {
                Files.deleteIfExists(p);
            }
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }
}
