package dev.egressd.agent.conntrack;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.conntrack.ConnectionQueries;
import dev.egressd.agent.conntrack.ConntrackMonitor;
import dev.egressd.agent.conntrack.ConntrackSnapshot;
import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.agent.kernel.NftKernel;
import dev.egressd.agent.conntrack.ctnetlink.CollectingListener;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvents;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.ledger.DestinationUsage;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import dev.egressd.core.plan.KernelPlanner;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlannedMachine;
import dev.egressd.agent.testing.ClientResult;
import dev.egressd.agent.testing.ConntrackEntry;
import dev.egressd.agent.testing.Lab;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.RunningClient;

import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The conntrack monitor against the kernel: a lab host programmed by {@link NftKernel} (as in
 * {@code e2e.DataplaneE2ETest}), guests holding real connections through the NAT, and the monitor's ctnetlink
 * subscription opened on the host namespace's thread. What the ledger says is compared with {@code conntrack -L}.
 */
@Privileged
class ConntrackMonitorPrivilegedTest
{
    private static final BlockLayout L = BlockLayout.STANDARD;
    private static final String DST4 = "198.51.100.10";
    private static final String DST4B = "198.51.100.11";
    private static final String DST6 = "2001:db8:100::10";
    private static final String HOST4 = "192.0.2.1";
    private static final String HOST6 = "2001:db8:1::1";
    private static final EgressPair A = new EgressPair(Ipv4Address.parse("203.0.113.10"),
        Ipv6Address.parse("2001:db8:10::10"), "lab");
    private static final EgressPair X = new EgressPair(Ipv4Address.parse("203.0.113.30"),
        Ipv6Address.parse("2001:db8:10::30"), "lab");

    private Lab lab;
    private NftKernel kernel;
    private ConntrackMonitor monitor;
    /** The pairs whose addresses the kernel is programmed to hold on the uplink. */
    private List<EgressPair> pairs = List.of(A);
    private final List<RunningClient> clients = new ArrayList<>();
    private final List<String> refusalLines = Collections.synchronizedList(new ArrayList<>());

    @AfterEach
    void tearDown() throws IOException
    {
        try
        {
            clients.forEach(RunningClient::close);
            if (monitor != null)
            {
                monitor.close();
            }
        }
        finally
        {
            Lab.tearDown(lab, kernel);
        }
    }

    @Test
    void theLedgerCountsWhatConntrackListsForAGuestHoldingConnectionsToTwoDestinations() throws Exception
    {
        start(1024, ConntrackEvents.DEFAULT_RECEIVE_BUFFER);
        hold(1, DST4, 12);
        hold(1, DST4B, 5);
        hold(2, DST4, 3);
        final Map<String, Integer> listed = listed(guest4(1));
        assertThat(listed).containsEntry(DST4, 12).containsEntry(DST4B, 5);
        awaitTrue(() -> ledger("m1").equals(listed), "ledger of m1 " + ledger("m1") + " = conntrack -L " + listed);
        awaitTrue(() -> ledger("m2").equals(listed(guest4(2))), "ledger of m2 = conntrack -L");
        final ConnectionQueries.Connections c = monitor.queries().connections("m1", 10).get(5, TimeUnit.SECONDS);
        assertThat(c.total()).isEqualTo(17);
        assertThat(c.busiest().destination()).isEqualTo(DST4);
        assertThat(c.destinations()).allSatisfy(d -> assertThat(d.portsInUse()).isEqualTo(d.count()));
        assertThat(c.violations()).isZero();
        report("counts: conntrack -L " + listed + " / " + listed(guest4(2)) + "; ledger m1 " + ledger("m1")
            + " m2 " + ledger("m2") + "; stats " + brief(monitor.stats()));
    }

    @Test
    void saturationAt80And95PercentOfASmallCapAppearsInTheLedger() throws Exception
    {
        start(10, ConntrackEvents.DEFAULT_RECEIVE_BUFFER);
        hold(1, DST4, 8);
        awaitTrue(() -> monitor.stats().machinesAtWarning() == 1, "8 of 10: at warning");
        assertThat(monitor.stats().machinesAtCritical()).isZero();
        assertThat(monitor.stats().busiestUse("m1")).isEqualTo(0.8);
        hold(1, DST4, 2);
        awaitTrue(() -> monitor.stats().machinesAtCritical() == 1, "10 of 10: at critical");
        assertThat(monitor.stats().busiestUse("m1")).isEqualTo(1.0);
        assertThat(listed(guest4(1))).containsEntry(DST4, 10);
        assertThat(refusalLines).anySatisfy(l -> assertThat(l).startsWith("limit reason=destination_cap_80 machine=m1"))
            .anySatisfy(l -> assertThat(l).startsWith("limit reason=destination_cap_95 machine=m1"));
        report("saturation: cap 10, 8 then 10 held; stats " + brief(monitor.stats()) + "; log " + refusalLines);
    }

    @Test
    void deletingAMachineDeletesItsConntrackEntries() throws Exception
    {
        start(1024, ConntrackEvents.DEFAULT_RECEIVE_BUFFER);
        hold(1, DST4, 6);
        hold(2, DST4, 4);
        awaitTrue(() -> ledger("m1").getOrDefault(DST4, 0) == 6, "m1 counted");
        final int before = listed(guest4(1)).getOrDefault(DST4, 0);
        monitor.machinesChanged(List.of(view(2)), 0);
        awaitTrue(() -> entriesOf(guest4(1)).isEmpty(), "conntrack -L shows nothing from " + guest4(1));
        awaitTrue(() -> monitor.stats().flowsDeleted() >= 6, "flows deleted counted");
        assertThat(listed(guest4(2))).as("the other machine keeps its flows").containsEntry(DST4, 4);
        assertThat(monitor.queries().connections("m1", 10).get(5, TimeUnit.SECONDS)).isNull();
        report("hygiene: m1 had " + before + " entries, after delete conntrack -L shows " + entriesOf(guest4(1)).size()
            + "; m2 keeps " + listed(guest4(2)) + "; flowsDeleted " + monitor.stats().flowsDeleted());
    }

    @Test
    void aMachineMovingFromHostToAPairLosesItsMasqueradedFlowsAtOnce() throws Exception
    {
        // m1 starts on the host's address (masquerade), m2 on a slot of A
        final Masqueraded m = masqueradedM1();
        final RunningClient held = m.held();
        final ClientResult established = m.established();
        final int masqueraded4 = m.flows4();
        final int masqueraded6 = m.flows6();
        final Map<String, Integer> m2Before = m.m2Before();
        final long deletedBefore = monitor.stats().flowsDeleted();

        // m1 gets slot 1 of A: the kernel first (as the control loop commits), then the monitor is told
        held.drain();
        moveM1ToA();
        final long t0 = System.nanoTime();
        monitor.machinesChanged(List.of(view(1), view(2)), TimeUnit.SECONDS.toNanos(350));
        awaitTrue(() -> via("ipv4", guest4(1), HOST4).isEmpty() && via("ipv6", guest6(1), HOST6).isEmpty(),
            "conntrack -L shows no flow of " + guest4(1) + " / " + guest6(1) + " via the host address");
        final long goneMs = (System.nanoTime() - t0) / 1_000_000;
        awaitTrue(() -> monitor.stats().flowsDeleted() - deletedBefore >= masqueraded4 + masqueraded6,
            "the deletions counted");

        // new connections leave from the pair, inside the block
        final List<ClientResult> fresh4 = lab.guest(1).client("tcp", DST4, 80, 2, 0);
        final List<ClientResult> fresh6 = lab.guest(1).client("tcp", DST6, 80, 1, 0);
        assertLeaveFromABlock1(fresh4, fresh6);
        // the held connection (from the host's address) is dead: no echo after its entry went, the client gives up
        final List<String> after = held.awaitEnd(Duration.ofSeconds(5));
        assertThat(after).as("echoes in flight before the deletion, then a failure").hasSizeGreaterThanOrEqualTo(2);
        assertThat(after.get(after.size() - 2)).startsWith("fail ");
        assertThat(after.get(after.size() - 1)).isEqualTo("done");
        assertThat(via("ipv4", guest4(1), HOST4)).isEmpty();
        assertThat(listed(guest4(2))).as("the other machine keeps its flows").isEqualTo(m2Before);
        report("host to static: m1 held " + masqueraded4 + " IPv4 flows via " + HOST4 + " and " + masqueraded6
            + " IPv6 via " + HOST6 + "; " + goneMs + " ms after the monitor was told conntrack -L shows none via the "
            + "host (" + (monitor.stats().flowsDeleted() - deletedBefore) + " deleted); held connection (" + established
            + ") from the move on: " + after + "; new v4 " + fresh4 + " v6 " + fresh6 + "; m1 now "
            + entriesOf(guest4(1)).stream().map(e -> e.origDst() + " as " + e.replyDst() + ":" + e.replyPort() + " "
            + e.tcpState()).toList() + "; m2 keeps " + listed(guest4(2)));
    }

    @Test
    void aMoveToAPairWhileTheMonitorIsDownLosesTheMasqueradedFlowsWhenANewMonitorStarts() throws Exception
    {
        // m1 on the host's address (masquerade) holds connections; m2 on a slot of A
        final Masqueraded m = masqueradedM1();
        final RunningClient held = m.held();
        final ClientResult established = m.established();
        final int masqueraded4 = m.flows4();
        final int masqueraded6 = m.flows6();
        final Map<String, Integer> m2Before = m.m2Before();

        // egressd goes down (the monitor stops), and the move is committed to the kernel with nobody telling it
        monitor.close();
        monitor = null;
        held.drain();
        moveM1ToA();
        sleep(1500);
        final int stillVia4 = via("ipv4", guest4(1), HOST4).size();
        final int stillVia6 = via("ipv6", guest6(1), HOST6).size();
        assertThat(stillVia4).as("the kernel change alone leaves the masqueraded entries (the gap)")
            .isEqualTo(masqueraded4);
        assertThat(stillVia6).isEqualTo(masqueraded6);

        // a new monitor starts, knowing m1 as app-scoped only: a machine first seen static
        final long t0 = System.nanoTime();
        startMonitor(1024, ConntrackEvents.DEFAULT_RECEIVE_BUFFER, List.of(view(1), view(2)));
        awaitTrue(() -> via("ipv4", guest4(1), HOST4).isEmpty() && via("ipv6", guest6(1), HOST6).isEmpty(),
            "conntrack -L shows no flow of " + guest4(1) + " / " + guest6(1) + " via the host address");
        final long goneMs = (System.nanoTime() - t0) / 1_000_000;
        awaitTrue(() -> monitor.stats().flowsDeleted() >= masqueraded4 + masqueraded6, "the deletions counted");

        // new connections leave from the pair, inside the block; the held one (from the host's address) is dead
        final List<ClientResult> fresh4 = lab.guest(1).client("tcp", DST4, 80, 2, 0);
        final List<ClientResult> fresh6 = lab.guest(1).client("tcp", DST6, 80, 1, 0);
        assertLeaveFromABlock1(fresh4, fresh6);
        final List<String> after = held.awaitEnd(Duration.ofSeconds(5));
        assertThat(after).as("echoes until the deletion, then a failure").hasSizeGreaterThanOrEqualTo(2);
        assertThat(after.get(after.size() - 2)).startsWith("fail ");
        assertThat(after.get(after.size() - 1)).isEqualTo("done");
        assertThat(via("ipv4", guest4(1), HOST4)).isEmpty();
        assertThat(listed(guest4(2))).as("the other machine keeps its flows (via A, held)").isEqualTo(m2Before);
        awaitTrue(() -> ledger("m2").equals(m2Before), "the new monitor counts m2's kept flows");
        report("first seen static: m1 held " + masqueraded4 + " IPv4 flows via " + HOST4 + " and " + masqueraded6
            + " IPv6 via " + HOST6 + "; after the kernel move with the monitor down still " + stillVia4 + " / "
            + stillVia6 + " via the host; " + goneMs + " ms after the new monitor was created none ("
            + monitor.stats().flowsDeleted() + " deleted); held connection (" + established + ") from then on: "
            + after + "; new v4 " + fresh4 + " v6 " + fresh6 + "; m1 now " + entriesOf(guest4(1)).stream()
            .map(e -> e.origDst() + " as " + e.replyDst() + ":" + e.replyPort() + " " + e.tcpState()).toList()
            + "; m2 keeps " + listed(guest4(2)));
    }

    @Test
    void aMachineMovedToHostAndThenToAPairWhileItsOldPairDrainsKeepsItsFlowsViaTheOldPairUntilTheDrainEnds()
        throws Exception
    {
        // m1 on slot 1 of X holds connections from X (both families); m2 on slot 2 of A
        pairs = List.of(A, X);
        final Egress onX = new Egress(Scope.APP, X, 1, L.firstPort(1), L.lastPort(1), "slot 1");
        start(1024, ConntrackEvents.DEFAULT_RECEIVE_BUFFER, onX);
        final String x4 = X.ipv4().toString();
        final String x6 = X.ipv6().toString();
        final RunningClient heldX = lab.guest(1).startClient("hold", DST4, "80", "60", "--timeout", "1");
        clients.add(heldX);
        assertThat(heldX.next(Duration.ofSeconds(10)).seenIp()).as("from X while on X").isEqualTo(x4);
        hold(1, DST6, 2);
        final int viaX4 = via("ipv4", guest4(1), x4).size();
        final int viaX6 = via("ipv6", guest6(1), x6).size();
        assertThat(viaX4).isGreaterThanOrEqualTo(1);
        assertThat(viaX6).isGreaterThanOrEqualTo(2);
        final List<Ipv4Address> held4 = List.of(A.ipv4(), X.ipv4());
        final List<Ipv6Address> held6 = List.of(A.ipv6(), X.ipv6());

        // X released with no room elsewhere: m1 to the host's address; X stays on the uplink while it drains (as the
        // control loop keeps it), and the monitor schedules the deletion of m1's flows via X at the drain's end
        final long drain = TimeUnit.SECONDS.toNanos(8);
        final EgressAllocator.MachineView hostView = new EgressAllocator.MachineView(1, machine(1), hostEgress(), null);
        program(List.of(new PlannedMachine(machine(1), hostEgress()), planned(2)));
        final long released = System.nanoTime();
        monitor.machinesChanged(List.of(hostView, view(2)), held4, held6, drain);
        final RunningClient heldHost = lab.guest(1).startClient("hold", DST4B, "80", "60", "--timeout", "1");
        clients.add(heldHost);
        assertThat(heldHost.next(Duration.ofSeconds(10)).seenIp()).as("masqueraded while host").isEqualTo(HOST4);
        hold(1, DST6, 1);
        final int masqueraded4 = via("ipv4", guest4(1), HOST4).size();
        final int masqueraded6 = via("ipv6", guest6(1), HOST6).size();
        assertThat(masqueraded4).isGreaterThanOrEqualTo(1);
        assertThat(masqueraded6).isGreaterThanOrEqualTo(1);

        // within X's drain, m1 gets slot 1 of A: the masqueraded flows go at once, the ones via X stay
        moveM1ToA();
        final long moved = System.nanoTime();
        monitor.machinesChanged(List.of(view(1), view(2)), held4, held6, drain);
        awaitTrue(() -> via("ipv4", guest4(1), HOST4).isEmpty() && via("ipv6", guest6(1), HOST6).isEmpty(),
            "conntrack -L shows no flow of m1 via the host address");
        final long hostGoneMs = (System.nanoTime() - moved) / 1_000_000;
        assertThat(System.nanoTime() - released).as("the checks below ran within X's drain").isLessThan(drain);
        assertThat(via("ipv4", guest4(1), x4)).as("m1's flows via X are kept while X drains").hasSize(viaX4);
        assertThat(via("ipv6", guest6(1), x6)).hasSize(viaX6);
        heldX.drain();
        assertThat(heldX.nextLine(Duration.ofSeconds(2))).as("the connection via X still answers after the move")
            .startsWith("echo " + x4 + " ");
        final List<String> hostAfter = heldHost.awaitEnd(Duration.ofSeconds(5));
        assertThat(hostAfter).as("the masqueraded connection: a failure, then done").hasSizeGreaterThanOrEqualTo(2);
        assertThat(hostAfter.get(hostAfter.size() - 2)).startsWith("fail ");
        final List<ClientResult> fresh4 = lab.guest(1).client("tcp", DST4, 80, 1, 0);
        final List<ClientResult> fresh6 = lab.guest(1).client("tcp", DST6, 80, 1, 0);
        assertLeaveFromABlock1(fresh4, fresh6);

        // X's drain deletion takes the flows via X when its drain time ends, not before
        awaitTrue(() -> via("ipv4", guest4(1), x4).isEmpty() && via("ipv6", guest6(1), x6).isEmpty(),
            "conntrack -L shows no flow of m1 via X after X's drain time", 20);
        final long xGoneMs = (System.nanoTime() - released) / 1_000_000;
        assertThat(xGoneMs).as("not before X's drain ends").isGreaterThanOrEqualTo(drain / 1_000_000);
        final List<String> xAfter = heldX.awaitEnd(Duration.ofSeconds(5));
        assertThat(xAfter).as("the connection via X: echoes, then a failure with X's drain, then done")
            .hasSizeGreaterThanOrEqualTo(3);
        assertThat(xAfter.get(xAfter.size() - 3)).startsWith("echo " + x4 + " ");
        assertThat(xAfter.get(xAfter.size() - 2)).startsWith("fail ");
        assertThat(via("ipv4", guest4(1), HOST4)).isEmpty();
        report("host to static within a drain: m1 held " + viaX4 + " IPv4 / " + viaX6 + " IPv6 flows via X, then "
            + masqueraded4 + " / " + masqueraded6 + " via the host; " + hostGoneMs + " ms after the move to A none "
            + "via the host, all via X kept; flows via X gone " + xGoneMs + " ms after X's release (drain "
            + drain / 1_000_000 + " ms); connection via X from the move on: " + xAfter.size() + " lines ending "
            + xAfter.subList(Math.max(0, xAfter.size() - 2), xAfter.size()) + "; masqueraded one: " + hostAfter
            + "; new v4 " + fresh4 + " v6 " + fresh6 + "; deleted " + monitor.stats().flowsDeleted());
    }

    /**
     * The kernel-side filter keeps only guests it knows: m1's connections, opened while the monitor knew only m2,
     * never reach Java; when m1 is added its address is outside the filter's cover, and the resync that follows the
     * wider filter counts them from the dump.
     */
    @Test
    void aGuestAddedOutsideTheFiltersCoverIsCountedFromTheDumpThatFollows() throws Exception
    {
        lab = Lab.create(2);
        final DataplaneConfig config = new DataplaneConfig("egressd", "uplink", "tap-*", 1024);
        kernel = lab.host().call(() -> NftKernel.open(config));
        lab.host().call(kernel::ensureTable);
        program(List.of(new PlannedMachine(machine(1), egress(1)), planned(2)));
        startMonitor(1024, ConntrackEvents.DEFAULT_RECEIVE_BUFFER, List.of(view(2)));
        awaitTrue(() -> monitor.stats().resyncs() == 1, "the start dump");
        hold(2, DST4, 2);
        awaitTrue(() -> ledger("m2").getOrDefault(DST4, 0) == 2, "m2 counted");
        // the stats are published once a second: wait for the ones that include m2's events
        awaitTrue(() -> monitor.stats().newEvents() == 2, "m2's two NEW events published");
        final long guestEventsBefore = monitor.stats().guestEvents();
        final long newBefore = monitor.stats().newEvents();
        hold(1, DST4, 4);
        sleep(1500);
        assertThat(monitor.stats().newEvents()).as("m1's NEW events dropped in the kernel").isEqualTo(newBefore);
        assertThat(monitor.stats().guestEvents()).isEqualTo(guestEventsBefore);
        monitor.machinesChanged(List.of(view(1), view(2)), 0);
        awaitTrue(() -> ledger("m1").getOrDefault(DST4, 0) == 4, "m1's 4 connections counted from the dump");
        assertThat(ledger("m1")).isEqualTo(listed(guest4(1)));
        assertThat(monitor.stats().resyncs()).isEqualTo(2);
        hold(1, DST4, 1);
        awaitTrue(() -> ledger("m1").getOrDefault(DST4, 0) == 5, "and m1's new connections through the new filter");
        report("filter: m1 added outside the cover; stats " + brief(monitor.stats()));
    }

    @Test
    void anOverrunTriggersAResyncThatLeavesTheCountsRight() throws Exception
    {
        // the smallest buffer the kernel allows (it raises tiny values to its minimum, about 2 KiB)
        start(1024, 1);
        awaitTrue(() -> monitor.stats().resyncs() == 1, "the start dump");
        // stop reading for 2 s while connections open and close: the kernel must drop events
        final var paused = monitor.runOnMonitorThread(() -> sleep(2000));
        lab.guest(1).client("tcp", DST4, 80, 20, 0);
        hold(1, DST4, 7);
        hold(1, DST4B, 3);
        paused.get(10, TimeUnit.SECONDS);
        awaitTrue(() -> monitor.stats().overruns() >= 1 && monitor.stats().resyncs() >= 2, "an overrun and a resync");
        final Map<String, Integer> listed = listed(guest4(1));
        awaitTrue(() -> ledger("m1").equals(listed), "after the resync: ledger " + ledger("m1") + " = " + listed);
        report("overrun: stats " + brief(monitor.stats()) + "; ledger " + ledger("m1") + " = conntrack -L " + listed);
    }

    /**
     * egressd's table narrows a guest flow's conntrack events to NEW and DESTROY when it starts and widens them to
     * its TCP state changes from its first FIN or RST (docs/design.md, "Conntrack events: only what the ledger
     * uses"). The ledger still closes every connection at its close, IPv4 and IPv6, those closed with a FIN at
     * TIME_WAIT and the reset ones at CLOSE, while conntrack still holds them (so on their UPDATE, not a DESTROY);
     * and an unfiltered listener on the host receives, for these flows, no UPDATE of an open connection (SYN_RECV,
     * ESTABLISHED: one or two per connection were built before), but every NEW and every close.
     */
    @Test
    void closedConnectionsLeaveTheLedgerAtTheirCloseAndNoUpdateOfAnOpenOneIsBuilt() throws Exception
    {
        start(1024, ConntrackEvents.DEFAULT_RECEIVE_BUFFER);
        // CLOSE entries stay 120 s, as TIME_WAIT ones do by default: the ledger must drop them while they are listed
        lab.must("host", "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_close=120");
        try (ConntrackEvents all = lab.host().call(() -> ConntrackEvents.open(ConntrackEvents.DEFAULT_RECEIVE_BUFFER,
            200, true)))
        {
            final List<ConntrackEvent> seen = new ArrayList<>();
            final List<RunningClient> closing = List.of(
                lab.guest(1).startClient("tcp", DST4, "80", "4", "3"),
                lab.guest(1).startClient("tcp", DST6, "80", "3", "3", "--reset"),
                lab.guest(2).startClient("tcp", DST4, "80", "3", "3", "--reset"),
                lab.guest(2).startClient("tcp", DST6, "80", "2", "3"));
            clients.addAll(closing);
            final int[] counts = {4, 3, 3, 2};
            for (int i = 0; i < closing.size(); i++)
            {
                for (int k = 0; k < counts[i]; k++)
                {
                    assertThat(closing.get(i).next(Duration.ofSeconds(10)).ok()).isTrue();
                }
            }
            awaitTrue(() -> total("m1") == 7 && total("m2") == 5, "the ledger holds the 7 + 5 open connections: "
                + total("m1") + " + " + total("m2"));
            for (final RunningClient c : closing)
            {
                assertThat(c.awaitEnd(Duration.ofSeconds(10))).isEmpty();
            }
            awaitTrue(() -> total("m1") == 0 && total("m2") == 0, "the ledger lets the closed connections go: "
                + total("m1") + " + " + total("m2"));
            final List<ConntrackEntry> held = new ArrayList<>(lab.hostConntrack().entries("ipv4"));
            held.addAll(lab.hostConntrack().entries("ipv6"));
            held.removeIf(e -> !"tcp".equals(e.proto()) || !(e.origDst().equals(DST4) || e.origDst().equals(DST6)));
            assertThat(held).as("conntrack still holds all 12, closing").hasSize(12)
                .allSatisfy(e -> assertThat(e.tcpState()).isIn("TIME_WAIT", "CLOSE"));

            final long quietUntil = System.nanoTime() + 1_500_000_000L;
            while (System.nanoTime() < quietUntil)
            {
                all.poll(new CollectingListener(seen));
            }
            seen.removeIf(e -> e.l4proto() != 6 || e.origDstPort() != 80);
            final long news = seen.stream().filter(e -> e.type() == ConntrackEvent.Type.NEW).count();
            final List<Integer> updateStates = seen.stream().filter(e -> e.type() == ConntrackEvent.Type.UPDATE)
                .map(ConntrackEvent::tcpState).toList();
            // by conntrack id: a retransmitted FIN or a late packet can report a closing state a second time
            final long closed = seen.stream().filter(e -> e.type() == ConntrackEvent.Type.UPDATE
                && (e.tcpState() == NetlinkConstants.TCP_CONNTRACK_TIME_WAIT
                    || e.tcpState() == NetlinkConstants.TCP_CONNTRACK_CLOSE))
                .mapToInt(ConntrackEvent::id).distinct().count();
            assertThat(news).as("every NEW").isEqualTo(12);
            assertThat(closed).as("every close (6 to TIME_WAIT, 6 to CLOSE), each connection at least once")
                .isEqualTo(12);
            // SYN_SENT 1, SYN_RECV 2, ESTABLISHED 3: a connection's opening, which the ledger never reads
            assertThat(updateStates).as("no UPDATE of an open connection").noneMatch(st -> st >= 1 && st <= 3);
            report("events: " + seen.size() + " messages for 12 connections (NEW " + news + ", UPDATE states "
                + updateStates + "); stats " + brief(monitor.stats()));
        }
    }

    private int total(final String machine)
    {
        try
        {
            final ConnectionQueries.Connections c = monitor.queries().connections(machine, 10).get(5, TimeUnit.SECONDS);
            return c == null ? 0 : c.total();
        }
        catch (final Exception e)
        {
            throw new AssertionError(e);
        }
    }

    // ---------------------------------------------------------------------------------------------

    private void start(final int cap, final int receiveBuffer) throws Exception
    {
        start(cap, receiveBuffer, egress(1));
    }

    /** A lab with m1 on the given egress and m2 on slot 2 of A, the kernel programmed, the monitor told and started. */
    private void start(final int cap, final int receiveBuffer, final Egress first) throws Exception
    {
        lab = Lab.create(2);
        final DataplaneConfig config = new DataplaneConfig("egressd", "uplink", "tap-*", cap);
        kernel = lab.host().call(() -> NftKernel.open(config));
        lab.host().call(kernel::ensureTable);
        program(List.of(new PlannedMachine(machine(1), first), planned(2)));
        startMonitor(cap, receiveBuffer, List.of(new EgressAllocator.MachineView(1, machine(1), first, null),
            view(2)));
    }

    /** A monitor subscribed in the host namespace, told the machines before it starts (as the daemon does). */
    private void startMonitor(final int cap, final int receiveBuffer, final List<EgressAllocator.MachineView> views)
        throws Exception
    {
        final ConntrackEvents events = lab.host().call(() -> ConntrackEvents.open(receiveBuffer,
            ConntrackMonitor.POLL_MILLIS, true));
        final RefusalLog log = new RefusalLog(RefusalLog.Format.TEXT, refusalLines::add, System::nanoTime);
        monitor = new ConntrackMonitor(events, cap, log, System::nanoTime);
        monitor.machinesChanged(views, 0);
        monitor.start();
    }

    /** A guest's entries whose translated source is the given address (the host's, or a pair's). */
    private List<ConntrackEntry> via(final String family, final String guest, final String address)
    {
        return lab.hostConntrack().entries(family).stream().filter(e -> guest.equals(e.origSrc()) && address.equals(e.replyDst()))
            .collect(Collectors.toList());
    }

    private void hold(final int guest, final String dst, final int n) throws Exception
    {
        final RunningClient client = lab.guest(guest).startClient("tcp", dst, "80", Integer.toString(n), "60");
        clients.add(client);
        for (int i = 0; i < n; i++)
        {
            assertThat(client.next(Duration.ofSeconds(10)).ok()).isTrue();
        }
    }

    private List<ConntrackEntry> entriesOf(final String guest)
    {
        return lab.hostConntrack().entries("ipv4").stream().filter(e -> guest.equals(e.origSrc())).collect(Collectors.toList());
    }

    /** What {@code conntrack -L} lists from a guest, per destination: the entries {@code ct count} counts. */
    private Map<String, Integer> listed(final String guest)
    {
        final Map<String, Integer> m = new TreeMap<>();
        for (final ConntrackEntry e : entriesOf(guest))
        {
            if (!e.line().contains("TIME_WAIT") && !e.line().contains(" CLOSE "))
            {
                m.merge(e.origDst(), 1, Integer::sum);
            }
        }
        return m;
    }

    private Map<String, Integer> ledger(final String machine)
    {
        try
        {
            final ConnectionQueries.Connections c = monitor.queries().connections(machine, 100)
                .get(5, TimeUnit.SECONDS);
            final Map<String, Integer> m = new TreeMap<>();
            if (c != null)
            {
                for (final DestinationUsage d : c.destinations())
                {
                    m.put(d.destination(), d.count());
                }
            }
            return m;
        }
        catch (final Exception e)
        {
            throw new AssertionError(e);
        }
    }

    private static void awaitTrue(final BooleanSupplier condition, final String what) throws InterruptedException
    {
        awaitTrue(condition, what, 10);
    }

    private static void awaitTrue(final BooleanSupplier condition, final String what, final int seconds)
        throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!condition.getAsBoolean())
        {
            if (System.nanoTime() > deadline)
            {
                throw new AssertionError("not within " + seconds + " s: " + what);
            }
            Thread.sleep(100);
        }
    }

    private static void sleep(final long millis)
    {
        try
        {
            Thread.sleep(millis);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
    }

    private static String brief(final ConntrackSnapshot s)
    {
        return String.format("new %d update %d destroy %d guest %d overruns %d resyncs %d live %d warn %d crit %d "
            + "violations %d deleted %d", s.newEvents(), s.updateEvents(), s.destroyEvents(), s.guestEvents(),
            s.overruns(), s.resyncs(), s.liveConnections(), s.machinesAtWarning(), s.machinesAtCritical(),
            s.violations(), s.flowsDeleted());
    }

    private static String guest4(final int g)
    {
        return "10.77.0." + (g + 1);
    }

    private static String guest6(final int g)
    {
        return "fd77::" + Integer.toHexString(g + 1);
    }

    private static Egress hostEgress()
    {
        return new Egress(Scope.HOST, null, -1, -1, -1, "no static egress");
    }

    private static Machine machine(final int g)
    {
        return new Machine("m" + g, "app1", "tap-g" + g, Ipv4Address.parse(guest4(g)),
            Ipv6Address.parse("fd77::" + Integer.toHexString(g + 1)), null);
    }

    private static Egress egress(final int g)
    {
        return new Egress(Scope.APP, A, g, L.firstPort(g), L.lastPort(g), "slot " + g);
    }

    private static PlannedMachine planned(final int g)
    {
        return new PlannedMachine(machine(g), egress(g));
    }

    private static EgressAllocator.MachineView view(final int g)
    {
        return new EgressAllocator.MachineView(g, machine(g), egress(g), null);
    }

    private static void report(final String figures)
    {
        System.out.println("CONNTRACK " + figures);
    }

    /** What {@link #masqueradedM1()} set up: m1's held connection and flows via the host, m2's flows. */
    private record Masqueraded(RunningClient held, ClientResult established, int flows4, int flows6,
        Map<String, Integer> m2Before)
    {
    }

    /** Starts with m1 on the host's address (masquerade) holding connections in both families, m2 on a slot of A. */
    private Masqueraded masqueradedM1() throws Exception
    {
        start(1024, ConntrackEvents.DEFAULT_RECEIVE_BUFFER, hostEgress());
        final RunningClient held = lab.guest(1).startClient("hold", DST4, "80", "30", "--timeout", "1");
        clients.add(held);
        final ClientResult established = held.next(Duration.ofSeconds(10));
        assertThat(established.seenIp()).as("masqueraded while host").isEqualTo(HOST4);
        assertThat(held.nextLine(Duration.ofSeconds(2))).as("an echo while host")
            .isEqualTo("echo " + established.seenIp() + " " + established.seenPort());
        hold(1, DST4B, 3);
        hold(1, DST6, 2);
        hold(2, DST4, 2);
        final int masqueraded4 = via("ipv4", guest4(1), HOST4).size();
        final int masqueraded6 = via("ipv6", guest6(1), HOST6).size();
        assertThat(masqueraded4).as("the held connection and 3 more, via " + HOST4).isGreaterThanOrEqualTo(4);
        assertThat(masqueraded6).as("2 via " + HOST6).isGreaterThanOrEqualTo(2);
        final Map<String, Integer> m2Before = listed(guest4(2));
        return new Masqueraded(held, established, masqueraded4, masqueraded6, m2Before);
    }

    /** Commits m1's move to slot 1 of A to the kernel (the monitor is not told here). */
    private void moveM1ToA() throws Exception
    {
        program(List.of(planned(1), planned(2)));
    }

    /** Programs the kernel with these machines and {@link #pairs} on the uplink (as the control loop commits). */
    private void program(final List<PlannedMachine> machines) throws Exception
    {
        lab.host().call(() ->
        {
            kernel.apply(PlanDiff.between(kernel.read(), KernelPlanner.plan(machines, pairs)));
            return null;
        });
    }

    private static void assertLeaveFromABlock1(final List<ClientResult> fresh4, final List<ClientResult> fresh6)
    {
        assertThat(fresh4).allSatisfy(r ->
        {
            assertThat(r.ok()).as(r.toString()).isTrue();
            assertThat(r.seenIp()).isEqualTo(A.ipv4().toString());
            assertThat(r.seenPort()).isBetween(L.firstPort(1), L.lastPort(1));
        });
        assertThat(fresh6).allSatisfy(r -> assertThat(r.seenIp()).isEqualTo(A.ipv6().toString()));
    }
}
