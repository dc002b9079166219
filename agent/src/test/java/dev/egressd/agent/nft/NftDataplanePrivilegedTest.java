package dev.egressd.agent.nft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static dev.egressd.agent.nft.PlanFixtures.machines;
import static dev.egressd.agent.nft.PlanFixtures.withoutUplinks;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

/** The dataplane against the real kernel, in a throwaway namespace, through libnftables in-process. */
@Tag("privileged")
class NftDataplanePrivilegedTest
{
    private LabNamespace lab;
    private NetNamespace ns;
    private LibNftablesClient client;
    private NftDataplane dataplane;

    @BeforeEach
    void setUp() throws Exception
    {
        LabNamespace.requirePrivileged();
        lab = LabNamespace.create();
        ns = NetNamespace.enter(lab.name());
        // The context's netlink socket belongs to the namespace of the thread that opens it.
        client = ns.call(LibNftablesClient::open);
        dataplane = new NftDataplane(client, DataplaneConfig.defaults("uplink"));
    }

    @AfterEach
    void tearDown() throws Exception
    {
        try
        {
            if (client != null)
            {
                ns.call(() ->
                {
                    client.close();
                    return null;
                });
            }
        }
        finally
        {
            if (ns != null)
            {
                ns.close();
            }
            if (lab != null)
            {
                lab.close();
            }
        }
    }

    @Test
    void ensureTableCreatesTheTableThatNftLists() throws Exception
    {
        assertThat(ns.call(dataplane::tableExists)).isFalse();
        assertThat(ns.call(dataplane::ensureTable)).isTrue();
        assertThat(ns.call(dataplane::ensureTable)).as("second call leaves the table alone").isFalse();

        final JsonNode listing = new ObjectMapper().readTree(lab.exec("nft", "-j", "list", "table", "inet", "egressd"));
        final List<String> chains = new ArrayList<>();
        final List<String> sets = new ArrayList<>();
        final List<String> counters = new ArrayList<>();
        int rules = 0;
        for (final JsonNode item : listing.path("nftables"))
        {
            item.path("chain").path("name").asText("").transform(n -> n.isEmpty() ? null : chains.add(n));
            if (item.has("set") || item.has("map"))
            {
                sets.add((item.has("set") ? item.get("set") : item.get("map")).path("name").asText());
            }
            if (item.has("counter"))
            {
                counters.add(item.get("counter").path("name").asText());
            }
            rules += item.has("rule") ? 1 : 0;
        }
        assertThat(chains).containsExactly("forward", "guest_new", "deny", "postrouting");
        assertThat(sets).containsExactly("static4", "static6", "guests4", "guests6", "snat4", "snat6", "mapped6",
            "cc4", "cc6");
        assertThat(counters).containsExactlyElementsOf(Ruleset.COUNTERS);
        assertThat(rules).isEqualTo(3 + 4 + 2 + 7);
        assertThat(ns.call(dataplane::read)).isEqualTo(KernelPlan.empty());
        assertThat(lab.exec("nft", "list", "chain", "inet", "egressd", "guest_new")).contains("ct count over 1024");
    }

    @Test
    void appliedPlanReadsBackEqual() throws Exception
    {
        ns.call(dataplane::ensureTable);
        final KernelPlan plan = machines(1, 2, 3);
        ns.call(() ->
        {
            dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
            return null;
        });
        assertThat(ns.call(dataplane::read)).isEqualTo(withoutUplinks(plan));

        // Remap machine 1 (both families), drop machine 2, add machine 4: one transaction.
        final List<PlanElement> next = new ArrayList<>(machines(3, 4).elements());
        next.addAll(PlanFixtures.machine(1, 7).elements());
        final KernelPlan desired = KernelPlan.of(next);
        final List<PlanChange> changes = PlanDiff.between(ns.call(dataplane::read), desired);
        assertThat(changes).extracting(PlanChange::op).contains(PlanChange.Op.REPLACE, PlanChange.Op.REMOVE);
        ns.call(() ->
        {
            dataplane.apply(changes);
            return null;
        });
        assertThat(ns.call(dataplane::read)).isEqualTo(withoutUplinks(desired));
        assertThat(lab.exec("nft", "list", "table", "inet", "egressd"))
            .doesNotContain(Ruleset.snat6Chain(PlanFixtures.guest6(2)))
            .contains(Ruleset.snat6Chain(PlanFixtures.guest6(4)));
    }

    /** Random walks between plans in the kernel: what is applied reads back equal, every step. */
    @Test
    void randomPlansRoundTripThroughTheKernel() throws Exception
    {
        ns.call(dataplane::ensureTable);
        final java.util.Random random = new java.util.Random(7);
        for (int step = 0; step < 15; step++)
        {
            final List<PlanElement> elements = new ArrayList<>();
            for (int n = 1; n <= 10; n++)
            {
                if (random.nextInt(3) > 0)
                {
                    elements.addAll(PlanFixtures.machine(n, 1 + random.nextInt(63)).elements());
                }
            }
            final KernelPlan desired = KernelPlan.of(elements);
            ns.call(() ->
            {
                dataplane.apply(PlanDiff.between(dataplane.read(), desired));
                return null;
            });
            assertThat(ns.call(dataplane::read)).as("step %d", step).isEqualTo(withoutUplinks(desired));
        }
    }

    @Test
    void aTransactionWithOneBadElementChangesNothing() throws Exception
    {
        ns.call(dataplane::ensureTable);
        final KernelPlan plan = machines(1, 2);
        ns.call(() ->
        {
            dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
            return null;
        });
        final KernelPlan before = ns.call(dataplane::read);

        // Valid additions for machine 3, then an ADD of machine 1's snat4 key with other data.
        final List<PlanChange> changes = new ArrayList<>(PlanDiff.between(KernelPlan.empty(), machines(3)));
        final PlanElement.Snat4 clash = new PlanElement.Snat4(PlanFixtures.guest4(1),
            dev.egressd.core.model.Ipv4Address.parse("203.0.113.99"), 5120, 6143);
        changes.add(PlanChange.add(clash));
        final NftException e = catchThrowableOfType(NftException.class, () -> ns.call(() ->
        {
            dataplane.apply(changes);
            return null;
        }));
        assertThat(e).isNotNull();
        assertThat(e.isAlreadyExists()).as(e.error()).isTrue();
        assertThat(e.getMessage()).contains("nothing changed").contains("203.0.113.99").contains("File exists");
        assertThat(ns.call(dataplane::read)).isEqualTo(before);

        // Deleting a per-guest chain that the vmap still jumps to is refused as a whole transaction too.
        final NftException busy = catchThrowableOfType(NftException.class, () -> ns.call(() ->
        {
            client.run("add element inet egressd static4 { 10.77.9.9 }\n"
                + "delete chain inet egressd " + Ruleset.snat6Chain(PlanFixtures.guest6(1)) + "\n");
            return null;
        }));
        assertThat(busy).isNotNull();
        assertThat(busy.isBusy()).as(busy.error()).isTrue();
        assertThat(ns.call(dataplane::read)).isEqualTo(before);
    }

    @Test
    void readShowsAnElementDeletedByHandAndApplyRepairsIt() throws Exception
    {
        ns.call(dataplane::ensureTable);
        final KernelPlan plan = machines(1, 2);
        ns.call(() ->
        {
            dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
            return null;
        });
        lab.exec("nft", "delete element inet egressd snat4 { " + PlanFixtures.guest4(1) + " }");
        lab.exec("nft", "delete element inet egressd mapped6 { " + PlanFixtures.guest6(2) + " }");

        final KernelPlan drifted = ns.call(dataplane::read);
        assertThat(drifted.elements("snat4")).doesNotContainKey(PlanFixtures.guest4(1));
        assertThat(drifted.elements("snat6")).as("snat6 without its mapped6 element is drift")
            .doesNotContainKey(PlanFixtures.guest6(2));

        final List<PlanChange> repair = PlanDiff.between(drifted, withoutUplinks(plan));
        assertThat(repair).hasSize(2).allMatch(c -> c.op() == PlanChange.Op.ADD);
        ns.call(() ->
        {
            dataplane.apply(repair);
            return null;
        });
        assertThat(ns.call(dataplane::read)).isEqualTo(withoutUplinks(plan));
        assertThat(lab.exec("nft", "list", "chain", "inet", "egressd", Ruleset.snat6Chain(PlanFixtures.guest6(2)))
            .lines().filter(l -> l.contains("snat ip6 to")).count()).as("re-add keeps one rule").isEqualTo(1);
    }

    @Test
    void countersListsEveryNamedCounter() throws Exception
    {
        ns.call(dataplane::ensureTable);
        final Map<String, Long> counters = ns.call(dataplane::counters);
        assertThat(counters.keySet()).containsExactlyElementsOf(Ruleset.COUNTERS);
        assertThat(counters.values()).allMatch(v -> v == 0L);
    }

    @Test
    void deleteTableRemovesIt() throws Exception
    {
        ns.call(dataplane::ensureTable);
        ns.call(() ->
        {
            dataplane.deleteTable();
            return null;
        });
        assertThat(ns.call(dataplane::tableExists)).isFalse();
        final NftException e = catchThrowableOfType(NftException.class, () -> ns.call(dataplane::read));
        assertThat(e.isNotFound()).as(e.error()).isTrue();
    }

    @Test
    void jsonFlagIsSetOnlyForListings() throws Exception
    {
        ns.call(dataplane::ensureTable);
        assertThat(ns.call(() ->
        {
            client.runJson("list tables");
            return client.outputFlags();
        })).isEqualTo(LibNftables.NFT_CTX_OUTPUT_JSON);
        assertThat(ns.call(() ->
        {
            client.run("add element inet egressd static4 { 10.77.9.9 }");
            return client.outputFlags();
        })).isEqualTo(LibNftables.NFT_CTX_DEFAULT);
    }
}
