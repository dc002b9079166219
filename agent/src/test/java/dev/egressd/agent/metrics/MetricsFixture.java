package dev.egressd.agent.metrics;

import dev.egressd.agent.daemon.ControlLoop;
import dev.egressd.agent.daemon.FakeKernel;
import dev.egressd.agent.daemon.Kernel;
import dev.egressd.agent.daemon.KernelException;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.model.BlockLayout;
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

    /** The fake kernel plus the table's named counters. */
    static final class CountingKernel implements Kernel
    {
        final FakeKernel fake = new FakeKernel();
        final Map<String, Long> counters = new LinkedHashMap<>();

        @Override
        public boolean ensureTable() throws KernelException
        {
            return fake.ensureTable();
        }

        @Override
        public KernelPlan read() throws KernelException
        {
            return fake.read();
        }

        @Override
        public void apply(final List<PlanChange> changes) throws KernelException
        {
            fake.apply(changes);
        }

        @Override
        public Map<String, Long> counters() throws KernelException
        {
            if (fake.failing != null)
            {
                throw new KernelException(fake.failing);
            }
            return Map.copyOf(counters);
        }
    }

    final CountingKernel kernel = new CountingKernel();
    final AtomicLong clock = new AtomicLong(1_000_000_000L);
    final ControlLoop loop;

    MetricsFixture(final Path dir) throws Exception
    {
        final StateStore store = new StateStore(dir);
        loop = ControlLoop.of(SETTINGS, DesiredState.empty(dev.egressd.agent.daemon.StateMapper.host(SETTINGS)),
            kernel, store, Runnable::run, clock::get, 0);
        loop.initialSync();
    }

    static Machine machine(final String id, final String app, final int n)
    {
        return new Machine(id, app, "tap-" + id, Ipv4Address.parse("10.77.0." + n),
            Ipv6Address.parse("fd77::" + n), null);
    }

    ControlLoop.Result put(final Machine m) throws Exception
    {
        return loop.mutate("put machine " + m.id(), l -> l.putMachine(m)).get();
    }

    ControlLoop.Result delete(final String id) throws Exception
    {
        return loop.mutate("delete machine " + id, l -> l.allocator().removeMachine(id)).get();
    }

    ControlLoop.Result addPair(final String app, final int n) throws Exception
    {
        return loop.mutate("add pair 203.0.113." + n + " to app " + app,
            l -> l.allocator().addPair(app, "203.0.113." + n, "2001:db8::" + n, null)).get();
    }

    ControlLoop.Result releasePair(final String app, final int n) throws Exception
    {
        return loop.mutate("release pair 203.0.113." + n + " of app " + app,
            l -> l.allocator().releasePair(app, "203.0.113." + n)).get();
    }

    ControlLoop.Result app(final String app, final boolean failClosed) throws Exception
    {
        return loop.mutate("put app " + app, l -> l.allocator().upsertApp(app, failClosed)).get();
    }
}
