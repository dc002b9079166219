package dev.egressd.core.alloc;

import dev.egressd.core.alloc.Outcome.Reason;
import dev.egressd.core.alloc.Outcome.Refusal;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

import java.util.regex.Pattern;

/**
 * The one place where request text becomes typed values (addresses and egress pairs), or a
 * {@link Refusal} with one message per field. Each refusal names the field as the API names it ({@code ipv4},
 * {@code ipv6}, {@code pin}, {@code region}, {@code interface}, {@code app}, {@code id}), so the API answers it
 * as it answers any allocator refusal and the state file's problems read the same.
 *
 * <p>Ids and interface names stay text in the model; {@link EgressAllocator} checks them on every record it is
 * given, with the rules and messages here, so a record rebuilt from the state file is held to the same rules.
 *
 * <p>Family: an IPv4 field holding a valid IPv6 address, or an IPv6 field holding a dotted quad or an IPv4-mapped
 * form, is {@link Reason#WRONG_FAMILY}; anything else that does not parse is {@link Reason#INVALID}.
 */
public final class RequestText
{
    /** App and machine ids: a letter or digit, then letters, digits, {@code _ . -}; at most 128 characters. */
    public static final Pattern ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9_.-]{0,127}");

    /** Linux interface names: at most 15 characters (IFNAMSIZ - 1), no '/', ':' or white space. */
    public static final Pattern INTERFACE = Pattern.compile("[A-Za-z0-9][A-Za-z0-9_.-]{0,14}");

    /** The request field of a machine's guest interface. */
    static final String INTERFACE_FIELD = "interface";

    private RequestText()
    {
    }

    /**
     * An IPv4 address that must be given.
     *
     * @param text  the text, e.g. {@code 203.0.113.10}; null counts as missing.
     * @param field the request field, e.g. {@code ipv4} or {@code pin}.
     * @return the address, or {@code INVALID}/{@code WRONG_FAMILY} on the field.
     */
    public static Parsed<Ipv4Address> ipv4(final String text, final String field)
    {
        try
        {
            return new Parsed.Value<>(Ipv4Address.parse(text));
        }
        catch (final IllegalArgumentException e)
        {
            if (isIpv6(text))
            {
                return refused(Reason.WRONG_FAMILY, field, field + " must be an IPv4 address, got IPv6 " + quote(text));
            }
            return refused(Reason.INVALID, field, field + " must be an IPv4 address (dotted quad), got " + quote(text));
        }
    }

    /**
     * An IPv4 address that may be absent.
     *
     * @param text  the text, or null.
     * @param field the request field.
     * @return the address, null when the text is null, or the refusal of {@link #ipv4}.
     */
    public static Parsed<Ipv4Address> optionalIpv4(final String text, final String field)
    {
        return text == null ? new Parsed.Value<>(null) : ipv4(text, field);
    }

    /**
     * An IPv6 address that must be given.
     *
     * @param text  the text, e.g. {@code 2001:db8::10}; null counts as missing.
     * @param field the request field, e.g. {@code ipv6}.
     * @return the address, or {@code INVALID}/{@code WRONG_FAMILY} on the field.
     */
    public static Parsed<Ipv6Address> ipv6(final String text, final String field)
    {
        if (text != null && Ipv4Address.isIpv4(text))
        {
            return refused(Reason.WRONG_FAMILY, field, field + " must be an IPv6 address, got IPv4 " + quote(text));
        }
        try
        {
            return new Parsed.Value<>(Ipv6Address.parse(text));
        }
        catch (final IllegalArgumentException e)
        {
            if (endsInDottedQuad(text))
            {
                return refused(Reason.WRONG_FAMILY, field,
                    field + " must be a plain IPv6 address, got an IPv4-mapped or mixed form " + quote(text));
            }
            return refused(Reason.INVALID, field, field + " must be an IPv6 address, got " + quote(text));
        }
    }

    /**
     * An IPv6 address that may be absent.
     *
     * @param text  the text, or null.
     * @param field the request field.
     * @return the address, null when the text is null, or the refusal of {@link #ipv6}.
     */
    public static Parsed<Ipv6Address> optionalIpv6(final String text, final String field)
    {
        return text == null ? new Parsed.Value<>(null) : ipv6(text, field);
    }

    /**
     * An egress pair from its fields {@code ipv4}, {@code ipv6} and {@code region}, checked in that order.
     *
     * @param ipv4       the IPv4 text.
     * @param ipv6       the IPv6 text.
     * @param region     the region text; null means this host's region.
     * @param hostRegion this host's region, the only one a pair here may have.
     * @return the pair in this host's region, or the refusal of the first bad field.
     */
    public static Parsed<EgressPair> pair(final String ipv4, final String ipv6, final String region,
        final String hostRegion)
    {
        return ipv4(ipv4, "ipv4").flatMap(v4 -> ipv6(ipv6, "ipv6").flatMap(v6 ->
        {
            final Refusal bad = pairAddressProblem(v4, v6);
            if (bad != null)
            {
                return new Parsed.Refused<>(bad);
            }
            return region != null && !region.equals(hostRegion) ? new Parsed.Refused<>(wrongRegion(region, hostRegion))
                : new Parsed.Value<>(new EgressPair(v4, v6, hostRegion));
        }));
    }

    /**
     * The refusal of a pair whose address no machine could leave from, or null if both can be egress addresses.
     * An egress address is the source of traffic to the internet, so it must be a unicast address that is routed
     * beyond this host's link: not unspecified, "this network", loopback, link-local, multicast or broadcast
     * (docs/api.md, "Egress pairs").
     *
     * @param ipv4 the pair's IPv4 address.
     * @param ipv6 the pair's IPv6 address.
     * @return the refusal on field {@code ipv4} or {@code ipv6} (checked in that order), or null.
     */
    static Refusal pairAddressProblem(final Ipv4Address ipv4, final Ipv6Address ipv6)
    {
        final String problem4 = pairProblem(ipv4);
        if (problem4 != null)
        {
            return new Refusal(Reason.INVALID, "ipv4", "ipv4 " + ipv4 + " cannot be an egress address: it is "
                + problem4);
        }
        final String problem6 = pairProblem(ipv6);
        if (problem6 != null)
        {
            return new Refusal(Reason.INVALID, "ipv6", "ipv6 " + ipv6 + " cannot be an egress address: it is "
                + problem6);
        }
        return null;
    }

    /** Why an IPv4 cannot be an egress address, or null if it can. */
    static String pairProblem(final Ipv4Address address)
    {
        final int bits = address.bits();
        final int first = bits >>> 24;
        if (bits == -1)
        {
            return "the limited broadcast address 255.255.255.255";
        }
        if (first == 0)
        {
            return "in 0.0.0.0/8 (unspecified, \"this network\")";
        }
        if (first == 127)
        {
            return "a loopback address (127.0.0.0/8)";
        }
        if ((bits >>> 16) == 0xA9FE)
        {
            return "a link-local address (169.254.0.0/16)";
        }
        if ((first & 0xF0) == 0xE0)
        {
            return "a multicast address (224.0.0.0/4)";
        }
        return null;
    }

    /** Why an IPv6 cannot be an egress address, or null if it can. */
    static String pairProblem(final Ipv6Address address)
    {
        final long high = address.high();
        if (high == 0 && address.low() == 0)
        {
            return "the unspecified address ::";
        }
        if (high == 0 && address.low() == 1)
        {
            return "the loopback address ::1";
        }
        if ((high >>> 56) == 0xFF)
        {
            return "a multicast address (ff00::/8)";
        }
        if ((high >>> 54) == (0xFE80L >>> 6))
        {
            return "a link-local address (fe80::/10)";
        }
        return null;
    }

    /** The refusal of an app or machine id, or null if it is one. */
    static Refusal idProblem(final String id, final String field)
    {
        if (id == null || !ID.matcher(id).matches())
        {
            return new Refusal(Reason.INVALID, field,
                field + " must be 1..128 of [A-Za-z0-9_.-] starting with a letter or digit, got " + quote(id));
        }
        return null;
    }

    /** The refusal of a guest interface name, or null if it is one. */
    static Refusal interfaceProblem(final String iface)
    {
        if (iface == null || !INTERFACE.matcher(iface).matches())
        {
            return new Refusal(Reason.INVALID, INTERFACE_FIELD, INTERFACE_FIELD
                + " must be a Linux interface name (1..15 of [A-Za-z0-9_.-]), got " + quote(iface));
        }
        return null;
    }

    /** The refusal of a region other than this host's. */
    static Refusal wrongRegion(final String region, final String hostRegion)
    {
        return new Refusal(Reason.WRONG_REGION, "region",
            "region " + quote(region) + " is not this host's region " + hostRegion);
    }

    /** Text as a message shows it: quoted, so empty or spaced text stays visible; null is "nothing". */
    static String quote(final String text)
    {
        return text == null ? "nothing" : "\"" + text + "\"";
    }

    private static <T> Parsed<T> refused(final Reason code, final String field, final String message)
    {
        return new Parsed.Refused<>(new Refusal(code, field, message));
    }

    private static boolean isIpv6(final String text)
    {
        try
        {
            Ipv6Address.parse(text);
            return true;
        }
        catch (final IllegalArgumentException e)
        {
            return false;
        }
    }

    /** Text like {@code ::ffff:192.0.2.1} that failed as IPv6: an IPv4 address in IPv6 clothing. */
    private static boolean endsInDottedQuad(final String text)
    {
        final int colon = text == null ? -1 : text.lastIndexOf(':');
        return colon >= 0 && Ipv4Address.isIpv4(text.substring(colon + 1));
    }
}
