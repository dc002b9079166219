package dev.egressd.core.ledger;

import static dev.egressd.core.ledger.ConnectionLedger.CLOSED;
import static dev.egressd.core.ledger.ConnectionLedger.DUPLICATE;
import static dev.egressd.core.ledger.ConnectionLedger.NOT_FOUND;
import static dev.egressd.core.ledger.ConnectionLedger.OPENED;
import static dev.egressd.core.ledger.ConnectionLedger.OVER_CAP;
import static dev.egressd.core.ledger.ConnectionLedger.REACHED_CRITICAL;
import static dev.egressd.core.ledger.ConnectionLedger.REACHED_OVER_CAP;
import static dev.egressd.core.ledger.ConnectionLedger.REACHED_WARNING;
import static dev.egressd.core.ledger.ConnectionLedger.REPLACED;
import static dev.egressd.core.ledger.ConnectionLedger.UNKNOWN_MACHINE;
import static dev.egressd.core.ledger.ConnectionLedger.VIOLATION;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The behaviour every {@link ConnectionLedger} must have, written once and run against each implementation by
 * subclassing (as Agrona's {@code Int2IntHashMapNotAvoidingAllocationTest extends Int2IntHashMapTest}).
 */
abstract class DestinationLedgerContract
{
    static final int CAP = 20;
    static final int M1 = 1;
    static final int M2 = 2;
    static final int FIRST = 1024;
    static final int LAST = 2047;
    static final int DST_A = Ipv4Address.parse("198.51.100.10").bits();
    static final int DST_B = Ipv4Address.parse("198.51.100.11").bits();
    static final Ipv6Address DST_6 = Ipv6Address.parse("2001:db8:100::10");

    ConnectionLedger ledger;

    /**
     * The implementation under test.
     *
     * @param destinationCap the cap.
     * @return a new, empty ledger.
     */
    abstract ConnectionLedger newLedger(int destinationCap);

    @BeforeEach
    void setUp()
    {
        ledger = newLedger(CAP);
        ledger.registerMachine(M1, FIRST, LAST);
        ledger.registerMachine(M2, FIRST + 1024, LAST + 1024);
    }

    @Test
    void openCountsPerMachineAndDestination()
    {
        assertThat(ledger.open(1, M1, DST_A, 1500)).isEqualTo(OPENED);
        assertThat(ledger.open(2, M1, DST_A, 1501)).isEqualTo(OPENED);
        assertThat(ledger.open(3, M1, DST_B, 1500)).isEqualTo(OPENED);
        assertThat(ledger.open(4, M2, DST_A, 2500)).isEqualTo(OPENED);

        assertThat(ledger.count(M1, DST_A)).isEqualTo(2);
        assertThat(ledger.count(M1, DST_B)).isEqualTo(1);
        assertThat(ledger.count(M2, DST_A)).isEqualTo(1);
        assertThat(ledger.count(M2, DST_B)).isZero();
        assertThat(ledger.busiestCount(M1)).isEqualTo(2);
        assertThat(ledger.liveConnections()).isEqualTo(4);
        assertThat(ledger.liveDestinations()).isEqualTo(3);
        assertThat(ledger.machineConnections(M1)).isEqualTo(3);
        assertThat(ledger.opens()).isEqualTo(4);
    }

    @Test
    void onePortServingSeveralTuplesCountsEachConnection()
    {
        // Same translated port, same destination IP: different destination ports or TCP and UDP.
        ledger.open(1, M1, DST_A, 1500);
        ledger.open(2, M1, DST_A, 1500);
        ledger.open(3, M1, DST_A, 1500);

        assertThat(ledger.count(M1, DST_A)).isEqualTo(3);
        assertThat(ledger.topDestinations(M1, 1)).singleElement()
            .satisfies(u -> assertThat(u.portsInUse()).isEqualTo(1));
    }

    @Test
    void closeUncountsAndForgetsTheDestinationAtZero()
    {
        ledger.open(1, M1, DST_A, 1500);
        ledger.open(2, M1, DST_A, 1501);

        assertThat(ledger.close(1)).isEqualTo(CLOSED);
        assertThat(ledger.count(M1, DST_A)).isEqualTo(1);
        assertThat(ledger.close(2)).isEqualTo(CLOSED);
        assertThat(ledger.count(M1, DST_A)).isZero();
        assertThat(ledger.busiestCount(M1)).isZero();
        assertThat(ledger.liveDestinations()).isZero();
        assertThat(ledger.closes()).isEqualTo(2);
    }

    @Test
    void openOfALiveIdIsADuplicateNoOp()
    {
        ledger.open(1, M1, DST_A, 1500);

        assertThat(ledger.open(1, M1, DST_A, 1500)).isEqualTo(DUPLICATE);
        assertThat(ledger.count(M1, DST_A)).isEqualTo(1);
        assertThat(ledger.opens()).isEqualTo(1);
        assertThat(ledger.duplicateOpens()).isEqualTo(1);
    }

    @Test
    void openOfALiveIdWithAnotherTupleReplacesIt()
    {
        ledger.open(1, M1, DST_A, 1500);

        assertThat(ledger.open(1, M1, DST_B, 1600)).isEqualTo(OPENED | REPLACED);
        assertThat(ledger.count(M1, DST_A)).isZero();
        assertThat(ledger.count(M1, DST_B)).isEqualTo(1);
        assertThat(ledger.liveConnections()).isEqualTo(1);
        assertThat(ledger.replacedOpens()).isEqualTo(1);
    }

    @Test
    void closeOfAnUnknownIdIsANoOp()
    {
        ledger.open(1, M1, DST_A, 1500);

        assertThat(ledger.close(99)).isEqualTo(NOT_FOUND);
        assertThat(ledger.close(1)).isEqualTo(CLOSED);
        assertThat(ledger.close(1)).isEqualTo(NOT_FOUND);
        assertThat(ledger.liveConnections()).isZero();
        assertThat(ledger.unknownCloses()).isEqualTo(2);
        assertThat(ledger.closes()).isEqualTo(1);
    }

    @Test
    void closeBeforeOpenIsLostAndTheOpenCountsUntilTheNextSweep()
    {
        assertThat(ledger.close(7)).isEqualTo(NOT_FOUND);
        assertThat(ledger.open(7, M1, DST_A, 1500)).isEqualTo(OPENED);
        assertThat(ledger.count(M1, DST_A)).isEqualTo(1);

        // The kernel no longer has it, so the resync dump does not mention it.
        ledger.beginResync();
        assertThat(ledger.endResync()).isEqualTo(1);
        assertThat(ledger.count(M1, DST_A)).isZero();
    }

    @Test
    void portOutsideTheBlockIsAViolationThatStillCounts()
    {
        assertThat(ledger.open(1, M1, DST_A, 3000)).isEqualTo(OPENED | VIOLATION);
        assertThat(ledger.open(2, M1, DST_A, FIRST)).isEqualTo(OPENED);
        assertThat(ledger.open(3, M1, DST_A, LAST)).isEqualTo(OPENED);
        assertThat(ledger.open(4, M1, DST_6.high(), DST_6.low(), FIRST - 1)).isEqualTo(OPENED | VIOLATION);

        assertThat(ledger.count(M1, DST_A)).isEqualTo(3);
        assertThat(ledger.violations()).isEqualTo(2);
        assertThat(ledger.recentViolations()).containsExactly(
            new Violation(1, M1, 0, LedgerKeys.ipv4Low(DST_A), 3000, FIRST, LAST),
            new Violation(4, M1, DST_6.high(), DST_6.low(), FIRST - 1, FIRST, LAST));
        assertThat(ledger.recentViolations().get(0).toString()).contains("198.51.100.10", "3000", "1024..2047");
    }

    @Test
    void recentViolationsKeepsTheLastSixteenOldestFirst()
    {
        for (int i = 0; i < 40; i++)
        {
            ledger.open(i, M1, DST_A, 5000 + i);
        }
        final List<Violation> recent = ledger.recentViolations();
        assertThat(recent).hasSize(ConnectionLedger.RECENT_VIOLATIONS);
        assertThat(recent.get(0).port()).isEqualTo(5024);
        assertThat(recent.get(15).port()).isEqualTo(5039);
        assertThat(ledger.violations()).isEqualTo(40);
    }

    @Test
    void machineWithoutABlockHasNoViolations()
    {
        ledger.registerMachine(3, 1, 65535);

        assertThat(ledger.open(1, 3, DST_A, 1)).isEqualTo(OPENED);
        assertThat(ledger.open(2, 3, DST_A, 65535)).isEqualTo(OPENED);
        assertThat(ledger.violations()).isZero();
    }

    @Test
    void reRegisteringKeepsLiveConnectionsAndJudgesOnlyNewOpens()
    {
        ledger.open(1, M1, DST_A, 1500);

        assertThat(ledger.registerMachine(M1, 4096, 5119)).isFalse();
        assertThat(ledger.count(M1, DST_A)).isEqualTo(1);
        assertThat(ledger.open(1, M1, DST_A, 1500)).isEqualTo(DUPLICATE);
        assertThat(ledger.open(2, M1, DST_A, 1500)).isEqualTo(OPENED | VIOLATION);
        assertThat(ledger.open(3, M1, DST_A, 4096)).isEqualTo(OPENED);
    }

    @Test
    void unknownMachineIsRefusedAndCountsNothing()
    {
        assertThat(ledger.open(1, 9, DST_A, 1500)).isEqualTo(UNKNOWN_MACHINE);
        assertThat(ledger.open(2, -1, DST_A, 1500)).isEqualTo(UNKNOWN_MACHINE);
        // 2^30 * 4 wraps to 0 in int arithmetic: it must not alias a registered machine.
        ledger.registerMachine(0, 1, 65535);
        assertThat(ledger.open(3, 1 << 30, DST_A, 1500)).isEqualTo(UNKNOWN_MACHINE);
        assertThat(ledger.open(4, Integer.MIN_VALUE, DST_A, 1500)).isEqualTo(UNKNOWN_MACHINE);
        assertThat(ledger.isRegistered(1 << 30)).isFalse();
        assertThat(ledger.liveConnections()).isZero();
        assertThat(ledger.unknownMachineOpens()).isEqualTo(4);
        assertThat(ledger.close(1)).isEqualTo(NOT_FOUND);
    }

    @Test
    void registerRefusesInvalidInput()
    {
        assertThatThrownBy(() -> ledger.registerMachine(-1, 1, 2)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> ledger.registerMachine(3, 0, 2)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> ledger.registerMachine(3, 5, 4)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> ledger.registerMachine(3, 1, 65536)).isInstanceOf(IllegalArgumentException.class);
        assertThat(ledger.isRegistered(3)).isFalse();
    }

    @Test
    void unregisterForgetsEveryConnectionOfThatMachineOnly()
    {
        for (int i = 0; i < CAP; i++)
        {
            ledger.open(i, M1, DST_A, 1500);
            ledger.open(100 + i, M1, DST_6.high(), DST_6.low(), 1500);
        }
        ledger.open(1000, M2, DST_A, 2500);
        assertThat(ledger.machinesAtCritical()).isEqualTo(1);

        assertThat(ledger.unregisterMachine(M1)).isEqualTo(2 * CAP);
        assertThat(ledger.isRegistered(M1)).isFalse();
        assertThat(ledger.count(M1, DST_A)).isZero();
        assertThat(ledger.busiestCount(M1)).isZero();
        assertThat(ledger.machinesAtWarning()).isZero();
        assertThat(ledger.machinesAtCritical()).isZero();
        assertThat(ledger.count(M2, DST_A)).isEqualTo(1);
        assertThat(ledger.liveConnections()).isEqualTo(1);
        assertThat(ledger.unregisterMachine(M1)).isZero();
        assertThat(ledger.close(5)).isEqualTo(NOT_FOUND);
        assertThat(ledger.open(5, M1, DST_A, 1500)).isEqualTo(UNKNOWN_MACHINE);

        ledger.registerMachine(M1, FIRST, LAST);
        assertThat(ledger.open(5, M1, DST_A, 1500)).isEqualTo(OPENED);
        assertThat(ledger.count(M1, DST_A)).isEqualTo(1);
    }

    @Test
    void resyncSweepsWhatTheDumpDidNotMention()
    {
        ledger.open(1, M1, DST_A, 1500);
        ledger.open(2, M1, DST_A, 1501);
        ledger.open(3, M2, DST_A, 2500);

        ledger.beginResync();
        ledger.open(1, M1, DST_A, 1500);        // in the dump: kept
        ledger.open(4, M1, DST_A, 1502);        // new in the dump: counted
        ledger.open(5, M2, DST_B, 2501);        // a live NEW event during the dump: kept
        ledger.close(5);                        // ... and its DESTROY
        ledger.open(6, M2, DST_B, 2502);
        assertThat(ledger.endResync()).isEqualTo(2);

        assertThat(ledger.count(M1, DST_A)).isEqualTo(2);
        assertThat(ledger.count(M2, DST_A)).isZero();
        assertThat(ledger.count(M2, DST_B)).isEqualTo(1);
        assertThat(ledger.liveConnections()).isEqualTo(3);
        assertThat(ledger.sweptConnections()).isEqualTo(2);
        assertThat(ledger.close(2)).isEqualTo(NOT_FOUND);
        assertThat(ledger.endResync()).isZero();
    }

    @Test
    void clearForgetsConnectionsButKeepsMachinesAndCounters()
    {
        ledger.open(1, M1, DST_A, 1500);
        ledger.open(2, M1, DST_A, 9999);
        ledger.clear();

        assertThat(ledger.liveConnections()).isZero();
        assertThat(ledger.count(M1, DST_A)).isZero();
        assertThat(ledger.busiestCount(M1)).isZero();
        assertThat(ledger.isRegistered(M1)).isTrue();
        assertThat(ledger.opens()).isEqualTo(2);
        assertThat(ledger.violations()).isEqualTo(1);
        assertThat(ledger.open(1, M1, DST_A, 1500)).isEqualTo(OPENED);
    }

    @Test
    void ipv4AndIpv6DestinationsAreKeptApart()
    {
        // 2001:db8:100::10 and 198.51.100.10 share their last 32 bits' worth of nothing; use a v6 whose low
        // half equals the v4 address bits to show the ::ffff: mapping keeps them apart.
        final long lowLikeV4 = DST_A & 0xFFFF_FFFFL;
        ledger.open(1, M1, DST_A, 1500);
        ledger.open(2, M1, 0, lowLikeV4, 1500);
        ledger.open(3, M1, DST_6.high(), DST_6.low(), 1500);
        ledger.open(4, M1, DST_6.high(), DST_6.low(), 1501);

        assertThat(ledger.count(M1, DST_A)).isEqualTo(1);
        assertThat(ledger.count(M1, 0, lowLikeV4)).isEqualTo(1);
        assertThat(ledger.count(M1, DST_6.high(), DST_6.low())).isEqualTo(2);
        assertThat(ledger.liveDestinations()).isEqualTo(3);
        assertThat(ledger.topDestinations(M1, 3)).extracting(DestinationUsage::destination)
            .containsExactly("2001:db8:100::10", "::c633:640a", "198.51.100.10");
    }

    @Test
    void overCapIsReportedFromTheCapPlusOnethConnection()
    {
        for (int i = 0; i < CAP; i++)
        {
            final int reached = i + 1 == ledger.warningThreshold() ? REACHED_WARNING
                : i + 1 == ledger.criticalThreshold() ? REACHED_CRITICAL : 0;
            assertThat(ledger.open(i, M1, DST_A, 1500 + i)).isEqualTo(OPENED | reached);
        }
        assertThat(ledger.open(CAP, M1, DST_A, 1500)).isEqualTo(OPENED | OVER_CAP | REACHED_OVER_CAP);
        assertThat(ledger.open(CAP, M1, DST_A, 1500)).isEqualTo(DUPLICATE);
        assertThat(ledger.open(CAP + 1, M1, DST_B, 1500)).isEqualTo(OPENED);
        assertThat(ledger.overCapOpens()).isEqualTo(1);
        assertThat(ledger.machinesOverCap()).isEqualTo(1);

        ledger.close(0);
        assertThat(ledger.machinesOverCap()).isZero();
        assertThat(ledger.busiestCount(M1)).isEqualTo(CAP);
    }

    @Test
    void reachedBitsMarkTheMachinesFirstDestinationAtEachThresholdOnce()
    {
        final int warn = ledger.warningThreshold();
        for (int i = 0; i < warn - 1; i++)
        {
            ledger.open(i, M1, DST_A, 1500 + i);
            ledger.open(100 + i, M1, DST_B, 1500 + i);
        }
        assertThat(ledger.open(99, M1, DST_A, 1599)).isEqualTo(OPENED | REACHED_WARNING);
        // A second destination at the threshold: the machine was already there.
        assertThat(ledger.open(199, M1, DST_B, 1599)).isEqualTo(OPENED);
        // Another machine reaching it is news again.
        for (int i = 0; i < warn - 1; i++)
        {
            ledger.open(200 + i, M2, DST_A, 2600 + i);
        }
        assertThat(ledger.open(299, M2, DST_A, 2699)).isEqualTo(OPENED | REACHED_WARNING);

        // M1 falls below the threshold on both destinations, then reaches it again.
        ledger.close(99);
        ledger.close(199);
        assertThat(ledger.machinesAtWarning()).isEqualTo(1);
        assertThat(ledger.open(99, M1, DST_A, 1599)).isEqualTo(OPENED | REACHED_WARNING);
        // A replaced id on the only destination at the threshold drops it below and brings it back: news again.
        assertThat(ledger.open(99, M1, DST_A, 1598)).isEqualTo(OPENED | REPLACED | REACHED_WARNING);
        assertThat(ledger.machinesAtWarning()).isEqualTo(2);
    }

    @Test
    void busiestCountsFillsEveryHandleInOnePass()
    {
        ledger.open(1, M1, DST_A, 1500);
        ledger.open(2, M1, DST_A, 1501);
        ledger.open(3, M1, DST_B, 1502);
        ledger.open(4, M2, DST_B, 2500);
        final int[] busiest = {-1, -1, -1, -1, -1};

        ledger.busiestCounts(busiest);

        assertThat(busiest[M1]).isEqualTo(2);
        assertThat(busiest[M2]).isEqualTo(1);
        for (int m = 0; m < busiest.length; m++)
        {
            assertThat(busiest[m]).as("machine %d", m).isEqualTo(ledger.busiestCount(m));
        }
    }

    @Test
    void saturationThresholdsAreEightyAndNinetyFivePercentOfTheCap()
    {
        assertThat(ledger.warningThreshold()).isEqualTo(16);
        assertThat(ledger.criticalThreshold()).isEqualTo(19);
        for (int i = 0; i < 15; i++)
        {
            ledger.open(i, M1, DST_A, 1500);
        }
        assertThat(ledger.machinesAtWarning()).isZero();
        ledger.open(15, M1, DST_A, 1500);
        assertThat(ledger.machinesAtWarning()).isEqualTo(1);
        assertThat(ledger.machinesAtCritical()).isZero();
        ledger.open(16, M1, DST_A, 1500);
        ledger.open(17, M1, DST_A, 1500);
        assertThat(ledger.machinesAtCritical()).isZero();
        ledger.open(18, M1, DST_A, 1500);
        assertThat(ledger.machinesAtCritical()).isEqualTo(1);

        // Another destination of the same machine at the same level does not count the machine twice.
        for (int i = 0; i < 19; i++)
        {
            ledger.open(100 + i, M1, DST_B, 1500);
        }
        assertThat(ledger.machinesAtCritical()).isEqualTo(1);
        ledger.close(18);
        assertThat(ledger.machinesAtCritical()).isEqualTo(1);
        ledger.close(118);
        assertThat(ledger.machinesAtCritical()).isZero();
        assertThat(ledger.machinesAtWarning()).isEqualTo(1);
        assertThat(ledger.busiestCount(M1)).isEqualTo(18);

        for (int i = 0; i < 16; i++)
        {
            ledger.open(200 + i, M2, DST_A, 2500);
        }
        assertThat(ledger.machinesAtWarning()).isEqualTo(2);
    }

    @Test
    void thresholdsRoundUpForACapOfTen()
    {
        final ConnectionLedger small = newLedger(10);
        assertThat(small.warningThreshold()).isEqualTo(8);
        assertThat(small.criticalThreshold()).isEqualTo(10);
        assertThat(newLedger(1024).warningThreshold()).isEqualTo(820);
        assertThat(newLedger(1024).criticalThreshold()).isEqualTo(973);
    }

    @Test
    void busiestFollowsTheMaximumDownAndUp()
    {
        ledger.open(1, M1, DST_A, 1500);
        ledger.open(2, M1, DST_A, 1500);
        ledger.open(3, M1, DST_A, 1500);
        ledger.open(4, M1, DST_B, 1500);
        ledger.open(5, M1, DST_B, 1500);
        assertThat(ledger.busiestCount(M1)).isEqualTo(3);
        ledger.close(1);
        assertThat(ledger.busiestCount(M1)).isEqualTo(2);
        ledger.close(2);
        assertThat(ledger.busiestCount(M1)).isEqualTo(2);
        ledger.close(4);
        ledger.close(5);
        assertThat(ledger.busiestCount(M1)).isEqualTo(1);
        ledger.close(3);
        assertThat(ledger.busiestCount(M1)).isZero();
    }

    @Test
    void topDestinationsOrdersByCountThenAddress()
    {
        ledger.open(1, M1, DST_B, 1500);
        ledger.open(2, M1, DST_A, 1500);
        ledger.open(3, M1, DST_6.high(), DST_6.low(), 1500);
        ledger.open(4, M1, DST_6.high(), DST_6.low(), 1600);
        ledger.open(5, M1, DST_6.high(), DST_6.low(), 1600);
        ledger.open(6, M2, DST_A, 2500);

        final List<DestinationUsage> top = ledger.topDestinations(M1, 10);
        assertThat(top).containsExactly(
            new DestinationUsage(DST_6.high(), DST_6.low(), 3, 2),
            new DestinationUsage(0, LedgerKeys.ipv4Low(DST_A), 1, 1),
            new DestinationUsage(0, LedgerKeys.ipv4Low(DST_B), 1, 1));
        assertThat(top.get(0).is(DST_6)).isTrue();
        assertThat(top.get(1).isIpv4()).isTrue();
        assertThat(top.get(1).is(new Ipv4Address(DST_A))).isTrue();
        assertThat(ledger.topDestinations(M1, 2)).hasSize(2);
        assertThat(ledger.topDestinations(M1, 0)).isEmpty();
        assertThat(ledger.topDestinations(7, 5)).isEmpty();
    }

    @Test
    void growsPastItsInitialCapacityKeepingEveryCount()
    {
        final int machines = 50;
        final int perMachine = 400;
        for (int m = 10; m < 10 + machines; m++)
        {
            ledger.registerMachine(m, 1, 65535);
        }
        long id = 1L << 40;
        for (int m = 10; m < 10 + machines; m++)
        {
            for (int i = 0; i < perMachine; i++)
            {
                ledger.open(id++, m, 0x0A000000 + i % 100, 1 + i);
            }
        }
        assertThat(ledger.liveConnections()).isEqualTo(machines * perMachine);
        assertThat(ledger.liveDestinations()).isEqualTo(machines * 100);
        for (int m = 10; m < 10 + machines; m++)
        {
            assertThat(ledger.count(m, 0x0A000000 + 42)).isEqualTo(4);
            assertThat(ledger.busiestCount(m)).isEqualTo(4);
        }
        // Close every other one, then check what is left.
        for (long c = 1L << 40; c < id; c += 2)
        {
            assertThat(ledger.close(c)).isEqualTo(CLOSED);
        }
        assertThat(ledger.liveConnections()).isEqualTo(machines * perMachine / 2);
        for (long c = (1L << 40) + 1; c < id; c += 2)
        {
            assertThat(ledger.open(c, 10 + (int)((c - (1L << 40)) / perMachine), 0x0A000000 +
                (int)((c - (1L << 40)) % perMachine) % 100, 1 + (int)((c - (1L << 40)) % perMachine)))
                .isEqualTo(DUPLICATE);
        }
    }
}
