package dev.egressd.agent.conntrack;

import dev.egressd.agent.conntrack.ctnetlink.GuestPrefixes;

/**
 * Guest address to ledger machine handle, IPv4 as an {@code int}, IPv6 as two longs: open addressing, linear
 * probing, power-of-two tables at most half full, so a lookup of the conntrack event path is a few array reads and
 * allocates nothing. Made whole ({@link Builder}), as a copy of another with the addresses that changed put or
 * removed ({@link #edit}: a copy of four primitive arrays and O(what changed), where a build hashes every machine
 * again), or changed where it is ({@link #editInPlace}: O(what changed) alone; at 4,000 machines the copy was about
 * 450 KB per registration). The conntrack monitor's registry edits its index in place, on the monitor thread, which
 * is also the only thread that reads it and takes the edited index in the same turn.
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
    private final int size4;
    private final int size6;

    private GuestIndex(final int[] keys4, final int[] values4, final long[] keys6, final int[] values6,
        final int size4, final int size6)
    {
        this.keys4 = keys4;
        this.values4 = values4;
        this.keys6 = keys6;
        this.values6 = values6;
        this.mask4 = values4.length - 1;
        this.mask6 = values6.length - 1;
        this.size4 = size4;
        this.size6 = size6;
    }

    /**
     * A copy of this index to change (this one stays as it is: the monitor thread may be reading it).
     *
     * @return the editor.
     */
    Editor edit()
    {
        return new Editor(this, true);
    }

    /**
     * An editor of this index's own arrays: this index changes with it (until a table grows, when the editor moves
     * to new arrays and this one keeps the old). Only for an owner that reads nothing but the index the editor
     * builds, on the thread that edits.
     *
     * @return the editor.
     */
    Editor editInPlace()
    {
        return new Editor(this, false);
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
            int size4 = 0;
            for (int j = 0; j < n4; j++)
            {
                int i = hash(a4[j] & 0xFFFF_FFFFL) & (c4 - 1);
                while (values4[i] != 0 && keys4[i] != a4[j])
                {
                    i = (i + 1) & (c4 - 1);
                }
                size4 += values4[i] == 0 ? 1 : 0;
                keys4[i] = a4[j];
                values4[i] = h4[j] + 1;
            }
            final int c6 = capacityFor(n6);
            final long[] keys6 = new long[2 * c6];
            final int[] values6 = new int[c6];
            int size6 = 0;
            for (int j = 0; j < n6; j++)
            {
                final long high = a6[2 * j];
                final long low = a6[2 * j + 1];
                int i = hash(high * 31 + low) & (c6 - 1);
                while (values6[i] != 0 && !(keys6[2 * i] == high && keys6[2 * i + 1] == low))
                {
                    i = (i + 1) & (c6 - 1);
                }
                size6 += values6[i] == 0 ? 1 : 0;
                keys6[2 * i] = high;
                keys6[2 * i + 1] = low;
                values6[i] = h6[j] + 1;
            }
            return new GuestIndex(keys4, values4, keys6, values6, size4, size6);
        }
    }

    /**
     * A copy of an index changed address by address, then made into a new index ({@link #build}); the table doubles
     * when it would be more than half full. A removal shifts the entries of its probe run back (no tombstones), so
     * a lookup stays a few reads however many changes the index went through.
     */
    static final class Editor
    {
        private int[] keys4;
        private int[] values4;
        private long[] keys6;
        private int[] values6;
        private int size4;
        private int size6;

        private Editor(final GuestIndex from, final boolean copy)
        {
            keys4 = copy ? from.keys4.clone() : from.keys4;
            values4 = copy ? from.values4.clone() : from.values4;
            keys6 = copy ? from.keys6.clone() : from.keys6;
            values6 = copy ? from.values6.clone() : from.values6;
            size4 = from.size4;
            size6 = from.size6;
        }

        /**
         * Maps an IPv4 guest address to a machine (replacing what it mapped to).
         *
         * @param address the address bits.
         * @param handle  the machine's handle.
         * @return this.
         */
        Editor put4(final int address, final int handle)
        {
            if (2 * (size4 + 1) > values4.length)
            {
                final int[] k = keys4;
                final int[] v = values4;
                keys4 = new int[2 * v.length];
                values4 = new int[2 * v.length];
                size4 = 0;
                for (int i = 0; i < v.length; i++)
                {
                    if (v[i] != 0)
                    {
                        put4(k[i], v[i] - 1);
                    }
                }
            }
            final int mask = values4.length - 1;
            int i = hash(address & 0xFFFF_FFFFL) & mask;
            while (values4[i] != 0 && keys4[i] != address)
            {
                i = (i + 1) & mask;
            }
            size4 += values4[i] == 0 ? 1 : 0;
            keys4[i] = address;
            values4[i] = handle + 1;
            return this;
        }

        /**
         * Unmaps an IPv4 guest address if it maps to that machine.
         *
         * @param address the address bits.
         * @param handle  the machine's handle.
         * @return this.
         */
        Editor remove4(final int address, final int handle)
        {
            final int mask = values4.length - 1;
            int i = hash(address & 0xFFFF_FFFFL) & mask;
            while (values4[i] != 0 && keys4[i] != address)
            {
                i = (i + 1) & mask;
            }
            if (values4[i] != handle + 1)
            {
                return this;
            }
            values4[i] = 0;
            size4--;
            // shift back every later entry of the run that may not stay behind the hole
            for (int j = (i + 1) & mask; values4[j] != 0; j = (j + 1) & mask)
            {
                final int home = hash(keys4[j] & 0xFFFF_FFFFL) & mask;
                if (((j - home) & mask) >= ((j - i) & mask))
                {
                    keys4[i] = keys4[j];
                    values4[i] = values4[j];
                    values4[j] = 0;
                    i = j;
                }
            }
            return this;
        }

        /**
         * Maps an IPv6 guest address to a machine (replacing what it mapped to).
         *
         * @param high    the first 64 bits.
         * @param low     the last 64 bits.
         * @param handle  the machine's handle.
         * @return this.
         */
        Editor put6(final long high, final long low, final int handle)
        {
            if (2 * (size6 + 1) > values6.length)
            {
                final long[] k = keys6;
                final int[] v = values6;
                keys6 = new long[4 * v.length];
                values6 = new int[2 * v.length];
                size6 = 0;
                for (int i = 0; i < v.length; i++)
                {
                    if (v[i] != 0)
                    {
                        put6(k[2 * i], k[2 * i + 1], v[i] - 1);
                    }
                }
            }
            final int mask = values6.length - 1;
            int i = hash(high * 31 + low) & mask;
            while (values6[i] != 0 && !(keys6[2 * i] == high && keys6[2 * i + 1] == low))
            {
                i = (i + 1) & mask;
            }
            size6 += values6[i] == 0 ? 1 : 0;
            keys6[2 * i] = high;
            keys6[2 * i + 1] = low;
            values6[i] = handle + 1;
            return this;
        }

        /**
         * Unmaps an IPv6 guest address if it maps to that machine.
         *
         * @param high    the first 64 bits.
         * @param low     the last 64 bits.
         * @param handle  the machine's handle.
         * @return this.
         */
        Editor remove6(final long high, final long low, final int handle)
        {
            final int mask = values6.length - 1;
            int i = hash(high * 31 + low) & mask;
            while (values6[i] != 0 && !(keys6[2 * i] == high && keys6[2 * i + 1] == low))
            {
                i = (i + 1) & mask;
            }
            if (values6[i] != handle + 1)
            {
                return this;
            }
            values6[i] = 0;
            size6--;
            for (int j = (i + 1) & mask; values6[j] != 0; j = (j + 1) & mask)
            {
                final int home = hash(keys6[2 * j] * 31 + keys6[2 * j + 1]) & mask;
                if (((j - home) & mask) >= ((j - i) & mask))
                {
                    keys6[2 * i] = keys6[2 * j];
                    keys6[2 * i + 1] = keys6[2 * j + 1];
                    values6[i] = values6[j];
                    values6[j] = 0;
                    i = j;
                }
            }
            return this;
        }

        /**
         * The index (the editor is not to be used after).
         *
         * @return the index.
         */
        GuestIndex build()
        {
            return new GuestIndex(keys4, values4, keys6, values6, size4, size6);
        }
    }
}
