package dev.egressd.agent.router;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.egressd.agent.kernel.rtnetlink.PolicyRouting;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Route;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Rule;
import dev.egressd.agent.region.RegionStore.HostRecord;
import dev.egressd.agent.region.RegionStore.RegionPair;
import dev.egressd.agent.region.RegionStore.RegionSnapshot;
import dev.egressd.agent.region.RegionStore.SlotId;
import dev.egressd.agent.region.RegionStore.SlotRecord;
import dev.egressd.agent.router.SteeringPlan.Key;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import java.net.InetAddress;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

class SteeringPlanTest
{
    private static final Ipv4Address P1 = Ipv4Address.parse("203.0.113.5");
    private static final Ipv4Address P2 = Ipv4Address.parse("203.0.113.6");
    private static final InetAddress V4 = SteeringPlan.address("203.0.113.5");
    private static final InetAddress V6 = SteeringPlan.address("2001:db8:5::5");

    /** A snapshot builder. */
    static final class Region
    {
        final Map<Ipv4Address, RegionPair> pairs = new HashMap<>();
        final Map<SlotId, SlotRecord> slots = new HashMap<>();
        final Map<String, HostRecord> hosts = new HashMap<>();

        Region pair(final Ipv4Address v4, final String v6)
        {
            pairs.put(v4, new RegionPair("app", new EgressPair(v4, Ipv6Address.parse(v6), "ord"), false));
            return this;
        }

        Region host(final String id, final int mark, final String... addresses)
        {
            hosts.put(id, new HostRecord(id, List.of(addresses), true, mark));
            return this;
        }

        Region slot(final Ipv4Address pair, final int block, final String host)
        {
            final SlotId id = new SlotId(pair, block);
            slots.put(id, new SlotRecord(id, host, host == null ? null : "m-" + block, false,
                host == null ? 1L : 0L, 1));
            return this;
        }

        Region leaving(final Ipv4Address pair, final int block, final String host)
        {
            final SlotId id = new SlotId(pair, block);
            slots.put(id, new SlotRecord(id, host, "m-" + block, true, 0L, 1));
            return this;
        }

        RegionSnapshot snapshot()
        {
            return new RegionSnapshot(1, Map.of(), pairs, slots, hosts, Map.of());
        }

        SteeringPlan plan()
        {
            return SteeringPlan.of(snapshot(), 1024, 7000);
        }
    }

    @Test
    void aHeldSlotSteersItsBlockOfBothAddressesToItsHostsMark()
    {
        final SteeringPlan plan = new Region().pair(P1, "2001:db8:5::5")
            .host("h1", 1, "192.0.2.1", "2001:db8:1::1").host("h2", 2, "192.0.2.2", "2001:db8:1::2")
            .slot(P1, 1, "h1").slot(P1, 2, "h2").plan();

        assertThat(plan.elements()).containsOnly(
            Map.entry(new Key(V4, 1024, 2047), 1), Map.entry(new Key(V6, 1024, 2047), 1),
            Map.entry(new Key(V4, 2048, 3071), 2), Map.entry(new Key(V6, 2048, 3071), 2));
        assertThat(plan.rules()).containsExactlyInAnyOrder(
            new Rule(PolicyRouting.AF_INET, 1, 7001, 7001), new Rule(PolicyRouting.AF_INET6, 1, 7001, 7001),
            new Rule(PolicyRouting.AF_INET, 2, 7002, 7002), new Rule(PolicyRouting.AF_INET6, 2, 7002, 7002));
        assertThat(plan.routes()).containsExactlyInAnyOrder(
            new Route(PolicyRouting.AF_INET, 7001, V4, 32, SteeringPlan.address("192.0.2.1")),
            new Route(PolicyRouting.AF_INET6, 7001, V6, 128, SteeringPlan.address("2001:db8:1::1")),
            new Route(PolicyRouting.AF_INET, 7002, V4, 32, SteeringPlan.address("192.0.2.2")),
            new Route(PolicyRouting.AF_INET6, 7002, V6, 128, SteeringPlan.address("2001:db8:1::2")));
        assertThat(plan.shared()).containsExactlyInAnyOrder(V4, V6);
    }

    @Test
    void blockBoundariesFollowTheBlockSize()
    {
        final Region region = new Region().pair(P1, "2001:db8:5::5").host("h1", 3, "192.0.2.1").slot(P1, 0, "h1")
            .slot(P1, 63, "h1");
        assertThat(SteeringPlan.of(region.snapshot(), 1024, 7000).elements().keySet())
            .containsExactlyInAnyOrder(new Key(V4, 0, 1023), new Key(V4, 64512, 65535));
        assertThat(SteeringPlan.of(region.snapshot(), 256, 7000).elements().keySet())
            .containsExactlyInAnyOrder(new Key(V4, 0, 255), new Key(V4, 16128, 16383));
    }

    @Test
    void unassignedBlocksGetNoElement()
    {
        final SteeringPlan plan = new Region().pair(P1, "2001:db8:5::5")
            .host("h1", 1, "192.0.2.1").host("unmarked", 0, "192.0.2.9")
            .slot(P1, 0, null)          // quarantined
            .slot(P1, 1, "gone")        // host key deleted
            .slot(P1, 2, "unmarked")    // no mark yet
            .slot(P2, 3, "h1")          // pair unknown
            .slot(P1, 64, "h1")         // beyond the ports of an address at this block size
            .plan();

        assertThat(plan.elements()).isEmpty();
        assertThat(plan.rules()).containsExactly(new Rule(PolicyRouting.AF_INET, 1, 7001, 7001));
        assertThat(plan.shared()).as("fencing still covers every shared address").containsExactlyInAnyOrder(V4, V6);
    }

    @Test
    void aLeavingSlotKeepsItsElementUntilTheHandoverRewritesIt()
    {
        final Region region = new Region().pair(P1, "2001:db8:5::5").host("h1", 1, "192.0.2.1").host("h2", 2, "192.0.2.2")
            .leaving(P1, 5, "h1");
        final SteeringPlan before = region.plan();
        assertThat(before.elements()).containsExactly(Map.entry(new Key(V4, 5120, 6143), 1));

        final SteeringPlan after = region.slot(P1, 5, "h2").plan();
        final SteeringPlan.Diff diff = before.diffTo(after);
        assertThat(diff.deleteElements()).containsExactly(new Key(V4, 5120, 6143));
        assertThat(diff.addElements()).containsExactly(Map.entry(new Key(V4, 5120, 6143), 2));
        assertThat(diff.addRules()).isEmpty();
        assertThat(before.with(diff)).isEqualTo(after);
    }

    @Test
    void aHostWithoutAnAddressOfAFamilyGetsNothingOfThatFamily()
    {
        final SteeringPlan plan = new Region().pair(P1, "2001:db8:5::5").host("h1", 1, "192.0.2.1")
            .slot(P1, 1, "h1").plan();
        assertThat(plan.elements()).containsOnlyKeys(new Key(V4, 1024, 2047));
        assertThat(plan.rules()).extracting(Rule::family).containsOnly(PolicyRouting.AF_INET);
        assertThat(plan.routes()).extracting(Route::family).containsOnly(PolicyRouting.AF_INET);
    }

    @Test
    void badSettingsAreRefused()
    {
        final RegionSnapshot empty = new Region().snapshot();
        assertThatThrownBy(() -> SteeringPlan.of(empty, 1000, 7000)).hasMessageContaining("block-size");
        assertThatThrownBy(() -> SteeringPlan.of(empty, 1024, 0)).hasMessageContaining("router-table-base");
        assertThatThrownBy(() -> SteeringPlan.address("example.com")).hasMessageContaining("not an address literal");
        assertThatThrownBy(() -> new Key(V4, 10, 9)).hasMessageContaining("not an interval");
    }

    /** Property: for random regions a and b, a's plan with the diff to b's plan applied is b's plan. */
    @Test
    void theDiffTurnsOnePlanIntoTheOther()
    {
        for (int seed = 0; seed < 300; seed++)
        {
            final Random random = new Random(seed);
            final SteeringPlan a = random(random).plan();
            final SteeringPlan b = random(random).plan();
            final SteeringPlan.Diff diff = a.diffTo(b);
            assertThat(a.with(diff)).as("seed %d", seed).isEqualTo(b);
            assertThat(a.diffTo(a).isEmpty()).as("seed %d", seed).isTrue();
            assertThat(diff.deleteElements()).as("seed %d: only what a holds is deleted", seed)
                .allSatisfy(k -> assertThat(a.elements()).containsKey(k));
            // determinism: the same snapshot gives the same plan
            assertThat(random(new Random(seed)).plan()).isEqualTo(random(new Random(seed)).plan());
        }
    }

    /** Every element of a random region's plan is a held slot of a known pair on a marked host with an address. */
    @Test
    void everyElementIsAHeldBlockOfAMarkedHost()
    {
        for (int seed = 0; seed < 300; seed++)
        {
            final Region region = random(new Random(seed));
            final SteeringPlan plan = region.plan();
            final Map<Key, Integer> expected = new HashMap<>();
            for (final SlotRecord slot : region.slots.values())
            {
                final HostRecord host = slot.host() == null ? null : region.hosts.get(slot.host());
                final RegionPair pair = region.pairs.get(slot.id().pair());
                if (host == null || host.mark() == 0 || pair == null)
                {
                    continue;
                }
                final Key v4 = new Key(SteeringPlan.address(pair.pair().ipv4().toString()), slot.id().block() * 1024,
                    slot.id().block() * 1024 + 1023);
                expected.put(v4, host.mark());
                if (host.addresses().stream().anyMatch(a -> a.contains(":")))
                {
                    expected.put(new Key(SteeringPlan.address(pair.pair().ipv6().toString()), v4.firstPort(),
                        v4.lastPort()), host.mark());
                }
            }
            assertThat(plan.elements()).as("seed %d", seed).isEqualTo(expected);
        }
    }

    private static Region random(final Random random)
    {
        final Region region = new Region();
        final List<Ipv4Address> pairs = new ArrayList<>();
        for (int i = 0; i < 1 + random.nextInt(4); i++)
        {
            final Ipv4Address v4 = Ipv4Address.parse("203.0.113." + (10 + i));
            pairs.add(v4);
            region.pair(v4, "2001:db8:5::" + (10 + i));
        }
        final List<String> hosts = new ArrayList<>();
        for (int i = 0; i < 1 + random.nextInt(5); i++)
        {
            final String id = "h" + i;
            hosts.add(id);
            final int mark = random.nextInt(5) == 0 ? 0 : i + 1;
            if (random.nextBoolean())
            {
                region.host(id, mark, "192.0.2." + (i + 1), "2001:db8:1::" + (i + 1));
            }
            else
            {
                region.host(id, mark, "192.0.2." + (i + 1));
            }
        }
        hosts.add("gone");
        for (int i = 0; i < random.nextInt(40); i++)
        {
            final Ipv4Address pair = random.nextInt(10) == 0 ? P2 : pairs.get(random.nextInt(pairs.size()));
            final int block = random.nextInt(64);
            final String host = random.nextInt(8) == 0 ? null : hosts.get(random.nextInt(hosts.size()));
            if (host != null && random.nextInt(6) == 0)
            {
                region.leaving(pair, block, host);
            }
            else
            {
                region.slot(pair, block, host);
            }
        }
        return region;
    }
}
