package dev.egressd.agent.kernel.nft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.egressd.agent.kernel.nft.netlink.NfTables;
import dev.egressd.agent.kernel.nft.netlink.NftNetlink;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static dev.egressd.agent.kernel.nft.PlanFixtures.machines;
import static dev.egressd.agent.kernel.nft.PlanFixtures.withoutUplinks;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

/** The dataplane against the real kernel, in a throwaway namespace, through libnftables in-process. */
@Privileged
class NftDataplanePrivilegedTest
{
    private LabNamespace lab;
    private NetNamespace ns;
    private LibNftablesClient client;
    private NftNetlink netlink;
    private NftDataplane dataplane;

    @BeforeEach
    void setUp() throws Exception
    {
        Requirements.rootWithNftables();
        lab = LabNamespace.withUplink();
        ns = NetNamespace.enter(lab.name());
        // The context's netlink socket belongs to the namespace of the thread that opens it.
        client = ns.call(LibNftablesClient::open);
        netlink = ns.call(() -> NftNetlink.open(NfTables.NFPROTO_INET, "egressd"));
        dataplane = new NftDataplane(client, netlink, DataplaneConfig.defaults("uplink"));
    }

    @AfterEach
    void tearDown() throws Exception
    {
        LabNamespace.tearDown(lab, ns, client, netlink);
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
        assertThat(chains).containsExactly("forward", "ct_closing", "guest_new", "deny", "nat6", "postrouting");
        assertThat(sets).containsExactly("static4", "static6", "guests4", "guests6", "snat4", "snat6",
            "cc4", "cc6");
        assertThat(counters).containsExactlyElementsOf(Ruleset.COUNTERS);
        assertThat(rules).as("nat6's three built over netlink").isEqualTo(5 + 2 + 5 + 2 + 3 + 7);
        assertThat(ns.call(dataplane::read)).isEqualTo(KernelPlan.empty());
        assertThat(lab.exec("nft", "list", "chain", "inet", "egressd", "guest_new")).contains("ct count over 1024");
    }

    @Test
    void theKernelListsTheGoldenTableAndTheFakesDumpMatchesIt() throws Exception
    {
        final FakeNftablesClient fake = new FakeNftablesClient();
        final NftDataplane onFake = new NftDataplane(fake, fake, DataplaneConfig.defaults("uplink"));
        ns.call(dataplane::ensureTable);
        onFake.ensureTable();
        final List<PlanChange> golden = PlanDiff.between(KernelPlan.empty(), PlanFixtures.goldenPlan());
        ns.call(() ->
        {
            dataplane.apply(golden);
            return null;
        });
        onFake.apply(golden);
        lab.exec("nft", PlanFixtures.GOLDEN_METER_ENTRY);
        fake.run(PlanFixtures.GOLDEN_METER_ENTRY);
        final String listed = lab.exec("nft", "list", "table", "inet", "egressd");
        Files.createDirectories(Path.of("target"));
        Files.writeString(Path.of("target", "nft-list-table-golden.txt"), listed); // kept for a look when it fails
        assertThat(listed).isEqualTo(PlanFixtures.goldenListing());
        assertThat(fake.dump("egressd")).isEqualTo(listed);

        // and after a change: machine 1 goes, machine 4 comes, the fixed forward chain is flushed and repaired
        final List<PlanChange> change = PlanDiff.between(PlanFixtures.goldenPlan(), withoutUplinks(machines(3, 2, 4)));
        ns.call(() ->
        {
            dataplane.apply(change);
            return null;
        });
        onFake.apply(change);
        lab.exec("nft", "flush chain inet egressd forward");
        fake.run("flush chain inet egressd forward");
        assertThat(ns.call(dataplane::ensureTable)).isTrue();
        assertThat(onFake.ensureTable()).isTrue();
        assertThat(fake.dump("egressd")).isEqualTo(lab.exec("nft", "list", "table", "inet", "egressd"));
    }

    /** Rules of a chain as nft lists them (text), without the table and chain lines. */
    private List<String> listedRules(final String chain) throws Exception
    {
        return lab.exec("nft", "list", "chain", "inet", "egressd", chain).lines().map(String::strip)
            .filter(l -> !l.isEmpty() && !l.startsWith("table ") && !l.startsWith("chain ") && !l.startsWith("type ")
                && !l.equals("}"))
            .toList();
    }

    @Test
    void aForwardChainFlushedByHandIsRepairedKeepingElementsAndTheMeter() throws Exception
    {
        ns.call(dataplane::ensureTable);
        ns.call(() ->
        {
            dataplane.apply(PlanDiff.between(KernelPlan.empty(), machines(1, 2)));
            return null;
        });
        final KernelPlan before = ns.call(dataplane::read);
        final List<String> forward = listedRules("forward");
        // a live meter entry (in a lab with traffic the kernel adds these; DataplaneE2ETest checks that case)
        lab.exec("nft", "add element inet egressd cc4 { 10.77.0.2 . 198.51.100.10 }");
        final String meterBefore = lab.exec("nft", "list", "set", "inet", "egressd", "cc4");
        assertThat(meterBefore).contains("10.77.0.2 . 198.51.100.10");

        lab.exec("nft", "flush chain inet egressd forward");     // anti-spoofing gone
        assertThat(listedRules("forward")).isEmpty();
        final long t0 = System.nanoTime();
        assertThat(ns.call(dataplane::ensureTable)).isTrue();
        final long micros = (System.nanoTime() - t0) / 1000;
        assertThat(dataplane.lastRepair()).contains("chain forward holds 0 rules, 0 of the 5 it should")
            .doesNotContain("guest_new").doesNotContain("postrouting");
        assertThat(listedRules("forward")).isEqualTo(forward).hasSize(5);
        assertThat(ns.call(dataplane::read)).isEqualTo(before);
        assertThat(lab.exec("nft", "list", "set", "inet", "egressd", "cc4")).isEqualTo(meterBefore);
        final long c0 = System.nanoTime();
        assertThat(ns.call(dataplane::ensureTable)).as("in sync: nft lists back exactly what was written").isFalse();
        final long checkMicros = (System.nanoTime() - c0) / 1000;
        System.out.println("NFT repair of a flushed forward chain: " + micros + " us; in-sync check " + checkMicros
            + " us; " + lastScriptLines() + " lines");
    }

    @Test
    void aFixedRuleReplacedByHandWithItsCommentKeptIsFoundAndRepaired() throws Exception
    {
        ns.call(dataplane::ensureTable);
        final List<String> forward = listedRules("forward");
        final String fingerprint = new Ruleset(DataplaneConfig.defaults("uplink")).staticChains().get(0)
            .fingerprints().get(1);
        // rule 1 lets every non-guest packet through; replaced by a rule letting everything through, comment kept
        final String listing = lab.exec("nft", "-a", "list", "chain", "inet", "egressd", "forward");
        final String handle = listing.lines().filter(l -> l.contains(fingerprint)).findFirst().orElseThrow()
            .replaceAll(".*# handle (\\d+).*", "$1");
        lab.exec("nft", "replace rule inet egressd forward handle " + handle + " accept comment \"" + fingerprint
            + "\"");
        assertThat(listedRules("forward")).isNotEqualTo(forward);

        assertThat(ns.call(dataplane::ensureTable)).as("found though every comment is right").isTrue();
        assertThat(dataplane.lastRepair()).contains("chain forward: rule 1 is not the rule egressd wrote");
        assertThat(listedRules("forward")).isEqualTo(forward);
        assertThat(ns.call(dataplane::ensureTable)).as("then in sync").isFalse();

        // A dataplane that starts on a table it did not write (a restart) takes the rules under the right comments as
        // written, and sees an edit from then on.
        final NftDataplane restarted = new NftDataplane(client, netlink, DataplaneConfig.defaults("uplink"));
        assertThat(ns.call(restarted::ensureTable)).isFalse();
        final String again = lab.exec("nft", "-a", "list", "chain", "inet", "egressd", "forward").lines()
            .filter(l -> l.contains(fingerprint)).findFirst().orElseThrow().replaceAll(".*# handle (\\d+).*", "$1");
        lab.exec("nft", "replace rule inet egressd forward handle " + again + " accept comment \"" + fingerprint
            + "\"");
        assertThat(ns.call(restarted::ensureTable)).isTrue();
        assertThat(restarted.lastRepair()).contains("chain forward: rule 1");
    }

    @Test
    void theWholeReadAndCheckAskNothingOfLibnftables() throws Exception
    {
        final int[] calls = new int[1];
        final NftablesClient counting = new NftablesClient()
        {
            @Override
            public void run(final String script) throws NftException
            {
                calls[0]++;
                client.run(script);
            }

            @Override
            public String runJson(final String command) throws NftException
            {
                calls[0]++;
                return client.runJson(command);
            }
        };
        final NftDataplane whole = new NftDataplane(counting, netlink, DataplaneConfig.defaults("uplink"));
        whole.paceDeepChecks(0, System::nanoTime);
        assertThat(ns.call(whole::ensureTable)).as("created through libnftables").isTrue();
        ns.call(() ->
        {
            whole.apply(PlanDiff.between(KernelPlan.empty(), machines(1, 2)));
            return null;
        });
        calls[0] = 0;
        assertThat(ns.call(whole::ensureTable)).isFalse();
        assertThat(ns.call(whole::readFull)).isEqualTo(withoutUplinks(machines(1, 2)));
        assertThat(ns.call(whole::read)).isEqualTo(withoutUplinks(machines(1, 2)));
        assertThat(whole.deepCounts()).as("a deep check and two deep reads").containsExactly(2, 1);
        assertThat(calls[0]).as("libnftables calls of the deep check and reads").isZero();
    }

    private long lastScriptLines()
    {
        return new Ruleset(DataplaneConfig.defaults("uplink")).renderRepair(java.util.Set.of()).lines().count();
    }

    @Test
    void aTableCreatedWithCap8GetsCap16WhenTheConfigurationSaysSo() throws Exception
    {
        final NftDataplane cap8 = new NftDataplane(client, netlink, new DataplaneConfig("egressd", "uplink", "tap-*", 8));
        assertThat(ns.call(cap8::ensureTable)).isTrue();
        ns.call(() ->
        {
            cap8.apply(PlanDiff.between(KernelPlan.empty(), machines(1)));
            return null;
        });
        lab.exec("nft", "add element inet egressd cc6 { fd77::2 . 2001:db8:100::10 }");
        assertThat(lab.exec("nft", "list", "chain", "inet", "egressd", "guest_new")).contains("ct count over 8 ");
        final KernelPlan before = ns.call(cap8::read);

        final NftDataplane cap16 = new NftDataplane(client, netlink, new DataplaneConfig("egressd", "uplink", "tap-*", 16));
        assertThat(ns.call(cap16::ensureTable)).isTrue();
        assertThat(cap16.lastRepair()).contains("chain guest_new").doesNotContain("chain forward");
        final String guestNew = lab.exec("nft", "list", "chain", "inet", "egressd", "guest_new");
        assertThat(guestNew).contains("add @cc4 { ip saddr . ip daddr ct count over 16 }")
            .contains("add @cc6 { ip6 saddr . ip6 daddr ct count over 16 }").doesNotContain("over 8 ");
        assertThat(listedRules("guest_new")).hasSize(5);
        assertThat(ns.call(cap16::read)).isEqualTo(before);
        assertThat(lab.exec("nft", "list", "set", "inet", "egressd", "cc6")).contains("fd77::2 . 2001:db8:100::10");
        assertThat(ns.call(cap16::ensureTable)).isFalse();
        assertThat(ns.call(cap8::ensureTable)).as("and back").isTrue();
    }

    @Test
    void handEditsOfPolicyHooksCountersAndSetsAreRepairedInTheKernel() throws Exception
    {
        ns.call(dataplane::ensureTable);
        ns.call(() ->
        {
            dataplane.apply(PlanDiff.between(KernelPlan.empty(), machines(1, 2)));
            return null;
        });
        final KernelPlan before = ns.call(dataplane::read);
        final String fresh = lab.exec("nft", "list", "table", "inet", "egressd");

        // policy drop on forward, an extra rule in deny, postrouting hooked at another priority, and the
        // unmapped4 counter deleted (possible only after the rule that used it went)
        lab.exec("nft", "add chain inet egressd forward { type filter hook forward priority filter; policy drop; }");
        lab.exec("nft", "add rule inet egressd deny accept");
        lab.exec("nft", "flush chain inet egressd postrouting; delete chain inet egressd postrouting; "
            + "add chain inet egressd postrouting { type nat hook postrouting priority 50; policy accept; }");
        lab.exec("nft", "flush chain inet egressd guest_new; delete counter inet egressd unmapped4");

        assertThat(ns.call(dataplane::ensureTable)).isTrue();
        assertThat(dataplane.lastRepair()).contains("chain forward has policy drop")
            .contains("chain deny holds 3 rules")
            .contains("chain postrouting is hooked as nat hook postrouting priority 50")
            .contains("chain guest_new holds 0 rules");
        assertThat(ns.call(dataplane::ensureTable)).isFalse();
        assertThat(ns.call(dataplane::read)).isEqualTo(before);
        assertThat(ns.call(dataplane::counters).keySet()).containsExactlyInAnyOrderElementsOf(Ruleset.COUNTERS);
        assertThat(withoutHandles(lab.exec("nft", "list", "table", "inet", "egressd")))
            .as("the same table as a fresh one, but for the order of chains and counters")
            .containsExactlyInAnyOrderElementsOf(withoutHandles(fresh));
    }

    @Test
    void aPacedCheckFindsADeletedMapByTheSetNamesItReadsOverNetlinkAndRecreatesIt() throws Exception
    {
        dataplane.paceDeepChecks(100_000, System::nanoTime); // the next deep check: hours away
        ns.call(dataplane::ensureTable);
        ns.call(() ->
        {
            dataplane.apply(PlanDiff.between(KernelPlan.empty(), machines(1, 2)));
            return null;
        });
        assertThat(ns.call(dataplane::ensureTable)).isFalse(); // the first deep cycle: a check, then a read
        ns.call(dataplane::read); // over: the next is paced
        // a change elsewhere: the generation moves, the check finds egressd's table right
        lab.exec("nft", "add", "table", "inet", "unrelated");
        final java.util.Set<String> names = ns.call(netlink::setNames);
        assertThat(ns.call(dataplane::ensureTable)).as("nothing missing: no repair (%s; %s)", names,
            dataplane.lastRepair()).isFalse();
        // a map in use cannot go: every rule first (the elements go with the flush)
        lab.exec("nft", "flush table inet egressd; delete map inet egressd snat4");
        assertThat(ns.call(dataplane::ensureTable)).as("repaired").isTrue();
        assertThat(ns.call(netlink::setNames)).as("the map is back").contains("snat4")
            .containsExactlyInAnyOrderElementsOf(Ruleset.SET_NAMES);
    }

    @Test
    void foreignChainsSetsAndObjectsInTheTableAreRemovedInOneRepair() throws Exception
    {
        ns.call(dataplane::ensureTable);
        ns.call(() ->
        {
            dataplane.apply(PlanDiff.between(KernelPlan.empty(), machines(1, 2)));
            return null;
        });
        final KernelPlan before = ns.call(dataplane::read);
        final String fresh = lab.exec("nft", "list", "table", "inet", "egressd");
        // a base chain that drops every forwarded packet, a regular chain it jumps to using a set of its own,
        // a counter, a quota and a map: none of them egressd's
        lab.exec("nft", "add chain inet egressd x { type filter hook forward priority -300; policy drop; }");
        lab.exec("nft", "add set inet egressd foreign_set { type ipv4_addr; }");
        lab.exec("nft", "add map inet egressd foreign_map { type ipv4_addr : ipv4_addr; }");
        lab.exec("nft", "add counter inet egressd foreign_counter");
        lab.exec("nft", "add quota inet egressd foreign_quota { 10 mbytes }");
        lab.exec("nft", "add chain inet egressd y-2");
        lab.exec("nft", "add rule inet egressd y-2 ip saddr @foreign_set counter name foreign_counter drop");
        lab.exec("nft", "add rule inet egressd x jump y-2");

        assertThat(ns.call(dataplane::ensureTable)).as("a repair").isTrue();
        assertThat(dataplane.lastRepair()).contains("chain x", "chain y-2", "set foreign_set", "map foreign_map",
            "counter foreign_counter", "quota foreign_quota");
        assertThat(ns.call(dataplane::ensureTable)).as("nothing left to repair").isFalse();
        assertThat(ns.call(dataplane::read)).isEqualTo(before);
        assertThat(withoutHandles(lab.exec("nft", "list", "table", "inet", "egressd")))
            .as("exactly the table egressd wrote").containsExactlyElementsOf(withoutHandles(fresh));
    }

    private static List<String> withoutHandles(final String listing)
    {
        return listing.lines().map(String::strip).filter(l -> !l.isEmpty()).sorted().toList();
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
        assertThat(lab.exec("nft", "list", "map", "inet", "egressd", "snat6"))
            .doesNotContain(PlanFixtures.guest6(2) + " : ")
            .contains(PlanFixtures.guest6(4) + " : ");
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
        lab.exec("nft", "delete element inet egressd snat6 { " + PlanFixtures.guest6(2) + " }");

        final KernelPlan drifted = ns.call(dataplane::read);
        assertThat(drifted.elements("snat4")).doesNotContainKey(PlanFixtures.guest4(1));
        assertThat(drifted.elements("snat6")).doesNotContainKey(PlanFixtures.guest6(2));

        final List<PlanChange> repair = PlanDiff.between(drifted, withoutUplinks(plan));
        assertThat(repair).hasSize(2).allMatch(c -> c.op() == PlanChange.Op.ADD);
        ns.call(() ->
        {
            dataplane.apply(repair);
            return null;
        });
        assertThat(ns.call(dataplane::read)).isEqualTo(withoutUplinks(plan));
        assertThat(lab.exec("nft", "list", "map", "inet", "egressd", "snat6")).contains(PlanFixtures.guest6(2) + " : ");
    }

    /**
     * Paced as the daemon runs it: the shallow read (each set and map listed by name, the per-guest chains as
     * written) and the shallow check (the sets and maps listed terse) against real nft listings.
     */
    @Test
    void shallowReadsAndChecksAgreeWithTheDeepOnes() throws Exception
    {
        ns.call(dataplane::ensureTable);
        final KernelPlan plan = withoutUplinks(machines(1, 2, 3));
        ns.call(() ->
        {
            dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
            return null;
        });
        dataplane.paceDeepChecks(1_000_000, System::nanoTime); // no deep read or check falls due in this test
        ns.call(dataplane::ensureTable);
        assertThat(ns.call(dataplane::readFull)).isEqualTo(plan); // a deep cycle: check, then read
        final int[] deep = dataplane.deepCounts();

        assertThat(ns.call(dataplane::read)).isEqualTo(plan);
        assertThat(ns.call(dataplane::ensureTable)).isFalse();
        assertThat(dataplane.deepCounts()).as("both were shallow").containsExactly(deep);

        lab.exec("nft", "delete element inet egressd guests6 { \"tap-m2\" . " + PlanFixtures.guest6(2) + " }");
        lab.exec("nft", "delete element inet egressd snat6 { " + PlanFixtures.guest6(3) + " }");
        final KernelPlan drifted = ns.call(dataplane::read);
        assertThat(drifted).isEqualTo(ns.call(dataplane::readFull));
        assertThat(PlanDiff.between(drifted, plan)).hasSize(2).allMatch(c -> c.op() == PlanChange.Op.ADD);

        lab.exec("nft", "delete table inet egressd");
        assertThat(ns.call(dataplane::ensureTable)).as("a table deleted by hand is seen by the shallow check")
            .isTrue();
        assertThat(dataplane.lastRepair()).isEqualTo("created the table inet egressd");
        assertThat(ns.call(dataplane::read)).isEqualTo(KernelPlan.empty());
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

    /**
     * A table left by an older egressd (snat6 a verdict map jumping to one chain per guest, mapped6 its keys; the
     * golden listing of that version, loaded with nft) is migrated on start by the repair path: the deep check
     * re-creates snat6 as a data map, deletes the per-guest chains and mapped6, adds nat6 and its rules over
     * netlink, and keeps every other element and the meters; the diff then re-adds the IPv6 SNAT elements.
     */
    @Test
    void aTableOfAnOlderEgressdIsMigratedOnStart() throws Exception
    {
        final Path old = Files.createTempFile("nfnl-old-table", ".nft");
        try (java.io.InputStream in = getClass().getResourceAsStream("old-table-vmap-snat6-nft-1.0.6.txt"))
        {
            Files.write(old, in.readAllBytes());
            lab.exec("nft", "-f", old.toString());
        }
        finally
        {
            Files.delete(old);
        }
        assertThat(lab.exec("nft", "list", "table", "inet", "egressd")).contains("vmap @snat6").contains("mapped6");

        final NftDataplane fresh = new NftDataplane(client, netlink, DataplaneConfig.defaults("uplink"));
        fresh.paceDeepChecks(4, System::nanoTime);
        assertThat(ns.call(fresh::ensureTable)).as("migrated by the repair").isTrue();
        assertThat(fresh.lastRepair()).contains("re-created snat6").contains("chain snat6_fd77")
            .contains("set mapped6").contains("chain nat6 is missing");
        final KernelPlan golden = PlanFixtures.goldenPlan();
        final KernelPlan read = ns.call(fresh::read);
        assertThat(read.elements("snat6")).as("the old verdict map's elements are gone with it").isEmpty();
        final List<PlanChange> changes = PlanDiff.between(read, golden);
        assertThat(changes).hasSize(3).allMatch(c -> c.op() == PlanChange.Op.ADD
            && c.element() instanceof PlanElement.Snat6);
        ns.call(() ->
        {
            fresh.apply(changes);
            return null;
        });
        assertThat(ns.call(fresh::readFull)).isEqualTo(golden);
        final String listed = lab.exec("nft", "list", "table", "inet", "egressd");
        assertThat(listed).doesNotContain("snat6_").doesNotContain("set mapped6").doesNotContain("vmap")
            .contains("10.77.0.2 . 198.51.100.10");
        assertThat(lab.exec("nft", "list", "chain", "inet", "egressd", "nat6").lines()
            .filter(l -> l.contains("snat ip6 to ip6 saddr map @snat6 comment")).count()).isEqualTo(3);
        assertThat(ns.call(fresh::ensureTable)).as("nothing left to repair").isFalse();
    }

    /** Paced as the daemon runs it, with the generation id: every hand deletion of an element is seen by the next read. */
    @Test
    void pacedReadsSeeEveryHandDeletedElement() throws Exception
    {
        dataplane.paceDeepChecks(4, System::nanoTime);
        final KernelPlan plan = withoutUplinks(machines(1, 2));
        ns.call(dataplane::ensureTable);
        ns.call(() ->
        {
            dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
            return null;
        });
        for (final String hand : List.of("snat4 { 10.77.0.2 }", "static4 { 10.77.0.2 }", "static6 { fd77::2 }",
            "guests4 { \"tap-m1\" . 10.77.0.2 }", "guests6 { \"tap-m1\" . fd77::2 }", "snat6 { fd77::2 }"))
        {
            ns.call(dataplane::ensureTable);
            assertThat(ns.call(dataplane::read)).isEqualTo(plan);
            lab.exec("nft", "delete element inet egressd " + hand);
            ns.call(dataplane::ensureTable);
            final List<PlanChange> repair = PlanDiff.between(ns.call(dataplane::read), plan);
            assertThat(repair).as(hand).hasSize(1);
            ns.call(() ->
            {
                dataplane.apply(repair);
                return null;
            });
        }
        assertThat(ns.call(dataplane::read)).isEqualTo(plan);
    }
}
