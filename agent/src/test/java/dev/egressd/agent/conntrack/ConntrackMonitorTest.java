package dev.egressd.agent.conntrack;

import dev.egressd.agent.refusals.RefusalLog;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent.Type;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;

import java.io.IOException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.Test;

/**
 * The monitor's event path and machine diff, without a kernel: events are filled by hand and fed on the test
 * thread, which plays the monitor thread (the monitor is not started).
 */
class ConntrackMonitorTest
{
    private static final int NAT = NetlinkConstants.IPS_SRC_NAT | NetlinkConstants.IPS_SRC_NAT_DONE
        | NetlinkConstants.IPS_CONFIRMED;
    private static final EgressPair A = new EgressPair(Ipv4Address.parse("203.0.113.10"),
        Ipv6Address.parse("2001:db8:10::10"), "lab");
    private static final EgressPair B = new EgressPair(Ipv4Address.parse("203.0.113.20"),
        Ipv6Address.parse("2001:db8:10::20"), "lab");
    private static final int G1 = Ipv4Address.parse("10.77.0.2").bits();
    private static final int G2 = Ipv4Address.parse("10.77.0.3").bits();
    private static final int DST = Ipv4Address.parse("198.51.100.10").bits();
    private static final int DST2 = Ipv4Address.parse("198.51.100.11").bits();
    private static final Ipv6Address G1V6 = Ipv6Address.parse("fd77::2");
    private static final Ipv6Address DST6 = Ipv6Address.parse("2001:db8:100::10");

    private final AtomicLong clock = new AtomicLong(1_000_000_000L);
    private final List<String> lines = new ArrayList<>();
    private final RefusalLog log = new RefusalLog(RefusalLog.Format.TEXT, lines::add, clock::get);
    private final ConntrackEvent e = new ConntrackEvent();

    private static EgressAllocator.MachineView app(final String id, final int guest, final EgressPair pair,
        final int first, final int last)
    {
        final Machine m = new Machine(id, "a1", "tap-" + id, new Ipv4Address(guest),
            id.equals("m1") ? G1V6 : null, null);
        return new EgressAllocator.MachineView(0, m, new Egress(Scope.APP, pair, 1, first, last, "slot"), null);
    }

    private static EgressAllocator.MachineView host(final String id, final int guest)
    {
        final Machine m = new Machine(id, "a1", "tap-" + id, new Ipv4Address(guest),
            id.equals("m1") ? G1V6 : null, null);
        return new EgressAllocator.MachineView(0, m, new Egress(Scope.HOST, null, -1, -1, -1, "masquerade"), null);
    }

    private static EgressAllocator.MachineView pending(final String id, final int guest)
    {
        final Machine m = new Machine(id, "a1", "tap-" + id, new Ipv4Address(guest), null, null);
        return new EgressAllocator.MachineView(0, m, new Egress(Scope.PENDING, null, -1, -1, -1, "every pair is full"),
            null);
    }

    private ConntrackMonitor monitor(final int cap, final EgressAllocator.MachineView... machines)
    {
        final ConntrackMonitor monitor = new ConntrackMonitor(null, cap, log, clock::get);
        monitor.machinesChanged(List.of(machines), 350_000_000_000L);
        monitor.drainCommands();
        return monitor;
    }

    private void open(final ConntrackMonitor m, final int id, final int guest, final int dst, final int port)
    {
        m.onEvent(e.fillIpv4(Type.NEW, id, 6, NAT, 1, guest, 40000 + id, dst, 80, A.ipv4().bits(), port));
    }

    @Test
    void guestFlowsAreCountedPerDestinationAndClosedOnDestroyOrTimeWait()
    {
        final ConntrackMonitor m = monitor(1024, app("m1", G1, A, 1024, 2047));
        for (int i = 1; i <= 30; i++)
        {
            open(m, i, G1, DST, 1024 + i);
        }
        for (int i = 31; i <= 37; i++)
        {
            open(m, i, G1, DST2, 1024 + i);
        }
        m.onEvent(e.fillIpv6(Type.NEW, 99, 6, NAT, 1, G1V6.high(), G1V6.low(), DST6.high(), DST6.low(),
            A.ipv6().high(), A.ipv6().low(), 1500));
        // not a guest, and a guest flow that was not translated (to the host itself): ignored
        m.onEvent(e.fillIpv4(Type.NEW, 100, 6, NAT, 1, Ipv4Address.parse("10.9.9.9").bits(), 1, DST, 80, 0, 5));
        m.onEvent(e.fillIpv4(Type.NEW, 101, 6, NetlinkConstants.IPS_CONFIRMED, 1, G1, 1, DST, 80, 0, 5));
        assertThat(m.ledger().count(0, DST)).isEqualTo(30);
        assertThat(m.ledger().count(0, DST2)).isEqualTo(7);
        assertThat(m.ledger().machineConnections(0)).isEqualTo(38);

        final ConnectionQueries.Connections c = connections(m, "m1", 2);
        assertThat(c.total()).isEqualTo(38);
        assertThat(c.busiest().destination()).isEqualTo("198.51.100.10");
        assertThat(c.busiest().count()).isEqualTo(30);
        assertThat(ConnectionQueries.use(30, c.cap())).isEqualTo(0.029);
        assertThat(c.destinations()).extracting(d -> d.destination() + "=" + d.count() + "/" + d.portsInUse())
            .containsExactly("198.51.100.10=30/30", "198.51.100.11=7/7");
        assertThat(c.violations()).isZero();

        // TIME_WAIT (an UPDATE) closes: ct count stops counting it; the later DESTROY is a no-op
        m.onEvent(e.fillIpv4(Type.UPDATE, 1, 6, NAT, NetlinkConstants.TCP_CONNTRACK_TIME_WAIT, G1, 40001, DST, 80,
            A.ipv4().bits(), 1025));
        m.onEvent(e.fillIpv4(Type.DESTROY, 1, 6, NAT, 0, G1, 40001, DST, 80, A.ipv4().bits(), 1025));
        // an UPDATE to ESTABLISHED changes nothing
        m.onEvent(e.fillIpv4(Type.UPDATE, 2, 6, NAT, 3, G1, 40002, DST, 80, A.ipv4().bits(), 1026));
        m.onEvent(e.fillIpv4(Type.DESTROY, 31, 6, NAT, 0, G1, 40031, DST2, 80, A.ipv4().bits(), 1055));
        assertThat(m.ledger().count(0, DST)).isEqualTo(29);
        assertThat(m.ledger().count(0, DST2)).isEqualTo(6);
        // a dumped entry in TIME_WAIT is not opened
        m.onEvent(e.fillIpv4(Type.EXISTING, 500, 6, NAT, NetlinkConstants.TCP_CONNTRACK_TIME_WAIT, G1, 4, DST, 80,
            A.ipv4().bits(), 1100));
        assertThat(m.ledger().count(0, DST)).isEqualTo(29);
        assertThat(m.publish().machines().get("m1").total()).isEqualTo(36);
        assertThat(lines).isEmpty();
    }

    @Test
    void aPortOutsideTheBlockIsAViolationCountedAndLoggedWithItsTuple()
    {
        final ConntrackMonitor m = monitor(1024, app("m1", G1, A, 1024, 2047), app("m2", G2, A, 2048, 3071));
        open(m, 1, G1, DST, 1500);
        open(m, 2, G1, DST, 2100);
        assertThat(m.ledger().violations()).isEqualTo(1);
        assertThat(connections(m, "m1", 10).violations()).isEqualTo(1);
        assertThat(connections(m, "m2", 10).violations()).isZero();
        assertThat(lines).containsExactly("limit reason=block_violation machine=m1 app=a1 "
            + "tuple=\"tcp 10.77.0.2:40002 -> 198.51.100.10:80 as 203.0.113.10:2100\" "
            + "detail=\"translated port 2100 outside the machine's block 1024..2047\"");
    }

    @Test
    void saturationAt80And95PercentIsLoggedOnceEachWhenCrossed()
    {
        final ConntrackMonitor m = monitor(10, app("m1", G1, A, 1024, 2047));
        for (int i = 1; i <= 8; i++)
        {
            open(m, i, G1, DST, 1024 + i);
        }
        assertThat(m.ledger().machinesAtWarning()).isEqualTo(1);
        assertThat(m.ledger().machinesAtCritical()).isZero();
        assertThat(lines).hasSize(1);
        assertThat(lines.get(0)).startsWith("limit reason=destination_cap_80 machine=m1 app=a1 tuple=\"tcp 10.77.0.2:40008")
            .contains("8 of 10 connections to one destination (80% of the cap)");
        open(m, 9, G1, DST, 1033);
        open(m, 10, G1, DST, 1034);
        assertThat(m.ledger().machinesAtCritical()).isEqualTo(1);
        assertThat(lines).hasSize(2);
        assertThat(lines.get(1)).startsWith("limit reason=destination_cap_95").contains("10 of 10");
        final ConntrackSnapshot s = m.publish();
        assertThat(s.machinesAtWarning()).isEqualTo(1);
        assertThat(s.machinesAtCritical()).isEqualTo(1);
        assertThat(s.busiestUse("m1")).isEqualTo(1.0);
    }

    @Test
    void machineChangesRegisterReRegisterAndUnregisterAndPendingIsARefusal()
    {
        final ConntrackMonitor m = monitor(1024, app("m1", G1, A, 1024, 2047), pending("m2", G2));
        assertThat(lines).containsExactly("refusal reason=pending machine=m2 app=a1 detail=\"every pair is full\"");
        open(m, 1, G1, DST, 1500);
        // m1 moves to B (another block): live connections stay counted; m2 gets placed
        m.machinesChanged(List.of(app("m1", G1, B, 2048, 3071), app("m2", G2, A, 1024, 2047)), 1_000);
        m.drainCommands();
        assertThat(m.ledger().count(0, DST)).isEqualTo(1);
        open(m, 2, G1, DST, 1500);
        assertThat(m.ledger().violations()).as("judged against the new block").isEqualTo(1);
        m.onEvent(e.fillIpv4(Type.NEW, 3, 6, NAT, 1, G2, 1, DST, 80, A.ipv4().bits(), 1030));
        assertThat(m.ledger().count(1, DST)).isEqualTo(1);
        // m1 deleted: unregistered with its connections; an unknown machine has no connections view
        m.machinesChanged(List.of(app("m2", G2, A, 1024, 2047)), 1_000);
        m.drainCommands();
        assertThat(m.ledger().isRegistered(0)).isFalse();
        assertThat(m.ledger().liveConnections()).isEqualTo(1);
        assertThat(connections(m, "m1", 10)).isNull();
        open(m, 4, G1, DST, 1500);
        assertThat(m.ledger().liveConnections()).as("no longer a guest").isEqualTo(1);
    }

    @Test
    void aMachineUpdateIsComputedInTheMonitorsTurnInTheOrderOfTheCallsAndQueries()
    {
        final ConntrackMonitor m = monitor(1024, app("m1", G1, A, 1024, 2047));
        // the control loop's call only queues what it was told: the difference (here a pending machine's refusal
        // line) is not computed on the caller's thread, which answers the change right after it
        m.machinesChangedOnly(List.of(pending("m2", G2)), List.of(), List.of(A.ipv4()), List.of(A.ipv6()), DRAIN);
        assertThat(lines).as("nothing computed by the caller").isEmpty();
        // a query the API queues after the call (a GET after the PUT's answer) runs after the update: it sees m2
        final var f = m.queries().connections("m2", 10);
        assertThat(f).isNotDone();
        m.drainCommands();
        assertThat(lines).containsExactly("refusal reason=pending machine=m2 app=a1 detail=\"every pair is full\"");
        assertThat(f.join()).as("m2 is known to the query queued after it").isNotNull();
        // and a removal told after it is applied after it, in order: m1 unregistered
        m.machinesChangedOnly(List.of(), List.of("m1"), List.of(A.ipv4()), List.of(A.ipv6()), DRAIN);
        final var gone = m.queries().connections("m1", 10);
        m.drainCommands();
        assertThat(gone.join()).as("m1 is gone for the query queued after its removal").isNull();
        assertThat(m.ledger().isRegistered(0)).isFalse();
    }

    @Test
    void theEventPathAllocatesNothing()
    {
        final java.lang.management.ThreadMXBean bean = java.lang.management.ManagementFactory.getThreadMXBean();
        assumeTrue(bean instanceof com.sun.management.ThreadMXBean, "needs per-thread allocation counters");
        final com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean)bean;
        final ConntrackMonitor m = monitor(1024, app("m1", G1, A, 1024, 2047), app("m2", G2, A, 2048, 3071));
        final int a = A.ipv4().bits();
        // warm up with the same shape of traffic, so tables have grown and the loop is compiled
        for (int round = 0; round < 30; round++)
        {
            churn(m, a, round * 1000);
        }
        final long tid = Thread.currentThread().getId();
        final long before = threads.getThreadAllocatedBytes(tid);
        for (int round = 30; round < 130; round++)
        {
            churn(m, a, round * 1000);
        }
        final long allocated = threads.getThreadAllocatedBytes(tid) - before;
        assertThat(m.ledger().liveConnections()).isEqualTo(100);
        // 100 rounds x 500 events = 50,000 events (NEW, UPDATE, DESTROY, v4 and v6): anything per event would be
        // megabytes
        assertThat(allocated).isLessThan(4096);
        assertThat(lines).isEmpty();
    }

    /** 100 opens over 2 guests and 3 destinations, 200 updates, then 100 of them close (TIME_WAIT + DESTROY). */
    private void churn(final ConntrackMonitor m, final int egress, final int base)
    {
        for (int i = 0; i < 100; i++)
        {
            final int id = base + i;
            final int guest = (i & 1) == 0 ? G1 : G2;
            final int port = (i & 1) == 0 ? 1024 + i : 2048 + i;
            if (i % 10 == 0)
            {
                m.onEvent(e.fillIpv6(Type.NEW, id, 6, NAT, 1, G1V6.high(), G1V6.low(), DST6.high(), DST6.low(),
                    A.ipv6().high(), A.ipv6().low(), port));
            }
            else
            {
                m.onEvent(e.fillIpv4(Type.NEW, id, 6, NAT, 1, guest, 30000 + i, DST + (i % 3), 80, egress, port));
            }
            m.onEvent(e.fillIpv4(Type.UPDATE, id, 6, NAT, 3, guest, 30000 + i, DST, 80, egress, port));
            m.onEvent(e.fillIpv4(Type.UPDATE, id, 6, NAT, 4, guest, 30000 + i, DST, 80, egress, port));
        }
        final int previous = base - 1000;
        for (int i = 0; i < 100 && previous >= 0; i++)
        {
            final int id = previous + i;
            final int guest = (i & 1) == 0 ? G1 : G2;
            m.onEvent(e.fillIpv4(Type.UPDATE, id, 6, NAT, NetlinkConstants.TCP_CONNTRACK_TIME_WAIT, guest, 1, DST, 80,
                egress, 1));
            m.onEvent(e.fillIpv4(Type.DESTROY, id, 6, NAT, 0, guest, 1, DST, 80, egress, 1));
        }
    }

    // ------------------------------------------------------------------------------ hygiene (a fake table)

    private static final int HOST4 = Ipv4Address.parse("192.0.2.1").bits();
    private static final Ipv6Address HOST6 = Ipv6Address.parse("2001:db8::1");
    private static final long DRAIN = 350_000_000_000L;

    private ConntrackMonitor monitor(final FakeFlowTable table, final EgressAllocator.MachineView... machines)
    {
        final ConntrackMonitor monitor = new ConntrackMonitor(null, table, 1024, log, clock::get);
        monitor.machinesChanged(List.of(machines), DRAIN);
        monitor.drainCommands();
        return monitor;
    }

    /** One turn of the monitor thread's loop (at most one poll timeout long without a kernel). */
    private static void turn(final ConntrackMonitor m)
    {
        try
        {
            m.step();
        }
        catch (final IOException ex)
        {
            throw new AssertionError(ex);
        }
    }

    @Test
    void aSecondInWhichNothingMovedKeepsTheStatsPublishedBeforeAndAnEventBuildsThemAgain()
    {
        final ConntrackMonitor m = monitor(new FakeFlowTable(), app("m1", G1, A, 1024, 2047));
        turn(m);
        final ConntrackSnapshot first = m.stats();
        assertThat(first.machines()).containsOnlyKeys("m1");

        clock.addAndGet(1_100_000_000L);
        turn(m);
        assertThat(m.stats()).as("nothing moved: the stats published before, not built again").isSameAs(first);

        m.onEvent(e.fillIpv4(Type.NEW, 7, 6, NAT, 1, G1, 40007, DST, 80, A.ipv4().bits(), 1030));
        turn(m);
        assertThat(m.stats()).as("within the second: not yet").isSameAs(first);
        clock.addAndGet(1_100_000_000L);
        turn(m);
        assertThat(m.stats().newEvents()).as("an event moved them: built again at the next second").isEqualTo(1);
        assertThat(m.stats().liveConnections()).isEqualTo(1);
        final ConntrackSnapshot second = m.stats();

        m.machinesChanged(List.of(app("m1", G1, A, 1024, 2047), app("m2", G2, A, 2048, 3071)), DRAIN);
        turn(m);
        assertThat(m.stats()).as("a machine's change is published at once").isNotSameAs(second);
        assertThat(m.stats().machines()).containsOnlyKeys("m1", "m2");
    }

    @Test
    void deletionsThatFailAreTriedAgainASecondLater()
    {
        final FakeFlowTable table = new FakeFlowTable();
        final ConntrackMonitor m = monitor(table, host("m1", G1));
        table.add4(1, NAT, G1, HOST4, 40001);                             // masqueraded: must go when m1 is static
        table.failingDumps = 1;
        m.machinesChanged(List.of(app("m1", G1, A, 1024, 2047)), DRAIN);
        turn(m);
        assertThat(table.dumps).as("the deletion was tried").isEqualTo(1);
        assertThat(table.deleted).as("the dump failed").isEmpty();

        clock.addAndGet(999_000_000L);
        turn(m);
        assertThat(table.dumps).as("not before a second").isEqualTo(1);

        clock.addAndGet(1_000_000L);
        turn(m);
        assertThat(table.deleted).as("tried again, and done").containsExactly(1);
        assertThat(m.stats().errors()).isEqualTo(1);
    }

    @Test
    void aMachineThatBecomesStaticLosesItsMasqueradedFlowsAtOnceAndKeepsTheRest()
    {
        final FakeFlowTable table = new FakeFlowTable();
        final ConntrackMonitor m = monitor(table, host("m1", G1), app("m2", G2, A, 2048, 3071));
        table.add4(1, NAT, G1, HOST4, 40001);                             // masqueraded: goes
        table.add4(2, NAT, G1, HOST4, 40002);                             // masqueraded: goes
        table.add6(3, NAT, G1V6, HOST6, 40003);                           // masqueraded IPv6: goes
        table.add4(4, NetlinkConstants.IPS_CONFIRMED, G1, G1, 40004);     // not translated (to the host): kept
        table.add4(5, NAT, G2, A.ipv4().bits(), 2100);                     // another machine: kept
        turn(m);
        assertThat(table.deleted).as("nothing to delete while it is host").isEmpty();

        m.machinesChanged(List.of(app("m1", G1, A, 1024, 2047), app("m2", G2, A, 2048, 3071)), DRAIN);
        table.add4(6, NAT, G1, A.ipv4().bits(), 1030);                     // already via its new pair: kept
        table.add6(7, NAT, G1V6, A.ipv6(), 1031);
        turn(m);
        assertThat(table.deleted).as("at once, no drain").containsExactlyInAnyOrder(1, 2, 3);
        assertThat(table.entries).extracting(ConntrackEvent::id).containsExactly(4, 5, 6, 7);
        assertThat(m.publish().flowsDeleted()).isEqualTo(3);
        clock.addAndGet(DRAIN);
        turn(m);
        assertThat(table.deleted).as("and nothing more after the drain time").hasSize(3);
    }

    @Test
    void aPendingMachineThatGetsASlotLosesItsMasqueradedFallbackFlows()
    {
        final FakeFlowTable table = new FakeFlowTable();
        final ConntrackMonitor m = monitor(table, pending("m2", G2));
        table.add4(1, NAT, G2, HOST4, 40001); // an app that opted into masquerade while pending
        m.machinesChanged(List.of(app("m2", G2, B, 1024, 2047)), DRAIN);
        turn(m);
        assertThat(table.deleted).containsExactly(1);
    }

    @Test
    void promotionAndAMoveBetweenPairsKeepFlowsUntilTheDrainAndAMoveToHostDeletesNothingAtOnce()
    {
        final FakeFlowTable table = new FakeFlowTable();
        final ConntrackMonitor m = monitor(table, app("m1", G1, A, 1024, 2047), app("m2", G2, A, 2048, 3071));
        table.add4(1, NAT, G1, A.ipv4().bits(), 1030);
        table.add4(2, NAT, G2, A.ipv4().bits(), 2100);
        turn(m); // first seen static: nothing translated to an address not held
        assertThat(table.deleted).isEmpty();
        final int dumps = table.dumps;
        // m1 moves to B: its flows via A go after the drain time only; m2 moves to host: the same
        m.machinesChanged(List.of(app("m1", G1, B, 1024, 2047), host("m2", G2)), DRAIN);
        turn(m);
        assertThat(table.deleted).isEmpty();
        table.add4(3, NAT, G1, B.ipv4().bits(), 1031);
        table.add4(4, NAT, G2, HOST4, 40004);
        clock.addAndGet(DRAIN);
        turn(m);
        assertThat(table.deleted).containsExactlyInAnyOrder(1, 2);
        assertThat(table.dumps - dumps).as("one dump for both").isEqualTo(1);
        // m1 deleted: every flow of its guest address
        m.machinesChanged(List.of(host("m2", G2)), DRAIN);
        turn(m);
        assertThat(table.deleted).containsExactlyInAnyOrder(1, 2, 3);
        assertThat(table.entries).extracting(ConntrackEvent::id).containsExactly(4);
    }

    @Test
    void aMachineBackOnHostBeforeTheDeletionRanKeepsItsMasqueradedFlows()
    {
        final FakeFlowTable table = new FakeFlowTable();
        final ConntrackMonitor m = monitor(table, host("m1", G1));
        table.add4(1, NAT, G1, HOST4, 40001);
        m.machinesChanged(List.of(app("m1", G1, A, 1024, 2047)), DRAIN);
        m.machinesChanged(List.of(host("m1", G1)), DRAIN);
        turn(m);
        assertThat(table.deleted).isEmpty();
    }

    @Test
    void aStaticMachineFirstSeenLosesFlowsTranslatedToNoHeldAddressAndAHostMachineKeepsItsFlows()
    {
        // as after a restart: m1 moved from host to A while egressd was down, so the monitor never saw the move; B is
        // a pair egressd holds too (m1's old pair, say, draining)
        final FakeFlowTable table = new FakeFlowTable();
        final int other = Ipv4Address.parse("203.0.113.99").bits();
        table.add4(1, NAT, G1, HOST4, 40001);                             // masqueraded: goes
        table.add6(2, NAT, G1V6, HOST6, 40002);                           // masqueraded IPv6: goes
        table.add4(3, NAT, G1, other, 40003);                             // translated to no held address: goes
        table.add4(4, NAT, G1, A.ipv4().bits(), 1030);                     // via its pair: kept
        table.add6(5, NAT, G1V6, A.ipv6(), 1031);
        table.add4(6, NAT, G1, B.ipv4().bits(), 1032);                     // via another held pair: kept
        table.add6(7, NAT, G1V6, B.ipv6(), 1033);
        table.add4(8, NetlinkConstants.IPS_CONFIRMED, G1, G1, 40008);     // not translated (to the host): kept
        table.add4(9, NAT, G2, HOST4, 40009);                             // a host machine's: kept
        final ConntrackMonitor m = new ConntrackMonitor(null, table, 1024, log, clock::get);
        m.machinesChanged(List.of(app("m1", G1, A, 1024, 2047), host("m2", G2)),
            List.of(A.ipv4(), B.ipv4()), List.of(A.ipv6(), B.ipv6()), DRAIN);
        m.drainCommands();
        turn(m);
        assertThat(table.deleted).as("at once").containsExactlyInAnyOrder(1, 2, 3);
        assertThat(table.entries).extracting(ConntrackEvent::id).containsExactly(4, 5, 6, 7, 8, 9);
        assertThat(table.dumps).as("one dump").isEqualTo(1);
        assertThat(m.publish().flowsDeleted()).isEqualTo(3);

        // known from now on: the same machines again delete nothing, and need no dump
        m.machinesChanged(List.of(app("m1", G1, A, 1024, 2047), host("m2", G2)),
            List.of(A.ipv4(), B.ipv4()), List.of(A.ipv6(), B.ipv6()), DRAIN);
        table.add4(10, NAT, G1, HOST4, 40010);
        turn(m);
        assertThat(table.dumps).isEqualTo(1);

        // a static machine registered fresh later: the same rule (m3 reuses an address that masqueraded before)
        final int g3 = Ipv4Address.parse("10.77.0.4").bits();
        table.add4(11, NAT, g3, HOST4, 40011);                             // goes
        table.add4(12, NAT, g3, B.ipv4().bits(), 2100);                    // held: kept
        m.machinesChanged(List.of(app("m1", G1, A, 1024, 2047), host("m2", G2), app("m3", g3, B, 2048, 3071)),
            List.of(A.ipv4(), B.ipv4()), List.of(A.ipv6(), B.ipv6()), DRAIN);
        turn(m);
        assertThat(table.deleted).containsExactlyInAnyOrder(1, 2, 3, 11);
        assertThat(table.entries).extracting(ConntrackEvent::id).contains(10, 12);

        // a fresh host machine keeps everything; so does a fresh static machine that is host again before it ran
        final int g4 = Ipv4Address.parse("10.77.0.5").bits();
        table.add4(13, NAT, g4, HOST4, 40013);
        final ConntrackMonitor fresh = new ConntrackMonitor(null, table, 1024, log, clock::get);
        fresh.machinesChanged(List.of(host("m4", g4)), List.of(A.ipv4()), List.of(A.ipv6()), DRAIN);
        fresh.drainCommands();
        turn(fresh);
        final ConntrackMonitor flapped = new ConntrackMonitor(null, table, 1024, log, clock::get);
        flapped.machinesChanged(List.of(app("m4", g4, A, 1024, 2047)), List.of(A.ipv4()), List.of(A.ipv6()),
            DRAIN);
        flapped.machinesChanged(List.of(host("m4", g4)), List.of(A.ipv4()), List.of(A.ipv6()), DRAIN);
        flapped.drainCommands();
        turn(flapped);
        assertThat(table.entries).extracting(ConntrackEvent::id).contains(13);
        assertThat(table.deleted).hasSize(4);
    }

    @Test
    void aMachineMovedToHostAndThenToAPairWhileItsOldPairDrainsKeepsTheOldPairsFlowsUntilTheDrainEnds()
    {
        // m1 on X; X is released with no room elsewhere (m1 to host), and while X drains m1 gets a slot of A
        final EgressPair x = new EgressPair(Ipv4Address.parse("203.0.113.30"), Ipv6Address.parse("2001:db8:10::30"),
            "lab");
        final FakeFlowTable table = new FakeFlowTable();
        final ConntrackMonitor m = new ConntrackMonitor(null, table, 1024, log, clock::get);
        m.machinesChanged(List.of(app("m1", G1, x, 1024, 2047), app("m2", G2, A, 2048, 3071)),
            List.of(A.ipv4(), x.ipv4()), List.of(A.ipv6(), x.ipv6()), DRAIN);
        m.drainCommands();
        table.add4(1, NAT, G1, x.ipv4().bits(), 1030);                     // via X: kept until X's drain ends
        table.add6(2, NAT, G1V6, x.ipv6(), 1031);
        table.add4(3, NAT, G2, A.ipv4().bits(), 2100);                     // another machine: kept
        turn(m);
        assertThat(table.deleted).isEmpty();

        // X released: m1 to host; X stays held (draining) and its flows are due for deletion at the drain's end
        final long released = clock.get();
        m.machinesChanged(List.of(host("m1", G1), app("m2", G2, A, 2048, 3071)),
            List.of(A.ipv4(), x.ipv4()), List.of(A.ipv6(), x.ipv6()), DRAIN);
        turn(m);
        assertThat(table.deleted).isEmpty();
        table.add4(4, NAT, G1, HOST4, 40004);                              // masqueraded while host: goes at once
        table.add6(5, NAT, G1V6, HOST6, 40005);

        // within X's drain, m1 gets a slot of A
        clock.addAndGet(DRAIN / 2);
        m.machinesChanged(List.of(app("m1", G1, A, 1024, 2047), app("m2", G2, A, 2048, 3071)),
            List.of(A.ipv4(), x.ipv4()), List.of(A.ipv6(), x.ipv6()), DRAIN);
        table.add4(6, NAT, G1, A.ipv4().bits(), 1040);                     // via its new pair: kept
        turn(m);
        assertThat(table.deleted).as("only the masqueraded flows, at once").containsExactlyInAnyOrder(4, 5);
        assertThat(table.entries).extracting(ConntrackEvent::id).containsExactly(1, 2, 3, 6);

        // X's own drain deletion takes its flows when X's drain time ends, and nothing else
        clock.set(released + DRAIN - 1);
        turn(m);
        assertThat(table.deleted).as("not before X's drain ends").hasSize(2);
        clock.set(released + DRAIN);
        turn(m);
        assertThat(table.deleted).containsExactlyInAnyOrder(4, 5, 1, 2);
        assertThat(table.entries).extracting(ConntrackEvent::id).containsExactly(3, 6);
        assertThat(m.publish().flowsDeleted()).isEqualTo(4);
    }

    @Test
    void theHeldAddressesAreTheOnesWhenTheDeletionRuns()
    {
        // the first call knows A only; B is added before the monitor runs: m1's flows via B stay
        final FakeFlowTable table = new FakeFlowTable();
        table.add4(1, NAT, G1, B.ipv4().bits(), 1030);
        table.add4(2, NAT, G1, HOST4, 40002);
        final ConntrackMonitor m = new ConntrackMonitor(null, table, 1024, log, clock::get);
        m.machinesChanged(List.of(app("m1", G1, A, 1024, 2047)), List.of(A.ipv4()), List.of(A.ipv6()), DRAIN);
        m.machinesChanged(List.of(app("m1", G1, A, 1024, 2047)), List.of(A.ipv4(), B.ipv4()),
            List.of(A.ipv6(), B.ipv6()), DRAIN);
        m.drainCommands();
        turn(m);
        assertThat(table.deleted).containsExactly(2);
    }

    // ------------------------------------------------------------------------------ queries and close

    @Test
    void theQueriesReadDetailsFromTheLedgerAndSummariesFromThePublishedFigures()
    {
        final ConntrackMonitor m = monitor(1024, app("m1", G1, A, 1024, 2047));
        m.publish();
        final ConnectionQueries q = m.queries();
        assertThat(q.destinationCap()).isEqualTo(1024);
        assertThat(q.summary("m1")).isEqualTo(new ConnectionQueries.MachineSummary(0, 0));
        assertThat(q.summary("nope")).isNull();
        open(m, 1, G1, DST, 1030);
        open(m, 2, G1, DST, 1031);
        assertThat(connections(m, "m1", 10).total()).as("the ledger, now").isEqualTo(2);
        assertThat(q.summary("m1").total()).as("the summary waits for the next publication").isZero();
        m.publish();
        assertThat(q.summary("m1")).isEqualTo(new ConnectionQueries.MachineSummary(2, 2));
        assertThat(m.published().busiestCount("m1")).isEqualTo(2);
        assertThat(m.published().liveConnections()).isEqualTo(2);
    }

    @Test
    void aQueryAfterCloseFailsAtOnce() throws Exception
    {
        final ConntrackMonitor m = new ConntrackMonitor(null, 1024, log, clock::get).start();
        assertThat(m.queries().connections("m1", 1).get(5, TimeUnit.SECONDS)).isNull(); // it answers while running
        m.close();
        final CompletableFuture<ConnectionQueries.Connections> f = m.queries().connections("m1", 1);
        assertThat(f).isCompletedExceptionally();
        assertThatThrownBy(f::get).isInstanceOf(ExecutionException.class)
            .hasRootCauseInstanceOf(IllegalStateException.class).hasMessageContaining("stopped");
    }

    @Test
    void closeFailsEveryQueryThatNothingWillRun()
    {
        // never started: nothing runs the queue
        final ConntrackMonitor m = new ConntrackMonitor(null, 1024, log, clock::get);
        final List<CompletableFuture<ConnectionQueries.Connections>> queued = new ArrayList<>();
        for (int i = 0; i < 5; i++)
        {
            queued.add(m.queries().connections("m1", 1));
        }
        assertThat(queued).noneMatch(CompletableFuture::isDone);
        m.close();
        assertThat(queued).allMatch(CompletableFuture::isCompletedExceptionally);
    }

    @Test
    void aQueryRacingCloseNeverHangs() throws Exception
    {
        // query() checks, then enqueues: a close() in between once left the future open for ever. Race them: an
        // API thread queries without pause until one fails; a query that could hang is among its last ones.
        final List<CompletableFuture<?>> last = new ArrayList<>();
        for (int round = 0; round < 200; round++)
        {
            final ConntrackMonitor m = new ConntrackMonitor(null, 1024, log, clock::get).start();
            final ArrayDeque<CompletableFuture<?>> mine = new ArrayDeque<>();
            final Thread api = new Thread(() ->
            {
                while (true)
                {
                    final CompletableFuture<?> f = m.query(l -> l.liveConnections());
                    if (mine.size() == 64)
                    {
                        mine.removeFirst();
                    }
                    mine.addLast(f);
                    if (f.isCompletedExceptionally())
                    {
                        return;
                    }
                }
            });
            api.start();
            Thread.sleep(1);
            m.close();
            api.join(5000);
            assertThat(api.isAlive()).as("a query after close fails at once").isFalse();
            last.addAll(mine);
        }
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
        for (final CompletableFuture<?> f : last)
        {
            try
            {
                f.get(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            }
            catch (final ExecutionException expected)
            {
                assertThat(expected).hasRootCauseInstanceOf(IllegalStateException.class);
            }
        }
        assertThat(last).allMatch(CompletableFuture::isDone);
    }

    private static ConnectionQueries.Connections connections(final ConntrackMonitor m, final String id,
        final int top)
    {
        final var f = m.queries().connections(id, top);
        m.drainCommands();
        try
        {
            return f.get(1, TimeUnit.SECONDS);
        }
        catch (final Exception ex)
        {
            throw new AssertionError(ex);
        }
    }
}
