package dev.egressd.agent.testing;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One guest of a {@link Lab}: connections opened by {@code scripts/lab-client.py} inside its namespace, and pings.
 * The destination's echo server answers each connection with the source address it saw.
 */
public final class Guest
{
    private final LabNetwork lab;
    private final int number;

    Guest(final LabNetwork lab, final int number)
    {
        this.lab = lab;
        this.number = number;
    }

    private String ns()
    {
        return "g" + number;
    }

    /**
     * Opens {@code n} connections, holds them together for {@code holdSeconds} and reports each.
     *
     * @param proto       {@code tcp} or {@code udp}.
     * @param addr        the destination address.
     * @param port        the destination port.
     * @param n           the number of connections.
     * @param holdSeconds how long to hold them all open.
     * @param options     extra client options, e.g. {@code --bind ADDR}, {@code --timeout 1}.
     * @return one result per connection, in the order they were opened.
     */
    public List<ClientResult> client(final String proto, final String addr, final int port, final int n,
        final double holdSeconds, final String... options)
    {
        final List<String> cmd = new ArrayList<>(List.of("python3", lab.script("lab-client.py").toString(), proto,
            addr, Integer.toString(port), Integer.toString(n), Double.toString(holdSeconds)));
        cmd.addAll(Arrays.asList(options));
        final Shell.Exec exec = lab.execWithin(Lab.EXEC_TIMEOUT, ns(), cmd.toArray(String[]::new));
        if (!exec.ok())
        {
            fail("client in " + ns() + " failed (" + exec.exitCode() + "): " + exec.output());
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
     * Starts the client in the background; its output lines can be read as they come.
     *
     * @param args the client's arguments, e.g. {@code hold 198.51.100.11 80 4}.
     * @return the running client; close it.
     * @throws IOException if it cannot start.
     */
    public RunningClient startClient(final String... args) throws IOException
    {
        final List<String> cmd = new ArrayList<>(List.of("python3", "-u", lab.script("lab-client.py").toString()));
        cmd.addAll(Arrays.asList(args));
        return new RunningClient(new ProcessBuilder(lab.inside(ns(), cmd.toArray(String[]::new)))
            .redirectErrorStream(true).start());
    }

    /**
     * Whether one ICMP echo gets an answer within a second.
     *
     * @param addr the destination (IPv4 or IPv6).
     * @return true if answered.
     */
    public boolean ping(final String addr)
    {
        return lab.execWithin(Duration.ofSeconds(5), ns(), "ping", addr.contains(":") ? "-6" : "-4", "-c", "1",
            "-W", "1", addr).ok();
    }
}
