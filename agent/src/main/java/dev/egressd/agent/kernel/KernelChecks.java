package dev.egressd.agent.kernel;

import dev.egressd.agent.kernel.rtnetlink.InterfaceAddress;
import dev.egressd.agent.netlink.NetlinkException;
import dev.egressd.agent.kernel.rtnetlink.RtnetlinkAddresses;
import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.kernel.nft.NftNatives;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * What the daemon checks before it touches the kernel, each problem as one line an operator can act on:
 * libnftables present, CAP_NET_ADMIN held, a kernel that keeps address ownership marks (6.1), the uplink
 * present. Read-only: nothing is changed.
 *
 * <p>The parsers are public and pure so they are tested on given strings, not on this machine.
 */
public final class KernelChecks
{
    /** {@code <linux/capability.h>} CAP_NET_ADMIN. */
    public static final int CAP_NET_ADMIN = 12;

    /** The problem when CAP_NET_ADMIN is missing from the effective set. */
    public static final String NO_NET_ADMIN =
        "egressd needs CAP_NET_ADMIN: run as root or with AmbientCapabilities=CAP_NET_ADMIN";

    private static final Pattern RELEASE = Pattern.compile("^(\\d+)\\.(\\d+).*");

    private KernelChecks()
    {
    }

    /**
     * Checks this process and host, in the calling thread's network namespace, in the order an operator
     * would fix them.
     *
     * @param config the dataplane configuration (for the uplink name).
     * @return the first problem as one line, or empty when egressd can run.
     */
    public static Optional<String> check(final DataplaneConfig config)
    {
        if (!NftNatives.isAvailable())
        {
            // Says "libnftables.so.1 not found: apt-get install libnftables1" when it is not installed.
            final Throwable cause = NftNatives.unavailabilityCause();
            final String text = cause == null ? NftNatives.MISSING_MESSAGE : cause.getMessage();
            return Optional.of(text.startsWith(NftNatives.MISSING_MESSAGE) ? NftNatives.MISSING_MESSAGE
                : firstLine(text));
        }
        final Optional<String> capability = read("/proc/self/status").flatMap(KernelChecks::capabilityProblem);
        if (capability.isPresent())
        {
            return capability;
        }
        // os.version is uname(2)'s release: unlike /proc/sys/kernel/osrelease it is readable under the unit's
        // ProcSubset=pid.
        final Optional<String> kernel = Optional.ofNullable(System.getProperty("os.version"))
            .flatMap(KernelChecks::kernelProblem);
        if (kernel.isPresent())
        {
            return kernel;
        }
        return uplinkProblem(config.uplink());
    }

    /**
     * The effective capability set from {@code /proc/self/status} text ({@code CapEff:} in hex).
     *
     * @param status the file's content.
     * @return the bit set.
     * @throws IllegalArgumentException if there is no well-formed CapEff line.
     */
    public static long effectiveCapabilities(final String status)
    {
        for (final String line : status.split("\n"))
        {
            if (line.startsWith("CapEff:"))
            {
                final String hex = line.substring("CapEff:".length()).trim();
                try
                {
                    return Long.parseUnsignedLong(hex, 16);
                }
                catch (final NumberFormatException e)
                {
                    throw new IllegalArgumentException("malformed CapEff line: " + line, e);
                }
            }
        }
        throw new IllegalArgumentException("no CapEff line in /proc/self/status");
    }

    /**
     * The CAP_NET_ADMIN problem, from {@code /proc/self/status} text. Effective set, not uid: root in a
     * container without the capability cannot program nftables, a non-root service with the ambient
     * capability can.
     *
     * @param status the file's content.
     * @return {@link #NO_NET_ADMIN}, a line about an unreadable status, or empty.
     */
    public static Optional<String> capabilityProblem(final String status)
    {
        try
        {
            return (effectiveCapabilities(status) & (1L << CAP_NET_ADMIN)) != 0 ? Optional.empty()
                : Optional.of(NO_NET_ADMIN);
        }
        catch (final IllegalArgumentException e)
        {
            return Optional.of("cannot tell whether egressd has CAP_NET_ADMIN: " + e.getMessage());
        }
    }

    /**
     * The kernel-version problem, from the kernel release (uname, as in {@code /proc/sys/kernel/osrelease}). egressd marks the uplink
     * addresses it owns with IFA_PROTO (Linux 6.1); an older kernel drops the mark, so egressd could
     * never tell its addresses apart and would leave them behind. A release it cannot parse passes.
     *
     * @param release e.g. {@code 6.18.44-fc-v857}.
     * @return the problem, or empty.
     */
    public static Optional<String> kernelProblem(final String release)
    {
        final Matcher m = RELEASE.matcher(release.trim());
        if (!m.matches())
        {
            return Optional.empty();
        }
        final int major = Integer.parseInt(m.group(1));
        final int minor = Integer.parseInt(m.group(2));
        if (major > 6 || (major == 6 && minor >= 1))
        {
            return Optional.empty();
        }
        return Optional.of("kernel " + release.trim() + " is too old: egressd needs Linux 6.1 or later "
            + "(IFA_PROTO marks the uplink addresses it owns)");
    }

    /**
     * Whether the uplink exists in the calling thread's network namespace (RTM_GETLINK, read-only).
     *
     * @param uplink the interface name.
     * @return "uplink interface X does not exist", another one-line problem, or empty.
     */
    static Optional<String> uplinkProblem(final String uplink)
    {
        try (RtnetlinkAddresses rtnl = RtnetlinkAddresses.open())
        {
            rtnl.ifindex(uplink);
            return Optional.empty();
        }
        catch (final NetlinkException e)
        {
            return Optional.of(e.isNotFound() ? "uplink interface " + uplink + " does not exist"
                : "cannot look up uplink interface " + uplink + ": " + firstLine(e.getMessage()));
        }
        catch (final IOException | RuntimeException e)
        {
            return Optional.of("cannot look up uplink interface " + uplink + ": " + firstLine(String.valueOf(e.getMessage())));
        }
    }

    /**
     * A warning (not a refusal to start) when IPv6 masquerade would leave from someone's static address: the uplink
     * has no preferred IPv6 address of the host's own beyond link-local, so the kernel picks a deprecated one as the
     * source, egressd's egress /128s included (docs/design.md, pitfall 7). Machines on the host's address would then
     * leave over IPv6 from an app's allowlisted address. Read-only (RTM_GETADDR) in the calling thread's namespace.
     *
     * @param uplink the interface name.
     * @return the warning, or empty (also when the addresses cannot be read: the start-up checks say why).
     */
    public static Optional<String> ipv6SourceWarning(final String uplink)
    {
        try (RtnetlinkAddresses rtnl = RtnetlinkAddresses.open())
        {
            // egressd's /128s on lo (pair addresses in region mode) are candidates for the source as much as those
            // on the uplink; lo's other addresses (::1) are not the host's own for the uplink.
            final List<InterfaceAddress> addresses = new java.util.ArrayList<>(rtnl.addresses(uplink));
            if (!UplinkAddresses.LOOPBACK.equals(uplink))
            {
                addresses.addAll(rtnl.ownedAddresses(UplinkAddresses.LOOPBACK));
            }
            return ipv6SourceWarning(uplink, addresses);
        }
        catch (final IOException | RuntimeException e)
        {
            return Optional.empty();
        }
    }

    /**
     * The IPv6 source warning, from the uplink's addresses.
     *
     * @param uplink    the interface name, for the message.
     * @param addresses its addresses.
     * @return the warning when egress /128s are on the uplink and no preferred, non-link-local IPv6 address not owned
     * by egressd is, else empty.
     */
    public static Optional<String> ipv6SourceWarning(final String uplink, final List<InterfaceAddress> addresses)
    {
        boolean egress = false;
        for (final InterfaceAddress a : addresses)
        {
            if (a.ipv6() == null)
            {
                continue;
            }
            if (a.isOwned())
            {
                egress = true;
            }
            else if (a.preferredLifetime() != 0 && !isLinkLocal(a.ipv6().high()))
            {
                return Optional.empty();
            }
        }
        // Without egress /128s there is nothing to leave from wrongly (an IPv4-only host stays quiet).
        return !egress ? Optional.empty() : Optional.of("uplink " + uplink + " has no preferred IPv6 address of the host's own: IPv6 masquerade "
            + "(machines on the host's address) would leave from an egress /128 of some app; give the uplink a "
            + "global IPv6 address");
    }

    private static boolean isLinkLocal(final long high)
    {
        return (high >>> 54) == 0x3FA; // fe80::/10
    }

    private static Optional<String> read(final String file)
    {
        try
        {
            return Optional.of(Files.readString(Path.of(file)));
        }
        catch (final IOException e)
        {
            // Not Linux, or /proc not mounted: nothing to judge by; the real calls will say what fails.
            return Optional.empty();
        }
    }

    private static String firstLine(final String text)
    {
        final int nl = text.indexOf('\n');
        return nl < 0 ? text : text.substring(0, nl);
    }
}
