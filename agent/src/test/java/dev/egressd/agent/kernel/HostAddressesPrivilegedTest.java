package dev.egressd.agent.kernel;

import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.kernel.rtnetlink.RtnetlinkHost;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The host's own addresses as {@link NftKernel} reads them over rtnetlink from a real namespace built like the lab's
 * host (scripts/lab): each kind of address the host holds or routes is refused as a pair address, and a bare
 * pre-provisioned /32 or /128 on the uplink or lo, or egressd's own, is not.
 */
@Privileged
class HostAddressesPrivilegedTest
{
    private LabNamespace lab;
    private NetNamespace ns;
    private NftKernel kernel;

    @BeforeEach
    void setUp() throws IOException
    {
        Requirements.rootWithNftables();
        lab = LabNamespace.withUplink("refuse");
        lab.ip("link", "set", "upeer", "up");
        lab.ip("link", "set", "uplink", "up");
        lab.ip("addr", "add", "192.0.2.1/24", "dev", "uplink");
        lab.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "uplink", "nodad");
        lab.ip("route", "add", "default", "via", "192.0.2.254", "dev", "uplink");
        lab.ip("-6", "route", "add", "default", "via", "2001:db8:1::254", "dev", "uplink");
        lab.addLink("tap-g1");
        lab.ip("addr", "add", "169.254.1.1/32", "dev", "tap-g1");
        lab.ip("route", "add", "10.77.0.2/32", "dev", "tap-g1");
        lab.ip("-6", "route", "add", "fd77::2/128", "dev", "tap-g1");
        // what an operator pre-provisions for egressd (a cloud's secondary addresses)
        lab.ip("addr", "add", "203.0.113.50/32", "dev", "uplink");
        lab.ip("-6", "addr", "add", "2001:db8:10::50/128", "dev", "uplink", "nodad");
        lab.ip("addr", "add", "203.0.113.60/32", "dev", "lo");
        // a bare /32 that the host's own traffic leaves from, and a leased /128
        lab.ip("addr", "add", "203.0.113.55/32", "dev", "uplink");
        lab.ip("route", "add", "198.51.100.0/24", "via", "192.0.2.253", "dev", "uplink", "src", "203.0.113.55");
        lab.ip("-6", "addr", "add", "2001:db8:10::77/128", "dev", "uplink", "nodad", "valid_lft", "3600",
            "preferred_lft", "3600");
        ns = NetNamespace.enter(lab.name());
        kernel = ns.call(() -> NftKernel.open(DataplaneConfig.defaults("uplink")));
        ns.call(kernel::ensureTable);
    }

    @AfterEach
    void tearDown() throws IOException
    {
        LabNamespace.tearDown(lab, ns, kernel);
    }

    private static EgressPair pair(final String ipv4, final String ipv6)
    {
        return new EgressPair(Ipv4Address.parse(ipv4), Ipv6Address.parse(ipv6), "ord");
    }

    private static String refusal(final HostAddresses host, final String ipv4, final String ipv6)
    {
        final Outcome.Refusal r = host.pairProblem(pair(ipv4, ipv6));
        return r == null ? null : r.code() + " " + r.field() + ": " + r.message();
    }

    @Test
    void eachAddressTheHostHoldsOrRoutesIsRefusedAndPreProvisionedOrOwnOnesAreNot() throws IOException
    {
        // egressd's own address, added as the daemon adds it (marked)
        ns.call(() ->
        {
            kernel.apply(List.of(PlanChange.add(new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10"))),
                PlanChange.add(new PlanElement.Uplink6(Ipv6Address.parse("2001:db8:10::10")))));
            return null;
        });
        final HostAddresses host = ns.call(kernel::refreshHostAddresses);

        assertThat(refusal(host, "192.0.2.1", "2001:db8:10::1")).isEqualTo("ADDRESS_IN_USE ipv4: ipv4 192.0.2.1 "
            + "cannot be an egress address: it is the host's own address (192.0.2.1/24 on uplink)");
        assertThat(refusal(host, "203.0.113.1", "2001:db8:1::1")).isEqualTo("ADDRESS_IN_USE ipv6: ipv6 2001:db8:1::1 "
            + "cannot be an egress address: it is the host's own address (2001:db8:1::1/64 on uplink)");
        assertThat(refusal(host, "192.0.2.254", "2001:db8:10::1")).isEqualTo("ADDRESS_IN_USE ipv4: ipv4 192.0.2.254 "
            + "cannot be an egress address: it is the gateway of the host's route default via 192.0.2.254 dev uplink");
        assertThat(refusal(host, "203.0.113.1", "2001:db8:1::254")).isEqualTo("ADDRESS_IN_USE ipv6: ipv6 "
            + "2001:db8:1::254 cannot be an egress address: it is the gateway of the host's route default via "
            + "2001:db8:1::254 dev uplink");
        assertThat(refusal(host, "10.77.0.2", "2001:db8:10::1")).isEqualTo("ADDRESS_IN_USE ipv4: ipv4 10.77.0.2 "
            + "cannot be an egress address: it is the destination of the host's route 10.77.0.2/32 dev tap-g1");
        assertThat(refusal(host, "203.0.113.1", "fd77::2")).isEqualTo("ADDRESS_IN_USE ipv6: ipv6 fd77::2 "
            + "cannot be an egress address: it is the destination of the host's route fd77::2/128 dev tap-g1");
        assertThat(refusal(host, "169.254.1.1", "2001:db8:10::1")).startsWith("ADDRESS_IN_USE ipv4: ipv4 169.254.1.1 "
            + "cannot be an egress address: it is the host's own address (169.254.1.1/32 on tap-g1)");
        assertThat(refusal(host, "203.0.113.55", "2001:db8:10::1")).isEqualTo("ADDRESS_IN_USE ipv4: ipv4 "
            + "203.0.113.55 cannot be an egress address: it is the source the host's own traffic leaves from (route "
            + "198.51.100.0/24 via 192.0.2.253 dev uplink src 203.0.113.55)");
        assertThat(refusal(host, "203.0.113.1", "2001:db8:10::77")).isEqualTo("ADDRESS_IN_USE ipv6: ipv6 "
            + "2001:db8:10::77 cannot be an egress address: it is the host's own address (2001:db8:10::77/128 on "
            + "uplink, leased)");

        assertThat(refusal(host, "203.0.113.50", "2001:db8:10::50")).as("pre-provisioned on the uplink").isNull();
        assertThat(refusal(host, "203.0.113.60", "2001:db8:10::50")).as("pre-provisioned on lo").isNull();
        assertThat(refusal(host, "203.0.113.10", "2001:db8:10::10")).as("egressd's own").isNull();
        assertThat(refusal(host, "198.51.100.10", "2001:db8:100::10")).as("beyond the gateway").isNull();

        assertThat(host.guestProblem(new Machine("m1", "a1", "tap-g1", Ipv4Address.parse("10.77.0.2"),
            Ipv6Address.parse("fd77::2"), null))).as("the route to the guest itself").isNull();
        assertThat(host.guestProblem(new Machine("m1", "a1", "tap-g1", Ipv4Address.parse("203.0.113.50"), null,
            null))).extracting(Outcome.Refusal::message).isEqualTo("ipv4 203.0.113.50 cannot be a guest address: it "
                + "is the host's own address (203.0.113.50/32 on uplink)");
    }

    @Test
    void theReconcilesReadsRefreshWhatTheHostHolds() throws Exception
    {
        ns.call(() -> kernel.read());
        assertThat(refusal(kernel.hostAddresses(), "203.0.113.80", "2001:db8:10::80")).isNull();
        lab.ip("addr", "add", "203.0.113.80/24", "dev", "uplink");
        final long deadline = System.nanoTime() + 3 * NftKernel.HOST_REFRESH_NANOS;
        String refused = null;
        int reads = 0;
        while (refused == null && System.nanoTime() < deadline)
        {
            ns.call(() -> kernel.read());
            reads++;
            refused = refusal(kernel.hostAddresses(), "203.0.113.80", "2001:db8:10::80");
            Thread.sleep(50);
        }
        assertThat(refused).as("after " + reads + " reads").isEqualTo("ADDRESS_IN_USE ipv4: ipv4 203.0.113.80 cannot "
            + "be an egress address: it is the host's own address (203.0.113.80/24 on uplink)");
    }

    @Test
    void aQuietHostIsNotDumpedAgainAndAnyChangeIsSeen() throws Exception
    {
        final RtnetlinkHost host = ns.call(RtnetlinkHost::open);
        try
        {
            assertThat(ns.call(host::readIfChanged)).as("the first call dumps").isNotNull();
            // (IPv6 duplicate address detection may still announce the set-up's link-local addresses for a while)
            assertThat(next(host, 5_000, java.util.Objects::isNull)).as("quiet: no dump").isNull();
            lab.ip("addr", "add", "203.0.113.81/32", "dev", "uplink");
            final RtnetlinkHost.Snapshot after = next(host, 3_000, java.util.Objects::nonNull);
            assertThat(after).as("an address added").isNotNull();
            assertThat(after.addresses()).anySatisfy(a -> assertThat(String.valueOf(a.address().ipv4()))
                .isEqualTo("203.0.113.81"));
            lab.ip("route", "add", "10.77.9.9/32", "dev", "tap-g1");
            final RtnetlinkHost.Snapshot routed = next(host, 3_000,
                r -> r != null && r.routes().stream().anyMatch(x -> x.destination().equals("10.77.9.9")));
            assertThat(routed).as("a route added").isNotNull();
        }
        finally
        {
            ns.call(() ->
            {
                host.close();
                return null;
            });
        }
    }

    /** Calls readIfChanged every 50 ms until its answer passes, at most for a while; the last answer. */
    private RtnetlinkHost.Snapshot next(final RtnetlinkHost host, final long millis,
        final java.util.function.Predicate<RtnetlinkHost.Snapshot> wanted) throws Exception
    {
        final long deadline = System.nanoTime() + millis * 1_000_000L;
        RtnetlinkHost.Snapshot last = ns.call(host::readIfChanged);
        while (!wanted.test(last) && System.nanoTime() < deadline)
        {
            Thread.sleep(50);
            last = ns.call(host::readIfChanged);
        }
        return last;
    }
}
