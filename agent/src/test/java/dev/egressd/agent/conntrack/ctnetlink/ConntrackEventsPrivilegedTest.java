package dev.egressd.agent.conntrack.ctnetlink;

import dev.egressd.agent.kernel.rtnetlink.RtnetlinkAddresses;
import dev.egressd.agent.netlink.NetlinkConstants;
import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * ConntrackEvents against the kernel. Two namespaces joined by a veth pair:
 * <pre>
 *   host: eth-h 198.51.100.1/24 2001:db8:1::1/64, egress 203.0.113.10/32 2001:db8:10::10/128 (added
 *         by RtnetlinkAddresses), nft SNAT tcp -> 203.0.113.10:40000-40099 / [2001:db8:10::10]:40000-40099
 *   dst:  eth-d 198.51.100.2/24 2001:db8:1::2/64, routes back to 203.0.113.0/24 and 2001:db8:10::/48
 *         only, TCP servers on :8080
 * </pre>
 * A TCP client in host connects to dst; the events are read in host, where the SNAT happens.
 */
@Privileged
class ConntrackEventsPrivilegedTest
{
    private static final String SERVER = String.join("\n",
        "import socket, sys",
        "s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)",
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
        "s.bind((sys.argv[1], 8080)); s.listen(128); print('listening', flush=True)",
        "held = []",
        "while True:",
        "    c, _ = s.accept(); held.append(c)");
    /** Opens N connections (to argv[2], default the IPv4 server), prints their local ports, holds them. */
    private static final String CLIENT = String.join("\n",
        "import socket, sys, time",
        "held = []",
        "for i in range(int(sys.argv[1])):",
        "    c = socket.create_connection((sys.argv[2] if len(sys.argv) > 2 else '198.51.100.2', 8080), timeout=5)",
        "    held.append(c)",
        "    print('connected', c.getsockname()[1], flush=True)",
        "time.sleep(60)");

    private static final Ipv4Address HOST = Ipv4Address.parse("198.51.100.1");
    private static final Ipv4Address DST = Ipv4Address.parse("198.51.100.2");
    private static final Ipv4Address EGRESS = Ipv4Address.parse("203.0.113.10");
    private static final Ipv6Address HOST6 = Ipv6Address.parse("2001:db8:1::1");
    private static final Ipv6Address DST6 = Ipv6Address.parse("2001:db8:1::2");
    private static final Ipv6Address EGRESS6 = Ipv6Address.parse("2001:db8:10::10");

    private LabNamespace host;
    private LabNamespace dst;
    private NetNamespace hostNs;
    private final List<Process> processes = new ArrayList<>();

    @BeforeEach
    void lab() throws IOException
    {
        Requirements.root();
        host = LabNamespace.create();
        dst = LabNamespace.create();
        host.ip("link", "add", "eth-h", "type", "veth", "peer", "name", "eth-d", "netns", dst.name());
        host.ip("addr", "add", "198.51.100.1/24", "dev", "eth-h");
        host.ip("link", "set", "eth-h", "up");
        dst.ip("addr", "add", "198.51.100.2/24", "dev", "eth-d");
        dst.ip("link", "set", "eth-d", "up");
        dst.ip("route", "add", "203.0.113.0/24", "via", "198.51.100.1");
        host.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "eth-h", "nodad");
        dst.ip("-6", "addr", "add", "2001:db8:1::2/64", "dev", "eth-d", "nodad");
        dst.ip("-6", "route", "add", "2001:db8:10::/48", "via", "2001:db8:1::1");
        host.exec("nft", "add table ip egr; "
            + "add chain ip egr post { type nat hook postrouting priority srcnat; policy accept; }; "
            + "add rule ip egr post oifname \"eth-h\" meta l4proto tcp snat to 203.0.113.10:40000-40099; "
            + "add table ip6 egr6; "
            + "add chain ip6 egr6 post { type nat hook postrouting priority srcnat; policy accept; }; "
            + "add rule ip6 egr6 post oifname \"eth-h\" meta l4proto tcp snat to [2001:db8:10::10]:40000-40099");
        hostNs = NetNamespace.enter(host.name());
        hostNs.call(() ->
        {
            try (RtnetlinkAddresses a = RtnetlinkAddresses.open())
            {
                a.add("eth-h", EGRESS);
                a.add("eth-h", EGRESS6);
            }
            return null;
        });
        final Process server = dst.spawn("python3", "-c", SERVER, "198.51.100.2");
        processes.add(server);
        assertThat(firstLine(server)).isEqualTo("listening");
        final Process server6 = dst.spawn("python3", "-c", SERVER, "2001:db8:1::2");
        processes.add(server6);
        assertThat(firstLine(server6)).isEqualTo("listening");
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
            events.dump(new CollectingListener(dumped));
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
    void ipv6EventsCarryTheTranslatedSourceAndDeleteBySourceWorks() throws IOException
    {
        try (ConntrackEvents events = hostNs.call(() -> ConntrackEvents.open(ConntrackEvents.DEFAULT_RECEIVE_BUFFER, 200)))
        {
            final Process client = host.spawn("python3", "-c", CLIENT, "1", "2001:db8:1::2");
            processes.add(client);
            final String line = firstLine(client);
            assertThat(line).startsWith("connected ");
            final int clientPort = Integer.parseInt(line.substring("connected ".length()).trim());

            final ConntrackEvent created = await(events, ConntrackEvent.Type.NEW);
            assertThat(created.isIpv4()).isFalse();
            assertThat(created.family()).isEqualTo(dev.egressd.agent.natives.LibC.AF_INET6);
            assertThat(new Ipv6Address(created.origSrcHigh(), created.origSrcLow())).isEqualTo(HOST6);
            assertThat(created.origSrcPort()).isEqualTo(clientPort);
            assertThat(new Ipv6Address(created.origDstHigh(), created.origDstLow())).isEqualTo(DST6);
            assertThat(new Ipv6Address(created.replySrcHigh(), created.replySrcLow())).isEqualTo(DST6);
            assertThat(new Ipv6Address(created.replyDstHigh(), created.replyDstLow())).isEqualTo(EGRESS6);
            assertThat(created.replyDstPort()).isBetween(40000, 40099);

            assertThat(events.deleteByOrigSource(HOST)).isZero();      // the IPv4 source has no entries
            assertThat(events.deleteByOrigSource(HOST6)).isEqualTo(1);
            final ConntrackEvent destroyed = await(events, ConntrackEvent.Type.DESTROY);
            assertThat(destroyed.id()).isEqualTo(created.id());
            assertThat(new Ipv6Address(destroyed.replyDstHigh(), destroyed.replyDstLow())).isEqualTo(EGRESS6);
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

    @Test
    void pollingEventsAllocatesNothingPerEvent() throws IOException
    {
        final java.lang.management.ThreadMXBean bean = java.lang.management.ManagementFactory.getThreadMXBean();
        final com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean)bean;
        try (ConntrackEvents events = hostNs.call(() -> ConntrackEvents.open(ConntrackEvents.DEFAULT_RECEIVE_BUFFER, 200)))
        {
            final int[] seen = {0};
            final ConntrackEvents.Listener counting = new ConntrackEvents.Listener()
            {
                @Override
                public void onEvent(final ConntrackEvent event)
                {
                    seen[0]++;
                }

                @Override
                public void onOverrun()
                {
                    throw new AssertionError("overrun");
                }
            };
            events.poll(counting);                       // one timed-out poll first: classes loaded, stubs bound
            // 80 connections: the SNAT block has 100 ports to this one destination.
            final Process client = host.spawn("python3", "-c", CLIENT, "80");
            processes.add(client);
            final BufferedReader out = reader(client);
            for (int i = 0; i < 80; i++)
            {
                assertThat(out.readLine()).startsWith("connected ");
            }
            final long tid = Thread.currentThread().getId();
            final long before = threads.getThreadAllocatedBytes(tid);
            while (seen[0] < 80 && events.poll(counting) > 0)
            {
                // drain the queued NEW events
            }
            final long allocated = threads.getThreadAllocatedBytes(tid) - before;
            assertThat(seen[0]).isEqualTo(80);
            // Per-event allocation of even one small object would be 80 x 16+ bytes.
            assertThat(allocated).as("bytes allocated while receiving 80 events").isLessThan(2048);
        }
    }

    /** Opens one connection from argv[1] to argv[2]:8080, prints its local port, holds it. */
    private static final String CLIENT_FROM = String.join("\n",
        "import socket, sys, time",
        "c = socket.create_connection((sys.argv[2], 8080), timeout=5, source_address=(sys.argv[1], 0))",
        "print('connected', c.getsockname()[1], flush=True)",
        "time.sleep(60)");

    /**
     * The kernel-side filter: with a cover of the host's first address, a flow from its second address (translated
     * too) never reaches Java, nor do the guest flow's state changes short of TIME_WAIT; the guest flow's NEW and
     * DESTROY do. A second, unfiltered subscription sees every event, and the Java interpreter of the program, run
     * over those captured bytes, keeps exactly what the kernel let through.
     */
    @Test
    void theKernelFilterLetsOnlyTheGuestsLedgerEventsThrough() throws IOException
    {
        host.ip("addr", "add", "198.51.100.3/24", "dev", "eth-h");
        final GuestPrefixes guests = GuestPrefixes.cover(new int[] {HOST.bits()}, 1, new long[0], 0,
            GuestPrefixes.DEFAULT_MAX);
        final ClassicBpf.Program program = EventFilter.program(guests);
        try (ConntrackEvents filtered = hostNs.call(() -> ConntrackEvents.open(ConntrackEvents.DEFAULT_RECEIVE_BUFFER, 200, true));
             ConntrackEvents all = hostNs.call(() -> ConntrackEvents.open(ConntrackEvents.DEFAULT_RECEIVE_BUFFER, 200, true)))
        {
            filtered.filter(guests);
            for (final String source : new String[] {"198.51.100.3", "198.51.100.1"})
            {
                final Process client = host.spawn("python3", "-c", CLIENT_FROM, source, "198.51.100.2");
                processes.add(client);
                assertThat(firstLine(client)).startsWith("connected ");
            }
            assertThat(filtered.deleteByOrigSource(Ipv4Address.parse("198.51.100.3"))).isEqualTo(1);
            assertThat(filtered.deleteByOrigSource(HOST)).isEqualTo(1);

            final List<byte[]> raw = new ArrayList<>();
            final List<String> everything = drain(all, raw);
            final List<String> passed = drain(filtered, null);

            // the unfiltered socket saw both flows, and the guest's state changes
            assertThat(everything).anyMatch(s -> s.startsWith("NEW 198.51.100.3"))
                .anyMatch(s -> s.startsWith("DESTROY 198.51.100.3"))
                .anyMatch(s -> s.startsWith("NEW 198.51.100.1"))
                .anyMatch(s -> s.startsWith("UPDATE 198.51.100.1"))
                .anyMatch(s -> s.startsWith("DESTROY 198.51.100.1"));
            // the filtered one: the guest's NEW and DESTROY only
            assertThat(passed).hasSize(2);
            assertThat(passed.get(0)).startsWith("NEW 198.51.100.1 ");
            assertThat(passed.get(1)).startsWith("DESTROY 198.51.100.1 ");
            // the interpreter agrees with the kernel, message by message
            final List<String> kept = new ArrayList<>();
            for (int i = 0; i < raw.size(); i++)
            {
                if (program.run(raw.get(i), raw.get(i).length) != ClassicBpf.DROP)
                {
                    kept.add(everything.get(i));
                }
            }
            assertThat(kept).isEqualTo(passed);
        }
    }

    /** Connects from argv[1] to argv[2]:8080 and resets the connection at once (SO_LINGER 0). */
    private static final String RESET_FROM = String.join("\n",
        "import socket, struct, sys",
        "c = socket.create_connection((sys.argv[2], 8080), timeout=5, source_address=(sys.argv[1], 0))",
        "c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); c.close()",
        "print('reset', flush=True)");

    /**
     * A guest's TCP connection reset at once reaches Java as its NEW and its UPDATE to CLOSE, not its DESTROY: the
     * kernel reports the CLOSE state in the DESTROY too, and the filter drops it (the UPDATE closed the flow).
     */
    @Test
    void theDestroyOfAResetGuestConnectionStaysInTheKernel() throws IOException
    {
        host.exec("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_close=1");
        final GuestPrefixes guests = GuestPrefixes.cover(new int[] {HOST.bits()}, 1, new long[0], 0,
            GuestPrefixes.DEFAULT_MAX);
        final ClassicBpf.Program program = EventFilter.program(guests);
        try (ConntrackEvents filtered = hostNs.call(() -> ConntrackEvents.open(ConntrackEvents.DEFAULT_RECEIVE_BUFFER, 200, true));
             ConntrackEvents all = hostNs.call(() -> ConntrackEvents.open(ConntrackEvents.DEFAULT_RECEIVE_BUFFER, 200, true)))
        {
            filtered.filter(guests);
            final Process client = host.spawn("python3", "-c", RESET_FROM, "198.51.100.1", "198.51.100.2");
            processes.add(client);
            assertThat(firstLine(client)).isEqualTo("reset");

            final List<byte[]> raw = new ArrayList<>();
            final List<String> everything = new ArrayList<>();
            // Conntrack reaps an expired entry lazily (its garbage collector may wait many seconds), but a dump evicts
            // the expired entries it walks over, which sends their DESTROY: so dump after each quiet second.
            final List<ConntrackEvent> ignored = new ArrayList<>();
            final long deadline = System.nanoTime() + 30_000_000_000L;
            while (everything.stream().noneMatch(e -> e.startsWith("DESTROY 198.51.100.1")) && System.nanoTime() < deadline)
            {
                everything.addAll(drain(all, raw));
                all.dump(new CollectingListener(ignored));
            }
            final List<String> passed = drain(filtered, null);

            final String close = " " + NetlinkConstants.TCP_CONNTRACK_CLOSE;
            assertThat(everything).anyMatch(e -> e.startsWith("DESTROY 198.51.100.1") && e.endsWith(close));
            assertThat(passed).hasSize(2);
            assertThat(passed.get(0)).startsWith("NEW 198.51.100.1 ");
            assertThat(passed.get(1)).startsWith("UPDATE 198.51.100.1 ").endsWith(close);
            final List<String> kept = new ArrayList<>();
            for (int i = 0; i < raw.size(); i++)
            {
                if (program.run(raw.get(i), raw.get(i).length) != ClassicBpf.DROP)
                {
                    kept.add(everything.get(i));
                }
            }
            assertThat(kept).isEqualTo(passed);
        }
    }

    /** Reads until the socket stays quiet for 1 s: "TYPE source id state" per event, and the raw bytes. */
    private static List<String> drain(final ConntrackEvents events, final List<byte[]> raw) throws IOException
    {
        final List<String> out = new ArrayList<>();
        final ConntrackEvent e = new ConntrackEvent();
        long quietSince = System.nanoTime();
        while (System.nanoTime() - quietSince < 1_000_000_000L)
        {
            final int n = events.pollRaw((b, off, len) ->
            {
                final byte[] m = new byte[len];
                b.get(off, m);
                if (ConntrackEvents.parse(b, off, len, e))
                {
                    out.add(e.type() + " " + new Ipv4Address(e.origSrcV4()) + " " + Integer.toUnsignedString(e.id())
                        + " " + e.tcpState());
                    if (raw != null)
                    {
                        raw.add(m);
                    }
                }
            });
            assertThat(n).isNotEqualTo(dev.egressd.agent.netlink.NetlinkSocket.OVERRUN);
            if (n > 0)
            {
                quietSince = System.nanoTime();
            }
        }
        return out;
    }

    private static ConntrackEvent await(final ConntrackEvents events, final ConntrackEvent.Type type) throws IOException
    {
        final List<ConntrackEvent> seen = new ArrayList<>();
        final ConntrackEvents.Listener listener = new CollectingListener(seen);
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
