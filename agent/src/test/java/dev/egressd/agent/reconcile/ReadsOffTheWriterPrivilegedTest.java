package dev.egressd.agent.reconcile;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.testing.Privileged;
import java.nio.file.Path;
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
    @TempDir
    Path dir;

    private LoopInNamespace at;

    @BeforeEach
    void setUp() throws Exception
    {
        at = LoopInNamespace.start("offw", dir);
        for (int n = 2; n < 6; n++)
        {
            at.putMachine("m" + n, n);
        }
    }

    @AfterEach
    void tearDown() throws Exception
    {
        if (at != null)
        {
            at.close();
        }
    }

    @Test
    void driftOfAnElementAnAddressAndTheWholeTableIsRepairedFromAReadOffTheLoopThread() throws Exception
    {
        at.reconcileAndWait();
        assertThat(at.loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);

        at.lab.exec("ip", "addr", "del", "203.0.113.10/32", "dev", "uplink");
        final long t0 = System.nanoTime();
        at.reconcileAndWait();
        assertThat(System.nanoTime() - t0).as("repaired within a second").isLessThan(LoopInNamespace.SECOND);
        assertThat(at.lab.exec("ip", "-4", "addr", "show", "dev", "uplink")).contains("203.0.113.10");
        assertThat(at.loop.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
        assertThat(at.loop.health().lastRepair()).contains("203.0.113.10");

        at.lab.exec("nft", "flush", "map", "inet", "egressd", "snat4");
        at.reconcileAndWait();
        assertThat(at.kernelPlan()).isEqualTo(at.on(at.loop::desiredPlan));

        at.lab.exec("nft", "delete", "table", "inet", "egressd");
        final long t1 = System.nanoTime();
        at.reconcileAndWait();
        assertThat(System.nanoTime() - t1).as("the table back within a second").isLessThan(LoopInNamespace.SECOND);
        assertThat(at.loop.health().lastRepair()).contains("created or repaired the table's fixed part");
        assertThat(at.kernelPlan()).isEqualTo(at.on(at.loop::desiredPlan));
    }

    @Test
    void ipv6MappingsTheLoopWritesBetweenTwoReadsAreNotTakenForDrift() throws Exception
    {
        at.reconcileAndWait();
        final long repairs = at.loop.health().repairs();
        for (int round = 0; round < 5; round++)
        {
            // each new machine has IPv6: the loop writes its snat6 element, which the reader never wrote itself
            at.putMachine("n" + round, 10 + round);
            at.reconcileAndWait();
            assertThat(at.loop.health().kernel()).as("round %d: %s", round, at.loop.health()).isEqualTo(KernelStatus.IN_SYNC);
        }
        assertThat(at.loop.health().repairs()).isEqualTo(repairs);
        assertThat(at.kernelPlan()).isEqualTo(at.on(at.loop::desiredPlan));
    }
}
