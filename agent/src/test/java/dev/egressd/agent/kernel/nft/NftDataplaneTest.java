package dev.egressd.agent.kernel.nft;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static dev.egressd.agent.kernel.nft.PlanFixtures.machine;
import static dev.egressd.agent.kernel.nft.PlanFixtures.machines;
import static dev.egressd.agent.kernel.nft.PlanFixtures.withoutUplinks;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

/** The dataplane against the in-memory fake. */
class NftDataplaneTest
{
    private final FakeNftablesClient nft = new FakeNftablesClient();
    private final NftDataplane dataplane = new NftDataplane(nft, nft, DataplaneConfig.defaults("uplink"));

    @Test
    void ensureTableCreatesTheTableOnce() throws Exception
    {
        assertThat(dataplane.tableExists()).isFalse();
        assertThat(dataplane.ensureTable()).isTrue();
        assertThat(dataplane.ensureTable()).isFalse();
        assertThat(nft.scripts()).hasSize(1);
        assertThat(dataplane.read()).isEqualTo(KernelPlan.empty());
        assertThat(nft.rules("egressd", "postrouting")).last().asString().startsWith("masquerade comment \"egressd ");
    }

    @Test
    void aForeignChainInTheTableIsRemovedAsDrift() throws Exception
    {
        dataplane.ensureTable();
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), PlanFixtures.goldenPlan()));
        final String fresh = nft.dump("egressd");
        nft.run("add chain inet egressd x { type filter hook forward priority -300; policy drop; }");
        assertThat(dataplane.ensureTable()).as("repaired").isTrue();
        assertThat(dataplane.lastRepair()).contains("removed what egressd did not put there: chain x");
        assertThat(nft.dump("egressd")).isEqualTo(fresh);
        assertThat(dataplane.ensureTable()).isFalse();
    }

    @Test
    void theFakeDumpsItsTableAsNftListsIt() throws Exception
    {
        dataplane.ensureTable();
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), PlanFixtures.goldenPlan()));
        nft.run(PlanFixtures.GOLDEN_METER_ENTRY);
        assertThat(nft.dump("egressd")).isEqualTo(PlanFixtures.goldenListing());
        assertThat(nft.dump()).as("the only table").isEqualTo(nft.dump("egressd"));
    }

    @Test
    void theDumpSortsAndWrapsElementsAsNftDoes() throws Exception
    {
        nft.run("table inet t {\n"
            + "    set s {\n        type ifname . ipv4_addr\n    }\n"
            + "    set v {\n        type ipv4_addr\n    }\n"
            + "    set i {\n        type ifname\n    }\n"
            + "    set q {\n        type inet_service\n    }\n"
            + "    chain c {\n        meta l4proto { ipv6-icmp, udp, tcp } accept\n    }\n"
            + "    chain b {\n        type nat hook postrouting priority 100; policy accept;\n    }\n"
            + "}\n");
        nft.run("add element inet t s { \"a\" . 10.0.0.2 }\nadd element inet t s { \"b\" . 10.0.0.1 }\n"
            + "add element inet t s { \"aa\" . 10.0.0.1 }");
        for (final String v : List.of("10.0.0.9", "10.0.0.1", "9.0.0.1", "10.0.0.3", "10.0.0.2"))
        {
            nft.run("add element inet t v { " + v + " }");
        }
        for (final String i : List.of("ab", "ba", "b"))
        {
            nft.run("add element inet t i { \"" + i + "\" }");
        }
        for (final String q : List.of("80", "7", "6", "5", "4", "3", "2", "1"))
        {
            nft.run("add element inet t q { " + q + " }");
        }
        // as nft 1.0.6 lists the same table: a concatenation or a string sorts by its last byte first
        assertThat(nft.dump("t")).isEqualTo("table inet t {\n"
            + "\tset s {\n\t\ttype ifname . ipv4_addr\n"
            + "\t\telements = { \"b\" . 10.0.0.1,\n\t\t\t     \"aa\" . 10.0.0.1,\n\t\t\t     \"a\" . 10.0.0.2 }\n\t}\n\n"
            + "\tset v {\n\t\ttype ipv4_addr\n"
            + "\t\telements = { 9.0.0.1, 10.0.0.1,\n\t\t\t     10.0.0.2, 10.0.0.3,\n\t\t\t     10.0.0.9 }\n\t}\n\n"
            + "\tset i {\n\t\ttype ifname\n"
            + "\t\telements = { \"b\",\n\t\t\t     \"ba\",\n\t\t\t     \"ab\" }\n\t}\n\n"
            + "\tset q {\n\t\ttype inet_service\n"
            + "\t\telements = { 1, 2, 3, 4, 5,\n\t\t\t     6, 7, 80 }\n\t}\n\n"
            + "\tchain c {\n\t\tmeta l4proto { tcp, udp, ipv6-icmp } accept\n\t}\n\n"
            + "\tchain b {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}\n"
            + "}\n");
    }

    // ---- the fixed part: verified on every ensureTable, repaired in one transaction without a reload ----

    private void fillSomeElements() throws Exception
    {
        dataplane.ensureTable();
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), machines(1, 2)));
    }

    private void assertFixedPartIs(final DataplaneConfig config)
    {
        for (final Ruleset.StaticChain chain : new Ruleset(config).staticChains())
        {
            assertThat(nft.rules("egressd", chain.name())).as(chain.name()).isEqualTo(chain.commentedRules());
        }
    }

    @Test
    void aFlushedForwardChainIsRepairedInOneTransactionKeepingEveryElement() throws Exception
    {
        fillSomeElements();
        final KernelPlan before = dataplane.read();
        nft.run("add element inet egressd cc4 { 10.77.0.2 . 198.51.100.10 }");   // a live meter entry
        nft.run("flush chain inet egressd forward");                             // anti-spoofing gone
        final int scripts = nft.scripts().size();

        assertThat(dataplane.ensureTable()).isTrue();
        assertThat(dataplane.lastRepair()).contains("chain forward holds 0 rules, 0 of the 5 it should");
        assertThat(nft.scripts()).as("one transaction").hasSize(scripts + 1);
        final String repair = nft.scripts().get(scripts);
        assertThat(repair).doesNotContain("delete table", "flush set", "flush map", "delete set", "delete element",
            "flush table");
        assertFixedPartIs(DataplaneConfig.defaults("uplink"));
        assertThat(dataplane.read()).isEqualTo(before);
        assertThat(nft.elements("egressd", "cc4")).containsExactly("10.77.0.2 . 198.51.100.10");
        assertThat(dataplane.ensureTable()).as("in sync now").isFalse();
        assertThat(nft.scripts()).hasSize(scripts + 1);
    }

    @Test
    void aNewCapOrUplinkInTheConfigurationRewritesTheRules() throws Exception
    {
        final NftDataplane cap8 = new NftDataplane(nft, nft, new DataplaneConfig("egressd", "uplink", "tap-*", 8));
        assertThat(cap8.ensureTable()).isTrue();
        cap8.apply(PlanDiff.between(KernelPlan.empty(), machines(1, 2)));
        final KernelPlan before = cap8.read();
        assertThat(cap8.ensureTable()).isFalse();

        final DataplaneConfig cap16 = new DataplaneConfig("egressd", "uplink", "tap-*", 16);
        final NftDataplane next = new NftDataplane(nft, nft, cap16);
        assertThat(next.ensureTable()).isTrue();
        assertThat(next.lastRepair()).contains("chain guest_new holds 5 rules, 3 of the 5 it should");
        assertThat(nft.rules("egressd", "guest_new")).anyMatch(r -> r.contains("ct count over 16"))
            .noneMatch(r -> r.contains("ct count over 8 "));
        assertFixedPartIs(cap16);
        assertThat(next.read()).isEqualTo(before);
        assertThat(next.ensureTable()).isFalse();

        final DataplaneConfig wan = new DataplaneConfig("egressd", "wan0", "tap-*", 16);
        final NftDataplane moved = new NftDataplane(nft, nft, wan);
        assertThat(moved.ensureTable()).isTrue();
        assertThat(moved.lastRepair()).contains("chain forward").contains("chain postrouting")
            .doesNotContain("chain guest_new").doesNotContain("chain deny");
        assertThat(nft.rules("egressd", "postrouting").get(0)).startsWith("oifname != \"wan0\" accept");
        assertFixedPartIs(wan);
        assertThat(moved.read()).isEqualTo(before);
    }

    @Test
    void handEditsOfRulesPolicyAndHooksAreRepaired() throws Exception
    {
        fillSomeElements();
        final KernelPlan before = dataplane.read();
        final DataplaneConfig config = DataplaneConfig.defaults("uplink");

        nft.run("add rule inet egressd forward accept");                          // an extra rule
        assertThat(dataplane.ensureTable()).isTrue();
        assertFixedPartIs(config);

        nft.replaceRule("egressd", "deny", 0, "accept");                          // a changed rule, no comment
        assertThat(dataplane.ensureTable()).isTrue();
        assertFixedPartIs(config);

        nft.run("add chain inet egressd forward { type filter hook forward priority filter; policy drop; }");
        assertThat(dataplane.ensureTable()).isTrue();
        assertThat(dataplane.lastRepair()).contains("chain forward has policy drop");
        assertThat(nft.runJson("list chain inet egressd forward")).contains("\"policy\":\"accept\"");

        // hooked at another priority: the kernel cannot change that in place, so it is deleted and re-added
        nft.run("flush chain inet egressd postrouting\ndelete chain inet egressd postrouting\n"
            + "add chain inet egressd postrouting { type nat hook postrouting priority 50; policy accept; }");
        assertThat(dataplane.ensureTable()).isTrue();
        assertThat(dataplane.lastRepair()).contains("chain postrouting is hooked as nat hook postrouting priority 50");
        assertThat(nft.runJson("list chain inet egressd postrouting")).contains("\"prio\":100");
        assertFixedPartIs(config);

        // the meter rules flushed by hand
        nft.run("flush chain inet egressd guest_new");
        assertThat(dataplane.ensureTable()).isTrue();
        assertFixedPartIs(config);
        assertThat(dataplane.ensureTable()).isFalse();
        assertThat(dataplane.read()).isEqualTo(before);
    }

    @Test
    void aMissingChainIsAddedBack() throws Exception
    {
        fillSomeElements();
        nft.run("flush chain inet egressd forward\ndelete chain inet egressd forward");
        assertThat(dataplane.ensureTable()).isTrue();
        assertThat(dataplane.lastRepair()).contains("chain forward is missing");
        assertFixedPartIs(DataplaneConfig.defaults("uplink"));
        assertThat(nft.runJson("list chain inet egressd forward")).contains("\"hook\":\"forward\"");
    }

    @Test
    void roundTripFromEmptyToPlanAndOnward() throws Exception
    {
        dataplane.ensureTable();
        final KernelPlan plan = machines(1, 2, 3);
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
        assertThat(dataplane.read()).isEqualTo(withoutUplinks(plan));
        assertThat(nft.scripts()).as("libnftables only created the table").hasSize(1);
        assertThat(nft.batches()).as("the nat6 rules, then the elements: one netlink batch each").hasSize(2);

        final List<PlanElement> next = new ArrayList<>(machines(3, 4).elements());
        next.addAll(machine(1, 9).elements());
        final KernelPlan desired = KernelPlan.of(next);
        dataplane.apply(PlanDiff.between(dataplane.read(), desired));
        assertThat(dataplane.read()).isEqualTo(withoutUplinks(desired));
        assertThat(nft.batches()).as("one transaction per apply").hasSize(3);
        assertThat(nft.scripts()).hasSize(1);
        assertThat(nft.elements("egressd", "snat6")).contains(PlanFixtures.guest6(1) + " : 2001:db8:10::10 . 9216-10239");

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
            + ": File exists");
        assertThat(e.command()).as("the change as nft text").isEqualTo("add element inet egressd snat4 { 10.77.0.2 : "
            + "203.0.113.99 . 5120-6143 }");
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
    void theIpv6SnatRulesGoOverNetlinkAfterTheTableAndARefusalIsRepairedByTheNextCheck() throws Exception
    {
        nft.refuseNetlink(1);
        final NftException e = catchThrowableOfType(NftException.class, dataplane::ensureTable);
        assertThat(e).hasMessageContaining("IPv6 SNAT rules").hasMessageContaining("over netlink");
        assertThat(nft.rules("egressd", Ruleset.NAT6_CHAIN)).as("empty: fail-closed").isEmpty();
        assertThat(dataplane.ensureTable()).as("the next check goes deep and repairs").isTrue();
        assertThat(dataplane.lastRepair()).contains("chain nat6 holds 0 rules, 0 of the 3");
        assertThat(nft.rules("egressd", Ruleset.NAT6_CHAIN)).hasSize(3);
        assertThat(nft.batches()).hasSize(2).allSatisfy(b -> assertThat(b).hasSize(3));
        assertThat(dataplane.ensureTable()).isFalse();
    }

    @Test
    void aDumpedElementOfTheWrongSizeIsRefusedNamingItsSet()
    {
        final NftException e = catchThrowableOfType(NftException.class, () -> NftDataplane.decode("snat4",
            new dev.egressd.agent.kernel.nft.netlink.NftNetlink.Element(new byte[] {10, 0, 0, 2}, new byte[8])));
        assertThat(e).hasMessageContaining("snat4").hasMessageContaining("8 data bytes");
        assertThat(catchThrowableOfType(NftException.class, () -> NftDataplane.decode("static6",
            new dev.egressd.agent.kernel.nft.netlink.NftNetlink.Element(new byte[4], null)))).hasMessageContaining("static6");
    }

    @Test
    void shallowReadsDumpEachSetOverNetlinkAndDecodeWhatApplyEncoded() throws Exception
    {
        dataplane.paceDeepChecks(9, new java.util.concurrent.atomic.AtomicLong()::incrementAndGet);
        dataplane.ensureTable();
        final KernelPlan plan = withoutUplinks(machines(1, 2, 3));
        dataplane.apply(PlanDiff.between(KernelPlan.empty(), plan));
        assertThat(dataplane.read()).as("deep: the first").isEqualTo(plan);
        nft.run("add table inet other");
        final int tables = nft.listings()[1];
        assertThat(dataplane.read()).as("shallow: six dumps").isEqualTo(plan);
        assertThat(nft.listings()[1]).isEqualTo(tables);
    }
}
