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
 * The writer's own batches keep the kernel proven, against the real kernel in a throwaway namespace: after each
 * batch the writer reads the ruleset's generation back, and when it is the proven one plus one the reconcile's next
 * read (on its own reader thread) skips the table. An {@code nft} command by hand moves the generation: the next
 * read is whole and repairs, within a second (docs/design.md, "The control plane").
 */
@Privileged
class OwnBatchProofPrivilegedTest
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
    void setUp() throws Exception
    {
        Requirements.rootWithNftables();
        lab = LabNamespace.withUplink("genproof");
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
        reconcileAndWait(); // whatever the start proved, a read now finds the kernel as the plan wants
        reconcileAndWait();
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
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
    void ownBatchesKeepTheProofAndAHandEditMakesTheNextReadWholeAndRepaired() throws Exception
    {
        for (int n = 6; n < 9; n++)
        {
            putMachine("m" + n, n);
            assertThat(on(loop::kernelSeen)).as("the batch for m%d was the only commit since the proof", n)
                .isNotNull();
            final long skips = loop.idleReconciles();
            reconcileAndWait();
            assertThat(loop.idleReconciles()).as("the read after m%d skipped the table", n).isEqualTo(skips + 1);
            assertThat(loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        }
        assertThat(kernelPlan()).isEqualTo(on(loop::desiredPlan));

        lab.exec("nft", "delete", "element", "inet", "egressd", "snat4", "{", "10.77.0.7", "}");
        final long skips = loop.idleReconciles();
        final long t0 = System.nanoTime();
        reconcileAndWait();
        assertThat(System.nanoTime() - t0).as("repaired within a second").isLessThan(SECOND);
        assertThat(loop.idleReconciles()).as("read whole").isEqualTo(skips);
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
        assertThat(loop.health().lastRepair()).contains("10.77.0.7");
        assertThat(kernelPlan()).isEqualTo(on(loop::desiredPlan));
    }

    @Test
    void aForeignCommitBeforeABatchLosesTheProof() throws Exception
    {
        putMachine("m6", 6);
        assertThat(on(loop::kernelSeen)).isNotNull();
        lab.exec("nft", "add", "table", "inet", "genproof_other"); // someone's transaction, in another table
        putMachine("m7", 7);
        assertThat(on(loop::kernelSeen)).as("two commits since the proof: it proves nothing").isNull();
        final long skips = loop.idleReconciles();
        reconcileAndWait();
        assertThat(loop.idleReconciles()).as("read whole").isEqualTo(skips);
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        assertThat(on(loop::kernelSeen)).as("the whole read proved it again").isNotNull();
    }


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
