package dev.egressd.core.ledger;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** The contract, run against the allocation-free {@link DestinationLedger}, plus what only it has. */
class DestinationLedgerTest extends DestinationLedgerContract
{
    @Override
    ConnectionLedger newLedger(final int destinationCap)
    {
        return new DestinationLedger(destinationCap);
    }

    @Test
    void defaultCapIsTheProductionCap()
    {
        assertThat(new DestinationLedger().destinationCap()).isEqualTo(1024);
    }

    @Test
    void connectionTableDoublesWhenHalfFull()
    {
        final DestinationLedger fast = new DestinationLedger(CAP);
        fast.registerMachine(0, 1, 65535);
        final int initial = fast.connectionCapacity();
        for (int i = 0; i < initial / 2; i++)
        {
            fast.open(i, 0, DST_A, 1000);
        }
        assertThat(fast.connectionCapacity()).isEqualTo(initial);
        fast.open(initial, 0, DST_A, 1000);
        assertThat(fast.connectionCapacity()).isEqualTo(2 * initial);
        assertThat(fast.count(0, DST_A)).isEqualTo(initial / 2 + 1);
    }

    @Test
    void collidingIdsSurviveDeletionFromTheMiddleOfAProbeRun()
    {
        // Ids that differ only above the bits the hash keeps land in one run; delete from its middle.
        final DestinationLedger fast = new DestinationLedger(CAP, 1000, 1);
        fast.registerMachine(0, 1, 65535);
        for (long i = 0; i < 500; i++)
        {
            fast.open(i << 40, 0, DST_A, 1000);
        }
        for (long i = 0; i < 500; i += 3)
        {
            assertThat(fast.close(i << 40)).isEqualTo(ConnectionLedger.CLOSED);
        }
        for (long i = 0; i < 500; i++)
        {
            assertThat(fast.close(i << 40)).isEqualTo(i % 3 == 0 ? ConnectionLedger.NOT_FOUND : ConnectionLedger.CLOSED);
        }
        assertThat(fast.liveConnections()).isZero();
        assertThat(fast.count(0, DST_A)).isZero();
    }
}
