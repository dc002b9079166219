package dev.egressd.agent.nft;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static dev.egressd.agent.nft.PlanFixtures.machine;
import static dev.egressd.agent.nft.PlanFixtures.machines;
import static dev.egressd.agent.nft.PlanFixtures.withoutUplinks;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

/** The dataplane against the in-memory fake. */
class NftDataplaneTest
{
    private final FakeNftablesClient nft = new FakeNftablesClient();
    private final NftDataplane dataplane = new NftDataplane(nft, DataplaneConfig.defaults("uplink"));

    @Test
    void ensureTableCreatesTheTableOnce() throws Exception
    {
        assertThat(dataplane.tableExists()).isFalse();
        assertThat(dataplane.ensureTable()).isTrue();
        assertThat(dataplane.ensureTable()).isFalse();
        assertThat(nft.scripts()).hasSize(1);
        assertThat(dataplane.read()).isEqualTo(KernelPlan.empty());
        assertThat(nft.rules("egressd", "postrouting")).last().isEqualTo("masquerade");
    }

    @Test
    void roundTripFromEmptyToPlanAndOnward() throws Exception
    {
        dataplane.ensureTable();
        final KernelPlan plan = machines(1, 2, 3);
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
        assertThat(dataplane.read()).isEqualTo(withoutUplinks(plan));
        assertThat(nft.scripts()).hasSize(2);

        final List<PlanElement> next = new ArrayList<>(machines(3, 4).elements());
        next.addAll(machine(1, 9).elements());
        final KernelPlan desired = KernelPlan.of(next);
        dataplane.apply(PlanDiff.between(dataplane.read(), desired));
        assertThat(dataplane.read()).isEqualTo(withoutUplinks(desired));
        assertThat(nft.scripts()).as("one transaction per apply").hasSize(3);
        assertThat(nft.rules("egressd", Ruleset.snat6Chain(PlanFixtures.guest6(1))))
            .containsExactly("meta l4proto { tcp, udp, ipv6-icmp } snat ip6 to [2001:db8:10::10]:9216-10239");

        dataplane.apply(PlanDiff.between(dataplane.read(), KernelPlan.empty()));
        assertThat(dataplane.read()).isEqualTo(KernelPlan.empty());
    }

    /** Random walks between random plans: read(apply(diff(read, plan))) == plan, every step. */
    @Test
    void randomPlansRoundTrip() throws Exception
    {
        dataplane.ensureTable();
        final java.util.Random random = new java.util.Random(42);
        for (int step = 0; step < 40; step++)
        {
            final List<PlanElement> elements = new ArrayList<>();
            for (int n = 1; n <= 12; n++)
            {
                if (random.nextInt(3) > 0)
                {
                    elements.addAll(machine(n, 1 + random.nextInt(63)).elements());
                }
            }
            final KernelPlan desired = KernelPlan.of(elements);
            dataplane.apply(PlanDiff.between(dataplane.read(), desired));
            assertThat(dataplane.read()).as("step %d", step).isEqualTo(withoutUplinks(desired));
        }
    }

    @Test
    void oneInvalidElementFailsTheWholeTransactionAndNamesIt() throws Exception
    {
        dataplane.ensureTable();
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), machines(1, 2)));
        final KernelPlan before = dataplane.read();

        final List<PlanChange> changes = new ArrayList<>(PlanDiff.between(KernelPlan.empty(), machines(3)));
        final PlanElement.Snat4 clash = new PlanElement.Snat4(PlanFixtures.guest4(1),
            Ipv4Address.parse("203.0.113.99"), 5120, 6143);
        changes.add(PlanChange.add(clash));
        changes.add(PlanChange.add(new PlanElement.Static4(Ipv4Address.parse("10.77.0.200"))));

        final NftException e = catchThrowableOfType(NftException.class, () -> dataplane.apply(changes));
        assertThat(e.isAlreadyExists()).isTrue();
        assertThat(e.getMessage()).isEqualTo("nft transaction failed, nothing changed: add " + clash
            + ": Could not process rule: File exists");
        assertThat(dataplane.read()).isEqualTo(before);
    }

    @Test
    void removingAnAbsentElementFailsAsNotFound() throws Exception
    {
        dataplane.ensureTable();
        final NftException e = catchThrowableOfType(NftException.class, () -> dataplane.apply(List.of(
            PlanChange.add(new PlanElement.Static4(PlanFixtures.guest4(5))),
            PlanChange.remove(new PlanElement.Static4(PlanFixtures.guest4(6))))));
        assertThat(e.isNotFound()).isTrue();
        assertThat(e.getMessage()).contains("remove Static4[guest=10.77.0.7]");
        assertThat(dataplane.read()).isEqualTo(KernelPlan.empty());
    }

    @Test
    void applyingNothingRunsNothing() throws Exception
    {
        dataplane.ensureTable();
        dataplane.apply(List.of(PlanChange.add(new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10")))));
        dataplane.apply(List.of());
        assertThat(nft.scripts()).hasSize(1);
    }

    @Test
    void countersAreReadByName() throws Exception
    {
        dataplane.ensureTable();
        nft.setCounter("egressd", Ruleset.COUNTER_CAP4, 7);
        assertThat(dataplane.counters()).containsOnlyKeys(Ruleset.COUNTERS).containsEntry("cap4", 7L)
            .containsEntry("spoof6", 0L);
    }

    @Test
    void deleteTableRemovesItAndReadThenFailsNotFound() throws Exception
    {
        dataplane.ensureTable();
        dataplane.deleteTable();
        assertThat(dataplane.tableExists()).isFalse();
        assertThat(catchThrowableOfType(NftException.class, dataplane::read).isNotFound()).isTrue();
    }

    @Test
    void fakeRefusesDeletingAChainTheVmapJumpsTo() throws Exception
    {
        dataplane.ensureTable();
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), machines(1)));
        final NftException e = catchThrowableOfType(NftException.class, () -> nft.run(
            "add element inet egressd static4 { 10.9.9.9 }\ndelete chain inet egressd "
                + Ruleset.snat6Chain(PlanFixtures.guest6(1)) + "\n"));
        assertThat(e.isBusy()).isTrue();
        assertThat(nft.elements("egressd", "static4")).doesNotContain("10.9.9.9");
    }
}
