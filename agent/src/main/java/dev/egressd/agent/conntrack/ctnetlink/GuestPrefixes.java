package dev.egressd.agent.conntrack.ctnetlink;

import java.util.Arrays;

/**
 * A few prefixes that cover every guest address: what the kernel-side event filter compares a flow's original
 * source with. A cover, not an exact set: a classic BPF program holds at most 4,096 instructions, so thousands of
 * guests become at most {@code max} prefixes per family, all of one length per family, the longest length that
 * needs no more than {@code max} of them (4,000 guests numbered from one /20 need 63 /26s). Addresses the cover
 * takes in that are no guest's are dropped again in Java by the guest index; an address it misses cannot exist.
 * Immutable.
 */
public final class GuestPrefixes
{
    /** At most this many prefixes per family by default (the program stays well under BPF_MAXINSNS). */
    public static final int DEFAULT_MAX = 128;

    /** No guest addresses: the filter drops every event that names a source. */
    public static final GuestPrefixes EMPTY = new GuestPrefixes(new int[0], 32, new long[0], new long[0], 128);

    private final int[] nets4;
    private final int len4;
    private final long[] high6;
    private final long[] low6;
    private final int len6;

    private GuestPrefixes(final int[] nets4, final int len4, final long[] high6, final long[] low6, final int len6)
    {
        this.nets4 = nets4;
        this.len4 = len4;
        this.high6 = high6;
        this.low6 = low6;
        this.len6 = len6;
    }

    /**
     * The cover of the addresses.
     *
     * @param v4  IPv4 addresses (as {@code Ipv4Address.bits()}), the first {@code n4} used; order and duplicates free.
     * @param n4  how many.
     * @param v6  IPv6 addresses as high, low pairs, the first {@code 2 * n6} used.
     * @param n6  how many.
     * @param max the most prefixes per family, at least 1.
     * @return the cover.
     */
    public static GuestPrefixes cover(final int[] v4, final int n4, final long[] v6, final int n6, final int max)
    {
        if (max < 1)
        {
            throw new IllegalArgumentException("max must be at least 1, not " + max);
        }
        final long[] a4 = new long[n4];
        for (int i = 0; i < n4; i++)
        {
            a4[i] = v4[i] & 0xFFFF_FFFFL;
        }
        Arrays.sort(a4);
        final int[] common4 = new int[Math.max(0, n4 - 1)];
        for (int i = 1; i < n4; i++)
        {
            common4[i - 1] = Long.numberOfLeadingZeros(a4[i] ^ a4[i - 1]) - 32;
        }
        final int len4 = length(common4, 32, max);
        final int[] nets4 = new int[n4];
        int m4 = 0;
        for (int i = 0; i < n4; i++)
        {
            final int net = (int)a4[i] & mask32(len4);
            if (m4 == 0 || nets4[m4 - 1] != net)
            {
                nets4[m4++] = net;
            }
        }

        final Integer[] order = new Integer[n6];
        for (int i = 0; i < n6; i++)
        {
            order[i] = i;
        }
        Arrays.sort(order, (x, y) ->
        {
            final int c = Long.compareUnsigned(v6[2 * x], v6[2 * y]);
            return c != 0 ? c : Long.compareUnsigned(v6[2 * x + 1], v6[2 * y + 1]);
        });
        final int[] common6 = new int[Math.max(0, n6 - 1)];
        for (int i = 1; i < n6; i++)
        {
            final long h = v6[2 * order[i]] ^ v6[2 * order[i - 1]];
            final long l = v6[2 * order[i] + 1] ^ v6[2 * order[i - 1] + 1];
            common6[i - 1] = h != 0 ? Long.numberOfLeadingZeros(h) : 64 + Long.numberOfLeadingZeros(l);
        }
        final int len6 = length(common6, 128, max);
        final long[] high6 = new long[n6];
        final long[] low6 = new long[n6];
        int m6 = 0;
        for (int i = 0; i < n6; i++)
        {
            final long h = v6[2 * order[i]] & maskHigh(len6);
            final long l = v6[2 * order[i] + 1] & maskLow(len6);
            if (m6 == 0 || high6[m6 - 1] != h || low6[m6 - 1] != l)
            {
                high6[m6] = h;
                low6[m6++] = l;
            }
        }
        return new GuestPrefixes(Arrays.copyOf(nets4, m4), len4, Arrays.copyOf(high6, m6), Arrays.copyOf(low6, m6),
            len6);
    }

    /**
     * This cover taking in more addresses at the same prefix lengths: a network added for each address outside it,
     * O(prefixes) per address where {@link #cover} sorts every address. Not the longest lengths {@link #cover} would
     * choose for all the addresses, but a cover of them all within {@code max}.
     *
     * @param v4  IPv4 addresses, the first {@code n4} used.
     * @param n4  how many.
     * @param v6  IPv6 addresses as high, low pairs, the first {@code 2 * n6} used.
     * @param n6  how many.
     * @param max the most prefixes per family.
     * @return the wider cover (this one if it holds them all), or null when it would need more than {@code max}
     *     prefixes in a family (a cover of all the addresses is to be built then).
     */
    public GuestPrefixes widen(final int[] v4, final int n4, final long[] v6, final int n6, final int max)
    {
        int[] nets = nets4;
        for (int i = 0; i < n4; i++)
        {
            final int net = v4[i] & mask32(len4);
            // ascending as unsigned, as cover() leaves them
            int at = 0;
            while (at < nets.length && Integer.compareUnsigned(nets[at], net) < 0)
            {
                at++;
            }
            if (at < nets.length && nets[at] == net)
            {
                continue;
            }
            if (nets.length == max)
            {
                return null;
            }
            final int[] grown = new int[nets.length + 1];
            System.arraycopy(nets, 0, grown, 0, at);
            grown[at] = net;
            System.arraycopy(nets, at, grown, at + 1, nets.length - at);
            nets = grown;
        }
        long[] highs = high6;
        long[] lows = low6;
        for (int i = 0; i < n6; i++)
        {
            final long h = v6[2 * i] & maskHigh(len6);
            final long l = v6[2 * i + 1] & maskLow(len6);
            int at = 0;
            while (at < highs.length && (Long.compareUnsigned(highs[at], h) < 0
                || highs[at] == h && Long.compareUnsigned(lows[at], l) < 0))
            {
                at++;
            }
            if (at < highs.length && highs[at] == h && lows[at] == l)
            {
                continue;
            }
            if (highs.length == max)
            {
                return null;
            }
            final long[] gh = new long[highs.length + 1];
            final long[] gl = new long[lows.length + 1];
            System.arraycopy(highs, 0, gh, 0, at);
            System.arraycopy(lows, 0, gl, 0, at);
            gh[at] = h;
            gl[at] = l;
            System.arraycopy(highs, at, gh, at + 1, highs.length - at);
            System.arraycopy(lows, at, gl, at + 1, lows.length - at);
            highs = gh;
            lows = gl;
        }
        return nets == nets4 && highs == high6 ? this : new GuestPrefixes(nets, len4, highs, lows, len6);
    }

    /**
     * The longest prefix length at which the sorted addresses need at most {@code max} prefixes: with
     * {@code common[i]} the bits two neighbours share, a length L needs {@code 1 + #(common < L)} prefixes.
     */
    private static int length(final int[] common, final int bits, final int max)
    {
        if (common.length < max)
        {
            return bits;
        }
        final int[] sorted = common.clone();
        Arrays.sort(sorted);
        return Math.min(bits, sorted[max - 1]);
    }

    /** @return the IPv4 prefixes' network addresses (as {@code Ipv4Address.bits()}), ascending. */
    public int[] networks4()
    {
        return nets4.clone();
    }

    /** @return the IPv4 prefix length (one for all). */
    public int length4()
    {
        return len4;
    }

    /** @return how many IPv6 prefixes. */
    public int count6()
    {
        return high6.length;
    }

    /**
     * @param i which prefix.
     * @return the network's first 64 bits.
     */
    public long high6(final int i)
    {
        return high6[i];
    }

    /**
     * @param i which prefix.
     * @return the network's last 64 bits.
     */
    public long low6(final int i)
    {
        return low6[i];
    }

    /** @return the IPv6 prefix length (one for all). */
    public int length6()
    {
        return len6;
    }

    /**
     * Whether an IPv4 address is inside the cover.
     *
     * @param address the address bits.
     * @return true if some prefix holds it.
     */
    public boolean contains4(final int address)
    {
        final int net = address & mask32(len4);
        for (final int n : nets4)
        {
            if (n == net)
            {
                return true;
            }
        }
        return false;
    }

    /**
     * Whether an IPv6 address is inside the cover.
     *
     * @param high the first 64 bits.
     * @param low  the last 64 bits.
     * @return true if some prefix holds it.
     */
    public boolean contains6(final long high, final long low)
    {
        final long h = high & maskHigh(len6);
        final long l = low & maskLow(len6);
        for (int i = 0; i < high6.length; i++)
        {
            if (high6[i] == h && low6[i] == l)
            {
                return true;
            }
        }
        return false;
    }

    /**
     * Whether every address the other cover holds is in this one: if not, a filter switched from this cover to the
     * other lets through flows the old one dropped, and what the old one dropped meanwhile must be read again.
     *
     * @param other the other cover.
     * @return true if this holds all of it.
     */
    public boolean holdsAll(final GuestPrefixes other)
    {
        if (other.nets4.length > 0 && other.len4 < len4 || other.high6.length > 0 && other.len6 < len6)
        {
            return false;
        }
        for (final int n : other.nets4)
        {
            if (!contains4(n))
            {
                return false;
            }
        }
        for (int i = 0; i < other.high6.length; i++)
        {
            if (!contains6(other.high6[i], other.low6[i]))
            {
                return false;
            }
        }
        return true;
    }

    static int mask32(final int len)
    {
        return len == 0 ? 0 : -1 << (32 - len);
    }

    static long maskHigh(final int len)
    {
        return len == 0 ? 0 : len >= 64 ? -1L : -1L << (64 - len);
    }

    static long maskLow(final int len)
    {
        return len <= 64 ? 0 : -1L << (128 - len);
    }

    @Override
    public boolean equals(final Object o)
    {
        return o instanceof GuestPrefixes g && len4 == g.len4 && len6 == g.len6 && Arrays.equals(nets4, g.nets4)
            && Arrays.equals(high6, g.high6) && Arrays.equals(low6, g.low6);
    }

    @Override
    public int hashCode()
    {
        return Arrays.hashCode(nets4) * 31 + Arrays.hashCode(high6) * 17 + Arrays.hashCode(low6) + len4 + len6;
    }

    @Override
    public String toString()
    {
        return nets4.length + " IPv4 /" + len4 + ", " + high6.length + " IPv6 /" + len6;
    }
}
