package dev.egressd.agent.reconcile;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.kernel.NftKernel;
import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.StateStore;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
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
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The reconcile's reads on a reader thread of their own, with their own nft context and rtnetlink socket opened
 * there ({@code NftKernel.reader()}), against the real kernel in a throwaway namespace: two threads entered into it,
 * the loop's and the reader's. Drift of an element, of an address and of the whole table is repaired from a read
 * taken off the loop thread, within a second of the reconcile; per-guest IPv6 chains the loop writes between two
 * reads are not taken for drift.
 */
@Privileged
class ReadsOffTheWriterPrivilegedTest
{
    private static final HostSettings SETTINGS = new HostSettings("ord", new BlockLayout(8, 1024), 1024);
    private static final long SECOND = 1_000_000_000L;

    @TempDir
    Path dir;

    private LabNamespace lab;
    private NetNamespace writer;
    private NetNamespace reader;
    private NftKernel kernel;
    private ControlLoop loop;

    @BeforeEach
    void setUp() throws IOException
    {
        Requirements.rootWithNftables();
        lab = LabNamespace.withUplink("offw");
        lab.exec("ip", "link", "set", "uplink", "up");
        writer = NetNamespace.enter(lab.name());
        reader = NetNamespace.enter(lab.name());
        kernel = new NftKernel(DataplaneConfig.defaults("uplink"));
        loop = ControlLoop.of(SETTINGS, DesiredState.empty(StateMapper.host(SETTINGS)), kernel, new StateStore(dir),
            writer.executor(), System::nanoTime, 100);
        loop.readsOn(reader.executor());
        on(() ->
        {
            loop.initialSync();
            return null;
        });
        mutate(Operation.PUT_APP, l -> l.allocator().upsertApp("a1", false));
        mutate(Operation.ADD_PAIR, l -> l.allocator().addPair("a1", new EgressPair(Ipv4Address.parse("203.0.113.10"),
            Ipv6Address.parse("2001:db8:10::10"), SETTINGS.region())));
        for (int n = 2; n < 6; n++)
        {
            putMachine("m" + n, n);
        }
    }

    @AfterEach
    void tearDown() throws IOException
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
                reader.close();
            }
            finally
            {
                LabNamespace.tearDown(lab, writer, kernel);
            }
        }
    }

    @Test
    void driftOfAnElementAnAddressAndTheWholeTableIsRepairedFromAReadOffTheLoopThread() throws Exception
    {
        reconcileAndWait();
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);

        lab.exec("ip", "addr", "del", "203.0.113.10/32", "dev", "uplink");
        final long t0 = System.nanoTime();
        reconcileAndWait();
        assertThat(System.nanoTime() - t0).as("repaired within a second").isLessThan(SECOND);
        assertThat(lab.exec("ip", "-4", "addr", "show", "dev", "uplink")).contains("203.0.113.10");
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
        assertThat(loop.health().lastRepair()).contains("203.0.113.10");

        lab.exec("nft", "flush", "map", "inet", "egressd", "snat4");
        reconcileAndWait();
        assertThat(kernelPlan()).isEqualTo(on(loop::desiredPlan));

        lab.exec("nft", "delete", "table", "inet", "egressd");
        final long t1 = System.nanoTime();
        reconcileAndWait();
        assertThat(System.nanoTime() - t1).as("the table back within a second").isLessThan(SECOND);
        assertThat(loop.health().lastRepair()).contains("created or repaired the table's fixed part");
        assertThat(kernelPlan()).isEqualTo(on(loop::desiredPlan));
    }

    @Test
    void ipv6MappingsTheLoopWritesBetweenTwoReadsAreNotTakenForDrift() throws Exception
    {
        reconcileAndWait();
        final long repairs = loop.health().repairs();
        for (int round = 0; round < 5; round++)
        {
            // each new machine has IPv6: the loop writes its snat6 element, which the reader never wrote itself
            putMachine("n" + round, 10 + round);
            reconcileAndWait();
            assertThat(loop.health().kernel()).as("round %d: %s", round, loop.health()).isEqualTo(KernelStatus.IN_SYNC);
        }
        assertThat(loop.health().repairs()).isEqualTo(repairs);
        assertThat(kernelPlan()).isEqualTo(on(loop::desiredPlan));
    }

    // ---------------------------------------------------------------------------------------------

    /** A reconcile on the loop thread; waits until its read came back and was taken there. */
    private void reconcileAndWait() throws Exception
    {
        final long runs = loop.reconcileRuns();
        final long failures = loop.reconcileFailures();
        // the reads are paced: a reconcile is due again at most four times a read's cost after the last
        final long until = System.nanoTime() + 10 * SECOND;
        while (loop.reconcileRuns() == runs)
        {
            on(() ->
            {
                // checked on the loop thread: a read whose result was taken since must not be followed by another
                if (loop.reconcileRuns() == runs)
                {
                    loop.reconcile();
                }
                return null;
            });
            assertThat(System.nanoTime()).as("a reconcile came back").isLessThan(until);
            Thread.sleep(5);
        }
        on(() -> null); // the task that took the result has finished
        assertThat(loop.reconcileFailures()).as("%s", loop.health()).isEqualTo(failures);
    }

    private KernelPlan kernelPlan() throws IOException
    {
        // a one-off deep read in the namespace, with a kernel of its own
        return reader.call(() ->
        {
            try (NftKernel k = NftKernel.open(DataplaneConfig.defaults("uplink")))
            {
                return k.readFull();
            }
        });
    }

    private void putMachine(final String id, final int n) throws IOException
    {
        final Machine m = new Machine(id, "a1", "tap-" + id, Ipv4Address.parse("10.77.0." + n),
            Ipv6Address.parse("fd77::" + n), null);
        mutate(Operation.PUT_MACHINE, l -> l.putMachine(m));
    }

    private void mutate(final Operation op, final ControlLoop.Mutation change) throws IOException
    {
        final MutationResult result = on(() -> loop.mutate(op, op.name(), change)).join();
        assertThat(result).as("%s", op).isInstanceOf(MutationResult.Ok.class);
    }

    private <T> T on(final Callable<T> task) throws IOException
    {
        return writer.call(task);
    }
}
