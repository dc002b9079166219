package dev.egressd.agent.conntrack;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Scope;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.Test;

/** Flow deletions alone, against a table in memory: when they run, what they take, and a failed attempt. */
class FlowHygieneTest
{
    private static final int NAT = NetlinkConstants.IPS_SRC_NAT | NetlinkConstants.IPS_SRC_NAT_DONE
        | NetlinkConstants.IPS_CONFIRMED;
    private static final Ipv4Address A4 = Ipv4Address.parse("203.0.113.10");
    private static final Ipv6Address A6 = Ipv6Address.parse("2001:db8:10::10");
    private static final Ipv4Address B4 = Ipv4Address.parse("203.0.113.20");
    private static final Ipv6Address B6 = Ipv6Address.parse("2001:db8:10::20");
    private static final Ipv4Address C4 = Ipv4Address.parse("203.0.113.30");
    private static final Ipv4Address HOST4 = Ipv4Address.parse("192.0.2.1");
    private static final Ipv4Address G1 = Ipv4Address.parse("10.77.0.2");
    private static final Ipv6Address G1V6 = Ipv6Address.parse("fd77::2");
    private static final Ipv4Address G2 = Ipv4Address.parse("10.77.0.3");
    private static final long SECOND = 1_000_000_000L;

    private final AtomicLong clock = new AtomicLong(10 * SECOND);
    private final FakeFlowTable table = new FakeFlowTable();
    private final FlowHygiene hygiene = new FlowHygiene(table, clock::get);
    private final Map<String, TrackedMachine> machines = new HashMap<>();

    private void track(final String id, final Ipv4Address guest4, final Ipv6Address guest6, final Scope scope,
        final Ipv4Address egress4, final Ipv6Address egress6)
    {
        machines.put(id, new TrackedMachine(id, "a1", machines.size(), guest4, guest6, scope, egress4, egress6, 1,
            65535));
    }

    private FlowDeletion all(final long due, final String machine, final Ipv4Address guest4,
        final Ipv6Address guest6)
    {
        return new FlowDeletion(due, machine, guest4, guest6, null, null, FlowDeletion.Kind.ALL_OR_VIA, "test");
    }

    private FlowDeletion via(final long due, final String machine, final Ipv4Address guest4,
        final Ipv4Address egress4, final Ipv6Address egress6)
    {
        return new FlowDeletion(due, machine, guest4, null, egress4, egress6, FlowDeletion.Kind.ALL_OR_VIA, "test");
    }

    private FlowDeletion unheld(final String machine, final Ipv4Address guest4, final Ipv6Address guest6)
    {
        return new FlowDeletion(clock.get(), machine, guest4, guest6, null, null, FlowDeletion.Kind.UNHELD, "test");
    }

    private boolean run()
    {
        return hygiene.runDue(machines::get);
    }

    @Test
    void aDeletionWaitsUntilItIsDueAndEveryDeletionDueShareOneDump()
    {
        track("m2", G2, null, Scope.APP, B4, B6);
        table.add4(1, NAT, G1.bits(), A4.bits(), 1030);
        table.add6(2, NAT, G1V6, A6, 1031);
        table.add4(3, NAT, G2.bits(), A4.bits(), 2100);
        table.add4(4, NAT, G2.bits(), B4.bits(), 2101);
        hygiene.schedule(List.of(all(clock.get(), "m1", G1, G1V6), via(clock.get() + 5 * SECOND, "m2", G2, A4, A6)),
            HeldAddresses.EMPTY);

        assertThat(run()).isTrue();
        assertThat(table.deleted).as("m1 deleted: every flow of its guest addresses").containsExactlyInAnyOrder(1, 2);
        assertThat(hygiene.pending()).isEqualTo(1);
        assertThat(run()).as("nothing due").isFalse();
        assertThat(table.dumps).isEqualTo(1);

        clock.addAndGet(5 * SECOND);
        table.add4(5, NAT, G1.bits(), A4.bits(), 1032);
        hygiene.schedule(List.of(all(clock.get(), "m1", G1, null)), HeldAddresses.EMPTY);
        assertThat(run()).isTrue();
        assertThat(table.dumps).as("one dump for both").isEqualTo(2);
        assertThat(table.deleted).as("m2's flows via the address it left; m1's new one")
            .containsExactlyInAnyOrder(1, 2, 3, 5);
        assertThat(table.entries).extracting(ConntrackEvent::id).containsExactly(4);
        assertThat(hygiene.flowsDeleted()).isEqualTo(4);
        assertThat(hygiene.pending()).isZero();
    }

    @Test
    void aFailedDumpPutsEveryDueDeletionBackForASecondAndCountsOneFailure()
    {
        table.add4(1, NAT, G1.bits(), A4.bits(), 1030);
        table.add4(2, NAT, G2.bits(), A4.bits(), 2100);
        table.failingDumps = 1;
        hygiene.schedule(List.of(all(clock.get(), "m1", G1, null), all(clock.get(), "m2", G2, null)),
            HeldAddresses.EMPTY);
        assertThat(run()).as("tried: the figures change").isTrue();
        assertThat(hygiene.failures()).isEqualTo(1);
        assertThat(hygiene.pending()).isEqualTo(2);
        assertThat(table.deleted).isEmpty();

        clock.addAndGet(SECOND - 1);
        assertThat(run()).isFalse();
        assertThat(table.dumps).as("not before a second").isEqualTo(1);
        clock.addAndGet(1);
        assertThat(run()).isTrue();
        assertThat(table.deleted).containsExactlyInAnyOrder(1, 2);
        assertThat(hygiene.failures()).isEqualTo(1);
        assertThat(hygiene.flowsDeleted()).isEqualTo(2);
    }

    @Test
    void aDeletionNoLongerWantedWhenDueIsDroppedWithoutADump()
    {
        table.add4(1, NAT, G1.bits(), A4.bits(), 1030);
        table.add4(2, NAT, G2.bits(), HOST4.bits(), 40002);
        // m1 moved back to A before A's drain deletion came due; m2 is host again before its unheld deletion ran
        track("m1", G1, null, Scope.APP, A4, A6);
        track("m2", G2, null, Scope.HOST, null, null);
        hygiene.schedule(List.of(via(clock.get(), "m1", G1, A4, A6), unheld("m2", G2, null)), HeldAddresses.EMPTY);
        assertThat(run()).isFalse();
        assertThat(table.dumps).isZero();
        assertThat(hygiene.pending()).as("dropped, not kept for later").isZero();
        // an unheld deletion for a machine deleted meanwhile: its own deletion takes every flow
        hygiene.schedule(List.of(unheld("gone", G1, null)), HeldAddresses.EMPTY);
        assertThat(run()).isFalse();
        assertThat(table.dumps).isZero();
        assertThat(table.entries).hasSize(2);
    }

    @Test
    void unheldTakesTranslatedFlowsToNoHeldAddressAndKeepsTheMachinesOwnEgressAndUntranslatedFlows()
    {
        track("m1", G1, G1V6, Scope.APP, C4, null);
        table.add4(1, NAT, G1.bits(), HOST4.bits(), 40001);                              // masqueraded: goes
        table.add6(2, NAT, G1V6, Ipv6Address.parse("2001:db8::1"), 40002);                 // masqueraded: goes
        table.add4(3, NAT, G1.bits(), B4.bits(), 1030);                                    // held: kept
        table.add6(4, NAT, G1V6, B6, 1031);                                                // held: kept
        table.add4(5, NAT, G1.bits(), C4.bits(), 1032);                                    // its egress now: kept
        table.add4(6, NetlinkConstants.IPS_CONFIRMED, G1.bits(), G1.bits(), 40006);         // not translated: kept
        table.add4(7, NAT, G2.bits(), HOST4.bits(), 40007);                                // another guest: kept
        hygiene.schedule(List.of(unheld("m1", G1, G1V6)), HeldAddresses.of(List.of(A4, B4), List.of(A6, B6)));
        assertThat(run()).isTrue();
        assertThat(table.deleted).containsExactlyInAnyOrder(1, 2);
        assertThat(table.entries).extracting(ConntrackEvent::id).containsExactly(3, 4, 5, 6, 7);
    }

    @Test
    void withoutATableDueDeletionsAreDroppedAndNothingIsCounted()
    {
        final FlowHygiene none = new FlowHygiene(null, clock::get);
        none.schedule(List.of(all(clock.get(), "m1", G1, null)), HeldAddresses.EMPTY);
        assertThat(none.runDue(machines::get)).isFalse();
        assertThat(none.pending()).isZero();
        assertThat(none.flowsDeleted()).isZero();
        assertThat(none.failures()).isZero();
    }

    @Test
    void heldAddressesIgnoreOrderDuplicatesAndNulls()
    {
        final HeldAddresses a = HeldAddresses.of(java.util.Arrays.asList(B4, A4, null, B4),
            java.util.Arrays.asList(null, B6, A6));
        final HeldAddresses b = HeldAddresses.of(List.of(A4, B4), List.of(A6, B6));
        assertThat(a).isEqualTo(b).hasSameHashCodeAs(b);
        assertThat(a.contains4(A4.bits())).isTrue();
        assertThat(a.contains4(C4.bits())).isFalse();
        assertThat(a.contains6(B6.high(), B6.low())).isTrue();
        assertThat(a.contains6(G1V6.high(), G1V6.low())).isFalse();
        assertThat(a).isNotEqualTo(HeldAddresses.of(List.of(A4), List.of(A6, B6)));
        assertThat(a.toString()).isEqualTo("[203.0.113.10, 203.0.113.20, 2001:db8:10::10, 2001:db8:10::20]");
        assertThat(HeldAddresses.EMPTY).isEqualTo(HeldAddresses.of(List.of(), List.of()));
    }
}
