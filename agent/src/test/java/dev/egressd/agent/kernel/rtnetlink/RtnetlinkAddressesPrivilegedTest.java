package dev.egressd.agent.kernel.rtnetlink;

import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.netlink.NetlinkException;
import dev.egressd.agent.netlink.NetlinkSocket;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.agent.testing.AddressProtocols;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * RtnetlinkAddresses against the kernel, in a fresh namespace per test with a link {@code up0} (dummy, or veth where the kernel lacks dummy);
 * the kernel state is read back with {@code ip -j addr show}, independently of our own parser.
 */
@Privileged
class RtnetlinkAddressesPrivilegedTest
{
    private static final Ipv4Address V4 = Ipv4Address.parse("203.0.113.10");
    private static final Ipv6Address V6 = Ipv6Address.parse("2001:db8:10::10");
    private static final ObjectMapper JSON = new ObjectMapper();

    private LabNamespace lab;
    private NetNamespace ns;

    @BeforeEach
    void createNamespace() throws IOException
    {
        Requirements.root();
        lab = LabNamespace.create();
        lab.addLink("up0");
        ns = NetNamespace.enter(lab.name());
    }

    @AfterEach
    void deleteNamespace() throws IOException
    {
        LabNamespace.tearDown(lab, ns);
    }

    @Test
    void addsAHostRouteV4AndADeprecatedNodadV6() throws IOException
    {
        final List<String> seen = new ArrayList<>();
        final List<InterfaceAddress> ours = call(a ->
        {
            a.add("up0", V4);
            a.add("up0", V6);
            seen.add(a.listIpv4("up0").toString());
            seen.add(a.listIpv6("up0").toString());
            return a.addresses("up0");
        });
        assertThat(ours).anySatisfy(a ->
        {
            assertThat(a.ipv6()).isEqualTo(V6);
            assertThat(a.preferredLifetime()).isZero();
            assertThat(a.validLifetime()).isEqualTo(InterfaceAddress.FOREVER);
            assertThat(a.hasFlag(NetlinkConstants.IFA_F_NODAD | NetlinkConstants.IFA_F_NOPREFIXROUTE)).isTrue();
        });
        assertThat(seen).containsExactly("[203.0.113.10]", "[2001:db8:10::10]");

        final JsonNode v4 = kernelAddress("203.0.113.10");
        assertThat(v4.get("prefixlen").asInt()).isEqualTo(32);
        assertThat(v4.get("valid_life_time").asLong()).isEqualTo(0xFFFFFFFFL);
        final JsonNode v6 = kernelAddress("2001:db8:10::10");
        assertThat(v6.get("prefixlen").asInt()).isEqualTo(128);
        assertThat(v6.get("preferred_life_time").asLong()).isZero();
        assertThat(v6.get("valid_life_time").asLong()).isEqualTo(0xFFFFFFFFL);
        assertThat(v6.path("nodad").asBoolean()).isTrue();
        assertThat(v6.path("noprefixroute").asBoolean()).isTrue();
        assertThat(v6.path("deprecated").asBoolean()).isTrue();
        assertThat(v6.path("tentative").asBoolean()).isFalse();
    }

    @Test
    void ourAddressesCarryOurProtocolAndAreListedAsOwned() throws IOException
    {
        final List<Object> owned = call(a ->
        {
            a.add("up0", V4);
            a.add("up0", V6);
            return List.of(a.listOwned4("up0"), a.listOwned6("up0"));
        });
        assertThat(owned).containsExactly(List.of(V4), List.of(V6));
        // Read back independently: a raw dump in Python, and ip -j where its iproute2 prints the protocol.
        assertThat(protocols()).containsEntry("203.0.113.10/32", NetlinkConstants.IFAPROT_EGRESSD)
            .containsEntry("2001:db8:10::10/128", NetlinkConstants.IFAPROT_EGRESSD);
        assertIpShowsProtocol(kernelAddress("203.0.113.10"), NetlinkConstants.IFAPROT_EGRESSD);
        assertIpShowsProtocol(kernelAddress("2001:db8:10::10"), NetlinkConstants.IFAPROT_EGRESSD);
    }

    @Test
    void aHandAddedAddressIsNeitherOwnedNorRemoved() throws IOException
    {
        // Same shape as ours (a /32, a /128 nodad preferred_lft 0), but without our IFA_PROTO.
        lab.ip("addr", "add", "203.0.113.11/32", "dev", "up0");
        lab.ip("-6", "addr", "add", "2001:db8:10::11/128", "dev", "up0", "nodad", "preferred_lft", "0");
        final List<Object> result = call(a ->
        {
            a.add("up0", V4);
            a.add("up0", V6);
            final List<Object> out = new ArrayList<>();
            out.add(a.listIpv4("up0").size());
            out.add(a.listOwned4("up0"));
            out.add(a.listOwned6("up0"));
            out.add(a.remove("up0", Ipv4Address.parse("203.0.113.11")));
            out.add(a.remove("up0", Ipv6Address.parse("2001:db8:10::11")));
            return out;
        });
        assertThat(result).containsExactly(2, List.of(V4), List.of(V6), false, false);
        assertThat(protocols()).containsEntry("203.0.113.11/32", NetlinkConstants.IFAPROT_UNSPEC)
            .containsEntry("2001:db8:10::11/128", NetlinkConstants.IFAPROT_UNSPEC)
            .containsEntry("203.0.113.10/32", NetlinkConstants.IFAPROT_EGRESSD)
            .containsEntry("2001:db8:10::10/128", NetlinkConstants.IFAPROT_EGRESSD);
    }

    @Test
    void aHandAddedAddressOfTheSameValueIsLeftAloneNotClaimed() throws IOException
    {
        // The plan demands this address, but someone else put it there: egressd neither marks nor rewrites it.
        lab.ip("addr", "add", "203.0.113.10/32", "dev", "up0");
        lab.ip("-6", "addr", "add", "2001:db8:10::10/64", "dev", "up0", "nodad");
        final List<Object> result = call(a ->
        {
            final List<Object> out = new ArrayList<>();
            out.add(a.add("up0", V4));
            out.add(a.add("up0", V6));
            out.add(a.listOwned4("up0"));
            out.add(a.listOwned6("up0"));
            out.add(a.remove("up0", V4));
            out.add(a.remove("up0", V6));
            return out;
        });
        assertThat(result).containsExactly(RtnetlinkAddresses.AddResult.FOREIGN, RtnetlinkAddresses.AddResult.FOREIGN,
            List.of(), List.of(), false, false);
        assertThat(protocols()).containsEntry("203.0.113.10/32", NetlinkConstants.IFAPROT_UNSPEC)
            .containsEntry("2001:db8:10::10/64", NetlinkConstants.IFAPROT_UNSPEC);
        final JsonNode v6 = kernelAddress("2001:db8:10::10");
        assertThat(v6.get("prefixlen").asInt()).isEqualTo(64);
        assertThat(v6.get("preferred_life_time").asLong()).as("not deprecated by egressd").isEqualTo(0xFFFFFFFFL);
    }

    @Test
    void aForeignIpv4AddressOfAnotherPrefixLengthDoesNotStopOurs() throws IOException
    {
        // IPv4 addresses are keyed by address and prefix length: a /24 of the value is not our /32.
        lab.ip("addr", "add", "203.0.113.10/24", "dev", "up0");
        final List<Object> result = call(a -> List.of(a.add("up0", V4), a.listOwned4("up0"), a.remove("up0", V4)));
        assertThat(result).containsExactly(RtnetlinkAddresses.AddResult.CREATED, List.of(V4), true);
        assertThat(kernelAddress("203.0.113.10").get("prefixlen").asInt()).isEqualTo(24);
    }

    @Test
    void addAndRemoveAreIdempotent() throws IOException
    {
        final List<Object> removed = call(a ->
        {
            final List<Object> out = new ArrayList<>();
            out.add(a.add("up0", V4));
            out.add(a.add("up0", V4));
            out.add(a.add("up0", V6));
            out.add(a.add("up0", V6));
            out.add(a.remove("up0", V4));
            out.add(a.remove("up0", V4));
            out.add(a.remove("up0", V6));
            out.add(a.remove("up0", V6));
            out.add(a.listIpv4("up0").isEmpty() && a.listIpv6("up0").isEmpty());
            return out;
        });
        assertThat(removed).containsExactly(RtnetlinkAddresses.AddResult.CREATED, RtnetlinkAddresses.AddResult.OWNED,
            RtnetlinkAddresses.AddResult.CREATED, RtnetlinkAddresses.AddResult.OWNED, true, false, true, false, true);
        assertThat(kernelAddresses()).noneMatch(n -> n.get("local").asText().startsWith("203.0.113.")
            || n.get("local").asText().startsWith("2001:db8:"));
    }

    @Test
    void anAddressChangedByHandLosesOurMarkAndIsThenLeftAlone() throws IOException
    {
        // `ip addr change` (RTM_NEWADDR with NLM_F_REPLACE and no IFA_PROTO) resets the kernel's ifa_proto:
        // the operator has taken the address over, and egressd treats it as foreign from then on.
        call(a -> a.add("up0", V6));
        lab.ip("-6", "addr", "change", "2001:db8:10::10/128", "dev", "up0", "preferred_lft", "forever");
        assertThat(protocols()).containsEntry("2001:db8:10::10/128", NetlinkConstants.IFAPROT_UNSPEC);
        final RtnetlinkAddresses.AddResult again = call(a -> a.add("up0", V6));
        assertThat(again).isEqualTo(RtnetlinkAddresses.AddResult.FOREIGN);
        assertThat(kernelAddress("2001:db8:10::10").get("preferred_life_time").asLong()).isEqualTo(0xFFFFFFFFL);
        final boolean removed = call(a -> a.remove("up0", V6));
        assertThat(removed).isFalse();
    }

    @Test
    void listReturnsOnlyHostPrefixesAndRemoveLeavesOtherPrefixLengthsAlone() throws IOException
    {
        lab.ip("addr", "add", "198.51.100.1/24", "dev", "up0");
        lab.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "up0", "nodad");
        lab.ip("addr", "add", "203.0.113.11/32", "dev", "up0");
        final List<Object> result = call(a ->
        {
            final List<Object> out = new ArrayList<>();
            out.add(a.listIpv4("up0"));
            out.add(a.listIpv6("up0"));
            out.add(a.remove("up0", Ipv4Address.parse("198.51.100.1")));   // it is a /24, not ours
            out.add(a.remove("up0", Ipv6Address.parse("2001:db8:1::1")));  // a /64
            return out;
        });
        assertThat(result).containsExactly(List.of(Ipv4Address.parse("203.0.113.11")), List.of(), false, false);
        assertThat(kernelAddress("198.51.100.1").get("prefixlen").asInt()).isEqualTo(24);
        assertThat(kernelAddress("2001:db8:1::1").get("prefixlen").asInt()).isEqualTo(64);
    }

    @Test
    void aMissingInterfaceIsAClearNotFoundError()
    {
        assertThatThrownBy(() -> call(a -> a.ifindex("nope0")))
            .isInstanceOfSatisfying(NetlinkException.class, e ->
            {
                assertThat(e.isNotFound()).isTrue();
                assertThat(e.errno()).isEqualTo(LibC.ENODEV);
            })
            .hasMessageContaining("interface nope0 does not exist");
        assertThatThrownBy(() -> call(a ->
        {
            a.add("nope0", V4);
            return null;
        })).isInstanceOf(NetlinkException.class).hasMessageContaining("nope0");
        assertThatThrownBy(() -> call(a -> a.ifindex("this-name-is-too-long")))
            .isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void ifindexMatchesTheKernel() throws IOException
    {
        final int expected = JSON.readTree(lab.ip("-j", "link", "show", "dev", "up0")).get(0).get("ifindex").asInt();
        final int actual = call(a -> a.ifindex("up0"));
        assertThat(actual).isEqualTo(expected);
    }

    @Test
    void kernelErrorsAreTyped()
    {
        // An IPv4 address on a nonexistent ifindex: the kernel refuses, with errno and its own text.
        assertThatThrownBy(() -> ns.call(() ->
        {
            try (NetlinkSocket s = NetlinkSocket.open(LibC.NETLINK_ROUTE).bind(0))
            {
                RtnetlinkAddresses.newAddress(s.request(NetlinkConstants.RTM_NEWADDR, RtnetlinkAddresses.ADD_FLAGS),
                    999_999, V4);
                s.execute("RTM_NEWADDR on ifindex 999999", null);
            }
            return null;
        })).isInstanceOfSatisfying(NetlinkException.class, e ->
        {
            assertThat(e.isNotFound()).isTrue();
            // The extended ack (NETLINK_EXT_ACK) carries the kernel's own reason.
            assertThat(e.kernelMessage()).contains("Device not found");
        }).hasMessageStartingWith("RTM_NEWADDR on ifindex 999999 failed: ");
    }

    @Test
    void receiveBufferCanBeForcedBeyondRmemMax() throws IOException
    {
        final int size = ns.call(() ->
        {
            try (NetlinkSocket s = NetlinkSocket.open(LibC.NETLINK_ROUTE))
            {
                s.receiveBufferSize(8 << 20);
                return s.receiveBufferSize();
            }
        });
        assertThat(size).isEqualTo(16 << 20); // the kernel doubles the value for bookkeeping
    }

    private interface Body<T>
    {
        T apply(RtnetlinkAddresses a) throws IOException;
    }

    private <T> T call(final Body<T> body) throws IOException
    {
        return ns.call(() ->
        {
            try (RtnetlinkAddresses a = RtnetlinkAddresses.open())
            {
                return body.apply(a);
            }
        });
    }

    private Map<String, Integer> protocols() throws IOException
    {
        return AddressProtocols.parse(lab.exec(AddressProtocols.command("up0").toArray(String[]::new)));
    }

    /**
     * iproute2 6.3 and later print IFA_PROTO as {@code "protocol"} (0xe5, or a name from rt_addrprotos);
     * 6.1, on this machine, prints nothing, and then there is nothing to compare.
     */
    private static void assertIpShowsProtocol(final JsonNode address, final int expected)
    {
        final JsonNode p = address.get("protocol");
        if (p != null && p.asText().matches("(0x)?[0-9a-fA-F]+"))
        {
            final String text = p.asText();
            assertThat(text.startsWith("0x") ? Integer.parseInt(text.substring(2), 16) : p.asInt())
                .as("ip -j addr protocol of %s", address).isEqualTo(expected);
        }
    }

    private List<JsonNode> kernelAddresses() throws IOException
    {
        final List<JsonNode> out = new ArrayList<>();
        JSON.readTree(lab.ip("-j", "addr", "show", "dev", "up0")).get(0).get("addr_info").forEach(out::add);
        return out;
    }

    private JsonNode kernelAddress(final String local) throws IOException
    {
        return kernelAddresses().stream().filter(n -> local.equals(n.get("local").asText())).findFirst()
            .orElseThrow(() -> new AssertionError(local + " not on up0: " + kernelAddressesText()));
    }

    private String kernelAddressesText()
    {
        try
        {
            return lab.ip("addr", "show", "dev", "up0");
        }
        catch (final IOException e)
        {
            return e.toString();
        }
    }
}
