package dev.egressd.agent.conntrack;

import dev.egressd.agent.conntrack.ctnetlink.GuestPrefixes;

/**
 * Guest address to ledger machine handle, IPv4 as an {@code int}, IPv6 as two longs: open addressing, linear
 * probing, power-of-two tables at most half full, so a lookup of the conntrack event path is a few array reads and
 * allocates nothing. Built once per change of the machines (on the control loop thread) and then only read (on the
 * conntrack monitor thread, after a safe hand-over through a queue), so it is immutable after {@link #build}.
 */
final class GuestIndex
{
    /** No machine has this address. */
    static final int MISSING = -1;

    static final GuestIndex EMPTY = new Builder().build();

    private static final long GOLDEN = 0x9E3779B97F4A7C15L;

    private final int[] keys4;
    private final int[] values4;   // handle + 1; 0 = empty slot
    private final long[] keys6;    // [2i] high, [2i+1] low
    private final int[] values6;   // handle + 1; 0 = empty slot
    private final int mask4;
    private final int mask6;

    private GuestIndex(final int[] keys4, final int[] values4, final long[] keys6, final int[] values6)
    {
        this.keys4 = keys4;
        this.values4 = values4;
        this.keys6 = keys6;
        this.values6 = values6;
        this.mask4 = values4.length - 1;
        this.mask6 = values6.length - 1;
    }

    /**
     * The machine holding an IPv4 guest address.
     *
     * @param address the address bits.
     * @return its handle, or {@link #MISSING}.
     */
    int handle4(final int address)
    {
        final int[] keys = keys4;
        final int[] values = values4;
        final int mask = mask4;
        int i = hash(address & 0xFFFF_FFFFL) & mask;
        int v;
        while ((v = values[i]) != 0)
        {
            if (keys[i] == address)
            {
                return v - 1;
            }
            i = (i + 1) & mask;
        }
        return MISSING;
    }

    /**
     * The machine holding an IPv6 guest address.
     *
     * @param high the first 64 bits.
     * @param low  the last 64 bits.
     * @return its handle, or {@link #MISSING}.
     */
    int handle6(final long high, final long low)
    {
        final long[] keys = keys6;
        final int[] values = values6;
        final int mask = mask6;
        int i = hash(high * 31 + low) & mask;
        int v;
        while ((v = values[i]) != 0)
        {
            if (keys[2 * i] == high && keys[2 * i + 1] == low)
            {
                return v - 1;
            }
            i = (i + 1) & mask;
        }
        return MISSING;
    }

    /**
     * The cover of every address in the index, for the kernel-side event filter.
     *
     * @param max the most prefixes per family.
     * @return the cover.
     */
    GuestPrefixes cover(final int max)
    {
        final int[] v4 = new int[values4.length];
        int n4 = 0;
        for (int i = 0; i < values4.length; i++)
        {
            if (values4[i] != 0)
            {
                v4[n4++] = keys4[i];
            }
        }
        final long[] v6 = new long[keys6.length];
        int n6 = 0;
        for (int i = 0; i < values6.length; i++)
        {
            if (values6[i] != 0)
            {
                v6[2 * n6] = keys6[2 * i];
                v6[2 * n6 + 1] = keys6[2 * i + 1];
                n6++;
            }
        }
        return GuestPrefixes.cover(v4, n4, v6, n6, max);
    }

    private static int hash(final long key)
    {
        return (int)((key * GOLDEN) >>> 32);
    }

    private static int capacityFor(final int n)
    {
        final int want = Math.max(4, n * 2);
        return Integer.highestOneBit(want - 1) << 1;
    }

    /** Collects addresses, then builds the index. */
    static final class Builder
    {
        private int[] a4 = new int[8];
        private int[] h4 = new int[8];
        private int n4;
        private long[] a6 = new long[16];
        private int[] h6 = new int[8];
        private int n6;

        Builder add4(final int address, final int handle)
        {
            if (n4 == h4.length)
            {
                a4 = java.util.Arrays.copyOf(a4, n4 * 2);
                h4 = java.util.Arrays.copyOf(h4, n4 * 2);
            }
            a4[n4] = address;
            h4[n4++] = handle;
            return this;
        }

        Builder add6(final long high, final long low, final int handle)
        {
            if (n6 == h6.length)
            {
                a6 = java.util.Arrays.copyOf(a6, n6 * 4);
                h6 = java.util.Arrays.copyOf(h6, n6 * 2);
            }
            a6[2 * n6] = high;
            a6[2 * n6 + 1] = low;
            h6[n6++] = handle;
            return this;
        }

        GuestIndex build()
        {
            final int c4 = capacityFor(n4);
            final int[] keys4 = new int[c4];
            final int[] values4 = new int[c4];
            for (int j = 0; j < n4; j++)
            {
                int i = hash(a4[j] & 0xFFFF_FFFFL) & (c4 - 1);
                while (values4[i] != 0 && keys4[i] != a4[j])
                {
                    i = (i + 1) & (c4 - 1);
                }
                keys4[i] = a4[j];
                values4[i] = h4[j] + 1;
            }
            final int c6 = capacityFor(n6);
            final long[] keys6 = new long[2 * c6];
            final int[] values6 = new int[c6];
            for (int j = 0; j < n6; j++)
            {
                final long high = a6[2 * j];
                final long low = a6[2 * j + 1];
                int i = hash(high * 31 + low) & (c6 - 1);
                while (values6[i] != 0 && !(keys6[2 * i] == high && keys6[2 * i + 1] == low))
                {
                    i = (i + 1) & (c6 - 1);
                }
                keys6[2 * i] = high;
                keys6[2 * i + 1] = low;
                values6[i] = h6[j] + 1;
            }
            return new GuestIndex(keys4, values4, keys6, values6);
        }
    }
}
