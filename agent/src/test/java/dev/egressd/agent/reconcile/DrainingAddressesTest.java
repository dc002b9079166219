package dev.egressd.agent.reconcile;

import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import static org.assertj.core.api.Assertions.assertThat;

class DrainingAddressesTest
{
    private static final long SECOND = 1_000_000_000L;
    private static final long WALL = 1_700_000_000_000L;

    private final AtomicLong nanos = new AtomicLong(5 * SECOND);
    private final AtomicLong wall = new AtomicLong(WALL);
    private final DrainingAddresses draining = new DrainingAddresses(nanos::get, wall::get, 100);

    private static final PlanElement UP4 = new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10"));
    private static final PlanElement UP6 = new PlanElement.Uplink6(Ipv6Address.parse("2001:db8::10"));
    private static final PlanElement OTHER4 = new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.11"));
    private static final PlanElement GUEST = new PlanElement.Static4(Ipv4Address.parse("10.77.0.2"));

    private static DesiredState.Draining entry(final PlanElement element, final long untilEpochMillis)
    {
        return new DesiredState.Draining(StateMapper.toData(element), untilEpochMillis);
    }

    @Test
    void anUplinkAddressTheKernelHoldsButThePlanDropsDrainsForTheDrainTimeOnBothClocks()
    {
        final KernelPlan held = KernelPlan.of(List.of(UP4, UP6, OTHER4, GUEST));
        final KernelPlan desired = KernelPlan.of(List.of(OTHER4));
        assertThat(draining.startDraining(held, desired)).isTrue();
        assertThat(draining.addresses()).containsExactly(UP4, UP6);
        assertThat(draining.deadline(UP4)).isEqualTo(new DrainingAddresses.Deadline(105 * SECOND, WALL + 100_000));
        assertThat(draining.export()).extracting(DesiredState.Draining::untilEpochMillis)
            .containsExactly(WALL + 100_000, WALL + 100_000);
    }

    @Test
    void anAddressAlreadyDrainingKeepsItsFirstDeadline()
    {
        final KernelPlan held = KernelPlan.of(List.of(UP4));
        draining.startDraining(held, KernelPlan.empty());
        nanos.addAndGet(30 * SECOND);
        wall.addAndGet(30_000);
        assertThat(draining.startDraining(held, KernelPlan.empty())).as("nothing new").isFalse();
        assertThat(draining.deadline(UP4).nanos()).isEqualTo(105 * SECOND);
    }

    @Test
    void nothingDrainsWhenTheDrainTimeIsZeroAndANewDrainTimeAppliesToLaterReleasesOnly()
    {
        draining.drainSeconds(0);
        assertThat(draining.startDraining(KernelPlan.of(List.of(UP4)), KernelPlan.empty())).isFalse();
        assertThat(draining.addresses()).isEmpty();
        draining.drainSeconds(10);
        draining.startDraining(KernelPlan.of(List.of(UP4)), KernelPlan.empty());
        draining.drainSeconds(500);
        draining.startDraining(KernelPlan.of(List.of(UP6)), KernelPlan.empty());
        assertThat(draining.deadline(UP4).nanos()).isEqualTo(15 * SECOND);
        assertThat(draining.deadline(UP6).nanos()).isEqualTo(505 * SECOND);
        assertThat(draining.drainNanos()).isEqualTo(500 * SECOND);
    }

    @Test
    void anAddressExpiresAtItsDeadlineNotBeforeAndCanBePutBack()
    {
        draining.startDraining(KernelPlan.of(List.of(UP4)), KernelPlan.empty());
        assertThat(draining.expire(105 * SECOND - 1)).isEmpty();
        assertThat(draining.addresses()).containsExactly(UP4);
        final Map<PlanElement, DrainingAddresses.Deadline> expired = draining.expire(105 * SECOND);
        assertThat(expired).containsOnlyKeys(UP4);
        assertThat(draining.addresses()).isEmpty();
        draining.putBack(expired);
        assertThat(draining.deadline(UP4)).isEqualTo(new DrainingAddresses.Deadline(105 * SECOND, WALL + 100_000));
    }

    @Test
    void aRestoredDeadlineIsConvertedToTheLoopsClockAndAPastOneIsDropped()
    {
        // 30 s after the release, in a new process whose monotonic clock starts elsewhere
        nanos.set(-7 * SECOND);
        wall.set(WALL + 30_000);
        draining.restore(List.of(entry(UP4, WALL + 100_000), entry(UP6, WALL + 20_000)));
        assertThat(draining.addresses()).containsExactly(UP4);
        assertThat(draining.deadline(UP4)).isEqualTo(new DrainingAddresses.Deadline(63 * SECOND, WALL + 100_000));
        assertThat(draining.expire(63 * SECOND - 1)).isEmpty();
        assertThat(draining.expire(63 * SECOND)).containsOnlyKeys(UP4);
    }

    @Test
    void aRestoredDeadlineBeyondTheDrainTimeIsCutToIt()
    {
        // the wall clock went back an hour: the file's deadline now lies 3,700 s away
        wall.set(WALL - 3_600_000);
        draining.restore(List.of(entry(UP4, WALL + 100_000)));
        assertThat(draining.deadline(UP4)).isEqualTo(
            new DrainingAddresses.Deadline(105 * SECOND, WALL - 3_600_000 + 100_000));
    }

    @Test
    void aRestoredEntryThatIsNotAnUplinkAddressIsSkipped()
    {
        draining.restore(List.of(entry(GUEST, WALL + 50_000), new DesiredState.Draining(null, WALL + 50_000),
            entry(UP6, WALL + 50_000)));
        assertThat(draining.addresses()).containsExactly(UP6);
    }

    @Test
    void theFirstSyncKeepsOnlyRestoredAddressesTheKernelStillHolds()
    {
        draining.restore(List.of(entry(UP4, WALL + 50_000), entry(UP6, WALL + 50_000)));
        assertThat(draining.awaitingKernelCheck()).isTrue();
        draining.keepOnlyHeld(KernelPlan.of(List.of(UP6)));
        assertThat(draining.addresses()).containsExactly(UP6);
        assertThat(draining.awaitingKernelCheck()).isFalse();
        // an address released after the check is not subject to it
        draining.startDraining(KernelPlan.of(List.of(OTHER4)), KernelPlan.empty());
        draining.keepOnlyHeld(KernelPlan.empty());
        assertThat(draining.addresses()).containsExactly(UP6, OTHER4);
    }

    @Test
    void exportedDeadlinesRestoreToTheSameDeadlines()
    {
        draining.startDraining(KernelPlan.of(List.of(UP4, UP6)), KernelPlan.empty());
        final DrainingAddresses after = new DrainingAddresses(() -> 0L, () -> WALL, 100);
        after.restore(draining.export());
        assertThat(after.addresses()).containsExactlyInAnyOrder(UP4, UP6);
        assertThat(after.deadline(UP4).wallMillis()).isEqualTo(draining.deadline(UP4).wallMillis());
        assertThat(after.deadline(UP6).nanos()).isEqualTo(100 * SECOND);
    }
}
