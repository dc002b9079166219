package dev.egressd.agent.testing;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A region lab for one privileged test (docs/region.md), built by {@code scripts/lab region}: the router
 * {@code P-rtr}, hosts {@code P-h1..P-hH} each on its own point-to-point link to it (so the router's strict
 * reverse-path check can fence a host), routed guests {@code P-g1..} on the hosts ({@code guestsPerHost} each,
 * numbered across the region), and the destination {@code P-dst} behind a 1280-MTU link. etcd runs inside the
 * router namespace on the control address {@link #CONTROL_ADDRESS}, which every host reaches through its link
 * (the test's own namespace is never part of the lab's network). Everything is removed in {@link #close()},
 * also after a failure, and by a JVM shutdown hook as a last resort.
 *
 * <p>Addresses: host n's uplink is {@code 192.0.2.(4n+2)/30} and {@code 2001:db8:1:n::2/64}, the router's end
 * {@code .(4n+1)} and {@code ::1}; guest i is {@code 10.77.0.(i+1)} / {@code fd77::(i+1)} on interface
 * {@code tap-g<i>} of its host. The router's main table has no route to the shared ranges (203.0.113.0/24,
 * 2001:db8:10::/48): a reply to a shared address comes back only if something steers it, the router role or the
 * {@link StandInRouter} of the lab's own self-check.
 */
public final class RegionLab implements LabNetwork, AutoCloseable
{
    /** Where etcd listens, on the router namespace's loopback; hosts reach it through their link. */
    public static final String CONTROL_ADDRESS = "192.0.2.250";
    /** The region every host and router of the lab belongs to. */
    public static final String REGION = "ord";

    private final String prefix;
    private final int hosts;
    private final int guestsPerHost;
    private final Path workDir;
    private final Destination destination;
    private final Thread shutdownHook;
    private final Map<Integer, Integer> guestHost = new HashMap<>();
    private EtcdServer etcd;
    private boolean closed;

    private RegionLab(final String prefix, final int hosts, final int guestsPerHost, final Path workDir)
    {
        this.prefix = prefix;
        this.hosts = hosts;
        this.guestsPerHost = guestsPerHost;
        this.workDir = workDir;
        this.destination = new Destination(this, workDir);
        this.shutdownHook = new Thread(this::destroyQuietly, "region-lab-" + prefix + "-cleanup");
        for (int g = 1; g <= hosts * guestsPerHost; g++)
        {
            guestHost.put(g, (g - 1) / guestsPerHost + 1);
        }
    }

    /**
     * Checks the requirements and builds a region lab with a random prefix (no etcd yet: {@link #startEtcd()}).
     *
     * @param hosts         the number of hosts (1..40).
     * @param guestsPerHost guests on each host (1..20).
     * @return the running lab; close it.
     * @throws IOException if the lab cannot be built (it is removed again).
     */
    public static RegionLab create(final int hosts, final int guestsPerHost) throws IOException
    {
        Requirements.lab("curl");
        String prefix;
        do
        {
            prefix = "r" + Integer.toString(ThreadLocalRandom.current().nextInt(36 * 36 * 36), 36);
        }
        while (Files.exists(Path.of("/run/netns", prefix + "-rtr")));
        final RegionLab lab = new RegionLab(prefix, hosts, guestsPerHost,
            Files.createTempDirectory("egressd-region-lab-" + prefix));
        Runtime.getRuntime().addShutdownHook(lab.shutdownHook);
        try
        {
            final Shell.Exec created = Shell.run(Duration.ofSeconds(60), List.of(lab.script("lab").toString(),
                "region", "--prefix", prefix, "--hosts", Integer.toString(hosts), "--guests",
                Integer.toString(guestsPerHost)));
            if (created.exitCode() != 0)
            {
                throw new IOException("scripts/lab region failed (" + created.exitCode() + "): " + created.output());
            }
            lab.destination.start();
        }
        catch (final IOException | RuntimeException | Error e)
        {
            lab.close();
            throw e;
        }
        return lab;
    }

    /**
     * Starts etcd inside the router namespace, listening on {@link #CONTROL_ADDRESS}.
     *
     * @return the running etcd (stop, kill and start it again as the test needs; the lab closes it).
     */
    public synchronized EtcdServer startEtcd()
    {
        if (etcd == null)
        {
            etcd = EtcdServer.createIn(this, "rtr", CONTROL_ADDRESS);
        }
        return etcd;
    }

    /** @return the etcd of {@link #startEtcd()}. */
    public synchronized EtcdServer etcd()
    {
        return etcd;
    }

    /** @return the lab's work directory (the destination's log, the fixtures' files). */
    public Path workDir()
    {
        return workDir;
    }

    @Override
    public String prefix()
    {
        return prefix;
    }

    /** @return the number of hosts. */
    public int hosts()
    {
        return hosts;
    }

    /** @return the number of guests (guestsPerHost per host). */
    public int guests()
    {
        return hosts * guestsPerHost;
    }

    /**
     * @param host 1..hosts.
     * @return the host's namespace short name, {@code h<n>}.
     */
    public static String hostNs(final int host)
    {
        return "h" + host;
    }

    /**
     * @param host 1..hosts.
     * @return the host's uplink IPv4, how the router reaches it.
     */
    public static String hostAddress4(final int host)
    {
        return "192.0.2." + (4 * host + 2);
    }

    /**
     * @param host 1..hosts.
     * @return the host's uplink IPv6.
     */
    public static String hostAddress6(final int host)
    {
        return "2001:db8:1:" + Integer.toHexString(host) + "::2";
    }

    /**
     * @param guest the guest number.
     * @return its IPv4 address.
     */
    public static String guestAddress4(final int guest)
    {
        return "10.77." + (guest + 1) / 256 + "." + (guest + 1) % 256;
    }

    /**
     * @param guest the guest number.
     * @return its IPv6 address.
     */
    public static String guestAddress6(final int guest)
    {
        return "fd77::" + Integer.toHexString(guest + 1);
    }

    /**
     * @param guest the guest number.
     * @return its interface on its host.
     */
    public static String tap(final int guest)
    {
        return "tap-g" + guest;
    }

    /**
     * @param guest the guest number.
     * @return the host it is on now (see {@link #moveGuest}).
     */
    public synchronized int hostOf(final int guest)
    {
        return guestHost.get(guest);
    }

    /**
     * A guest, to send traffic from.
     *
     * @param number the guest number (1..guests()).
     * @return the guest.
     */
    public Guest guest(final int number)
    {
        return new Guest(this, number);
    }

    /** @return the destination: what reached its services. */
    public Destination destination()
    {
        return destination;
    }

    /**
     * Moves a guest to another host, as a VM that migrates: its interface (the host end of the veth) moves to the
     * other host's namespace with the gateway addresses and the guest routes; the guest keeps its addresses and
     * its link.
     *
     * @param guest the guest number.
     * @param to    the new host.
     */
    public synchronized void moveGuest(final int guest, final int to)
    {
        final int from = hostOf(guest);
        final String tap = tap(guest);
        must(hostNs(from), "ip", "link", "set", tap, "netns", ns(hostNs(to)));
        final String h = hostNs(to);
        must(h, "ip", "addr", "add", "169.254.1.1/32", "dev", tap);
        must(h, "ip", "-6", "addr", "add", "fe80::1/64", "dev", tap, "nodad");
        must(h, "ip", "link", "set", tap, "up");
        must(h, "ip", "route", "add", guestAddress4(guest) + "/32", "dev", tap);
        must(h, "ip", "-6", "route", "add", guestAddress6(guest) + "/128", "dev", tap);
        guestHost.put(guest, to);
    }

    /**
     * A region-mode egressd (the built jar) in a host's namespace: {@code --ledger etcd} against the lab's etcd,
     * host id {@code h<n>}, its uplink addresses as the region host addresses.
     *
     * @param host    1..hosts.
     * @param dir     its work directory (state, socket, log).
     * @param extra   more flags, e.g. the block layout.
     * @return the daemon, not started.
     * @throws IOException if its directory cannot be made.
     */
    public DaemonProcess hostDaemon(final int host, final Path dir, final String... extra) throws IOException
    {
        final List<String> flags = new ArrayList<>(List.of("--ledger", "etcd", "--etcd-endpoints",
            startEtcd().endpoint(), "--host-id", hostNs(host), "--region-host-addresses",
            hostAddress4(host) + "," + hostAddress6(host)));
        flags.addAll(Arrays.asList(extra));
        return new DaemonProcess(this, hostNs(host), dir, flags.toArray(String[]::new));
    }

    /**
     * The router role (the built jar's {@code router} command) in the router namespace, against the lab's etcd.
     *
     * @param id    the router id.
     * @param dir   its work directory (log).
     * @param extra more flags.
     * @return the router, not started.
     * @throws IOException if its directory cannot be made.
     */
    public RouterProcess router(final String id, final Path dir, final String... extra) throws IOException
    {
        // the router's readiness is read from etcd with etcdctl, inside the router namespace
        Requirements.tool("etcdctl", "apt-get install etcd-client, or run scripts/install-deps");
        return new RouterProcess(this, id, startEtcd().endpoint(), dir, extra);
    }

    /**
     * The lab's stand-in for the router role, for the lab's own self-check only: the steering of the verified
     * recipe (docs/region.md) loaded with {@code nft}/{@code ip} into the router namespace. Tests of egressd use
     * the real router ({@link #router}).
     *
     * @return the stand-in, installed, with no elements yet.
     */
    public StandInRouter standInRouter()
    {
        return new StandInRouter(this);
    }

    /**
     * A fixture host's egress, for the lab's self-check without egressd: the pair on the host's {@code lo} (with
     * {@code arp_ignore=1}/{@code arp_announce=2}, as in region mode) and an nft SNAT of one guest into one block.
     *
     * @param host  the host the guest is on.
     * @param guest the guest.
     * @param pair4 the pair's IPv4.
     * @param pair6 the pair's IPv6.
     * @param first the block's first port.
     * @param last  the block's last port.
     */
    public void staticHostSnat(final int host, final int guest, final String pair4, final String pair6,
        final int first, final int last)
    {
        final String h = hostNs(host);
        must(h, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2");
        if (!must(h, "ip", "-br", "addr", "show", "dev", "lo").contains(pair4 + "/32"))
        {
            must(h, "ip", "addr", "add", pair4 + "/32", "dev", "lo");
            must(h, "ip", "-6", "addr", "add", pair6 + "/128", "dev", "lo", "nodad");
        }
        must(h, "nft", "add table inet labsnat { chain post { type nat hook postrouting priority srcnat - 10; "
            + "policy accept; }; }");
        must(h, "nft", "add rule inet labsnat post oifname uplink ip saddr " + guestAddress4(guest)
            + " meta l4proto { tcp, udp, icmp } snat ip to " + pair4 + ":" + first + "-" + last);
        must(h, "nft", "add rule inet labsnat post oifname uplink ip6 saddr " + guestAddress6(guest)
            + " meta l4proto { tcp, udp, ipv6-icmp } snat ip6 to [" + pair6 + "]:" + first + "-" + last);
    }

    /**
     * The router's count of packets its reverse-path check dropped ({@code TcpExtIPReversePathFilter}), read with
     * {@code nstat} (its history file is the lab's, per namespace: nstat keeps one per user otherwise).
     *
     * @return the absolute count.
     */
    public long routerReversePathDrops()
    {
        final String out = must("rtr", "env", "NSTAT_HISTORY=" + workDir.resolve("nstat-rtr"), "nstat", "-az",
            "TcpExtIPReversePathFilter");
        final Matcher m = Pattern.compile("TcpExtIPReversePathFilter\\s+(\\d+)").matcher(out);
        if (!m.find())
        {
            fail("no TcpExtIPReversePathFilter in: " + out);
        }
        return Long.parseLong(m.group(1));
    }

    /**
     * A sysctl's value in a lab namespace.
     *
     * @param nsShortName the namespace.
     * @param key         e.g. {@code net.ipv4.conf.all.arp_ignore}.
     * @return its value.
     */
    public String sysctl(final String nsShortName, final String key)
    {
        return must(nsShortName, "sysctl", "-n", key).strip();
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
        destination.stop();
        final EtcdServer e = etcd;
        if (e != null)
        {
            try
            {
                e.close();
            }
            catch (final RuntimeException ex)
            {
                System.err.println("region lab " + prefix + ": etcd close failed: " + ex);
            }
        }
        try
        {
            // ends every process still in the lab's namespaces (daemons, routers) by pid, then removes them
            final Shell.Exec exec = Shell.run(Duration.ofSeconds(60), List.of(script("lab").toString(), "destroy",
                "--prefix", prefix));
            if (!exec.ok())
            {
                System.err.println("region lab " + prefix + ": destroy failed: " + exec.output());
            }
        }
        catch (final IOException | RuntimeException ex)
        {
            System.err.println("region lab " + prefix + ": destroy failed: " + ex);
        }
    }
}
