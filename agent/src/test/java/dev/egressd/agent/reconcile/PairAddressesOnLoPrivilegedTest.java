package dev.egressd.agent.reconcile;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.egressd.agent.kernel.LoopbackArp;
import dev.egressd.agent.kernel.NftKernel;
import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.StateStore;
import dev.egressd.agent.testing.AddressProtocols;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import dev.egressd.core.model.AddressDevice;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Region mode's pair addresses on {@code lo} (docs/region.md, "Addresses on lo"), through the control loop and the
 * real kernel in a throwaway namespace: the loop runs on the namespace's thread (its executor runs each task in the
 * caller), so the nft context, the rtnetlink socket and {@code /proc/sys/net} are the namespace's. What the kernel
 * holds is read back with {@code ip -j addr}, a raw address dump and {@code sysctl}, not with egressd's readers.
 */
@Privileged
class PairAddressesOnLoPrivilegedTest
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HostSettings SETTINGS = new HostSettings("ord", new BlockLayout(8, 1024), 1024,
        AddressDevice.LO);
    private static final long DRAIN_NANOS = 100_000_000_000L;

    @TempDir
    Path dir;

    private LabNamespace lab;
    private NetNamespace ns;
    private NftKernel kernel;
    private ControlLoop loop;
    private final AtomicLong nanos = new AtomicLong(1_000);
    private final AtomicLong wall = new AtomicLong(1_700_000_000_000L);

    @BeforeEach
    void setUp() throws IOException
    {
        Requirements.rootWithNftables();
        lab = LabNamespace.withUplink();
        lab.exec("ip", "link", "set", "uplink", "up");
        // what a fresh host may have: both at 0 (the namespace copies the root namespace's values otherwise)
        lab.exec("sysctl", "-q", "-w", LoopbackArp.ARP_IGNORE + "=0", LoopbackArp.ARP_ANNOUNCE + "=0");
        ns = NetNamespace.enter(lab.name());
        kernel = new NftKernel(DataplaneConfig.defaults("uplink"), AddressDevice.LO);
        loop = ControlLoop.of(SETTINGS, DesiredState.empty(StateMapper.host(SETTINGS)), kernel, new StateStore(dir),
            Runnable::run, nanos::get, wall::get, 100);
        on(() ->
        {
            loop.initialSync(); // opens the kernel on this thread: the sysctls are raised before any address
            return null;
        });
    }

    @AfterEach
    void tearDown() throws IOException
    {
        LabNamespace.tearDown(lab, ns, kernel);
    }

    @Test
    void appPairAddressesGoOnLoWithTheArpSysctlsSetAndAMachineScopedPairStaysOnTheUplink() throws Exception
    {
        assertThat(sysctl(LoopbackArp.ARP_IGNORE)).isEqualTo("1");
        assertThat(sysctl(LoopbackArp.ARP_ANNOUNCE)).isEqualTo("2");
        assertThat(loop.arpSysctls()).isEqualTo("ok");

        appPair("203.0.113.10", "2001:db8:10::10");
        putMachine("m1", 2);
        putMachine("m2", 3);
        mutate(Operation.SET_MACHINE_PAIR, l -> l.allocator().setMachineScopedPair("m2",
            pair("203.0.113.20", "2001:db8:10::20")));

        assertThat(locals("lo")).contains("203.0.113.10", "2001:db8:10::10")
            .doesNotContain("203.0.113.20", "2001:db8:10::20");
        assertThat(locals("uplink")).contains("203.0.113.20", "2001:db8:10::20")
            .doesNotContain("203.0.113.10", "2001:db8:10::10");
        assertThat(protocols("lo")).containsEntry("203.0.113.10/32", NetlinkConstants.IFAPROT_EGRESSD)
            .containsEntry("2001:db8:10::10/128", NetlinkConstants.IFAPROT_EGRESSD);
        final JsonNode v6 = address("lo", "2001:db8:10::10");
        assertThat(v6.get("prefixlen").asInt()).isEqualTo(128);
        assertThat(v6.get("preferred_life_time").asLong()).as("deprecated: never picked by masquerade").isZero();
        assertThat(v6.path("tentative").asBoolean(false)).as("nodad: usable at once").isFalse();
        assertThat(address("lo", "203.0.113.10").get("prefixlen").asInt()).isEqualTo(32);
        assertThat(on(kernel::read)).as("the kernel reads back what the loop wants").isEqualTo(loop.desiredPlan());
    }

    @Test
    void anAddressRemovedFromLoByHandIsPutBackAndALoweredSysctlIsReportedNotChanged() throws Exception
    {
        appPair("203.0.113.10", "2001:db8:10::10");
        putMachine("m1", 2);
        lab.exec("ip", "addr", "del", "203.0.113.10/32", "dev", "lo");
        lab.exec("ip", "-6", "addr", "del", "2001:db8:10::10/128", "dev", "lo");
        lab.exec("sysctl", "-q", "-w", LoopbackArp.ARP_IGNORE + "=0");
        assertThat(locals("lo")).doesNotContain("203.0.113.10", "2001:db8:10::10");

        reconcile();

        assertThat(locals("lo")).contains("203.0.113.10", "2001:db8:10::10");
        assertThat(locals("uplink")).doesNotContain("203.0.113.10", "2001:db8:10::10");
        assertThat(protocols("lo")).containsEntry("203.0.113.10/32", NetlinkConstants.IFAPROT_EGRESSD)
            .containsEntry("2001:db8:10::10/128", NetlinkConstants.IFAPROT_EGRESSD);
        assertThat(loop.health().repairs()).isPositive();
        assertThat(loop.arpSysctls()).startsWith(LoopbackArp.ARP_IGNORE + " is 0, needs 1");
        assertThat(sysctl(LoopbackArp.ARP_IGNORE)).as("reported, never set back behind the operator").isEqualTo("0");
    }

    @Test
    void aReleasedPairDrainsOffLoAndTheTeardownTakesOnlyEgressdsAddressesOff() throws Exception
    {
        appPair("203.0.113.10", "2001:db8:10::10");
        putMachine("m1", 2);
        mutate(Operation.RELEASE_PAIR, l -> l.allocator().releasePair("a1", Ipv4Address.parse("203.0.113.10")));
        assertThat(locals("lo")).as("draining").contains("203.0.113.10", "2001:db8:10::10");
        nanos.addAndGet(DRAIN_NANOS);
        wall.addAndGet(DRAIN_NANOS / 1_000_000);
        reconcile();
        assertThat(locals("lo")).as("drained").doesNotContain("203.0.113.10", "2001:db8:10::10");

        appPair("203.0.113.30", "2001:db8:10::30");
        putMachine("m3", 4);
        mutate(Operation.SET_MACHINE_PAIR, l -> l.allocator().setMachineScopedPair("m3",
            pair("203.0.113.20", "2001:db8:10::20")));
        lab.exec("ip", "addr", "add", "203.0.113.99/32", "dev", "lo");
        lab.exec("ip", "-6", "addr", "add", "2001:db8:10::99/128", "dev", "lo", "nodad");
        assertThat(locals("lo")).contains("203.0.113.30", "2001:db8:10::30");

        on(() ->
        {
            kernel.teardown();
            return null;
        });

        assertThat(locals("lo")).contains("127.0.0.1", "203.0.113.99", "2001:db8:10::99")
            .doesNotContain("203.0.113.30", "2001:db8:10::30");
        assertThat(locals("uplink")).doesNotContain("203.0.113.20", "2001:db8:10::20");
    }

    // ---------------------------------------------------------------------------------------------

    private void appPair(final String ipv4, final String ipv6) throws IOException
    {
        mutate(Operation.ADD_PAIR, l -> l.allocator().addPair("a1", pair(ipv4, ipv6)));
    }

    private void putMachine(final String id, final int n) throws IOException
    {
        final Machine m = new Machine(id, "a1", "tap-" + id, Ipv4Address.parse("10.77.0." + n),
            Ipv6Address.parse("fd77::" + n), null);
        mutate(Operation.PUT_MACHINE, l -> l.putMachine(m));
    }

    private void mutate(final Operation op, final ControlLoop.Mutation change) throws IOException
    {
        final MutationResult result = on(() -> loop.mutate(op, op.name(), change).get());
        assertThat(result).as("%s", op).isInstanceOf(MutationResult.Ok.class);
    }

    private void reconcile() throws IOException
    {
        on(() ->
        {
            loop.reconcile();
            return null;
        });
    }

    private static EgressPair pair(final String ipv4, final String ipv6)
    {
        return new EgressPair(Ipv4Address.parse(ipv4), Ipv6Address.parse(ipv6), SETTINGS.region());
    }

    private <T> T on(final Callable<T> task) throws IOException
    {
        return ns.call(task);
    }

    private String sysctl(final String key) throws IOException
    {
        return lab.exec("sysctl", "-n", key).strip();
    }

    private List<JsonNode> addresses(final String dev) throws IOException
    {
        final List<JsonNode> out = new ArrayList<>();
        JSON.readTree(lab.exec("ip", "-j", "addr", "show", "dev", dev)).get(0).get("addr_info").forEach(out::add);
        return out;
    }

    private List<String> locals(final String dev) throws IOException
    {
        return addresses(dev).stream().map(a -> a.get("local").asText()).toList();
    }

    private JsonNode address(final String dev, final String local) throws IOException
    {
        final List<JsonNode> all = addresses(dev);
        return all.stream().filter(a -> local.equals(a.get("local").asText())).findFirst()
            .orElseThrow(() -> new AssertionError(local + " is not on " + dev + ": " + all));
    }

    private Map<String, Integer> protocols(final String dev) throws IOException
    {
        return AddressProtocols.parse(lab.exec(AddressProtocols.command(dev).toArray(String[]::new)));
    }
}
