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
        final long bits = bitsOf(text);
        if (bits == LEADING_ZERO)
        {
            throw new IllegalArgumentException("not an IPv4 address (leading zero): " + text);
        }
        if (bits < 0)
        {
            throw new IllegalArgumentException("not an IPv4 address: " + text);
        }
        return new Ipv4Address((int)bits);
    }

    /** {@link #bitsOf}: not an address. */
    private static final long INVALID = -1;
    /** {@link #bitsOf}: an octet with a leading zero. */
    private static final long LEADING_ZERO = -2;

    /**
     * The strict parse of {@link #parse}, without an exception: every API request that carries an IPv6 address asks
     * {@link #isIpv4} first, and an exception's stack trace per request was a measurable part of its handling.
     *
     * @param text the text, or null.
     * @return the 32 bits (0..2^32-1), or {@link #INVALID} or {@link #LEADING_ZERO}.
     */
    private static long bitsOf(final String text)
    {
        if (text == null)
        {
            return INVALID;
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
                    return LEADING_ZERO;
                }
                value = (value < 0 ? 0 : value * 10) + (c - '0');
                if (++digits > 3 || value > 255)
                {
                    return INVALID;
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
                return INVALID;
            }
        }
        return octets == 4 ? bits & 0xFFFFFFFFL : INVALID;
    }

    /**
     * Whether the text looks like IPv4 (dotted quad) rather than IPv6, to name the right family in errors.
     *
     * @param text any text.
     * @return true if it parses as IPv4.
     */
    public static boolean isIpv4(final String text)
    {
        return bitsOf(text) >= 0;
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
