package dev.egressd.core.model;

/**
 * An IPv4 address held as its 32 bits, so hot paths can key on an {@code int}.
 *
 * @param bits the address in network order packed into an int (192.0.2.1 is 0xC0000201).
 */
public record Ipv4Address(int bits) implements Comparable<Ipv4Address>
{
    /**
     * Parses dotted-quad text strictly: four decimal octets 0..255, no leading zeros, nothing else.
     *
     * @param text the address, e.g. {@code 203.0.113.10}.
     * @return the address.
     * @throws IllegalArgumentException if the text is not an IPv4 address.
     */
    public static Ipv4Address parse(final String text)
    {
        if (text == null)
        {
            throw new IllegalArgumentException("not an IPv4 address: null");
        }
        int bits = 0;
        int octets = 0;
        int value = -1;
        int digits = 0;
        for (int i = 0, n = text.length(); i <= n; i++)
        {
            final char c = i < n ? text.charAt(i) : '.';
            if (c >= '0' && c <= '9')
            {
                if (digits > 0 && value == 0)
                {
                    throw new IllegalArgumentException("not an IPv4 address (leading zero): " + text);
                }
                value = (value < 0 ? 0 : value * 10) + (c - '0');
                if (++digits > 3 || value > 255)
                {
                    throw new IllegalArgumentException("not an IPv4 address: " + text);
                }
            }
            else if (c == '.' && digits > 0 && octets < 4)
            {
                bits = (bits << 8) | value;
                octets++;
                value = -1;
                digits = 0;
            }
            else
            {
                throw new IllegalArgumentException("not an IPv4 address: " + text);
            }
        }
        if (octets != 4)
        {
            throw new IllegalArgumentException("not an IPv4 address: " + text);
        }
        return new Ipv4Address(bits);
    }

    /**
     * Whether the text looks like IPv4 (dotted quad) rather than IPv6, to name the right family in errors.
     *
     * @param text any text.
     * @return true if it parses as IPv4.
     */
    public static boolean isIpv4(final String text)
    {
        try
        {
            parse(text);
            return true;
        }
        catch (final IllegalArgumentException e)
        {
            return false;
        }
    }

    /**
     * The address as four bytes in network order.
     *
     * @return a new array of 4 bytes.
     */
    public byte[] toBytes()
    {
        return new byte[] {(byte)(bits >>> 24), (byte)(bits >>> 16), (byte)(bits >>> 8), (byte)bits};
    }

    @Override
    public int compareTo(final Ipv4Address other)
    {
        return Integer.compareUnsigned(bits, other.bits);
    }

    @Override
    public String toString()
    {
        return (bits >>> 24) + "." + ((bits >>> 16) & 0xFF) + "." + ((bits >>> 8) & 0xFF) + "." + (bits & 0xFF);
    }
}
