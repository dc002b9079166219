package dev.egressd.core.ledger;

import static dev.egressd.core.ledger.ConnectionLedger.OPENED;
import static dev.egressd.core.ledger.ConnectionLedger.OVER_CAP;
import static dev.egressd.core.ledger.ConnectionLedger.VIOLATION;
import static org.assertj.core.api.Assertions.assertThat;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.integers;
import static org.quicktheories.generators.SourceDSL.lists;
import static org.quicktheories.generators.SourceDSL.longs;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.quicktheories.api.Pair;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

/**
 * Model-based test (as Caffeine's {@code FrequencySketchFuzzer}): random sequences of register, unregister,
 * open, close, resync and clear, with duplicate opens, closes of unknown ids, reused ids, both address families
 * and a small cap, applied to {@link DestinationLedger} and {@link ReferenceLedger}. After every step every
 * observable figure must agree, and the ledger-side halves of DESIGN invariants 2 and 5 must hold.
 */
class DestinationLedgerPropertyTest
{
    private static final int CAP = 5;
    private static final int MACHINES = 4;
    private static final int BLOCK = 16;
    private static final long[][] DESTINATIONS = {
        {0, LedgerKeys.ipv4Low(0xC6336400)},
        {0, LedgerKeys.ipv4Low(0xC6336401)},
        {0, LedgerKeys.ipv4Low(0xC6336402)},
        {0x20010DB800000000L, 0x10L},
        {0x20010DB800000000L, LedgerKeys.ipv4Low(0xC6336400)},
    };

    enum Kind
    {
        REGISTER, UNREGISTER, OPEN, CLOSE, BEGIN_RESYNC, END_RESYNC, CLEAR
    }

    /** One step; unused fields are ignored by its kind. */
    record Step(Kind kind, long connId, int machine, int destination, int port, int block)
    {
    }

    private static Gen<List<Step>> steps()
    {
        final Gen<Kind> kinds = Generate.frequency(List.of(
            Pair.of(6, Generate.constant(Kind.REGISTER)),
            Pair.of(1, Generate.constant(Kind.UNREGISTER)),
            Pair.of(40, Generate.constant(Kind.OPEN)),
            Pair.of(25, Generate.constant(Kind.CLOSE)),
            Pair.of(2, Generate.constant(Kind.BEGIN_RESYNC)),
            Pair.of(2, Generate.constant(Kind.END_RESYNC)),
            Pair.of(1, Generate.constant(Kind.CLEAR))));
        final Gen<Long> connIds = longs().between(0, 40);
        final Gen<Integer> machines = integers().between(0, MACHINES - 1);
        final Gen<Integer> destinations = integers().between(0, DESTINATIONS.length - 1);
        final Gen<Integer> ports = integers().between(1, 5 * BLOCK);
        final Gen<Integer> blocks = integers().between(-1, 4);
        final Gen<Step> step = in -> new Step(kinds.generate(in), connIds.generate(in), machines.generate(in),
            destinations.generate(in), ports.generate(in), blocks.generate(in));
        return lists().of(step).ofSizeBetween(1, 150);
    }

    @Test
    void fastLedgerAgreesWithTheReferenceAfterEveryStep()
    {
        qt().withExamples(400).forAll(steps()).checkAssert(DestinationLedgerPropertyTest::agreeAfterEveryStep);
    }

    private static void agreeAfterEveryStep(final List<Step> steps)
    {
        final DestinationLedger fast = new DestinationLedger(CAP);
        final ReferenceLedger reference = new ReferenceLedger(CAP);
        final Map<Integer, int[]> ranges = new HashMap<>();

        for (final Step step : steps)
        {
            switch (step.kind())
            {
                case REGISTER ->
                {
                    // block -1: a machine without a block, which can have no violations.
                    final int first = step.block() < 0 ? 1 : Math.max(1, step.block() * BLOCK);
                    final int last = step.block() < 0 ? 65535 : step.block() * BLOCK + BLOCK - 1;
                    assertThat(fast.registerMachine(step.machine(), first, last))
                        .isEqualTo(reference.registerMachine(step.machine(), first, last));
                    ranges.put(step.machine(), new int[] {first, last});
                }
                case UNREGISTER ->
                {
                    assertThat(fast.unregisterMachine(step.machine()))
                        .isEqualTo(reference.unregisterMachine(step.machine()));
                    ranges.remove(step.machine());
                }
                case OPEN -> open(fast, reference, ranges, step);
                case CLOSE -> assertThat(fast.close(step.connId())).isEqualTo(reference.close(step.connId()));
                case BEGIN_RESYNC ->
                {
                    fast.beginResync();
                    reference.beginResync();
                }
                case END_RESYNC -> assertThat(fast.endResync()).isEqualTo(reference.endResync());
                case CLEAR ->
                {
                    fast.clear();
                    reference.clear();
                }
                default -> throw new AssertionError(step);
            }
            assertSameObservableState(fast, reference);
        }
    }

    private static void open(
        final DestinationLedger fast, final ReferenceLedger reference, final Map<Integer, int[]> ranges,
        final Step step)
    {
        final long[] destination = DESTINATIONS[step.destination()];
        final long violationsBefore = fast.violations();
        final int status = fast.open(step.connId(), step.machine(), destination[0], destination[1], step.port());
        assertThat(status).as("status of %s", step)
            .isEqualTo(reference.open(step.connId(), step.machine(), destination[0], destination[1], step.port()));

        if ((status & OPENED) != 0)
        {
            final int count = fast.count(step.machine(), destination[0], destination[1]);
            // Invariant 5, ledger side: an open that leaves the count over the cap says so.
            assertThat((status & OVER_CAP) != 0).as("over cap at %d", count).isEqualTo(count > CAP);
            assertThat(fast.busiestCount(step.machine())).isGreaterThanOrEqualTo(count);

            // Invariant 2: every port outside the machine's block is reported, with its tuple.
            final int[] range = ranges.get(step.machine());
            final boolean outside = step.port() < range[0] || step.port() > range[1];
            assertThat((status & VIOLATION) != 0).isEqualTo(outside);
            assertThat(fast.violations()).isEqualTo(violationsBefore + (outside ? 1 : 0));
            if (outside)
            {
                final List<Violation> recent = fast.recentViolations();
                assertThat(recent.get(recent.size() - 1)).isEqualTo(new Violation(
                    step.connId(), step.machine(), destination[0], destination[1], step.port(), range[0], range[1]));
            }
        }
        else
        {
            assertThat(fast.violations()).isEqualTo(violationsBefore);
        }
    }

    private static void assertSameObservableState(final ConnectionLedger fast, final ConnectionLedger reference)
    {
        assertThat(fast.liveConnections()).isEqualTo(reference.liveConnections());
        assertThat(fast.liveDestinations()).isEqualTo(reference.liveDestinations());
        assertThat(fast.machinesAtWarning()).isEqualTo(reference.machinesAtWarning());
        assertThat(fast.machinesAtCritical()).isEqualTo(reference.machinesAtCritical());
        assertThat(fast.machinesOverCap()).isEqualTo(reference.machinesOverCap());
        assertThat(fast.opens()).isEqualTo(reference.opens());
        assertThat(fast.closes()).isEqualTo(reference.closes());
        assertThat(fast.duplicateOpens()).isEqualTo(reference.duplicateOpens());
        assertThat(fast.replacedOpens()).isEqualTo(reference.replacedOpens());
        assertThat(fast.unknownCloses()).isEqualTo(reference.unknownCloses());
        assertThat(fast.violations()).isEqualTo(reference.violations());
        assertThat(fast.overCapOpens()).isEqualTo(reference.overCapOpens());
        assertThat(fast.unknownMachineOpens()).isEqualTo(reference.unknownMachineOpens());
        assertThat(fast.sweptConnections()).isEqualTo(reference.sweptConnections());
        assertThat(fast.recentViolations()).isEqualTo(reference.recentViolations());
        for (int machine = 0; machine < MACHINES; machine++)
        {
            assertThat(fast.isRegistered(machine)).isEqualTo(reference.isRegistered(machine));
            assertThat(fast.busiestCount(machine)).isEqualTo(reference.busiestCount(machine));
            assertThat(fast.machineConnections(machine)).isEqualTo(reference.machineConnections(machine));
            assertThat(fast.topDestinations(machine, DESTINATIONS.length))
                .isEqualTo(reference.topDestinations(machine, DESTINATIONS.length));
            for (final long[] destination : DESTINATIONS)
            {
                assertThat(fast.count(machine, destination[0], destination[1]))
                    .isEqualTo(reference.count(machine, destination[0], destination[1]));
            }
        }
    }
}
