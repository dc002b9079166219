package dev.egressd.agent.conntrack.ctnetlink;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import org.junit.jupiter.api.Test;

class GuestPrefixesTest
{
    /** The guest numbering of scripts/bench-heap: 10.77.{m / 250 % 240}.{m % 250 + 1}, fd77::{m + 2}. */
    private static GuestPrefixes benchGuests(final int n, final int max)
    {
        final int[] v4 = new int[n];
        final long[] v6 = new long[2 * n];
        for (int m = 0; m < n; m++)
        {
            v4[m] = Ipv4Address.parse("10.77." + (m / 250 % 240) + "." + (m % 250 + 1)).bits();
            final Ipv6Address a = Ipv6Address.parse("fd77::" + Integer.toHexString(m + 2));
            v6[2 * m] = a.high();
            v6[2 * m + 1] = a.low();
        }
        return GuestPrefixes.cover(v4, n, v6, n, max);
    }

    @Test
    void fewAddressesAreCoveredExactly()
    {
        final int a = Ipv4Address.parse("10.77.0.2").bits();
        final int b = Ipv4Address.parse("192.0.2.9").bits();
        final Ipv6Address c = Ipv6Address.parse("fd77::2");
        final GuestPrefixes g = GuestPrefixes.cover(new int[] {b, a, a}, 3, new long[] {c.high(), c.low()}, 1, 128);
        assertThat(g.length4()).isEqualTo(32);
        assertThat(g.networks4()).containsExactly(a, b);
        assertThat(g.length6()).isEqualTo(128);
        assertThat(g.count6()).isEqualTo(1);
        assertThat(g.contains4(a)).isTrue();
        assertThat(g.contains4(a + 1)).isFalse();
        assertThat(g.contains6(c.high(), c.low())).isTrue();
        assertThat(g.contains6(c.high(), c.low() + 1)).isFalse();
    }

    @Test
    void fourThousandGuestsBecomeAFewShortPrefixesThatHoldEveryOne()
    {
        final GuestPrefixes g = benchGuests(4000, GuestPrefixes.DEFAULT_MAX);
        // 16 third octets of 250 guests each (.1 .. .250): eight /27s per octet, 128 in all; /28s would need 256
        assertThat(g.length4()).isEqualTo(27);
        assertThat(g.networks4()).hasSize(128);
        // fd77::2 .. fd77::fa1: 126 /123s (of 32 addresses); /124s would need 251
        assertThat(g.length6()).isEqualTo(123);
        assertThat(g.count6()).isEqualTo(126);
        for (int m = 0; m < 4000; m++)
        {
            assertThat(g.contains4(Ipv4Address.parse("10.77." + (m / 250 % 240) + "." + (m % 250 + 1)).bits())).isTrue();
            final Ipv6Address a = Ipv6Address.parse("fd77::" + Integer.toHexString(m + 2));
            assertThat(g.contains6(a.high(), a.low())).isTrue();
        }
        assertThat(g.contains4(Ipv4Address.parse("10.78.0.1").bits())).isFalse();
        assertThat(g.contains6(Ipv6Address.parse("fd78::2").high(), 2)).isFalse();
    }

    @Test
    void theLengthIsTheLongestThatFitsTheBudget()
    {
        for (final int max : new int[] {1, 2, 3, 7, 64, 128, 1000})
        {
            final GuestPrefixes g = benchGuests(4000, max);
            assertThat(g.networks4().length).as("max %d", max).isLessThanOrEqualTo(max);
            assertThat(g.count6()).as("max %d", max).isLessThanOrEqualTo(max);
            if (g.length4() < 32)
            {
                // one bit longer would need more than max prefixes
                final int[] nets = new int[4000];
                for (int m = 0; m < 4000; m++)
                {
                    nets[m] = Ipv4Address.parse("10.77." + (m / 250 % 240) + "." + (m % 250 + 1)).bits()
                        & GuestPrefixes.mask32(g.length4() + 1);
                }
                assertThat(java.util.Arrays.stream(nets).distinct().count()).as("max %d", max).isGreaterThan(max);
            }
        }
    }

    @Test
    void holdsAllTellsAWiderCoverFromANarrowerOne()
    {
        final GuestPrefixes small = benchGuests(10, 128);
        final GuestPrefixes big = benchGuests(4000, 128);
        assertThat(big.holdsAll(small)).isTrue();
        assertThat(small.holdsAll(big)).isFalse();
        assertThat(small.holdsAll(small)).isTrue();
        assertThat(small.holdsAll(GuestPrefixes.EMPTY)).isTrue();
        assertThat(GuestPrefixes.EMPTY.holdsAll(small)).isFalse();
        assertThat(benchGuests(10, 128)).isEqualTo(small).hasSameHashCodeAs(small);
    }

    @Test
    void aWidenedCoverHoldsTheOldOneAndTheNewAddressesWithinItsMax()
    {
        final java.util.Random random = new java.util.Random(11);
        for (int round = 0; round < 200; round++)
        {
            final int n = 1 + random.nextInt(300);
            final int[] v4 = new int[n];
            final long[] v6 = new long[2 * n];
            for (int i = 0; i < n; i++)
            {
                v4[i] = 0x0A4D0000 | random.nextInt(1 << 14);
                v6[2 * i] = 0xFD77000000000000L;
                v6[2 * i + 1] = random.nextInt(1 << 14);
            }
            final int max = 1 + random.nextInt(64);
            final int split = random.nextInt(n);
            final GuestPrefixes old = GuestPrefixes.cover(v4, split, v6, split, max);
            final int[] more4 = java.util.Arrays.copyOfRange(v4, split, n);
            final long[] more6 = java.util.Arrays.copyOfRange(v6, 2 * split, 2 * n);
            final GuestPrefixes wider = old.widen(more4, n - split, more6, n - split, max);
            if (wider == null)
            {
                // refused only when the new networks do not fit
                final java.util.Set<Integer> nets = new java.util.HashSet<>();
                for (int i = 0; i < n; i++)
                {
                    nets.add(v4[i] & GuestPrefixes.mask32(old.length4()));
                }
                final java.util.Set<Long> nets6 = new java.util.HashSet<>();
                for (int i = 0; i < n; i++)
                {
                    nets6.add(v6[2 * i + 1] & GuestPrefixes.maskLow(old.length6()));
                }
                assertThat(nets.size() > max || nets6.size() > max).as("round %d", round).isTrue();
                continue;
            }
            assertThat(wider.holdsAll(old)).isTrue();
            assertThat(wider.length4()).isEqualTo(old.length4());
            assertThat(wider.networks4().length).isLessThanOrEqualTo(max);
            assertThat(wider.count6()).isLessThanOrEqualTo(max);
            for (int i = 0; i < n; i++)
            {
                assertThat(wider.contains4(v4[i])).as("round %d, %d", round, i).isTrue();
                assertThat(wider.contains6(v6[2 * i], v6[2 * i + 1])).as("round %d, %d", round, i).isTrue();
            }
            final int[] nets = wider.networks4();
            for (int i = 1; i < nets.length; i++)
            {
                assertThat(Integer.compareUnsigned(nets[i - 1], nets[i])).as("ascending").isNegative();
            }
            assertThat(old.widen(v4, split, v6, split, max)).as("nothing new: the same cover").isSameAs(old);
        }
    }
}
