package dev.egressd.agent.conntrack;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressd.agent.netlink.ConntrackEvent;
import dev.egressd.agent.netlink.ConntrackEvent.Type;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;

import java.util.ArrayList;
import java.util.List;
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

        final ConntrackMonitor.Connections c = connections(m, "m1", 2);
        assertThat(c.total()).isEqualTo(38);
        assertThat(c.busiest().destination()).isEqualTo("198.51.100.10");
        assertThat(c.busiest().count()).isEqualTo(30);
        assertThat(ConntrackMonitor.use(30, c.cap())).isEqualTo(0.029);
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
        final ConntrackMonitor.Stats s = m.publish();
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

    private static ConntrackMonitor.Connections connections(final ConntrackMonitor m, final String id, final int top)
    {
        final var f = m.connections(id, top);
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
