package dev.egressd.agent.kernel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.kernel.nft.NftException;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import dev.egressd.agent.testing.AddressProtocols;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * NftKernel against the kernel in a throwaway namespace: libnftables and rtnetlink in-process on
 * the namespace's thread; the result is read back with {@code ip -j addr}, {@code nft} and a raw address
 * dump, independently of egressd's readers.
 */
@Privileged
class NftKernelPrivilegedTest
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Ipv4Address A4 = Ipv4Address.parse("203.0.113.10");
    private static final Ipv6Address A6 = Ipv6Address.parse("2001:db8:10::10");
    private static final Ipv4Address B4 = Ipv4Address.parse("203.0.113.20");
    private static final Ipv6Address B6 = Ipv6Address.parse("2001:db8:10::20");

    private LabNamespace lab;
    private NetNamespace ns;
    private NftKernel kernel;

    @BeforeEach
    void setUp() throws IOException
    {
        Requirements.rootWithNftables();
        lab = LabNamespace.withUplink();
        lab.exec("ip", "link", "set", "uplink", "up");
        ns = NetNamespace.enter(lab.name());
        kernel = ns.call(() -> NftKernel.open(DataplaneConfig.defaults("uplink")));
        ns.call(kernel::ensureTable);
    }

    @AfterEach
    void tearDown() throws IOException
    {
        LabNamespace.tearDown(lab, ns, kernel);
    }

    @Test
    void applyPutsTheAddressesOnAndReadReturnsTheWholePlan() throws IOException
    {
        final KernelPlan desired = machine(1, A4, A6, 1);
        final List<PlanChange> changes = on(() -> PlanDiff.between(kernel.read(), desired));
        on(() ->
        {
            kernel.apply(changes);
            return null;
        });
        assertThat(on(kernel::read)).isEqualTo(desired);

        final JsonNode v4 = address("203.0.113.10");
        final JsonNode v6 = address("2001:db8:10::10");
        assertThat(v4.get("prefixlen").asInt()).isEqualTo(32);
        assertThat(v6.get("prefixlen").asInt()).isEqualTo(128);
        assertThat(v6.get("preferred_life_time").asLong()).isZero();
        assertThat(protocols()).containsEntry("203.0.113.10/32", NetlinkConstants.IFAPROT_EGRESSD)
            .containsEntry("2001:db8:10::10/128", NetlinkConstants.IFAPROT_EGRESSD);
        assertThat(on(() -> PlanDiff.between(kernel.read(), desired))).as("nothing left to do").isEmpty();
    }

    @Test
    void aHandAddedAddressIsNotReadAndNeverRemovedByAReconcileOrTeardown() throws IOException
    {
        lab.exec("ip", "addr", "add", "203.0.113.99/32", "dev", "uplink");
        lab.exec("ip", "-6", "addr", "add", "2001:db8:10::99/128", "dev", "uplink", "nodad", "preferred_lft", "0");
        reconcile(machine(1, A4, A6, 1));
        assertThat(on(kernel::read).elements()).noneMatch(e -> e.toString().contains("::99")
            || e.toString().contains(".99"));

        // the plan drops everything: a reconcile removes egressd's addresses and nothing else
        final List<PlanChange> changes = reconcile(KernelPlan.empty());
        assertThat(changes).contains(PlanChange.remove(new PlanElement.Uplink4(A4)),
            PlanChange.remove(new PlanElement.Uplink6(A6)));
        assertThat(locals()).contains("203.0.113.99", "2001:db8:10::99")
            .doesNotContain("203.0.113.10", "2001:db8:10::10");

        reconcile(machine(1, A4, A6, 1));
        on(() ->
        {
            kernel.teardown();
            kernel.teardown();   // idempotent: no table, no owned address
            return null;
        });
        assertThat(locals()).contains("203.0.113.99", "2001:db8:10::99")
            .doesNotContain("203.0.113.10", "2001:db8:10::10");
        assertThat(lab.exec("nft", "list", "tables")).doesNotContain("egressd");
    }

    @Test
    void aFailedTransactionTakesOffTheAddressesThisCallAddedAndNothingElse() throws IOException
    {
        reconcile(machine(1, A4, A6, 1));
        final KernelPlan before = on(kernel::read);
        // B4 is already there by hand (foreign: used, never claimed, so it stays); B6 is new (taken off again)
        lab.exec("ip", "addr", "add", "203.0.113.20/32", "dev", "uplink");
        final List<PlanChange> bad = new ArrayList<>(List.of(
            PlanChange.add(new PlanElement.Uplink4(B4)),
            PlanChange.add(new PlanElement.Uplink6(B6)),
            PlanChange.add(new PlanElement.Static4(Ipv4Address.parse("10.77.0.3"))),
            // not in the table: nft refuses the whole transaction ("No such file or directory")
            PlanChange.remove(new PlanElement.Snat4(Ipv4Address.parse("10.77.0.99"), A4, 1024, 2047))));

        assertThatThrownBy(() -> on(() ->
        {
            kernel.apply(bad);
            return null;
        })).isInstanceOf(KernelException.class).hasMessageStartingWith("nft: ").hasMessageContaining("nothing changed")
            .hasCauseInstanceOf(NftException.class)
            .satisfies(e -> assertThat(((KernelException)e).source()).isEqualTo(KernelException.Source.NFT));

        assertThat(locals()).contains("203.0.113.10", "2001:db8:10::10", "203.0.113.20")
            .doesNotContain("2001:db8:10::20");
        assertThat(protocols()).as("the hand-made address is not claimed")
            .containsEntry("203.0.113.20/32", NetlinkConstants.IFAPROT_UNSPEC);
        final KernelPlan after = on(kernel::read);
        assertThat(after.elements()).containsAll(before.elements());
        assertThat(after.elements()).as("only the foreign address the plan asked for is new (present, not owned)")
            .containsExactlyInAnyOrderElementsOf(with(before, new PlanElement.Uplink4(B4)).elements());
    }

    @Test
    void aForeignAddressThePlanWantsIsUsedButNeverMarkedRewrittenOrRemoved() throws IOException
    {
        // the operator put the pair on the uplink by hand, the IPv6 one still preferred
        lab.exec("ip", "addr", "add", "203.0.113.10/32", "dev", "uplink");
        lab.exec("ip", "-6", "addr", "add", "2001:db8:10::10/128", "dev", "uplink", "nodad");
        final KernelPlan desired = machine(1, A4, A6, 1);
        final List<PlanChange> first = reconcile(desired);
        assertThat(first).contains(PlanChange.add(new PlanElement.Uplink4(A4)), PlanChange.add(new PlanElement.Uplink6(A6)));
        assertThat(on(kernel::read)).isEqualTo(desired);
        assertThat(reconcile(desired)).as("the diff is stable: nothing to add on the next reconcile").isEmpty();
        assertThat(on(kernel::foreignAddresses)).containsExactlyInAnyOrder(new PlanElement.Uplink4(A4),
            new PlanElement.Uplink6(A6));
        assertThat(protocols()).containsEntry("203.0.113.10/32", NetlinkConstants.IFAPROT_UNSPEC)
            .containsEntry("2001:db8:10::10/128", NetlinkConstants.IFAPROT_UNSPEC);
        assertThat(address("2001:db8:10::10").get("preferred_life_time").asLong()).as("not rewritten")
            .isEqualTo(0xFFFFFFFFL);

        // a restart forgets which foreign addresses were wanted: one reconcile finds them again, then stable
        final NftKernel restarted = on(() -> NftKernel.open(DataplaneConfig.defaults("uplink")));
        try
        {
            assertThat(on(() -> PlanDiff.between(restarted.read(), desired))).hasSize(2);
            on(() ->
            {
                restarted.apply(PlanDiff.between(restarted.read(), desired));
                return null;
            });
            assertThat(on(() -> PlanDiff.between(restarted.read(), desired))).isEmpty();
        }
        finally
        {
            on(() ->
            {
                restarted.close();
                return null;
            });
        }

        // the plan lets go of them, then teardown: they stay, untouched
        final List<PlanChange> release = reconcile(KernelPlan.empty());
        assertThat(release).contains(PlanChange.remove(new PlanElement.Uplink4(A4)),
            PlanChange.remove(new PlanElement.Uplink6(A6)));
        assertThat(locals()).contains("203.0.113.10", "2001:db8:10::10");
        assertThat(on(kernel::read)).as("forgotten once released").isEqualTo(KernelPlan.empty());
        assertThat(reconcile(KernelPlan.empty())).isEmpty();
        reconcile(desired);
        on(() ->
        {
            kernel.teardown();
            return null;
        });
        assertThat(locals()).contains("203.0.113.10", "2001:db8:10::10");
        assertThat(protocols()).containsEntry("203.0.113.10/32", NetlinkConstants.IFAPROT_UNSPEC)
            .containsEntry("2001:db8:10::10/128", NetlinkConstants.IFAPROT_UNSPEC);

        // removed by hand later: the next reconcile adds it as egressd's own
        lab.exec("ip", "addr", "del", "203.0.113.10/32", "dev", "uplink");
        on(kernel::ensureTable);
        reconcile(desired);
        assertThat(protocols()).containsEntry("203.0.113.10/32", NetlinkConstants.IFAPROT_EGRESSD);
        assertThat(on(kernel::foreignAddresses)).containsExactly(new PlanElement.Uplink6(A6));
    }

    @Test
    void aMissingUplinkIsAnRtnetlinkFailure() throws IOException
    {
        final NftKernel other = on(() -> NftKernel.open(new DataplaneConfig("egressd2", "nope0", "tap-*", 1024)));
        try
        {
            on(other::ensureTable);
            assertThatThrownBy(() -> on(other::read)).isInstanceOf(KernelException.class)
                .hasMessageStartingWith("rtnetlink: ").hasMessageContaining("nope0")
                .satisfies(e -> assertThat(((KernelException)e).source()).isEqualTo(KernelException.Source.RTNETLINK));
        }
        finally
        {
            on(() ->
            {
                other.close(); // its table goes with the namespace
                return null;
            });
        }
    }

    @Test
    void callsFromAnotherThreadAreRefused()
    {
        assertThatThrownBy(kernel::read).isInstanceOf(IllegalStateException.class)
            .hasMessageContaining("belongs to netns-" + lab.name());
    }

    @Test
    void startUpCheckNamesAMissingUplinkAndPassesAPresentOne() throws IOException
    {
        assertThat(ns.call(() -> KernelChecks.check(DataplaneConfig.defaults("nope0"))))
            .contains("uplink interface nope0 does not exist");
        assertThat(ns.call(() -> KernelChecks.check(DataplaneConfig.defaults("uplink")))).isEmpty();
    }

    // ---------------------------------------------------------------------------------------------

    private List<PlanChange> reconcile(final KernelPlan desired) throws IOException
    {
        return on(() ->
        {
            final List<PlanChange> changes = PlanDiff.between(kernel.read(), desired);
            kernel.apply(changes);
            return changes;
        });
    }

    private <T> T on(final Callable<T> task) throws IOException
    {
        return ns.call(task);
    }

    private static KernelPlan machine(final int n, final Ipv4Address egress4, final Ipv6Address egress6,
                                      final int block)
    {
        final Ipv4Address g4 = Ipv4Address.parse("10.77.0." + (n + 1));
        final Ipv6Address g6 = Ipv6Address.parse("fd77::" + (n + 1));
        final int first = block * 1024;
        return KernelPlan.of(List.of(
            new PlanElement.Uplink4(egress4), new PlanElement.Uplink6(egress6),
            new PlanElement.Static4(g4), new PlanElement.Static6(g6),
            new PlanElement.Guest4("tap-m" + n, g4), new PlanElement.Guest6("tap-m" + n, g6),
            new PlanElement.Snat4(g4, egress4, first, first + 1023),
            new PlanElement.Snat6(g6, egress6, first, first + 1023)));
    }

    private static KernelPlan with(final KernelPlan plan, final PlanElement extra)
    {
        final List<PlanElement> all = new ArrayList<>(plan.elements());
        all.add(extra);
        return KernelPlan.of(all);
    }

    private List<JsonNode> addresses() throws IOException
    {
        final List<JsonNode> out = new ArrayList<>();
        JSON.readTree(lab.exec("ip", "-j", "addr", "show", "dev", "uplink")).get(0).get("addr_info").forEach(out::add);
        return out;
    }

    private List<String> locals() throws IOException
    {
        return addresses().stream().map(a -> a.get("local").asText()).toList();
    }

    private JsonNode address(final String local) throws IOException
    {
        final List<JsonNode> all = addresses();
        return all.stream().filter(a -> local.equals(a.get("local").asText())).findFirst()
            .orElseThrow(() -> new AssertionError(local + " is not on the uplink: " + all));
    }

    private Map<String, Integer> protocols() throws IOException
    {
        return AddressProtocols.parse(lab.exec(AddressProtocols.command("uplink").toArray(String[]::new)));
    }
}
