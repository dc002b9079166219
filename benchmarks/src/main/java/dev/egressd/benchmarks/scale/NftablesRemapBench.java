package dev.egressd.benchmarks.scale;

import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.kernel.nft.LibNftablesClient;
import dev.egressd.agent.kernel.nft.NftDataplane;
import dev.egressd.agent.kernel.nft.netlink.NfTables;
import dev.egressd.agent.kernel.nft.netlink.NftElements;
import dev.egressd.agent.kernel.nft.netlink.NftNetlink;
import dev.egressd.agent.kernel.nft.netlink.NftOp;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.core.model.Ipv4Address;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One remap (delete + add of one {@code snat4} element, one transaction) in egressd's table holding N machines,
 * through (a) libnftables as {@code NftDataplane} used it ({@code delete element} + {@code add element} text,
 * one {@code nft_run_cmd_from_buffer}) and (b) the nf_tables netlink client ({@code NftNetlink.commit}, one batch);
 * and what a reconcile's read costs when nothing changed: (c) the six set listings through libnftables, (d) the
 * same six sets dumped over netlink, (e) one generation id request, and the counters through libnftables and
 * over netlink. The table is egressd's ({@code NftDataplane.ensureTable}); the machines' elements (six per
 * machine) are added over netlink in batches. Run by {@code scripts/bench-nftables} in a namespace it creates;
 * prints one line per N.
 */
public final class NftablesRemapBench
{
    private NftablesRemapBench()
    {
    }

    /**
     * Runs the benchmark.
     *
     * @param args namespace, uplink, then the machine counts.
     * @throws Exception if anything fails.
     */
    public static void main(final String[] args) throws Exception
    {
        try (NetNamespace ns = NetNamespace.enter(args[0]))
        {
            for (int a = 2; a < args.length; a++)
            {
                final int n = Integer.parseInt(args[a]);
                System.out.println(ns.call(() -> measure(args[1], n)));
            }
        }
    }

    private static int guest4(final int i)
    {
        return 0x0A000002 + i;
    }

    private static byte[] snat4(final int i, final int shift)
    {
        final int block = (i + shift) % 63;
        return NftElements.snat4(Ipv4Address.parse("203.0.113.10").bits() + (i / 63) % 200, 1024 + block * 1024,
            1024 + block * 1024 + 1023);
    }

    private static String measure(final String uplink, final int n) throws Exception
    {
        try (LibNftablesClient client = LibNftablesClient.open();
             NftNetlink nl = NftNetlink.open(NfTables.NFPROTO_INET, "egressd"))
        {
            final NftDataplane dataplane = new NftDataplane(client, nl, DataplaneConfig.defaults(uplink));
            dataplane.paceDeepChecks(4, System::nanoTime);
            try
            {
                client.run("delete table inet egressd");
            }
            catch (final Exception e)
            {
                // absent
            }
            dataplane.ensureTable();
            final long p0 = System.nanoTime();
            List<NftOp> batch = new ArrayList<>();
            for (int i = 0; i < n; i++)
            {
                final long low = 2 + i;
                batch.add(new NftOp.AddElement("static4", NftElements.ipv4(guest4(i)), null));
                batch.add(new NftOp.AddElement("static6", NftElements.ipv6(0xfd77000000000000L, low), null));
                batch.add(new NftOp.AddElement("guests4", NftElements.ifnameIpv4("tap-m" + i, guest4(i)), null));
                batch.add(new NftOp.AddElement("guests6", NftElements.ifnameIpv6("tap-m" + i, 0xfd77000000000000L, low),
                    null));
                batch.add(new NftOp.AddElement("snat4", NftElements.ipv4(guest4(i)), snat4(i, 0)));
                batch.add(new NftOp.AddElement("snat6", NftElements.ipv6(0xfd77000000000000L, low),
                    NftElements.snat6(0x20010db800100000L, 0x10, 1024 + (i % 63) * 1024, 1024 + (i % 63) * 1024 + 1023)));
                if (batch.size() >= 12_000)
                {
                    nl.commit(batch);
                    batch = new ArrayList<>();
                }
            }
            nl.commit(batch);
            final long populateMs = (System.nanoTime() - p0) / 1_000_000;

            final int libReps = n >= 20_000 ? 15 : 60;
            final int nlReps = 2_000;
            final long[] lib = new long[libReps];
            for (int r = 0; r < libReps; r++)
            {
                final int i = r * 7919 % n;
                final String g = new Ipv4Address(guest4(i)).toString();
                final byte[] d = snat4(i, r + 1);
                final String data = new Ipv4Address(NftElements.getInt(d, 0)) + " . " + NftElements.getPort(d, 4) + "-"
                    + NftElements.getPort(d, 12);
                final long t = System.nanoTime();
                client.run("delete element inet egressd snat4 { " + g + " }\nadd element inet egressd snat4 { " + g
                    + " : " + data + " }\n");
                lib[r] = System.nanoTime() - t;
            }
            final long[] net = new long[nlReps];
            final List<NftOp> remap = new ArrayList<>(2);
            for (int r = 0; r < nlReps; r++)
            {
                final int i = r * 7919 % n;
                remap.clear();
                remap.add(new NftOp.DeleteElement("snat4", NftElements.ipv4(guest4(i))));
                remap.add(new NftOp.AddElement("snat4", NftElements.ipv4(guest4(i)), snat4(i, r + 2)));
                final long t = System.nanoTime();
                nl.commit(remap);
                net[r] = System.nanoTime() - t;
            }

            // Reads when nothing changed.
            final int readReps = n >= 20_000 ? 5 : 20;
            final long[] listSets = new long[readReps];
            final long[] dumpSets = new long[readReps];
            final long[] libCounters = new long[readReps];
            final long[] nlCounters = new long[readReps];
            for (int r = 0; r < readReps; r++)
            {
                long t = System.nanoTime();
                for (final String[] s : new String[][] {{"set", "static4"}, {"set", "static6"}, {"set", "guests4"},
                    {"set", "guests6"}, {"map", "snat4"}, {"map", "snat6"}})
                {
                    client.runJson("list " + s[0] + " inet egressd " + s[1]);
                }
                listSets[r] = System.nanoTime() - t;
                t = System.nanoTime();
                int elements = 0;
                for (final String s : List.of("static4", "static6", "guests4", "guests6", "snat4", "snat6"))
                {
                    elements += nl.elements(s).size();
                }
                dumpSets[r] = System.nanoTime() - t;
                if (elements != 6 * n)
                {
                    throw new IllegalStateException("dumped " + elements + " elements, not " + 6 * n);
                }
                t = System.nanoTime();
                client.runJson("list counters table inet egressd");
                libCounters[r] = System.nanoTime() - t;
                t = System.nanoTime();
                nl.counters();
                nlCounters[r] = System.nanoTime() - t;
            }
            final long[] gen = new long[nlReps];
            for (int r = 0; r < nlReps; r++)
            {
                final long t = System.nanoTime();
                nl.generation();
                gen[r] = System.nanoTime() - t;
            }
            client.run("delete table inet egressd");
            return String.format("nftables n=%d machines (%d elements; populated over netlink in %d ms): one snat4 remap "
                    + "(delete+add, one transaction): libnftables p50 %s p99 %s (%d reps); netlink batch p50 %s p99 %s "
                    + "(%d reps) | a read of the six sets: libnftables listings p50 %s, netlink dumps p50 %s | counters: "
                    + "libnftables p50 %s, netlink GETOBJ p50 %s | generation id (GETGEN) p50 %s p99 %s",
                n, 6 * n, populateMs, us(lib, 50), us(lib, 99), libReps, us(net, 50), us(net, 99), nlReps,
                us(listSets, 50), us(dumpSets, 50), us(libCounters, 50), us(nlCounters, 50), us(gen, 50), us(gen, 99));
        }
    }

    private static String us(final long[] nanos, final int percentile)
    {
        final long[] sorted = nanos.clone();
        Arrays.sort(sorted);
        final long v = sorted[Math.min(sorted.length - 1, (int)Math.ceil(percentile / 100.0 * sorted.length) - 1)];
        return v >= 10_000_000 ? v / 1_000_000 + " ms" : v >= 10_000 ? v / 1_000 + " µs" : String.format("%.1f µs", v / 1000.0);
    }
}
