package dev.egressd.agent.kernel;

import dev.egressd.agent.kernel.rtnetlink.InterfaceAddress;
import dev.egressd.agent.kernel.rtnetlink.RtnetlinkHost;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** The rules of {@link HostAddresses} on a host shaped like the lab's (scripts/lab), as rtnetlink reports it. */
public class HostAddressesTest
{
    private static InterfaceAddress v4(final String address, final int prefix, final long valid, final int proto)
    {
        return new InterfaceAddress(Ipv4Address.parse(address), null, prefix, 0x80, valid, valid, proto);
    }

    private static InterfaceAddress v6(final String address, final int prefix, final long valid, final int proto)
    {
        return new InterfaceAddress(null, Ipv6Address.parse(address), prefix, 0x80, valid, valid, proto);
    }

    private static RtnetlinkHost.HeldAddress held(final String iface, final InterfaceAddress a)
    {
        return new RtnetlinkHost.HeldAddress(iface, a);
    }

    /**
     * The lab's host namespace: uplink 192.0.2.1/24 and 2001:db8:1::1/64, gateway 192.0.2.254 and 2001:db8:1::254
     * (the lab's destination namespace), a guest on tap-g1 (169.254.1.1/32 on the tap, a /32 route to the guest),
     * egressd's own 203.0.113.10, an operator's pre-provisioned 203.0.113.50/32 and 2001:db8:10::50/128 on the
     * uplink and 203.0.113.60/32 on lo, a leased /32 and a /32 on another device.
     *
     * @return the snapshot.
     */
    public static RtnetlinkHost.Snapshot lab()
    {
        final long forever = InterfaceAddress.FOREVER;
        final int mark = NetlinkConstants.IFAPROT_EGRESSD;
        return new RtnetlinkHost.Snapshot(List.of(
            held("lo", v4("127.0.0.1", 8, forever, 0)),
            held("lo", v6("::1", 128, forever, 0)),
            held("lo", v4("203.0.113.60", 32, forever, 0)),
            held("uplink", v4("192.0.2.1", 24, forever, 0)),
            held("uplink", v6("2001:db8:1::1", 64, forever, 0)),
            held("uplink", v4("203.0.113.10", 32, forever, mark)),
            held("uplink", v6("2001:db8:10::10", 128, forever, mark)),
            held("uplink", v4("203.0.113.50", 32, forever, 0)),
            held("uplink", v6("2001:db8:10::50", 128, forever, 0)),
            held("uplink", v6("2001:db8:10::77", 128, 3600, 0)),
            held("docker0", v4("203.0.113.70", 32, forever, 0)),
            held("tap-g1", v4("169.254.1.1", 32, forever, 0)),
            held("tap-g1", v6("fe80::1", 64, forever, 0))),
            List.of(
                new RtnetlinkHost.HostRoute("uplink", 254, 3, "0.0.0.0", 0, "192.0.2.254", null),
                new RtnetlinkHost.HostRoute("uplink", 254, KERNEL, "192.0.2.0", 24, null, "192.0.2.1"),
                new RtnetlinkHost.HostRoute("uplink", 254, 3, "::", 0, "2001:db8:1::254", null),
                new RtnetlinkHost.HostRoute("uplink", 254, KERNEL, "2001:db8:1::", 64, null, null),
                // the kernel's prefix routes of IPv6 addresses: the pre-provisioned /128 has one too
                new RtnetlinkHost.HostRoute("uplink", 254, KERNEL, "2001:db8:10::50", 128, null, null),
                new RtnetlinkHost.HostRoute("tap-g1", 254, KERNEL, "fe80::", 64, null, null),
                new RtnetlinkHost.HostRoute("tap-g1", 254, 3, "10.77.0.2", 32, null, null),
                new RtnetlinkHost.HostRoute("tap-g1", 254, 3, "fd77::2", 128, null, null),
                new RtnetlinkHost.HostRoute("uplink", 100, 3, "198.51.100.0", 24, "192.0.2.253", "203.0.113.55")));
    }

    private static final int KERNEL = RtnetlinkHost.RTPROT_KERNEL;
    private static final HostAddresses LAB = HostAddresses.of("uplink", lab());

    private static Outcome.Refusal pair(final String ipv4, final String ipv6)
    {
        return LAB.pairProblem(new EgressPair(Ipv4Address.parse(ipv4), Ipv6Address.parse(ipv6), "ord"));
    }

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource(delimiter = '|', value = {
        "192.0.2.1|2001:db8:10::1|ipv4|ipv4 192.0.2.1 cannot be an egress address: it is the host's own address (192.0.2.1/24 on uplink)",
        "203.0.113.1|2001:db8:1::1|ipv6|ipv6 2001:db8:1::1 cannot be an egress address: it is the host's own address (2001:db8:1::1/64 on uplink)",
        "192.0.2.254|2001:db8:10::1|ipv4|ipv4 192.0.2.254 cannot be an egress address: it is the gateway of the host's route default via 192.0.2.254 dev uplink",
        "203.0.113.1|2001:db8:1::254|ipv6|ipv6 2001:db8:1::254 cannot be an egress address: it is the gateway of the host's route default via 2001:db8:1::254 dev uplink",
        "192.0.2.253|2001:db8:10::1|ipv4|ipv4 192.0.2.253 cannot be an egress address: it is the gateway of the host's route 198.51.100.0/24 via 192.0.2.253 dev uplink table 100 src 203.0.113.55",
        "10.77.0.2|2001:db8:10::1|ipv4|ipv4 10.77.0.2 cannot be an egress address: it is the destination of the host's route 10.77.0.2/32 dev tap-g1",
        "203.0.113.1|fd77::2|ipv6|ipv6 fd77::2 cannot be an egress address: it is the destination of the host's route fd77::2/128 dev tap-g1",
        "203.0.113.55|2001:db8:10::1|ipv4|ipv4 203.0.113.55 cannot be an egress address: it is the source the host's own traffic leaves from (route 198.51.100.0/24 via 192.0.2.253 dev uplink table 100 src 203.0.113.55)",
        "203.0.113.70|2001:db8:10::1|ipv4|ipv4 203.0.113.70 cannot be an egress address: it is the host's own address (203.0.113.70/32 on docker0)",
        "203.0.113.1|2001:db8:10::77|ipv6|ipv6 2001:db8:10::77 cannot be an egress address: it is the host's own address (2001:db8:10::77/128 on uplink, leased)",
        "169.254.1.1|2001:db8:10::1|ipv4|ipv4 169.254.1.1 cannot be an egress address: it is the host's own address (169.254.1.1/32 on tap-g1)"})
    void aPairAddressTheHostHoldsOrRoutesIsRefusedNamingTheFieldAndWhy(final String ipv4, final String ipv6,
        final String field, final String message)
    {
        assertThat(pair(ipv4, ipv6)).isEqualTo(new Outcome.Refusal(Outcome.Reason.ADDRESS_IN_USE, field, message));
    }

    @Test
    void egressdsOwnAddressesAndBarePreProvisionedOnesOnTheUplinkOrLoAreAccepted()
    {
        assertThat(pair("203.0.113.10", "2001:db8:10::10")).as("egressd's own (a re-sent pair)").isNull();
        assertThat(pair("203.0.113.50", "2001:db8:10::50")).as("pre-provisioned on the uplink").isNull();
        assertThat(pair("203.0.113.60", "2001:db8:10::60")).as("pre-provisioned on lo").isNull();
        assertThat(pair("203.0.113.99", "2001:db8:10::99")).as("not the host's at all").isNull();
        // Reached through the default route: the host cannot tell the lab's destination from any other address.
        assertThat(pair("198.51.100.10", "2001:db8:100::10")).isNull();
        assertThat(HostAddresses.NONE.pairProblem(new EgressPair(Ipv4Address.parse("192.0.2.1"),
            Ipv6Address.parse("2001:db8:1::1"), "ord"))).as("nothing read: nothing refused").isNull();
    }

    @Test
    void aGuestAddressTheHostHoldsOrUsesAsAGatewayIsRefusedAndItsOwnRouteIsExpected()
    {
        assertThat(LAB.guestProblem(new Machine("m1", "a1", "tap-m1", Ipv4Address.parse("10.77.0.2"),
            Ipv6Address.parse("fd77::2"), null))).as("the host's route to the guest itself").isNull();
        assertThat(LAB.guestProblem(new Machine("m1", "a1", "tap-m1", Ipv4Address.parse("192.0.2.1"), null, null)))
            .isEqualTo(new Outcome.Refusal(Outcome.Reason.ADDRESS_IN_USE, "ipv4", "ipv4 192.0.2.1 cannot be a guest "
                + "address: it is the host's own address (192.0.2.1/24 on uplink)"));
        assertThat(LAB.guestProblem(new Machine("m1", "a1", "tap-m1", null, Ipv6Address.parse("2001:db8:1::254"),
            null))).isEqualTo(new Outcome.Refusal(Outcome.Reason.ADDRESS_IN_USE, "ipv6", "ipv6 2001:db8:1::254 cannot "
                + "be a guest address: it is the gateway of the host's route default via 2001:db8:1::254 dev uplink"));
        assertThat(LAB.guestProblem(new Machine("m1", "a1", "tap-m1", Ipv4Address.parse("203.0.113.50"), null, null)))
            .as("even a pre-provisioned egress address is the host's").extracting(Outcome.Refusal::field)
            .isEqualTo("ipv4");
    }
}
