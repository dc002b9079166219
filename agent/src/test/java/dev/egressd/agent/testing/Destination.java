package dev.egressd.agent.testing;

import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The lab's destination {@code P-dst}: {@code scripts/lab-echo-server.py} answering on the destination services
 * (198.51.100.0/24, 2001:db8:100::/64) and logging each connection, and an nft capture counting every packet that
 * arrives for them, per source address. Started and stopped with its {@link Lab}.
 */
public final class Destination
{
    /** The nft table in the destination namespace that records every source address reaching the services. */
    private static final String CAPTURE_TABLE = "labcapture";
    private static final ObjectMapper JSON = new ObjectMapper();

    private final LabNetwork lab;
    private final Path workDir;
    private final Path log;
    private Process echoServer;

    Destination(final LabNetwork lab, final Path workDir)
    {
        this.lab = lab;
        this.workDir = workDir;
        this.log = workDir.resolve("dst.log");
    }

    /** What the destination saw: one line per TCP connection or UDP datagram. */
    public record Seen(String proto, String ip, int port, String localIp, int localPort)
    {
    }

    void start() throws IOException
    {
        installArrivalCapture();
        final ProcessBuilder pb = new ProcessBuilder(lab.inside("dst", "python3",
            lab.script("lab-echo-server.py").toString(), log.toString()));
        pb.redirectError(workDir.resolve("echo-server.err").toFile());
        echoServer = pb.start();
        final InputStream out = echoServer.getInputStream();
        final CompletableFuture<String> ready = CompletableFuture.supplyAsync(() -> firstLine(out));
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

    void stop()
    {
        if (echoServer != null)
        {
            echoServer.destroyForcibly();
        }
    }

    /**
     * Installs, in {@code dst}, a table that counts per source address every packet arriving on its eth0 for
     * the destination services, at the raw prerouting hook, before anything else sees it: unlike the echo server's
     * log, it also sees packets that never make a connection (a leaked SYN from an address dst cannot answer, a
     * UDP datagram, an ICMP echo).
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
        final Shell.Exec exec = Shell.run(Lab.EXEC_TIMEOUT, lab.inside("dst", "nft", "-f", file.toString()));
        if (!exec.ok())
        {
            throw new IOException("cannot install the arrival capture in dst: " + exec.output());
        }
    }

    /**
     * Everything the echo server has seen since the lab started.
     *
     * @return the log, oldest first.
     */
    public List<Seen> log()
    {
        try
        {
            final List<Seen> seen = new ArrayList<>();
            if (!Files.exists(log))
            {
                return seen;
            }
            for (final String line : Files.readAllLines(log))
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
     * Every source address that has sent packets to the destination services since the lab started, with
     * the number of packets, as the destination's own nft capture counted them on arrival (both families).
     *
     * @return source address to packets.
     */
    public Map<String, Long> arrivals()
    {
        final Map<String, Long> out = new TreeMap<>();
        for (final String set : List.of("from4", "from6"))
        {
            final Shell.Output listing = lab.execApart(Lab.EXEC_TIMEOUT, "dst", "nft", "-j", "list", "set", "inet",
                CAPTURE_TABLE, set);
            if (listing.exitCode() != 0)
            {
                fail("cannot list the arrival capture: " + listing);
            }
            try
            {
                for (final JsonNode item : JSON.readTree(listing.stdout()).path("nftables"))
                {
                    for (final JsonNode e : item.path("set").path("elem"))
                    {
                        final JsonNode elem = e.path("elem");
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
        final Map<String, Long> out = new TreeMap<>();
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
}
