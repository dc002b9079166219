package dev.egressd.agent.conntrack;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent.Type;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Scope;

import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Test;

/** The ledger feed alone: machines applied by hand, events fed on the test thread (the feed's owner here). */
class LedgerFeedTest
{
    private static final int NAT = NetlinkConstants.IPS_SRC_NAT | NetlinkConstants.IPS_CONFIRMED;
    private static final int G1 = Ipv4Address.parse("10.77.0.2").bits();
    private static final int G2 = Ipv4Address.parse("10.77.0.3").bits();
    private static final int DST = Ipv4Address.parse("198.51.100.10").bits();
    private static final int EGRESS = Ipv4Address.parse("203.0.113.10").bits();

    private final List<String> lines = new ArrayList<>();
    private final LedgerFeed feed = new LedgerFeed(1024, new RefusalLog(RefusalLog.Format.TEXT, lines::add,
        () -> 0L));
    private final ConntrackEvent e = new ConntrackEvent();

    private static TrackedMachine machine(final String id, final int handle, final int guest, final int first,
        final int last)
    {
        return new TrackedMachine(id, "a1", handle, new Ipv4Address(guest), null, Scope.APP,
            new Ipv4Address(EGRESS), null, first, last);
    }

    private void apply(final List<TrackedMachine> registers, final List<TrackedMachine> unregisters,
        final List<TrackedMachine> all)
    {
        final GuestIndex.Builder b = new GuestIndex.Builder();
        all.forEach(t -> b.add4(t.guest4().bits(), t.handle()));
        feed.apply(new MachineRegistry.Update(b.build(), HeldAddresses.EMPTY, registers, unregisters, List.of()));
    }

    private void open(final int id, final int guest, final int port)
    {
        feed.onEvent(e.fillIpv4(Type.NEW, id, 6, NAT, 1, guest, 40000 + id, DST, 80, EGRESS, port));
    }

    @Test
    void eventsOfKnownGuestsFeedTheLedgerAndTheSnapshotCarriesEveryFigure()
    {
        final TrackedMachine m1 = machine("m1", 0, G1, 1024, 2047);
        apply(List.of(m1), List.of(), List.of(m1));
        open(1, G1, 1030);
        open(2, G1, 1031);
        open(3, G2, 1032);                                            // not a guest egressd knows
        feed.onEvent(e.fillIpv4(Type.DESTROY, 2, 6, NAT, 0, G1, 40002, DST, 80, EGRESS, 1031));
        feed.onEvent(e.fillIpv4(Type.EXISTING, 4, 6, NAT, 3, G1, 40004, DST, 80, EGRESS, 1033));
        feed.onEvent(e.fillIpv4(Type.UPDATE, 4, 6, NAT, 3, G1, 40004, DST, 80, EGRESS, 1033));
        assertThat(feed.ledger().count(0, DST)).isEqualTo(2);
        assertThat(feed.machine("m1")).isEqualTo(m1);

        final ConntrackSnapshot s = feed.snapshot(7, 2, 3, 11);
        assertThat(s.newEvents()).isEqualTo(3);
        assertThat(s.destroyEvents()).isEqualTo(1);
        assertThat(s.existingEvents()).isEqualTo(1);
        assertThat(s.updateEvents()).isEqualTo(1);
        assertThat(s.guestEvents()).as("every event but the stranger's").isEqualTo(5);
        assertThat(s.overruns()).isEqualTo(7);
        assertThat(s.resyncs()).isEqualTo(2);
        assertThat(s.errors()).isEqualTo(3);
        assertThat(s.flowsDeleted()).isEqualTo(11);
        assertThat(s.cap()).isEqualTo(1024);
        assertThat(s.liveConnections()).isEqualTo(2);
        assertThat(s.machines()).containsOnlyKeys("m1");
        assertThat(s.machines().get("m1")).isEqualTo(new ConnectionQueries.MachineSummary(2, 2));
        assertThat(lines).isEmpty();
    }

    @Test
    void violationsAreCountedPerMachineAndForgottenWithTheMachine()
    {
        final TrackedMachine m1 = machine("m1", 0, G1, 1024, 2047);
        final TrackedMachine m2 = machine("m2", 1, G2, 2048, 3071);
        apply(List.of(m1, m2), List.of(), List.of(m1, m2));
        open(1, G1, 2100);                                            // m2's block: a violation of m1
        open(2, G2, 2101);
        assertThat(feed.connections("m1", 10).violations()).isEqualTo(1);
        assertThat(feed.connections("m2", 10).violations()).isZero();
        assertThat(lines).singleElement().asString().startsWith("limit reason=block_violation machine=m1 app=a1 ");

        // a new range keeps the count (the same machine, re-registered); deleting it forgets it
        final TrackedMachine moved = machine("m1", 0, G1, 3072, 4095);
        apply(List.of(moved), List.of(), List.of(moved, m2));
        assertThat(feed.connections("m1", 10).violations()).isEqualTo(1);
        apply(List.of(), List.of(moved), List.of(m2));
        assertThat(feed.connections("m1", 10)).isNull();
        assertThat(feed.machine("m1")).isNull();
        open(3, G1, 1030);
        assertThat(feed.ledger().liveConnections()).as("no longer a guest").isEqualTo(1);

        // a fresh machine under the freed handle starts from zero
        final TrackedMachine m3 = machine("m3", 0, G1, 1024, 2047);
        apply(List.of(m3), List.of(), List.of(m3, m2));
        assertThat(feed.connections("m3", 10).violations()).isZero();
    }

    @Test
    void theConnectionsAnswerListsTheBusiestDestinationsUpToTop()
    {
        final TrackedMachine m1 = machine("m1", 0, G1, 1024, 2047);
        apply(List.of(m1), List.of(), List.of(m1));
        for (int i = 1; i <= 3; i++)
        {
            open(i, G1, 1024 + i);
        }
        feed.onEvent(e.fillIpv4(Type.NEW, 9, 6, NAT, 1, G1, 40009, DST + 1, 80, EGRESS, 1100));
        final ConnectionQueries.Connections c = feed.connections("m1", 1);
        assertThat(c.machine()).isEqualTo("m1");
        assertThat(c.total()).isEqualTo(4);
        assertThat(c.busiest().destination()).isEqualTo("198.51.100.10");
        assertThat(c.busiest().count()).isEqualTo(3);
        assertThat(c.destinations()).hasSize(1);
        final ConnectionQueries.Connections none = feed.connections("m1", 0);
        assertThat(none.destinations()).as("top 0: the busiest only").isEmpty();
        assertThat(none.busiest().count()).isEqualTo(3);
        assertThat(feed.connections("m1", 10).destinations()).hasSize(2);
    }

    @Test
    void handlesBeyondTheFirstTablesGrowThem()
    {
        final TrackedMachine far = machine("far", 100, G1, 1024, 2047);
        apply(List.of(far), List.of(), List.of(far));
        open(1, G1, 3000);
        assertThat(feed.connections("far", 10).violations()).isEqualTo(1);
        assertThat(feed.snapshot(0, 0, 0, 0).machines().get("far").total()).isEqualTo(1);
    }
}
