package dev.egressd.agent.metrics;

import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.reconcile.MutationResult;
import dev.egressd.agent.reconcile.Operation;
import dev.egressd.agent.kernel.FakeKernel;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

/** A control loop on a fake kernel with named counters, a hand-driven clock and a direct executor. */
final class MetricsFixture
{
    /** Eight blocks per pair, a cap of 10 connections per destination. */
    static final HostSettings SETTINGS = new HostSettings("ord", new BlockLayout(8, 1024), 10);


    final FakeKernel kernel = new FakeKernel();
    final AtomicLong clock = new AtomicLong(1_000_000_000L);
    final ControlLoop loop;

    MetricsFixture(final Path dir) throws Exception
    {
        final StateStore store = new StateStore(dir);
        loop = ControlLoop.of(SETTINGS, DesiredState.empty(dev.egressd.agent.state.StateMapper.host(SETTINGS)),
            kernel, store, Runnable::run, clock::get, 0);
        loop.initialSync();
    }

    /**
     * A host with something in every series: two apps, pairs, machines in every scope, kernel counters, ledger
     * figures, changes of every outcome and a reconcile.
     *
     * @param metrics the binder (already bound).
     * @param ledger  the ledger figures it reads.
     * @throws Exception if the loop fails.
     */
    void populate(final EgressMetrics metrics, final FakeLedgerStats ledger) throws Exception
    {
        metrics.ledger(ledger);
        addPair("a1", 10);
        addPair("a1", 11);
        for (int i = 1; i <= 18; i++)
        {
            put(machine("m" + i, "a1", i + 1)); // 16 placed, 2 pending
        }
        app("a2", false);
        put(machine("h1", "a2", 40));
        loop.mutate(Operation.SET_MACHINE_PAIR, "set machine-scoped pair of s1", l ->
        {
            l.putMachine(machine("s1", "a2", 41));
            return l.allocator().setMachineScopedPair("s1", pair("203.0.113.20", "2001:db8::20"));
        }).get();
        releasePair("a1", 99); // refused
        kernel.failing = "nft: busy";
        delete("m2"); // unavailable
        kernel.failing = null;
        for (final var m : loop.published().machines())
        {
            ledger.busiest.put(m.machine().id(), m.handle() % 11);
        }
        ledger.warning = 2;
        ledger.critical = 1;
        ledger.live = 321;
        ledger.violations = 1;
        ledger.resyncs = 1;
        ledger.events.put(dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent.Type.NEW, 400L);
        ledger.events.put(dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent.Type.DESTROY, 79L);
        ledger.events.put(dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent.Type.EXISTING, 12L);
        for (final String counter : dev.egressd.agent.kernel.nft.Ruleset.COUNTERS)
        {
            kernel.counters.put(counter, (long)counter.length());
        }
        clock.addAndGet(5_000_000_000L); // past the back-off of the failure above
        loop.reconcile();
        metrics.refresh();
    }

    static EgressPair pair(final String ipv4, final String ipv6)
    {
        return new EgressPair(Ipv4Address.parse(ipv4), Ipv6Address.parse(ipv6), SETTINGS.region());
    }

    static Machine machine(final String id, final String app, final int n)
    {
        return new Machine(id, app, "tap-" + id, Ipv4Address.parse("10.77.0." + n),
            Ipv6Address.parse("fd77::" + n), null);
    }

    MutationResult put(final Machine m) throws Exception
    {
        return loop.mutate(Operation.PUT_MACHINE, "put machine " + m.id(), l -> l.putMachine(m)).get();
    }

    MutationResult delete(final String id) throws Exception
    {
        return loop.mutate(Operation.DELETE_MACHINE, "delete machine " + id,
            l -> l.allocator().removeMachine(id)).get();
    }

    MutationResult addPair(final String app, final int n) throws Exception
    {
        return loop.mutate(Operation.ADD_PAIR, "add pair 203.0.113." + n + " to app " + app,
            l -> l.allocator().addPair(app, pair("203.0.113." + n, "2001:db8::" + n))).get();
    }

    MutationResult releasePair(final String app, final int n) throws Exception
    {
        return loop.mutate(Operation.RELEASE_PAIR, "release pair 203.0.113." + n + " of app " + app,
            l -> l.allocator().releasePair(app, Ipv4Address.parse("203.0.113." + n))).get();
    }

    MutationResult app(final String app, final boolean failClosed) throws Exception
    {
        return loop.mutate(Operation.PUT_APP, "put app " + app, l -> l.allocator().upsertApp(app, failClosed)).get();
    }
}
