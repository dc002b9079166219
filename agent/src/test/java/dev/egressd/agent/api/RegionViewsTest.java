package dev.egressd.agent.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;

import org.junit.jupiter.api.Test;

/** What region mode adds to the API: holders of other hosts, and the status of an unreachable region ledger. */
class RegionViewsTest
{
    @Test
    void aPairsHoldersNameTheirHostInRegionModeAndNoneWithTheLocalLedger()
    {
        final EgressAllocator allocator = new EgressAllocator(new HostSettings("ord", new BlockLayout(4, 16), 1024), 1);
        final Ipv4Address ipv4 = Ipv4Address.parse("203.0.113.10");
        allocator.addPair("shop", new EgressPair(ipv4, Ipv6Address.parse("2001:db8::10"), "ord"));
        allocator.upsertMachine(new Machine("m1", "shop", "tap-m1", Ipv4Address.parse("10.77.0.2"), null, null));
        assertThat(allocator.holdForeign(ipv4, 2, "worker-7", "m40").ok()).isTrue();

        final ObjectNode pair = Views.pair(allocator.pairs().get(0), "worker-1");

        assertThat(pair.toString()).contains(
            "\"slots\":{\"capacity\":4,\"used\":2,\"free\":2}",
            "\"holders\":[{\"block\":1,\"machine\":\"m1\",\"host\":\"worker-1\"},"
                + "{\"block\":2,\"machine\":\"m40\",\"host\":\"worker-7\"}]");
        assertThat(Views.pair(allocator.pairs().get(0), null).toString())
            .contains("{\"block\":1,\"machine\":\"m1\"}");
    }

    @Test
    void anUnreachableRegionLedgerIs503()
    {
        assertThat(ApiHandler.status(Outcome.Reason.LEDGER_UNAVAILABLE)).isEqualTo(503);
        assertThat(ApiHandler.status(Outcome.Reason.SLOT_TAKEN)).isEqualTo(409);
    }
}
