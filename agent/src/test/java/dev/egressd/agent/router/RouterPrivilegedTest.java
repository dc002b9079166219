package dev.egressd.agent.router;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.kernel.nft.LibNftablesClient;
import dev.egressd.agent.kernel.nft.netlink.NfTables;
import dev.egressd.agent.kernel.nft.netlink.NftNetlink;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.region.MemoryRegionStore;
import dev.egressd.agent.region.RegionStore.HostRecord;
import dev.egressd.agent.region.RegionStore.RegionApp;
import dev.egressd.agent.region.RegionStore.RegionPair;
import dev.egressd.agent.region.RegionStore.SlotId;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The router's loop driving the real kernel's table (libnftables for its creation, nf_tables netlink for its
 * elements and read-backs), in a namespace this test creates.
 */
@Privileged
class RouterPrivilegedTest
{
    private static final Ipv4Address P1 = Ipv4Address.parse("203.0.113.5");

    @Test
    void theLoopKeepsTheKernelTableInLineWithTheRegion() throws Exception
    {
        Requirements.rootWithNftables();
        final LabNamespace lab = LabNamespace.create();
        NetNamespace ns = null;
        LibNftablesClient client = null;
        NftNetlink netlink = null;
        try (MemoryRegionStore.Backend backend = new MemoryRegionStore.Backend();
             MemoryRegionStore admin = new MemoryRegionStore(backend, "ord", Duration.ofSeconds(10));
             MemoryRegionStore h1 = new MemoryRegionStore(backend, "ord", Duration.ofSeconds(10));
             MemoryRegionStore h2 = new MemoryRegionStore(backend, "ord", Duration.ofSeconds(10));
             RecordingRegionStore store = new RecordingRegionStore(new MemoryRegionStore(backend, "ord",
                 Duration.ofSeconds(10)), backend::revision))
        {
            ns = NetNamespace.enter(lab.name());
            client = ns.call(LibNftablesClient::open);
            netlink = ns.call(() -> NftNetlink.open(NfTables.NFPROTO_INET, "egressd_router"));
            admin.putApp(new RegionApp("app", false));
            admin.createPair(new RegionPair("app", new EgressPair(P1, Ipv6Address.parse("2001:db8:5::5"), "ord"),
                false));
            h1.registerHost(new HostRecord("h1", List.of("192.0.2.1", "2001:db8:a::1"), true));
            h2.registerHost(new HostRecord("h2", List.of("192.0.2.5", "2001:db8:b::1"), true));
            h1.claim(new SlotId(P1, 1), "h1", "m1");
            final FakePolicyRouting routing = new FakePolicyRouting(e -> { });
            // the client was opened in the namespace; the router's thread uses it from there on
            try (Router router = new Router(store, new SteeringTable(client, netlink, "egressd_router"),
                new PolicyTables(routing, 7000), new Router.Settings("r1", 1024, 7000), System::nanoTime))
            {
                router.start();
                awaitMap(lab, "blk4", "203.0.113.5 . 1024-2047 : 0x00000001", true);
                assertThat(lab.exec("nft", "list", "map", "inet", "egressd_router", "icmpid6"))
                    .contains("2001:db8:5::5 . 1024-2047 : 0x00000001");

                h2.claim(new SlotId(P1, 2), "h2", "m2");
                awaitMap(lab, "blk4", "203.0.113.5 . 2048-3071 : 0x00000002", true);
                h1.markLeaving(new SlotId(P1, 1), "h1", "m1");
                h2.handover("m1", "h1", "h2");
                awaitMap(lab, "blk4", "203.0.113.5 . 1024-2047 : 0x00000002", true);

                lab.exec("nft", "delete element inet egressd_router blk4 { 203.0.113.5 . 2048-3071 }");
                awaitMap(lab, "blk4", "203.0.113.5 . 2048-3071 : 0x00000002", true);
                assertThat(router.repairs()).isGreaterThanOrEqualTo(1);

                admin.quarantineHost("h2", System.currentTimeMillis() + 60_000);
                awaitMap(lab, "blk4", "0x00000002", false);
                assertThat(routing.rules()).extracting(r -> r.mark()).containsOnly(1);
            }
            // a router that stops leaves the kernel's steering in place
            assertThat(lab.exec("nft", "list", "chain", "inet", "egressd_router", "prerouting"))
                .contains("fib saddr . mark . iif oif missing");
        }
        finally
        {
            LabNamespace.tearDown(lab, ns, netlink, client);
        }
    }

    private static void awaitMap(final LabNamespace lab, final String map, final String text, final boolean present)
        throws IOException, InterruptedException
    {
        final long end = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        String listed = "";
        while (System.nanoTime() - end < 0)
        {
            try
            {
                listed = lab.exec("nft", "list", "map", "inet", "egressd_router", map);
                if (listed.contains(text) == present)
                {
                    return;
                }
            }
            catch (final IOException e)
            {
                listed = e.getMessage(); // not created yet
            }
            Thread.sleep(50);
        }
        throw new AssertionError(map + (present ? " never held " : " still holds ") + text + ":\n" + listed);
    }
}
