package dev.egressd.core.alloc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.egressd.core.alloc.Outcome.Reason;
import dev.egressd.core.alloc.Outcome.Refusal;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

import java.util.concurrent.atomic.AtomicBoolean;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class RequestTextTest
{
    private static Refusal refusal(final Parsed<?> parsed)
    {
        assertThat(parsed).isInstanceOf(Parsed.Refused.class);
        return ((Parsed.Refused<?>)parsed).refusal();
    }

    private static <T> T value(final Parsed<T> parsed)
    {
        assertThat(parsed).isInstanceOf(Parsed.Value.class);
        return ((Parsed.Value<T>)parsed).value();
    }

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource(delimiter = '|', value = {
        "ipv4|fd77::2|WRONG_FAMILY|ipv4 must be an IPv4 address, got IPv6 \"fd77::2\"",
        "ipv4|10.77.0.999|INVALID|ipv4 must be an IPv4 address (dotted quad), got \"10.77.0.999\"",
        "ipv4|''|INVALID|ipv4 must be an IPv4 address (dotted quad), got \"\"",
        "ipv4|2001:db8::zz|INVALID|ipv4 must be an IPv4 address (dotted quad), got \"2001:db8::zz\"",
        "ipv4|::ffff:10.77.0.9|INVALID|ipv4 must be an IPv4 address (dotted quad), got \"::ffff:10.77.0.9\"",
        "pin|2001:db8::1|WRONG_FAMILY|pin must be an IPv4 address, got IPv6 \"2001:db8::1\"",
        "pin|203.0.113|INVALID|pin must be an IPv4 address (dotted quad), got \"203.0.113\""})
    void anIpv4FieldHasOneMessageForEachProblem(final String field, final String text, final Reason code,
        final String message)
    {
        assertThat(refusal(RequestText.ipv4(text, field))).isEqualTo(new Refusal(code, field, message));
        assertThat(refusal(RequestText.optionalIpv4(text, field))).isEqualTo(new Refusal(code, field, message));
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "10.77.0.9|WRONG_FAMILY|ipv6 must be an IPv6 address, got IPv4 \"10.77.0.9\"",
        "::ffff:10.77.0.9|WRONG_FAMILY|ipv6 must be a plain IPv6 address, got an IPv4-mapped or mixed form \"::ffff:10.77.0.9\"",
        "2001:db8::zz|INVALID|ipv6 must be an IPv6 address, got \"2001:db8::zz\"",
        "fd77::2%eth0|INVALID|ipv6 must be an IPv6 address, got \"fd77::2%eth0\"",
        "10.77.0.9:80|INVALID|ipv6 must be an IPv6 address, got \"10.77.0.9:80\""})
    void anIpv6FieldHasOneMessageForEachProblem(final String text, final Reason code, final String message)
    {
        assertThat(refusal(RequestText.ipv6(text, "ipv6"))).isEqualTo(new Refusal(code, "ipv6", message));
        assertThat(refusal(RequestText.optionalIpv6(text, "ipv6"))).isEqualTo(new Refusal(code, "ipv6", message));
    }

    @Test
    void goodTextGivesTheTypedValueAndAnAbsentOptionalFieldGivesNull()
    {
        assertThat(value(RequestText.ipv4("203.0.113.10", "ipv4"))).isEqualTo(Ipv4Address.parse("203.0.113.10"));
        assertThat(value(RequestText.ipv6("2001:DB8:0::10", "ipv6"))).isEqualTo(Ipv6Address.parse("2001:db8::10"));
        assertThat(value(RequestText.ipv6("64:ff9b::192.0.2.1", "ipv6")))
            .isEqualTo(Ipv6Address.parse("64:ff9b::c000:201"));
        assertThat(value(RequestText.optionalIpv4(null, "pin"))).isNull();
        assertThat(value(RequestText.optionalIpv6(null, "ipv6"))).isNull();
        assertThat(refusal(RequestText.ipv4(null, "ipv4")).message()).isEqualTo(
            "ipv4 must be an IPv4 address (dotted quad), got nothing");
        assertThat(refusal(RequestText.ipv6(null, "ipv6")).message()).isEqualTo(
            "ipv6 must be an IPv6 address, got nothing");
    }

    @Test
    void aPairIsCheckedFieldByFieldInRequestOrderAndTakesThisHostsRegion()
    {
        assertThat(value(RequestText.pair("203.0.113.10", "2001:db8::10", null, "ord"))).isEqualTo(
            new EgressPair(Ipv4Address.parse("203.0.113.10"), Ipv6Address.parse("2001:db8::10"), "ord"));
        assertThat(value(RequestText.pair("203.0.113.10", "2001:db8::10", "ord", "ord")).region()).isEqualTo("ord");
        assertThat(refusal(RequestText.pair("x", "y", "lhr", "ord")).field()).isEqualTo("ipv4");
        assertThat(refusal(RequestText.pair("203.0.113.10", "y", "lhr", "ord")).field()).isEqualTo("ipv6");
        assertThat(refusal(RequestText.pair("203.0.113.10", "2001:db8::10", "lhr", "ord"))).isEqualTo(
            new Refusal(Reason.WRONG_REGION, "region", "region \"lhr\" is not this host's region ord"));
    }

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource(delimiter = '|', value = {
        "0.0.0.0|2001:db8::10|ipv4|ipv4 0.0.0.0 cannot be an egress address: it is in 0.0.0.0/8 (unspecified, \"this network\")",
        "0.1.2.3|2001:db8::10|ipv4|ipv4 0.1.2.3 cannot be an egress address: it is in 0.0.0.0/8 (unspecified, \"this network\")",
        "127.0.0.1|2001:db8::10|ipv4|ipv4 127.0.0.1 cannot be an egress address: it is a loopback address (127.0.0.0/8)",
        "127.9.9.9|2001:db8::10|ipv4|ipv4 127.9.9.9 cannot be an egress address: it is a loopback address (127.0.0.0/8)",
        "169.254.1.1|2001:db8::10|ipv4|ipv4 169.254.1.1 cannot be an egress address: it is a link-local address (169.254.0.0/16)",
        "224.0.0.1|2001:db8::10|ipv4|ipv4 224.0.0.1 cannot be an egress address: it is a multicast address (224.0.0.0/4)",
        "239.255.255.250|2001:db8::10|ipv4|ipv4 239.255.255.250 cannot be an egress address: it is a multicast address (224.0.0.0/4)",
        "255.255.255.255|2001:db8::10|ipv4|ipv4 255.255.255.255 cannot be an egress address: it is the limited broadcast address 255.255.255.255",
        "203.0.113.10|::|ipv6|ipv6 :: cannot be an egress address: it is the unspecified address ::",
        "203.0.113.10|::1|ipv6|ipv6 ::1 cannot be an egress address: it is the loopback address ::1",
        "203.0.113.10|fe80::1|ipv6|ipv6 fe80::1 cannot be an egress address: it is a link-local address (fe80::/10)",
        "203.0.113.10|febf::1|ipv6|ipv6 febf::1 cannot be an egress address: it is a link-local address (fe80::/10)",
        "203.0.113.10|ff02::1|ipv6|ipv6 ff02::1 cannot be an egress address: it is a multicast address (ff00::/8)",
        "127.0.0.1|fe80::1|ipv4|ipv4 127.0.0.1 cannot be an egress address: it is a loopback address (127.0.0.0/8)"})
    void aPairAddressNoMachineCanLeaveFromIsRefusedNamingTheField(final String ipv4, final String ipv6,
        final String field, final String message)
    {
        assertThat(refusal(RequestText.pair(ipv4, ipv6, null, "ord"))).isEqualTo(
            new Refusal(Reason.INVALID, field, message));
    }

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource(delimiter = '|', value = {
        "1.0.0.1|2001:db8::10", "126.255.255.255|fec0::1", "128.0.0.1|fe7f::1", "169.253.255.255|fd77::1",
        "169.255.0.1|2001:db8::10", "223.255.255.255|::2", "10.0.0.1|fe00::1", "203.0.113.10|2001:db8::10"})
    void unicastAddressesNextToTheRefusedRangesArePairAddresses(final String ipv4, final String ipv6)
    {
        assertThat(value(RequestText.pair(ipv4, ipv6, null, "ord"))).isEqualTo(
            new EgressPair(Ipv4Address.parse(ipv4), Ipv6Address.parse(ipv6), "ord"));
    }

    @Test
    void idsAndInterfaceNamesHaveOneMessageEachNamingTheField()
    {
        assertThat(RequestText.idProblem("m-1.a_b", "id")).isNull();
        assertThat(RequestText.idProblem("a b", "app")).isEqualTo(new Refusal(Reason.INVALID, "app",
            "app must be 1..128 of [A-Za-z0-9_.-] starting with a letter or digit, got \"a b\""));
        assertThat(RequestText.idProblem(null, "id").message()).endsWith("got nothing");
        assertThat(RequestText.idProblem("x".repeat(129), "id")).isNotNull();
        assertThat(RequestText.interfaceProblem("tap-m1")).isNull();
        assertThat(RequestText.interfaceProblem("tap/m9")).isEqualTo(new Refusal(Reason.INVALID, "interface",
            "interface must be a Linux interface name (1..15 of [A-Za-z0-9_.-]), got \"tap/m9\""));
        assertThat(RequestText.interfaceProblem("a-very-long-name")).isNotNull();
    }

    @Test
    void aRefusalStopsTheChainAndAValueRunsIt() throws Exception
    {
        final AtomicBoolean ran = new AtomicBoolean();
        final Outcome refused = RequestText.ipv4("nope", "ipv4").then(v ->
        {
            ran.set(true);
            return Outcome.Done.NOTHING;
        });
        assertThat(ran).isFalse();
        assertThat(refused).isEqualTo(refusal(RequestText.ipv4("nope", "ipv4")));
        assertThat(RequestText.ipv4("10.0.0.1", "ipv4").then(v -> new Outcome.Done(java.util.List.of(v.toString()))))
            .isEqualTo(new Outcome.Done(java.util.List.of("10.0.0.1")));
        assertThat(RequestText.ipv4("10.0.0.1", "ipv4").ok()).isTrue();
        assertThat(RequestText.ipv4("10.0.0.1", "ipv4").orElseThrow(r -> new IllegalStateException(r.message())))
            .isEqualTo(Ipv4Address.parse("10.0.0.1"));
        assertThatThrownBy(() -> RequestText.ipv4("nope", "pin").orElseThrow(r -> new IllegalStateException(
            r.field() + ": " + r.message()))).hasMessage("pin: pin must be an IPv4 address (dotted quad), got \"nope\"");
    }
}
