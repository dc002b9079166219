package dev.egressd.core.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.integers;
import static org.quicktheories.generators.SourceDSL.longs;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class AddressTest
{
    @Test
    void ipv4ParsesAndPrintsDottedQuad()
    {
        final Ipv4Address a = Ipv4Address.parse("203.0.113.10");
        assertThat(a.bits()).isEqualTo(0xCB00710A);
        assertThat(a).hasToString("203.0.113.10");
        assertThat(Ipv4Address.parse("255.255.255.255").toString()).isEqualTo("255.255.255.255");
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", "a.b.c.d", "1..2.3", "::1"})
    void ipv4RefusesWhatIsNotADottedQuad(final String text)
    {
        assertThatThrownBy(() -> Ipv4Address.parse(text)).isInstanceOf(IllegalArgumentException.class);
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", "a.b.c.d", "1..2.3", "::1",
        "fd77::2", "2001:db8::10", "0.0.0.0", "255.255.255.255", "203.0.113.10", "1.2.3.04", "1.2.3.1000"})
    void isIpv4SaysExactlyWhetherParseTakesTheText(final String text)
    {
        boolean parses;
        try
        {
            Ipv4Address.parse(text);
            parses = true;
        }
        catch (final IllegalArgumentException e)
        {
            parses = false;
        }
        assertThat(Ipv4Address.isIpv4(text)).isEqualTo(parses);
        assertThat(Ipv4Address.isIpv4(null)).isFalse();
    }

    @Test
    void ipv4SaysWhyItRefused()
    {
        assertThatThrownBy(() -> Ipv4Address.parse("01.2.3.4")).hasMessage("not an IPv4 address (leading zero): 01.2.3.4");
        assertThatThrownBy(() -> Ipv4Address.parse("256.1.1.1")).hasMessage("not an IPv4 address: 256.1.1.1");
        assertThatThrownBy(() -> Ipv4Address.parse(null)).hasMessage("not an IPv4 address: null");
        assertThat(Ipv4Address.parse("255.255.255.255").bits()).isEqualTo(-1);
    }

    @Test
    void ipv6ParsesAndPrintsCanonicalForm()
    {
        assertThat(Ipv6Address.parse("2001:DB8:0:0:0:0:0:10")).hasToString("2001:db8::10");
        assertThat(Ipv6Address.parse("fd77::2")).hasToString("fd77::2");
        assertThat(Ipv6Address.parse("::")).hasToString("::");
        assertThat(Ipv6Address.parse("2001:db8:0:1:0:0:1:0")).hasToString("2001:db8:0:1::1:0");
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "203.0.113.1", "::ffff:1.2.3.4", "fe80::1%eth0", "[::1]", "2001:db8::zz", "example.com"})
    void ipv6RefusesWhatIsNotIpv6(final String text)
    {
        assertThatThrownBy(() -> Ipv6Address.parse(text)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void ipv4RoundTripsThroughText()
    {
        qt().withExamples(1000).forAll(integers().all()).checkAssert(bits ->
            assertThat(Ipv4Address.parse(new Ipv4Address(bits).toString()).bits()).isEqualTo(bits));
    }

    @Test
    void ipv6RoundTripsThroughTextAndBytes()
    {
        qt().withExamples(1000).forAll(longs().all(), longs().all()).checkAssert((high, low) ->
        {
            final Ipv6Address a = new Ipv6Address(high, low);
            if ((high == 0 && (low >>> 32) == 0xFFFFL))
            {
                return; // IPv4-mapped form is refused on purpose
            }
            assertThat(Ipv6Address.parse(a.toString())).isEqualTo(a);
            assertThat(Ipv6Address.fromBytes(a.toBytes())).isEqualTo(a);
        });
    }

    @Test
    void blockZeroStartsAtPortOneAndBlocksTileThePortSpace()
    {
        final BlockLayout layout = BlockLayout.STANDARD;
        assertThat(layout.firstPort(0)).isEqualTo(1);
        assertThat(layout.lastPort(0)).isEqualTo(1023);
        assertThat(layout.firstPort(1)).isEqualTo(1024);
        assertThat(layout.lastPort(63)).isEqualTo(65535);
        assertThat(layout.blockOf(0)).isEqualTo(-1);
        assertThat(layout.blockOf(1)).isZero();
        assertThat(layout.blockOf(2047)).isEqualTo(1);
        assertThat(new BlockLayout(4, 16).blockOf(64)).isEqualTo(-1);
    }
}
