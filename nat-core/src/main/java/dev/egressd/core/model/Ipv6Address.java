package dev.egressd.core.model;

import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.UnknownHostException;

/**
 * An IPv6 address held as two longs, so hot paths can key on primitives.
 *
 * @param high the first 64 bits.
 * @param low  the last 64 bits.
 */
public record Ipv6Address(long high, long low) implements Comparable<Ipv6Address>
{
    /**
     * Parses IPv6 text (any RFC 4291 form, no zone, no brackets). IPv4-mapped addresses are refused:
     * an IPv4 address belongs in an IPv4 field.
     *
     * @param text the address, e.g. {@code 2001:db8::10}.
     * @return the address.
     * @throws IllegalArgumentException if the text is not an IPv6 address.
     */
    public static Ipv6Address parse(final String text)
    {
        if (text == null || text.indexOf(':') < 0 || text.indexOf('%') >= 0 || text.indexOf('[') >= 0)
        {
            throw new IllegalArgumentException("not an IPv6 address: " + text);
        }
        final InetAddress address;
        try
        {
            // Brackets make the JDK treat the text as a literal only: it never asks a resolver.
            address = InetAddress.getByName("[" + text + "]");
        }
        catch (final UnknownHostException e)
        {
            throw new IllegalArgumentException("not an IPv6 address: " + text, e);
        }
        if (!(address instanceof Inet6Address))
        {
            throw new IllegalArgumentException("not an IPv6 address (IPv4-mapped): " + text);
        }
        return fromBytes(address.getAddress());
    }

    /**
     * Builds the address from its 16 bytes in network order.
     *
     * @param bytes 16 bytes.
     * @return the address.
     */
    public static Ipv6Address fromBytes(final byte[] bytes)
    {
        if (bytes.length != 16)
        {
            throw new IllegalArgumentException("an IPv6 address has 16 bytes, not " + bytes.length);
        }
        long high = 0;
        long low = 0;
        for (int i = 0; i < 8; i++)
        {
            high = (high << 8) | (bytes[i] & 0xFF);
            low = (low << 8) | (bytes[i + 8] & 0xFF);
        }
        return new Ipv6Address(high, low);
    }

    /**
     * The address as 16 bytes in network order.
     *
     * @return a new array of 16 bytes.
     */
    public byte[] toBytes()
    {
        final byte[] bytes = new byte[16];
        for (int i = 0; i < 8; i++)
        {
            bytes[i] = (byte)(high >>> (56 - 8 * i));
            bytes[i + 8] = (byte)(low >>> (56 - 8 * i));
        }
        return bytes;
    }

    @Override
    public int compareTo(final Ipv6Address other)
    {
        final int c = Long.compareUnsigned(high, other.high);
        return c != 0 ? c : Long.compareUnsigned(low, other.low);
    }

    /** The RFC 5952 canonical text form: lower case, longest run of zero groups as {@code ::}. */
    @Override
    public String toString()
    {
        final int[] groups = new int[8];
        for (int i = 0; i < 4; i++)
        {
            groups[i] = (int)(high >>> (48 - 16 * i)) & 0xFFFF;
            groups[i + 4] = (int)(low >>> (48 - 16 * i)) & 0xFFFF;
        }
        int bestStart = -1;
        int bestLength = 1;
        for (int i = 0; i < 8; )
        {
            if (groups[i] != 0)
            {
                i++;
                continue;
            }
            int j = i;
            while (j < 8 && groups[j] == 0)
            {
                j++;
            }
            if (j - i > bestLength)
            {
                bestStart = i;
                bestLength = j - i;
            }
            i = j;
        }
        final StringBuilder sb = new StringBuilder(39);
        for (int i = 0; i < 8; i++)
        {
            if (i == bestStart)
            {
                sb.append("::");
                i += bestLength - 1;
                continue;
            }
            if (sb.length() > 0 && sb.charAt(sb.length() - 1) != ':')
            {
                sb.append(':');
            }
            sb.append(Integer.toHexString(groups[i]));
        }
        return sb.toString();
    }
}
