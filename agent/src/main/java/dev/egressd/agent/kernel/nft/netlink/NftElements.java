package dev.egressd.agent.kernel.nft.netlink;

import java.nio.charset.StandardCharsets;

/**
 * egressd's element layouts as the kernel stores them, the bytes {@code nft --debug=netlink add element}
 * prints: addresses in network order; an {@code ifname} key part as 16 bytes, the name NUL-padded; an
 * {@code inet_service} (port) as 2 bytes big-endian padded to 4, since every part of a concatenation
 * takes a whole number of 32-bit registers.
 *
 * <ul>
 *   <li>{@code ipv4_addr : interval ipv4_addr . inet_service}: 16 bytes of data,
 *       {@code [addr 4][port_min 4][addr 4][port_max 4]}: the range's low end (address, first port), then
 *       its high end.</li>
 *   <li>{@code ipv6_addr : interval ipv6_addr . inet_service}: 40 bytes,
 *       {@code [addr 16][port_min 4][addr 16][port_max 4]}.</li>
 * </ul>
 */
public final class NftElements
{
    /** IFNAMSIZ: the width of an {@code ifname} key part. */
    public static final int IFNAME_BYTES = 16;
    /** The data of an IPv4 address-and-port-range map element. */
    public static final int SNAT4_DATA_BYTES = 16;
    /** The data of an IPv6 address-and-port-range map element. */
    public static final int SNAT6_DATA_BYTES = 40;

    private NftElements()
    {
    }

    /**
     * An IPv4 address key.
     *
     * @param address the address as an int (network order's value).
     * @return 4 bytes.
     */
    public static byte[] ipv4(final int address)
    {
        final byte[] b = new byte[4];
        putInt(b, 0, address);
        return b;
    }

    /**
     * An IPv6 address key.
     *
     * @param high the first 64 bits.
     * @param low  the last 64 bits.
     * @return 16 bytes.
     */
    public static byte[] ipv6(final long high, final long low)
    {
        final byte[] b = new byte[16];
        putLong(b, 0, high);
        putLong(b, 8, low);
        return b;
    }

    /**
     * An {@code ifname . ipv4_addr} key.
     *
     * @param ifname  the interface name (1..15 bytes of ASCII).
     * @param address the address.
     * @return 20 bytes.
     */
    public static byte[] ifnameIpv4(final String ifname, final int address)
    {
        final byte[] b = new byte[IFNAME_BYTES + 4];
        putIfname(b, ifname);
        putInt(b, IFNAME_BYTES, address);
        return b;
    }

    /**
     * An {@code ifname . ipv6_addr} key.
     *
     * @param ifname the interface name.
     * @param high   the address's first 64 bits.
     * @param low    its last 64 bits.
     * @return 32 bytes.
     */
    public static byte[] ifnameIpv6(final String ifname, final long high, final long low)
    {
        final byte[] b = new byte[IFNAME_BYTES + 16];
        putIfname(b, ifname);
        putLong(b, IFNAME_BYTES, high);
        putLong(b, IFNAME_BYTES + 8, low);
        return b;
    }

    /**
     * The data of an IPv4 SNAT map element: one egress address and a port block.
     *
     * @param egress    the egress address.
     * @param firstPort the first port.
     * @param lastPort  the last port.
     * @return 16 bytes.
     */
    public static byte[] snat4(final int egress, final int firstPort, final int lastPort)
    {
        checkPorts(firstPort, lastPort);
        final byte[] b = new byte[SNAT4_DATA_BYTES];
        putInt(b, 0, egress);
        putPort(b, 4, firstPort);
        putInt(b, 8, egress);
        putPort(b, 12, lastPort);
        return b;
    }

    /**
     * The data of an IPv6 SNAT map element.
     *
     * @param high      the egress address's first 64 bits.
     * @param low       its last 64 bits.
     * @param firstPort the first port.
     * @param lastPort  the last port.
     * @return 40 bytes.
     */
    public static byte[] snat6(final long high, final long low, final int firstPort, final int lastPort)
    {
        checkPorts(firstPort, lastPort);
        final byte[] b = new byte[SNAT6_DATA_BYTES];
        putLong(b, 0, high);
        putLong(b, 8, low);
        putPort(b, 16, firstPort);
        putLong(b, 20, high);
        putLong(b, 28, low);
        putPort(b, 36, lastPort);
        return b;
    }

    /**
     * A network-order u32 at an offset (an IPv4 address).
     *
     * @param b   the bytes.
     * @param off the offset.
     * @return the value.
     */
    public static int getInt(final byte[] b, final int off)
    {
        return (b[off] & 0xFF) << 24 | (b[off + 1] & 0xFF) << 16 | (b[off + 2] & 0xFF) << 8 | b[off + 3] & 0xFF;
    }

    /**
     * A network-order u64 at an offset (half an IPv6 address).
     *
     * @param b   the bytes.
     * @param off the offset.
     * @return the value.
     */
    public static long getLong(final byte[] b, final int off)
    {
        return (long)getInt(b, off) << 32 | getInt(b, off + 4) & 0xFFFFFFFFL;
    }

    /**
     * A port stored as {@code inet_service} (2 bytes big-endian, padded to 4).
     *
     * @param b   the bytes.
     * @param off the offset.
     * @return 0..65535.
     */
    public static int getPort(final byte[] b, final int off)
    {
        return (b[off] & 0xFF) << 8 | b[off + 1] & 0xFF;
    }

    /**
     * The interface name of an {@code ifname} key part.
     *
     * @param b the key.
     * @return the name up to its first NUL.
     */
    public static String getIfname(final byte[] b)
    {
        int n = 0;
        while (n < IFNAME_BYTES && n < b.length && b[n] != 0)
        {
            n++;
        }
        return new String(b, 0, n, StandardCharsets.US_ASCII);
    }

    static void checkBytes(final String field, final byte[] bytes)
    {
        if (bytes == null || bytes.length == 0 || bytes.length > 64)
        {
            throw new IllegalArgumentException(field + ": " + (bytes == null ? "null" : bytes.length + " bytes")
                + ", not 1..64 bytes");
        }
    }

    private static void checkPorts(final int firstPort, final int lastPort)
    {
        if (firstPort < 0 || lastPort > 65535 || firstPort > lastPort)
        {
            throw new IllegalArgumentException("ports: " + firstPort + "-" + lastPort
                + " is not a port range (0 <= first <= last <= 65535)");
        }
    }

    private static void putIfname(final byte[] b, final String ifname)
    {
        if (ifname == null || ifname.isEmpty() || ifname.length() >= IFNAME_BYTES || !ifname.matches("[!-~]+"))
        {
            throw new IllegalArgumentException("ifname: '" + ifname + "' is not 1..15 printable ASCII characters");
        }
        for (int i = 0; i < ifname.length(); i++)
        {
            b[i] = (byte)ifname.charAt(i);
        }
    }

    private static void putPort(final byte[] b, final int off, final int port)
    {
        b[off] = (byte)(port >>> 8);
        b[off + 1] = (byte)port;
    }

    private static void putInt(final byte[] b, final int off, final int v)
    {
        b[off] = (byte)(v >>> 24);
        b[off + 1] = (byte)(v >>> 16);
        b[off + 2] = (byte)(v >>> 8);
        b[off + 3] = (byte)v;
    }

    private static void putLong(final byte[] b, final int off, final long v)
    {
        putInt(b, off, (int)(v >>> 32));
        putInt(b, off + 4, (int)v);
    }
}
