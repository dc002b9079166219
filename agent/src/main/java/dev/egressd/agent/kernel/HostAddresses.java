package dev.egressd.agent.kernel;

import dev.egressd.agent.kernel.rtnetlink.InterfaceAddress;
import dev.egressd.agent.kernel.rtnetlink.RtnetlinkHost;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Machine;

import java.util.HashMap;
import java.util.Map;

/**
 * The addresses this host holds or routes as its own, as the last read of the kernel found them: a pair address or
 * a guest address among them is refused (docs/api.md, "Addresses that are the host's"), because a machine on such a
 * pair would leave from the host's own address (SNAT to an address the host already uses for its own traffic), and
 * releasing the pair would never take that address away (it is not egressd's).
 *
 * <p>A pair address is the host's when it is:
 * <ol>
 * <li>held by an interface of the host, other than as an egress address: not marked as egressd's, and not a bare
 *     /32 or /128 that the operator put on the uplink or on {@code lo} for egressd to use (a cloud's secondary
 *     address, docs/design.md "Foreign addresses"), which stays accepted; an address with a finite valid lifetime
 *     (leased by DHCP or SLAAC) is the host's even as a /32 or /128;</li>
 * <li>the gateway of a route of the host, or the preferred source of one (a {@code src} that the host's own
 *     traffic leaves from, even when it is a bare /32);</li>
 * <li>the destination of a host route (/32 or /128) of the host, such as the route to a guest (not the prefix route
 *     the kernel makes for an address of its own: that is the address, judged by rule 1).</li>
 * </ol>
 * A guest address is the host's when the host holds it on any interface (egress addresses included) or it is a
 * gateway of the host's routes; a host route to it is expected (the route to the guest).
 *
 * <p>Immutable; built from one read ({@link #of}) and replaced by the next, so the checks cost a map lookup.
 */
public final class HostAddresses
{
    /** Nothing known (no real kernel, or not read yet): nothing is refused. */
    public static final HostAddresses NONE = new HostAddresses(Map.of(), Map.of());

    /** Address text to why a pair may not have it. */
    private final Map<String, String> pairs;
    /** Address text to why a guest may not have it. */
    private final Map<String, String> guests;

    private HostAddresses(final Map<String, String> pairs, final Map<String, String> guests)
    {
        this.pairs = pairs;
        this.guests = guests;
    }

    /**
     * The host's addresses from one read.
     *
     * @param uplink the uplink's name (where an operator may pre-provision egress addresses, besides {@code lo}).
     * @param read   what the kernel holds and routes.
     * @return the snapshot.
     */
    public static HostAddresses of(final String uplink, final RtnetlinkHost.Snapshot read)
    {
        final Map<String, String> pairs = new HashMap<>();
        final Map<String, String> guests = new HashMap<>();
        for (final RtnetlinkHost.HeldAddress held : read.addresses())
        {
            final InterfaceAddress a = held.address();
            final String text = a.ipv4() != null ? a.ipv4().toString() : a.ipv6().toString();
            final boolean leased = a.validLifetime() != InterfaceAddress.FOREVER;
            final String where = text + "/" + a.prefixLength() + " on " + held.iface() + (leased ? ", leased" : "");
            guests.putIfAbsent(text, "the host's own address (" + where + ")");
            if (a.isOwned())
            {
                continue;
            }
            final boolean preProvisioned = a.isHostPrefix() && !leased
                && (held.iface().equals(uplink) || "lo".equals(held.iface()));
            if (!preProvisioned)
            {
                pairs.putIfAbsent(text, "the host's own address (" + where + ")");
            }
        }
        for (final RtnetlinkHost.HostRoute r : read.routes())
        {
            final String route = describe(r);
            if (r.gateway() != null)
            {
                pairs.putIfAbsent(r.gateway(), "the gateway of the host's route " + route);
                guests.putIfAbsent(r.gateway(), "the gateway of the host's route " + route);
            }
            if (r.prefsrc() != null)
            {
                pairs.putIfAbsent(r.prefsrc(), "the source the host's own traffic leaves from (route " + route + ")");
            }
            // The kernel's own prefix route of an address (an IPv6 /128 has one) is that address, read as such above.
            if (r.isHostRoute() && r.protocol() != RtnetlinkHost.RTPROT_KERNEL)
            {
                pairs.putIfAbsent(r.destination(), "the destination of the host's route " + route);
            }
        }
        return new HostAddresses(Map.copyOf(pairs), Map.copyOf(guests));
    }

    /** A route as {@code ip route} shows it. */
    private static String describe(final RtnetlinkHost.HostRoute r)
    {
        final boolean isDefault = r.prefixLength() == 0;
        return (isDefault ? "default" : r.destination() + "/" + r.prefixLength())
            + (r.gateway() != null ? " via " + r.gateway() : "")
            + (r.iface() != null ? " dev " + r.iface() : "")
            + (r.table() != 254 ? " table " + Integer.toUnsignedString(r.table()) : "")
            + (r.prefsrc() != null ? " src " + r.prefsrc() : "");
    }

    /**
     * The refusal of a pair with an address that is the host's, or null.
     *
     * @param pair the pair.
     * @return {@code 409 address_in_use} naming the field ({@code ipv4} first), or null.
     */
    public Outcome.Refusal pairProblem(final EgressPair pair)
    {
        if (pairs.isEmpty())
        {
            return null;
        }
        final Outcome.Refusal four = refusal(pairs, "ipv4", pair.ipv4().toString(), "cannot be an egress address");
        return four != null ? four : refusal(pairs, "ipv6", pair.ipv6().toString(), "cannot be an egress address");
    }

    /**
     * The refusal of a machine whose guest address is the host's, or null.
     *
     * @param machine the machine.
     * @return {@code 409 address_in_use} naming the field ({@code ipv4} first), or null.
     */
    public Outcome.Refusal guestProblem(final Machine machine)
    {
        if (guests.isEmpty())
        {
            return null;
        }
        final Outcome.Refusal four = machine.ipv4() == null ? null
            : refusal(guests, "ipv4", machine.ipv4().toString(), "cannot be a guest address");
        return four != null || machine.ipv6() == null ? four
            : refusal(guests, "ipv6", machine.ipv6().toString(), "cannot be a guest address");
    }

    private static Outcome.Refusal refusal(final Map<String, String> reasons, final String field, final String address,
                                           final String what)
    {
        final String why = reasons.get(address);
        return why == null ? null : new Outcome.Refusal(Outcome.Reason.ADDRESS_IN_USE, field,
            field + " " + address + " " + what + ": it is " + why);
    }
}
