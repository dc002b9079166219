package dev.egressd.agent.conntrack;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Objects;

/**
 * The egress addresses egressd holds (app pairs, machine-scoped pairs, addresses still draining), as sorted
 * arrays: membership tests allocate nothing. Immutable; built on the control loop's thread, read by flow hygiene on
 * the monitor thread.
 */
final class HeldAddresses
{
    static final HeldAddresses EMPTY = new HeldAddresses(new int[0], new long[0]);

    private final int[] v4;
    /** IPv6 addresses as (high, low) pairs, sorted. */
    private final long[] v6;

    private HeldAddresses(final int[] v4, final long[] v6)
    {
        this.v4 = v4;
        this.v6 = v6;
    }

    /**
     * The held addresses; nulls and duplicates are dropped, order does not matter.
     *
     * @param ipv4 the IPv4 addresses.
     * @param ipv6 the IPv6 addresses.
     * @return the set.
     */
    static HeldAddresses of(final Collection<Ipv4Address> ipv4, final Collection<Ipv6Address> ipv6)
    {
        final int[] a = ipv4.stream().filter(Objects::nonNull).mapToInt(Ipv4Address::bits).distinct().sorted()
            .toArray();
        final List<Ipv6Address> b = ipv6.stream().filter(Objects::nonNull).distinct()
            .sorted(Comparator.comparingLong(Ipv6Address::high).thenComparingLong(Ipv6Address::low)).toList();
        final long[] c = new long[b.size() * 2];
        for (int i = 0; i < b.size(); i++)
        {
            c[2 * i] = b.get(i).high();
            c[2 * i + 1] = b.get(i).low();
        }
        return new HeldAddresses(a, c);
    }

    boolean contains4(final int bits)
    {
        return Arrays.binarySearch(v4, bits) >= 0;
    }

    boolean contains6(final long high, final long low)
    {
        for (int i = 0; i < v6.length; i += 2)
        {
            if (v6[i] == high && v6[i + 1] == low)
            {
                return true;
            }
        }
        return false;
    }

    @Override
    public boolean equals(final Object o)
    {
        return o instanceof HeldAddresses h && Arrays.equals(v4, h.v4) && Arrays.equals(v6, h.v6);
    }

    @Override
    public int hashCode()
    {
        return 31 * Arrays.hashCode(v4) + Arrays.hashCode(v6);
    }

    @Override
    public String toString()
    {
        final List<String> all = new ArrayList<>();
        for (final int a : v4)
        {
            all.add(new Ipv4Address(a).toString());
        }
        for (int i = 0; i < v6.length; i += 2)
        {
            all.add(new Ipv6Address(v6[i], v6[i + 1]).toString());
        }
        return all.toString();
    }
}
