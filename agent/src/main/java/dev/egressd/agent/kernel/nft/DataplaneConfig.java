package dev.egressd.agent.kernel.nft;

import java.util.regex.Pattern;

/**
 * What the nft table is called and which interfaces it treats as what.
 *
 * @param table                 the name of egressd's {@code inet} table (an nft identifier).
 * @param uplink                the uplink interface: guest flows leaving through it are NATed and capped.
 * @param guestInterfacePattern the guest interfaces: a name or a prefix ending in {@code *}, e.g.
 *                              {@code tap-*} (nft's only wildcard form for interface names).
 * @param destinationCap        the most concurrent connections one guest may hold to one destination IP;
 *                              the next one is refused (docs/design.md, invariant 5).
 */
public record DataplaneConfig(String table, String uplink, String guestInterfacePattern, int destinationCap)
{
    /** The default table name. */
    public static final String DEFAULT_TABLE = "egressd";
    /** The default guest interface pattern (Firecracker-style taps). */
    public static final String DEFAULT_GUEST_PATTERN = "tap-*";
    /** The default destination cap (the 1025th connection is refused). */
    public static final int DEFAULT_DESTINATION_CAP = 1024;
    /** IFNAMSIZ is 16 in {@code <linux/if.h>}, including the NUL: 15 characters at most. */
    public static final int MAX_IFNAME_LENGTH = 15;

    // nft identifiers: a letter then letters, digits, underscores (stricter than nft, never needs quoting).
    private static final Pattern IDENTIFIER = Pattern.compile("[A-Za-z][A-Za-z0-9_]{0,63}");
    // Linux dev_valid_name forbids '/', ':' and whitespace; we also keep out quotes and backslashes,
    // which would break out of nft's "..." string.
    private static final Pattern IFNAME = Pattern.compile("[A-Za-z0-9_.@+-]{1,15}");

    /**
     * Validates the fields.
     *
     * @throws IllegalArgumentException naming the bad field.
     */
    public DataplaneConfig
    {
        if (table == null || !IDENTIFIER.matcher(table).matches())
        {
            throw new IllegalArgumentException("table: not an nft identifier (letter, then letters, digits, _; "
                + "at most 64): " + table);
        }
        checkIfname("uplink", uplink);
        if (guestInterfacePattern == null || guestInterfacePattern.isEmpty())
        {
            throw new IllegalArgumentException("guestInterfacePattern: must not be empty");
        }
        final String prefix = guestInterfacePattern.endsWith("*")
            ? guestInterfacePattern.substring(0, guestInterfacePattern.length() - 1) : guestInterfacePattern;
        if (prefix.isEmpty() || prefix.length() > MAX_IFNAME_LENGTH || !IFNAME.matcher(prefix).matches()
            || prefix.contains("*"))
        {
            throw new IllegalArgumentException("guestInterfacePattern: must be an interface name of at most "
                + MAX_IFNAME_LENGTH + " characters, optionally ending in '*': " + guestInterfacePattern);
        }
        if (uplinkMatches(uplink, guestInterfacePattern))
        {
            throw new IllegalArgumentException("uplink: " + uplink + " matches guestInterfacePattern "
                + guestInterfacePattern);
        }
        if (destinationCap < 1)
        {
            throw new IllegalArgumentException("destinationCap: must be at least 1, was " + destinationCap);
        }
    }

    /**
     * A configuration with the default table, pattern and cap.
     *
     * @param uplink the uplink interface.
     * @return the configuration.
     */
    public static DataplaneConfig defaults(final String uplink)
    {
        return new DataplaneConfig(DEFAULT_TABLE, uplink, DEFAULT_GUEST_PATTERN, DEFAULT_DESTINATION_CAP);
    }

    /**
     * Checks an interface name the way the kernel and nft's quoting need it.
     *
     * @param field the field name, for the message.
     * @param name  the interface name.
     * @throws IllegalArgumentException naming the field.
     */
    public static void checkIfname(final String field, final String name)
    {
        if (name == null || !IFNAME.matcher(name).matches() || name.equals(".") || name.equals(".."))
        {
            throw new IllegalArgumentException(field + ": not an interface name (1-" + MAX_IFNAME_LENGTH
                + " of A-Z a-z 0-9 _ . @ + -): " + name);
        }
    }

    private static boolean uplinkMatches(final String uplink, final String pattern)
    {
        return pattern.endsWith("*") ? uplink.startsWith(pattern.substring(0, pattern.length() - 1))
            : uplink.equals(pattern);
    }
}
