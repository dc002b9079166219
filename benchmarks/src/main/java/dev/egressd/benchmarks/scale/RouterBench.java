package dev.egressd.benchmarks.scale;

import dev.egressd.agent.kernel.nft.LibNftablesClient;
import dev.egressd.agent.kernel.nft.netlink.NfTables;
import dev.egressd.agent.kernel.nft.netlink.NftNetlink;
import dev.egressd.agent.kernel.nft.netlink.NftOp;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.region.RegionStore.HostRecord;
import dev.egressd.agent.region.RegionStore.RegionPair;
import dev.egressd.agent.region.RegionStore.RegionSnapshot;
import dev.egressd.agent.region.RegionStore.SlotId;
import dev.egressd.agent.region.RegionStore.SlotRecord;
import dev.egressd.agent.router.SteeringPlan;
import dev.egressd.agent.router.SteeringTable;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The router role's kernel figures (scripts/bench-router), in a throw-away namespace: the time to build the table
 * from a snapshot of N slots (plan and one libnftables transaction), to apply one slot change (a handover: one
 * element of each map of both families moves; one nf_tables netlink batch) at N slots, and to read the table back
 * (the drift check's cost): in full over netlink when the ruleset's generation moved (another table's transaction
 * moves it here), and idle, when it did not (one generation request). Slots are spread
 * over N/64 pairs (64 blocks of 1024 ports each) and 64 hosts; each slot is 4 kernel elements (ports and ICMP ids,
 * IPv4 and IPv6). Addresses: 10.200.0.0/16 and 2001:db8:200::/48, inside the namespace only.
 */
public final class RouterBench
{
    private static final int HOSTS = 64;
    private static final int BLOCKS = 64;
    private static final int CHANGES = 50;

    private RouterBench()
    {
    }

    /**
     * Runs the measurement.
     *
     * @param args the namespace name, then one or more slot counts.
     * @throws Exception if the kernel refuses.
     */
    public static void main(final String[] args) throws Exception
    {
        if (args.length < 2)
        {
            System.err.println("usage: RouterBench NAMESPACE SLOTS...");
            System.exit(2);
        }
        try (NetNamespace ns = NetNamespace.enter(args[0]))
        {
            for (int a = 1; a < args.length; a++)
            {
                final int slots = Integer.parseInt(args[a]);
                System.out.println(ns.call(() -> measure(slots)));
            }
        }
    }

    private static String measure(final int slots) throws Exception
    {
        final Map<Ipv4Address, RegionPair> pairs = new HashMap<>();
        final Map<SlotId, SlotRecord> slotMap = new HashMap<>();
        final Map<String, HostRecord> hosts = new HashMap<>();
        for (int h = 0; h < HOSTS; h++)
        {
            hosts.put("h" + h, new HostRecord("h" + h, List.of("192.0.2." + (h + 1), "2001:db8:1::" + (h + 1)), true,
                h + 1));
        }
        final List<SlotId> ids = new ArrayList<>();
        for (int i = 0; i < slots; i++)
        {
            final int pair = i / BLOCKS;
            final Ipv4Address v4 = new Ipv4Address(0x0AC80000 + pair);
            pairs.computeIfAbsent(v4, a -> new RegionPair("app", new EgressPair(a,
                new Ipv6Address(0x20010db802000000L, pair), "ord"), false));
            final SlotId id = new SlotId(v4, i % BLOCKS);
            ids.add(id);
            slotMap.put(id, new SlotRecord(id, "h" + (i % HOSTS), "m" + i, false, 0, 1));
        }
        final long planStart = System.nanoTime();
        final SteeringPlan plan = SteeringPlan.of(new RegionSnapshot(1, Map.of(), pairs, slotMap, hosts, Map.of()),
            1024, 7000);
        final long planNanos = System.nanoTime() - planStart;
        try (LibNftablesClient nft = LibNftablesClient.open();
             NftNetlink nfnl = NftNetlink.open(NfTables.NFPROTO_INET, "bench_router"))
        {
            final SteeringTable table = new SteeringTable(nft, nfnl, "bench_router");
            final long createStart = System.nanoTime();
            table.create(plan);
            final long createNanos = System.nanoTime() - createStart;
            final int elements = table.elements();

            // handovers: one slot moves to the next host, one transaction each
            final List<Long> change = new ArrayList<>();
            final List<Long> planOnly = new ArrayList<>();
            SteeringPlan current = plan;
            for (int c = 0; c < CHANGES; c++)
            {
                final SlotId id = ids.get((c * 7919) % ids.size());
                final SlotRecord old = slotMap.get(id);
                final int host = Integer.parseInt(old.host().substring(1));
                slotMap.put(id, new SlotRecord(id, "h" + ((host + 1) % HOSTS), old.machine(), false, 0, 2));
                final long start = System.nanoTime();
                final SteeringPlan next = SteeringPlan.of(new RegionSnapshot(2, Map.of(), pairs, slotMap, hosts,
                    Map.of()), 1024, 7000);
                final long planned = System.nanoTime();
                if (table.apply(next) != 4 * 2)
                {
                    throw new IllegalStateException("a handover is 4 elements deleted and 4 added");
                }
                change.add(System.nanoTime() - planned);
                planOnly.add(planned - start);
                current = next;
            }
            // the kernel's share of a change: one batch moving one IPv4 element of blk4 to another mark and back,
            // straight over netlink (no plan, no diff)
            final Map.Entry<SteeringPlan.Key, Integer> moved = current.elements().entrySet().stream()
                .filter(e -> !e.getKey().ipv6()).findFirst().orElseThrow();
            final byte[] first = key(moved.getKey().address().getAddress(), moved.getKey().firstPort());
            final byte[] last = key(moved.getKey().address().getAddress(), moved.getKey().lastPort());
            final int mark = moved.getValue();
            final List<Long> batch = new ArrayList<>();
            for (int c = 0; c < CHANGES; c++)
            {
                final int from = c % 2 == 0 ? mark : mark + 100;
                final int to = c % 2 == 0 ? mark + 100 : mark;
                final long start = System.nanoTime();
                nfnl.commit(List.of(new NftOp.DeleteElement("blk4", first, last),
                    new NftOp.AddElement("blk4", first, markBytes(to), last)));
                batch.add(System.nanoTime() - start);
                if (from == to)
                {
                    throw new IllegalStateException("no change");
                }
            }
            final List<Long> reads = new ArrayList<>();
            final List<Long> idle = new ArrayList<>();
            for (int r = 0; r < 5; r++)
            {
                // another table's transaction moves the generation id (a transaction that changes nothing would not):
                // the read-back must read everything
                nft.run("add table inet bench_router_other");
                final long readsBefore = table.reads();
                long start = System.nanoTime();
                if (table.repair(current) != 0)
                {
                    throw new IllegalStateException("the read-back found drift in a table nobody touched");
                }
                reads.add(System.nanoTime() - start);
                if (table.reads() != readsBefore + 1)
                {
                    throw new IllegalStateException("the read-back after a generation change did not read");
                }
                start = System.nanoTime();
                if (table.repair(current) != 0)
                {
                    throw new IllegalStateException("the idle read-back found drift");
                }
                idle.add(System.nanoTime() - start);
                nft.run("delete table inet bench_router_other");
            }
            table.delete();
            return String.format("ROUTER-BENCH slots=%d kernel-elements=%d plan=%.0f ms create=%.0f ms "
                    + "one-slot-change: plan median=%.1f ms, apply (one netlink batch) median=%.1f ms max=%.1f ms "
                    + "(of which the kernel's batch of one element alone: median=%.2f ms); "
                    + "read-back (generation moved) median=%.0f ms max=%.0f ms; idle read-back median=%.2f ms "
                    + "max=%.2f ms",
                slots, elements, planNanos / 1e6, createNanos / 1e6, median(planOnly) / 1e6, median(change) / 1e6,
                max(change) / 1e6, median(batch) / 1e6,
                median(reads) / 1e6, max(reads) / 1e6, median(idle) / 1e6, max(idle) / 1e6);
        }
    }

    private static byte[] key(final byte[] address, final int port)
    {
        return new byte[] {address[0], address[1], address[2], address[3], (byte) (port >>> 8), (byte) port, 0, 0};
    }

    private static byte[] markBytes(final int mark)
    {
        return java.nio.ByteBuffer.allocate(4).order(java.nio.ByteOrder.nativeOrder()).putInt(mark).array();
    }

    private static long median(final List<Long> values)
    {
        return values.stream().sorted().toList().get(values.size() / 2);
    }

    private static long max(final List<Long> values)
    {
        return values.stream().mapToLong(Long::longValue).max().orElse(0);
    }
}
