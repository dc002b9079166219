package dev.egressd.agent.region;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.egressd.agent.region.RegionStore.ClaimAnswer;
import dev.egressd.agent.region.RegionStore.Claimed;

import java.time.Duration;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The region store's contract on {@link MemoryRegionStore}, and what only the in-memory store offers. */
class MemoryRegionStoreTest extends RegionStoreContract
{
    private final MemoryRegionStore.Backend backend = new MemoryRegionStore.Backend();

    @AfterEach
    void closeBackend()
    {
        backend.close();
    }

    @Override
    protected RegionStore open(final String region, final Duration leaseTtl, final Duration deadline)
    {
        return new MemoryRegionStore(backend, region, leaseTtl);
    }

    @Override
    protected void down()
    {
        backend.setAvailable(false);
    }

    @Override
    protected void up()
    {
        backend.setAvailable(true);
    }

    @Override
    protected void killAndRestart()
    {
        backend.setAvailable(false);
        backend.setAvailable(true);
    }

    @Override
    protected void compact(final RegionStore store, final long revision)
    {
        backend.compact(revision);
    }

    @Override
    protected ClaimAnswer handoverAt(final RegionStore store, final String machine, final String from,
        final String to, final long rev) throws Exception
    {
        return ((MemoryRegionStore) store).handover(machine, from, to, rev);
    }

    @Override
    protected Duration shortDeadline()
    {
        return Duration.ofSeconds(1);
    }

    @Test
    void aLostAnswerLeavesTheClaimAppliedAndARepeatFindsIt() throws Exception
    {
        final RegionStore store = open();
        final RegionStore.SlotId s0 = slot("203.0.113.5", 0);
        backend.failNextWriteAfterApplying();
        assertThatThrownBy(() -> store.claim(s0, "h1", "m1")).isInstanceOfSatisfying(RegionUnavailableException.class,
            e -> assertThat(e.outcomeUnknown()).isTrue());
        final ClaimAnswer again = store.claim(s0, "h1", "m1");
        assertThat(again).isInstanceOf(Claimed.class);
        assertThat(store.read().slots().get(s0)).isEqualTo(((Claimed) again).slot());
    }
}
