package dev.egressd.agent.netlink;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.core.model.Ipv4Address;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * ConntrackEvents against the kernel. Two namespaces joined by a veth pair:
 * <pre>
 *   host: eth-h 198.51.100.1/24, egress 203.0.113.10/32, nft SNAT tcp -> 203.0.113.10:40000-40099
 *   dst:  eth-d 198.51.100.2/24, route 203.0.113.0/24 via 198.51.100.1, TCP server on :8080
 * </pre>
 * A TCP client in host connects to dst; the events are read in host, where the SNAT happens.
 */
@Tag("privileged")
class ConntrackEventsPrivilegedTest
{
    private static final String SERVER = String.join("\n",
        "import socket",
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
        "s.bind(('198.51.100.2', 8080)); s.listen(64); print('listening', flush=True)",
        "held = []",
        "while True:",
        "    c, _ = s.accept(); held.append(c)");
    /** Opens N connections, prints their local ports, holds them. */
    private static final String CLIENT = String.join("\n",
        "import socket, sys, time",
        "held = []",
        "for i in range(int(sys.argv[1])):",
        "    c = socket.create_connection(('198.51.100.2', 8080), timeout=5); held.append(c)",
        "    print('connected', c.getsockname()[1], flush=True)",
        "time.sleep(60)");

    private static final Ipv4Address HOST = Ipv4Address.parse("198.51.100.1");
    private static final Ipv4Address DST = Ipv4Address.parse("198.51.100.2");
    private static final Ipv4Address EGRESS = Ipv4Address.parse("203.0.113.10");

    private LabNamespace host;
    private LabNamespace dst;
    private NetNamespace hostNs;
    private final List<Process> processes = new ArrayList<>();

    @BeforeEach
    void lab() throws IOException
    {
        LabNamespace.requireRoot();
        host = LabNamespace.create();
        dst = LabNamespace.create();
        host.ip("link", "add", "eth-h", "type", "veth", "peer", "name", "eth-d", "netns", dst.name());
        host.ip("addr", "add", "198.51.100.1/24", "dev", "eth-h");
        host.ip("link", "set", "eth-h", "up");
        dst.ip("addr", "add", "198.51.100.2/24", "dev", "eth-d");
        dst.ip("link", "set", "eth-d", "up");
        dst.ip("route", "add", "203.0.113.0/24", "via", "198.51.100.1");
        host.exec("nft", "add table ip egr; "
            + "add chain ip egr post { type nat hook postrouting priority srcnat; policy accept; }; "
            + "add rule ip egr post oifname \"eth-h\" meta l4proto tcp snat to 203.0.113.10:40000-40099");
        hostNs = NetNamespace.enter(host.name());
        hostNs.call(() ->
        {
            try (RtnetlinkAddresses a = RtnetlinkAddresses.open())
            {
                a.add("eth-h", EGRESS);
            }
            return null;
        });
        final Process server = dst.spawn("python3", "-c", SERVER);
        processes.add(server);
        assertThat(firstLine(server)).isEqualTo("listening");
    }

    @AfterEach
    void tearDown() throws IOException
    {
        for (final Process p : processes)
        {
            p.destroyForcibly();
        }
        if (hostNs != null)
        {
            hostNs.close();
        }
        try
        {
            if (host != null)
            {
                host.close();
            }
        }
        finally
        {
            if (dst != null)
            {
                dst.close();
            }
        }
    }

    @Test
    void newDumpDeleteAndDestroyCarryTheTranslatedTuple() throws IOException
    {
        try (ConntrackEvents events = hostNs.call(() -> ConntrackEvents.open(ConntrackEvents.DEFAULT_RECEIVE_BUFFER, 200)))
        {
            final Process client = host.spawn("python3", "-c", CLIENT, "1");
            processes.add(client);
            final String line = firstLine(client);
            assertThat(line).startsWith("connected ");
            final int clientPort = Integer.parseInt(line.substring("connected ".length()).trim());

            final ConntrackEvent created = await(events, ConntrackEvent.Type.NEW);
            assertThat(created.l4proto()).isEqualTo(6);
            assertThat(created.isIpv4()).isTrue();
            assertThat(new Ipv4Address(created.origSrcV4())).isEqualTo(HOST);
            assertThat(created.origSrcPort()).isEqualTo(clientPort);
            assertThat(new Ipv4Address(created.origDstV4())).isEqualTo(DST);
            assertThat(created.origDstPort()).isEqualTo(8080);
            assertThat(new Ipv4Address(created.replySrcV4())).isEqualTo(DST);
            assertThat(created.replySrcPort()).isEqualTo(8080);
            assertThat(new Ipv4Address(created.replyDstV4())).isEqualTo(EGRESS);
            assertThat(created.replyDstPort()).isBetween(40000, 40099);
            assertThat(created.status() & NetlinkConstants.IPS_SRC_NAT).isNotZero();

            final List<ConntrackEvent> dumped = new ArrayList<>();
            events.dump(collect(dumped));
            assertThat(dumped).anySatisfy(e ->
            {
                assertThat(e.type()).isEqualTo(ConntrackEvent.Type.EXISTING);
                assertThat(e.id()).isEqualTo(created.id());
                assertThat(e.replyDstPort()).isEqualTo(created.replyDstPort());
            });

            assertThat(events.deleteByOrigSource(HOST)).isEqualTo(1);
            final ConntrackEvent destroyed = await(events, ConntrackEvent.Type.DESTROY);
            assertThat(destroyed.id()).isEqualTo(created.id());
            assertThat(destroyed.origSrcPort()).isEqualTo(clientPort);
            assertThat(new Ipv4Address(destroyed.replyDstV4())).isEqualTo(EGRESS);
            assertThat(destroyed.replyDstPort()).isEqualTo(created.replyDstPort());

            assertThat(events.deleteByOrigSource(HOST)).isZero();   // nothing left: idempotent
            assertThat(events.delete(created)).isFalse();            // already gone: ENOENT tolerated
        }
    }

    @Test
    void aTooSmallBufferReportsAnOverrunInsteadOfThrowing() throws IOException
    {
        // 1 byte becomes the kernel's minimum (about 2 KiB): a few unread events overflow it.
        try (ConntrackEvents events = hostNs.call(() -> ConntrackEvents.open(1, 200)))
        {
            final Process client = host.spawn("python3", "-c", CLIENT, "40");
            processes.add(client);
            final BufferedReader out = reader(client);
            for (int i = 0; i < 40; i++)
            {
                assertThat(out.readLine()).startsWith("connected ");
            }
            final int[] overruns = {0};
            final int[] seen = {0};
            final ConntrackEvents.Listener listener = new ConntrackEvents.Listener()
            {
                @Override
                public void onEvent(final ConntrackEvent event)
                {
                    seen[0]++;
                }

                @Override
                public void onOverrun()
                {
                    overruns[0]++;
                }
            };
            for (int i = 0; i < 100 && overruns[0] == 0; i++)
            {
                events.poll(listener);
            }
            assertThat(overruns[0]).isGreaterThanOrEqualTo(1);
            assertThat(seen[0]).isLessThan(40);
        }
    }

    private static ConntrackEvent await(final ConntrackEvents events, final ConntrackEvent.Type type) throws IOException
    {
        final List<ConntrackEvent> seen = new ArrayList<>();
        final ConntrackEvents.Listener listener = collect(seen);
        final long deadline = System.nanoTime() + 10_000_000_000L;
        while (System.nanoTime() < deadline)
        {
            events.poll(listener);
            for (final ConntrackEvent e : seen)
            {
                if (e.type() == type && e.origDstPort() == 8080)
                {
                    return e;
                }
            }
        }
        throw new AssertionError("no " + type + " event for :8080 within 10 s; saw " + seen);
    }

    private static ConntrackEvents.Listener collect(final List<ConntrackEvent> into)
    {
        return new ConntrackEvents.Listener()
        {
            @Override
            public void onEvent(final ConntrackEvent event)
            {
                into.add(event.copy());
            }

            @Override
            public void onOverrun()
            {
                throw new AssertionError("events lost: the 8 MiB buffer overran");
            }
        };
    }

    private static BufferedReader reader(final Process p)
    {
        return new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
    }

    private static String firstLine(final Process p) throws IOException
    {
        final String line = reader(p).readLine();
        return line == null ? "<process exited " + (p.isAlive() ? "?" : p.exitValue()) + ">" : line;
    }
}
