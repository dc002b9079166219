package dev.egressd.agent.lab;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.kernel.nft.NftNatives;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A fresh network-namespace lab for one privileged test, built by {@code scripts/lab}: routed guests
 * {@code P-g1..P-gN}, the worker host {@code P-host} and the destination {@code P-dst} running
 * {@code scripts/lab-echo-server.py}. Everything is removed in {@link #close()}, also after a failure,
 * and by a JVM shutdown hook as a last resort. The root namespace's network is never touched.
 *
 * <p>The tools of the fixture ({@code ip}, {@code conntrack}, {@code ping}, {@code python3}) are for
 * setting up and observing only; what is under test programs the kernel itself.
 */
public final class Lab implements AutoCloseable
{
    /** The default timeout of a command run in the lab. */
    public static final Duration EXEC_TIMEOUT = Duration.ofSeconds(20);

    private static final List<String> TOOLS = List.of("ip", "nft", "conntrack", "ping", "python3");

    private final String prefix;
    private final int guests;
    private final Path projectDir;
    private final Path workDir;
    private final Path destinationLog;
    private final Thread shutdownHook;
    private Process echoServer;
    private NetNamespace host;
    private boolean closed;

    private Lab(final String prefix, final int guests, final Path projectDir, final Path workDir)
    {
        this.prefix = prefix;
        this.guests = guests;
        this.projectDir = projectDir;
        this.workDir = workDir;
        this.destinationLog = workDir.resolve("dst.log");
        this.shutdownHook = new Thread(this::destroyQuietly, "lab-" + prefix + "-cleanup");
    }

    /**
     * Skips the calling test unless it can run (root, the lab tools on PATH, the lab scripts found);
     * fails it instead when {@code EGRESSD_REQUIRE_PRIVILEGED=1}, as in CI, so that it is never skipped there.
     */
    public static void requirePrivileged()
    {
        requirePrivileged(new String[0]);
    }

    /**
     * {@link #requirePrivileged()}, and also these tools on the PATH (e.g. {@code promtool}): a test that needs
     * more than the lab's own tools is skipped without them, and fails without them under
     * {@code EGRESSD_REQUIRE_PRIVILEGED=1}.
     *
     * @param extraTools the further tools the test needs.
     */
    public static void requirePrivileged(final String... extraTools)
    {
        String missing = missingRequirement();
        if (missing == null)
        {
            final List<String> absent = Arrays.stream(extraTools).filter(t -> tool(t) == null).toList();
            missing = absent.isEmpty() ? null : "missing tools " + absent;
        }
        if (missing == null)
        {
            return;
        }
        final String message = "privileged e2e test cannot run: " + missing;
        if ("1".equals(System.getenv("EGRESSD_REQUIRE_PRIVILEGED")))
        {
            fail(message + " (EGRESSD_REQUIRE_PRIVILEGED=1, so this is a failure, not a skip)");
        }
        assumeTrue(false, message);
    }

    private static String missingRequirement()
    {
        try
        {
            if (uid() != 0)
            {
                return "not root (uid " + uid() + ")";
            }
        }
        catch (final IOException e)
        {
            return "cannot read the uid: " + e;
        }
        final List<String> missingTools = new ArrayList<>();
        for (final String tool : TOOLS)
        {
            if (!onPath(tool))
            {
                missingTools.add(tool);
            }
        }
        if (!missingTools.isEmpty())
        {
            return "missing tools " + missingTools + " (run scripts/install-deps)";
        }
        final Path dir = findProjectDir();
        if (dir == null)
        {
            return "scripts/lab not found (set EGRESSD_PROJECT_DIR to the project root)";
        }
        if (!NftNatives.isAvailable())
        {
            return "libnftables cannot be loaded: " + NftNatives.unavailabilityCause();
        }
        return null;
    }

    private static int uid() throws IOException
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

    private static boolean onPath(final String tool)
    {
        return tool(tool) != null;
    }

    /**
     * Where a tool is: the first executable of that name on the PATH (then /usr/sbin, /sbin, /usr/bin, /bin).
     *
     * @param tool the tool's name, e.g. {@code promtool}.
     * @return its absolute path, or null when it is not installed.
     */
    public static Path tool(final String tool)
    {
        final String path = System.getenv().getOrDefault("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin";
        for (final String dir : path.split(":"))
        {
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, tool)))
            {
                return Path.of(dir, tool).toAbsolutePath();
            }
        }
        return null;
    }

    private static Path findProjectDir()
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

    /**
     * Checks the requirements ({@link #requirePrivileged()}) and builds a lab with a random prefix.
     *
     * @param guests the number of guests (g1..gN, guest i has 10.77.0.(i+1) and fd77::(i+1)).
     * @return the running lab; close it.
     * @throws IOException if the lab cannot be built (it is removed again).
     */
    public static Lab create(final int guests) throws IOException
    {
        return create(guests, new String[0]);
    }

    /**
     * {@link #create(int)} for a test that also needs further tools ({@link #requirePrivileged(String...)}).
     *
     * @param guests     the number of guests.
     * @param extraTools the further tools, e.g. {@code promtool}.
     * @return the running lab; close it.
     * @throws IOException if the lab cannot be built (it is removed again).
     */
    public static Lab create(final int guests, final String... extraTools) throws IOException
    {
        requirePrivileged(extraTools);
        String prefix;
        do
        {
            // short and random: concurrent builds and other people's labs keep other prefixes
            prefix = "e" + Integer.toString(ThreadLocalRandom.current().nextInt(36 * 36 * 36), 36);
        }
        while (Files.exists(Path.of("/run/netns", prefix + "-host")));
        final Lab lab = new Lab(prefix, guests, findProjectDir(), Files.createTempDirectory("egressd-lab-" + prefix));
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
        final Exec created = run(EXEC_TIMEOUT, List.of(script("lab").toString(), "create", "--prefix", prefix,
            "--guests", Integer.toString(guests)));
        if (created.exitCode() != 0)
        {
            throw new IOException("scripts/lab create failed (" + created.exitCode() + "): " + created.output());
        }
        installArrivalCapture();
        final ProcessBuilder pb = new ProcessBuilder("ip", "netns", "exec", ns("dst"), "python3",
            script("lab-echo-server.py").toString(), destinationLog.toString());
        pb.redirectError(workDir.resolve("echo-server.err").toFile());
        echoServer = pb.start();
        final CompletableFuture<String> ready = CompletableFuture.supplyAsync(() -> firstLine(echoServer.getInputStream()));
        try
        {
            final String line = ready.get(10, TimeUnit.SECONDS);
            if (!"ready".equals(line))
            {
                throw new IOException("echo server did not start: " + line + " "
                    + Files.readString(workDir.resolve("echo-server.err")));
            }
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new IOException(e);
        }
        catch (final ExecutionException | TimeoutException e)
        {
            throw new IOException("echo server did not start: " + e, e);
        }
    }

    /** The nft table in the destination namespace that records every source address reaching the services. */
    static final String CAPTURE_TABLE = "labcapture";

    /**
     * Installs, in {@code dst}, a table that counts per source address every packet arriving on its eth0 for
     * the destination services (198.51.100.0/24, 2001:db8:100::/64), at the raw prerouting hook, before
     * anything else sees it: unlike the echo server's log, it also sees packets that never make a connection
     * (a leaked SYN from an address dst cannot answer, a UDP datagram, an ICMP echo).
     */
    private void installArrivalCapture() throws IOException
    {
        final Path file = workDir.resolve("capture.nft");
        Files.writeString(file, "table inet " + CAPTURE_TABLE + " {\n"
            + "    set from4 {\n        type ipv4_addr\n        flags dynamic\n        size 65535\n    }\n"
            + "    set from6 {\n        type ipv6_addr\n        flags dynamic\n        size 65535\n    }\n"
            + "    chain arrivals {\n"
            + "        type filter hook prerouting priority raw; policy accept;\n"
            + "        iifname \"eth0\" ip daddr 198.51.100.0/24 update @from4 { ip saddr counter }\n"
            + "        iifname \"eth0\" ip6 daddr 2001:db8:100::/64 update @from6 { ip6 saddr counter }\n"
            + "    }\n"
            + "}\n");
        final Exec exec = run(EXEC_TIMEOUT, List.of("ip", "netns", "exec", ns("dst"), "nft", "-f", file.toString()));
        if (!exec.ok())
        {
            throw new IOException("cannot install the arrival capture in dst: " + exec.output());
        }
    }

    /**
     * Every source address that has sent packets to the destination services since the lab started, with
     * the number of packets, as the destination's own nft capture counted them on arrival (both families).
     *
     * @return source address to packets.
     */
    public Map<String, Long> arrivals()
    {
        final Map<String, Long> out = new java.util.TreeMap<>();
        for (final String set : List.of("from4", "from6"))
        {
            final Output listing = execApart(EXEC_TIMEOUT, "dst", "nft", "-j", "list", "set", "inet", CAPTURE_TABLE, set);
            if (listing.exitCode() != 0)
            {
                fail("cannot list the arrival capture: " + listing);
            }
            try
            {
                for (final com.fasterxml.jackson.databind.JsonNode item : new com.fasterxml.jackson.databind.ObjectMapper()
                    .readTree(listing.stdout()).path("nftables"))
                {
                    for (final com.fasterxml.jackson.databind.JsonNode e : item.path("set").path("elem"))
                    {
                        final com.fasterxml.jackson.databind.JsonNode elem = e.path("elem");
                        out.merge(elem.path("val").asText(), elem.path("counter").path("packets").asLong(), Long::sum);
                    }
                }
            }
            catch (final IOException e)
            {
                throw new UncheckedIOException(e);
            }
        }
        return out;
    }

    /**
     * What reached the destination services since an earlier {@link #arrivals()}: only sources whose count rose.
     *
     * @param before the earlier snapshot.
     * @return source address to packets that arrived since.
     */
    public Map<String, Long> arrivalsSince(final Map<String, Long> before)
    {
        final Map<String, Long> out = new java.util.TreeMap<>();
        arrivals().forEach((source, packets) ->
        {
            final long delta = packets - before.getOrDefault(source, 0L);
            if (delta > 0)
            {
                out.put(source, delta);
            }
        });
        return out;
    }

    private static String firstLine(final InputStream in)
    {
        try
        {
            return new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8)).readLine();
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }

    private Path script(final String name)
    {
        return projectDir.resolve("scripts").resolve(name);
    }

    /**
     * The full name of a lab namespace.
     *
     * @param shortName {@code host}, {@code dst} or {@code g1}..{@code gN}.
     * @return e.g. {@code e1k2-host}.
     */
    public String ns(final String shortName)
    {
        return prefix + "-" + shortName;
    }

    /**
     * The lab's prefix.
     *
     * @return the prefix of every namespace name.
     */
    public String prefix()
    {
        return prefix;
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

    /** The result of a command: its exit code (-1 on timeout) and its stdout and stderr together. */
    public record Exec(int exitCode, String output)
    {
        /** @return whether it exited with 0. */
        public boolean ok()
        {
            return exitCode == 0;
        }
    }

    /**
     * Runs a command inside a lab namespace.
     *
     * @param nsShortName {@code host}, {@code dst}, {@code g1}...
     * @param cmd         the command.
     * @return its exit code and output.
     */
    public Exec exec(final String nsShortName, final String... cmd)
    {
        return execWithin(EXEC_TIMEOUT, nsShortName, cmd);
    }

    /**
     * Runs a command inside a lab namespace with a timeout.
     *
     * @param timeout     the longest it may run; then it is killed and the exit code is -1.
     * @param nsShortName {@code host}, {@code dst}, {@code g1}...
     * @param cmd         the command.
     * @return its exit code and output.
     */
    public Exec execWithin(final Duration timeout, final String nsShortName, final String... cmd)
    {
        final List<String> full = new ArrayList<>(List.of("ip", "netns", "exec", ns(nsShortName)));
        full.addAll(Arrays.asList(cmd));
        try
        {
            return run(timeout, full);
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }

    /** The result of a command with its stdout and stderr apart (for output a test parses, e.g. JSON). */
    public record Output(int exitCode, String stdout, String stderr)
    {
        @Override
        public String toString()
        {
            return "exit " + exitCode + (stderr.isBlank() ? "" : ", stderr: " + stderr.strip()) + "\n" + stdout;
        }
    }

    /**
     * Runs a command inside a lab namespace, its stdout and stderr read apart.
     *
     * @param timeout     the longest it may run; then it is killed and the exit code is -1.
     * @param nsShortName {@code host}, {@code dst}, {@code g1}...
     * @param cmd         the command.
     * @return its exit code, stdout and stderr.
     */
    public Output execApart(final Duration timeout, final String nsShortName, final String... cmd)
    {
        final List<String> full = new ArrayList<>(List.of("ip", "netns", "exec", ns(nsShortName)));
        full.addAll(Arrays.asList(cmd));
        try
        {
            final Process p = new ProcessBuilder(full).start();
            p.getOutputStream().close();
            final CompletableFuture<String> out = CompletableFuture.supplyAsync(() -> readAll(p.getInputStream()));
            final CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> readAll(p.getErrorStream()));
            if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS))
            {
                p.destroyForcibly();
                p.waitFor(2, TimeUnit.SECONDS);
                return new Output(-1, out.getNow(""), "timed out after " + timeout + ": " + err.getNow(""));
            }
            return new Output(p.exitValue(), out.get(5, TimeUnit.SECONDS), err.get(5, TimeUnit.SECONDS));
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new UncheckedIOException(new IOException("interrupted: " + full, e));
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
        catch (final ExecutionException | TimeoutException e)
        {
            throw new UncheckedIOException(new IOException("reading the output of " + full, e));
        }
    }

    /**
     * Runs a command in a lab namespace and fails the test unless it exits with 0.
     *
     * @param nsShortName the namespace.
     * @param cmd         the command.
     * @return its output.
     */
    public String must(final String nsShortName, final String... cmd)
    {
        final Exec exec = exec(nsShortName, cmd);
        if (!exec.ok())
        {
            fail("in " + nsShortName + ": " + String.join(" ", cmd) + " -> " + exec.exitCode() + ": " + exec.output());
        }
        return exec.output();
    }

    private static Exec run(final Duration timeout, final List<String> cmd) throws IOException
    {
        final Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        final CompletableFuture<String> out = CompletableFuture.supplyAsync(() -> readAll(p.getInputStream()));
        try
        {
            if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS))
            {
                p.destroyForcibly();
                p.waitFor(2, TimeUnit.SECONDS);
                return new Exec(-1, "timed out after " + timeout + ": " + out.getNow(""));
            }
            return new Exec(p.exitValue(), out.get(5, TimeUnit.SECONDS));
        }
        catch (final InterruptedException e)
        {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new IOException("interrupted: " + cmd, e);
        }
        catch (final ExecutionException | TimeoutException e)
        {
            throw new IOException("reading the output of " + cmd, e);
        }
    }

    private static String readAll(final InputStream in)
    {
        try
        {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        catch (final IOException e)
        {
            return "(output lost: " + e + ")";
        }
    }

    /** One connection's outcome as the guest's client saw it: the source the destination saw, or an errno name. */
    public record ClientResult(boolean ok, String seenIp, int seenPort, String error)
    {
        static ClientResult parse(final String line)
        {
            final String[] f = line.trim().split("\\s+");
            if (f.length == 3 && (f[0].equals("ok") || f[0].equals("echo")))
            {
                return new ClientResult(true, f[1], Integer.parseInt(f[2]), null);
            }
            if (f.length == 2 && f[0].equals("fail"))
            {
                return new ClientResult(false, null, -1, f[1]);
            }
            throw new IllegalArgumentException("unexpected client output: " + line);
        }

        @Override
        public String toString()
        {
            return ok ? seenIp + ":" + seenPort : "fail " + error;
        }
    }

    /**
     * Opens {@code n} connections from a guest, holds them together for {@code holdSeconds} and reports each.
     *
     * @param guest       the guest number (1 = g1).
     * @param proto       {@code tcp} or {@code udp}.
     * @param addr        the destination address.
     * @param port        the destination port.
     * @param n           the number of connections.
     * @param holdSeconds how long to hold them all open.
     * @param options     extra client options, e.g. {@code --bind ADDR}, {@code --timeout 1}.
     * @return one result per connection, in the order they were opened.
     */
    public List<ClientResult> client(final int guest, final String proto, final String addr, final int port,
        final int n, final double holdSeconds, final String... options)
    {
        final List<String> cmd = new ArrayList<>(List.of("python3", script("lab-client.py").toString(), proto, addr,
            Integer.toString(port), Integer.toString(n), Double.toString(holdSeconds)));
        cmd.addAll(Arrays.asList(options));
        final Exec exec = execWithin(EXEC_TIMEOUT, "g" + guest, cmd.toArray(String[]::new));
        if (!exec.ok())
        {
            fail("client in g" + guest + " failed (" + exec.exitCode() + "): " + exec.output());
        }
        final List<ClientResult> results = new ArrayList<>();
        for (final String line : exec.output().split("\n"))
        {
            if (!line.isBlank())
            {
                results.add(ClientResult.parse(line));
            }
        }
        return results;
    }

    /**
     * Starts the client in a guest in the background; its output lines can be read as they come.
     *
     * @param guest the guest number.
     * @param args  the client's arguments, e.g. {@code hold 198.51.100.11 80 4}.
     * @return the running client; close it.
     * @throws IOException if it cannot start.
     */
    public RunningClient startClient(final int guest, final String... args) throws IOException
    {
        final List<String> cmd = new ArrayList<>(List.of("ip", "netns", "exec", ns("g" + guest), "python3", "-u",
            script("lab-client.py").toString()));
        cmd.addAll(Arrays.asList(args));
        return new RunningClient(new ProcessBuilder(cmd).redirectErrorStream(true).start());
    }

    /** A client running in the background. */
    public static final class RunningClient implements AutoCloseable
    {
        private final Process process;
        private final BlockingQueue<String> lines = new LinkedBlockingQueue<>();

        RunningClient(final Process process)
        {
            this.process = process;
            final Thread reader = new Thread(() ->
            {
                try (BufferedReader in = new BufferedReader(new InputStreamReader(process.getInputStream(),
                    StandardCharsets.UTF_8)))
                {
                    String line;
                    while ((line = in.readLine()) != null)
                    {
                        lines.add(line);
                    }
                }
                catch (final IOException e)
                {
                    lines.add("fail EIO");
                }
                lines.add("<eof>");
            }, "lab-client-reader");
            reader.setDaemon(true);
            reader.start();
        }

        /**
         * The next output line.
         *
         * @param timeout how long to wait.
         * @return the line, {@code <eof>} when the client ended, or null on timeout.
         * @throws InterruptedException if interrupted.
         */
        public String nextLine(final Duration timeout) throws InterruptedException
        {
            return lines.poll(timeout.toMillis(), TimeUnit.MILLISECONDS);
        }

        /**
         * Waits for the next line and parses it as a result.
         *
         * @param timeout how long to wait.
         * @return the result.
         * @throws InterruptedException if interrupted.
         */
        public ClientResult next(final Duration timeout) throws InterruptedException
        {
            final String line = nextLine(timeout);
            if (line == null || line.equals("<eof>"))
            {
                throw new AssertionError("client gave no result within " + timeout + " (" + line + ")");
            }
            return ClientResult.parse(line);
        }

        /**
         * Discards every line already received.
         *
         * @return how many were discarded.
         */
        public int drain()
        {
            final List<String> old = new ArrayList<>();
            lines.drainTo(old);
            old.stream().filter("<eof>"::equals).forEach(lines::add);
            return old.size();
        }

        /**
         * Waits for the client to end.
         *
         * @param timeout how long to wait.
         * @return every line not read yet (without {@code <eof>}).
         * @throws InterruptedException if interrupted.
         */
        public List<String> awaitEnd(final Duration timeout) throws InterruptedException
        {
            final List<String> rest = new ArrayList<>();
            final long deadline = System.nanoTime() + timeout.toNanos();
            while (true)
            {
                final String line = lines.poll(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                if (line == null)
                {
                    throw new AssertionError("client did not end within " + timeout + "; so far " + rest);
                }
                if (line.equals("<eof>"))
                {
                    return rest;
                }
                rest.add(line);
            }
        }

        @Override
        public void close()
        {
            process.destroy();
            try
            {
                if (!process.waitFor(2, TimeUnit.SECONDS))
                {
                    process.destroyForcibly();
                }
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
            }
        }
    }

    /**
     * Whether one ICMP echo from a guest gets an answer within a second.
     *
     * @param guest the guest number.
     * @param addr  the destination (IPv4 or IPv6).
     * @return true if answered.
     */
    public boolean ping(final int guest, final String addr)
    {
        return execWithin(Duration.ofSeconds(5), "g" + guest, "ping", addr.contains(":") ? "-6" : "-4",
            "-c", "1", "-W", "1", addr).ok();
    }

    /** What the destination saw: one line per TCP connection or UDP datagram. */
    public record Seen(String proto, String ip, int port, String localIp, int localPort)
    {
    }

    /**
     * Everything the destination has seen since the lab started.
     *
     * @return the log, oldest first.
     */
    public List<Seen> destinationLog()
    {
        try
        {
            final List<Seen> seen = new ArrayList<>();
            if (!Files.exists(destinationLog))
            {
                return seen;
            }
            for (final String line : Files.readAllLines(destinationLog))
            {
                final String[] f = line.trim().split("\\s+");
                if (f.length == 5)
                {
                    seen.add(new Seen(f[0], f[1], Integer.parseInt(f[2]), f[3], Integer.parseInt(f[4])));
                }
            }
            return seen;
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * One conntrack entry as {@code conntrack -L} shows it in the host.
     *
     * @param proto     {@code tcp}, {@code udp}, {@code icmp} or {@code icmpv6}.
     * @param origSrc   the guest's address.
     * @param origDst   the destination.
     * @param replyDst  the address replies go to: the translated source.
     * @param replyPort the translated source port (reply dport), or the translated ICMP echo id.
     * @param line      the raw line.
     */
    public record ConntrackEntry(String proto, String origSrc, String origDst, String replyDst, int replyPort,
        String line)
    {
        /**
         * The TCP state as conntrack shows it ({@code ESTABLISHED}, {@code TIME_WAIT}, ...).
         *
         * @return the state, or null for other protocols.
         */
        public String tcpState()
        {
            if (!proto.equals("tcp"))
            {
                return null;
            }
            final String[] tokens = line.trim().split("\\s+");
            return tokens.length > 3 && !tokens[3].contains("=") ? tokens[3] : null;
        }

        /**
         * Whether the source was translated: replies go to another address than the original source.
         *
         * @return true when source-NATed.
         */
        public boolean snat()
        {
            return replyDst != null && !replyDst.equals(origSrc);
        }
    }

    /**
     * The host's conntrack table (fixture only: the agent reads conntrack through ctnetlink).
     *
     * @param family {@code ipv4} or {@code ipv6}.
     * @return the entries.
     */
    public List<ConntrackEntry> conntrack(final String family)
    {
        return conntrack(family, new String[0]);
    }

    /**
     * The host's conntrack entries matching a filter of {@code conntrack -L}.
     *
     * @param family {@code ipv4} or {@code ipv6}.
     * @param filter e.g. {@code -s 10.77.0.2}.
     * @return the entries.
     */
    public List<ConntrackEntry> conntrack(final String family, final String... filter)
    {
        final List<String> cmd = new ArrayList<>(List.of("conntrack", "-L", "-f", family));
        cmd.addAll(Arrays.asList(filter));
        final Exec exec = exec("host", cmd.toArray(String[]::new));
        final List<ConntrackEntry> entries = new ArrayList<>();
        for (final String line : exec.output().split("\n"))
        {
            if (line.isBlank() || line.startsWith("conntrack v"))
            {
                continue;
            }
            final String[] tokens = line.trim().split("\\s+");
            final List<Map<String, String>> halves = new ArrayList<>();
            for (final String token : tokens)
            {
                final int eq = token.indexOf('=');
                if (eq < 0)
                {
                    continue;
                }
                final String key = token.substring(0, eq);
                if (key.equals("src"))
                {
                    halves.add(new HashMap<>());
                }
                if (!halves.isEmpty())
                {
                    halves.get(halves.size() - 1).putIfAbsent(key, token.substring(eq + 1));
                }
            }
            if (halves.size() < 2)
            {
                continue;
            }
            final Map<String, String> orig = halves.get(0);
            final Map<String, String> reply = halves.get(1);
            final String port = reply.containsKey("dport") ? reply.get("dport") : reply.getOrDefault("id", "-1");
            entries.add(new ConntrackEntry(tokens[0].toLowerCase(Locale.ROOT), orig.get("src"), orig.get("dst"),
                reply.get("dst"), Integer.parseInt(port), line));
        }
        return entries;
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
        if (echoServer != null)
        {
            echoServer.destroyForcibly();
        }
        try
        {
            final Exec exec = run(EXEC_TIMEOUT, List.of(script("lab").toString(), "destroy", "--prefix", prefix));
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
