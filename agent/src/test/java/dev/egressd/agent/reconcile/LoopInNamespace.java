package dev.egressd.agent.reconcile;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.kernel.NftKernel;
import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.StateStore;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Requirements;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.KernelPlan;
import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/**
 * A control loop against the real kernel in a throwaway namespace, with two threads entered into it: the loop's
 * (the writer) and the reader's, which has its own nft context and rtnetlink socket ({@code NftKernel.reader()}).
 * App {@code a1} with pair 203.0.113.10 / 2001:db8:10::10 is in place once {@link #start} returns. Closing removes
 * the namespace, also when the start failed half-way.
 */
final class LoopInNamespace implements AutoCloseable
{
    static final HostSettings SETTINGS = new HostSettings("ord", new BlockLayout(8, 1024), 1024);
    static final long SECOND = 1_000_000_000L;

    final LabNamespace lab;
    final ControlLoop loop;
    private final NetNamespace writer;
    private final NetNamespace reader;
    private final NftKernel kernel;

    private LoopInNamespace(final LabNamespace lab, final NetNamespace writer, final NetNamespace reader,
        final NftKernel kernel, final ControlLoop loop)
    {
        this.lab = lab;
        this.writer = writer;
        this.reader = reader;
        this.kernel = kernel;
        this.loop = loop;
    }

    /** A namespace {@code tag}-..., the loop's initial sync done there and app a1 with its pair placed. */
    static LoopInNamespace start(final String tag, final Path stateDir) throws IOException
    {
        Requirements.rootWithNftables();
        final LabNamespace lab = LabNamespace.withUplink(tag);
        NetNamespace writer = null;
        NetNamespace reader = null;
        NftKernel kernel = null;
        ControlLoop loop = null;
        try
        {
            lab.exec("ip", "link", "set", "uplink", "up");
            writer = NetNamespace.enter(lab.name());
            reader = NetNamespace.enter(lab.name());
            kernel = new NftKernel(DataplaneConfig.defaults("uplink"));
            loop = ControlLoop.of(SETTINGS, DesiredState.empty(StateMapper.host(SETTINGS)), kernel,
                new StateStore(stateDir), writer.executor(), System::nanoTime, 100);
            loop.readsOn(reader.executor());
            final LoopInNamespace started = new LoopInNamespace(lab, writer, reader, kernel, loop);
            final ControlLoop l = loop;
            started.on(() ->
            {
                l.initialSync();
                return null;
            });
            started.mutate(Operation.PUT_APP, c -> c.allocator().upsertApp("a1", false));
            started.mutate(Operation.ADD_PAIR, c -> c.allocator().addPair("a1",
                new EgressPair(Ipv4Address.parse("203.0.113.10"), Ipv6Address.parse("2001:db8:10::10"),
                    SETTINGS.region())));
            return started;
        }
        catch (final IOException | RuntimeException | Error e)
        {
            new LoopInNamespace(lab, writer, reader, kernel, loop).closeQuietly(e);
            throw e;
        }
    }

    /** A reconcile on the loop thread; waits until its read came back and was taken there, without a failure. */
    void reconcileAndWait() throws Exception
    {
        final long failures = loop.reconcileFailures();
        ReconcileOnce.andWait(loop, this::on);
        assertThat(loop.reconcileFailures()).as("%s", loop.health()).isEqualTo(failures);
    }

    /** A one-off deep read in the namespace, with a kernel of its own. */
    KernelPlan kernelPlan() throws IOException
    {
        return reader.call(() ->
        {
            try (NftKernel k = NftKernel.open(DataplaneConfig.defaults("uplink")))
            {
                return k.readFull();
            }
        });
    }

    /** Machine {@code id} of app a1 on guest 10.77.0.n / fd77::n behind tap-{@code id}. */
    void putMachine(final String id, final int n) throws IOException
    {
        final Machine m = new Machine(id, "a1", "tap-" + id, Ipv4Address.parse("10.77.0." + n),
            Ipv6Address.parse("fd77::" + n), null);
        mutate(Operation.PUT_MACHINE, l -> l.putMachine(m));
    }

    void mutate(final Operation op, final ControlLoop.Mutation change) throws IOException
    {
        final MutationResult result = on(() -> loop.mutate(op, op.name(), change)).join();
        assertThat(result).as("%s", op).isInstanceOf(MutationResult.Ok.class);
    }

    /** Runs {@code task} on the loop's thread. */
    <T> T on(final Callable<T> task) throws IOException
    {
        return writer.call(task);
    }

    @Override
    public void close() throws IOException
    {
        try
        {
            if (loop != null)
            {
                loop.closeReads(); // the reading kernel is closed on the reader's thread
            }
        }
        finally
        {
            try
            {
                if (reader != null)
                {
                    reader.close();
                }
            }
            finally
            {
                LabNamespace.tearDown(lab, writer, kernel);
            }
        }
    }

    private void closeQuietly(final Throwable cause)
    {
        try
        {
            close();
        }
        catch (final IOException | RuntimeException e)
        {
            cause.addSuppressed(e);
        }
    }
}
