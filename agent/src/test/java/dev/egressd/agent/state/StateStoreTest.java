package dev.egressd.agent.state;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class StateStoreTest
{
    @TempDir
    Path dir;

    private final Clock clock = Clock.fixed(Instant.parse("2026-01-02T03:04:05.678Z"), ZoneOffset.UTC);

    static DesiredState sample()
    {
        return new DesiredState(DesiredState.VERSION, new DesiredState.Host("ord", 64, 1024, 1024),
            List.of(new DesiredState.App("a1", true,
                List.of(new DesiredState.Pair("203.0.113.10", "2001:db8::10", false)), List.of("m9"))),
            List.of(new DesiredState.MachineEntry("m1", "a1", "tap-m1", "10.77.0.2", "fd77::2", null,
                    new DesiredState.Slot("203.0.113.10", 3), null),
                new DesiredState.MachineEntry("m2", "a1", "tap-m2", "10.77.0.3", null, null, null,
                    new DesiredState.ScopedPair("203.0.113.20", "2001:db8::20"))),
            List.of(new DesiredState.Element("snat4", null, "10.77.0.9", "203.0.113.30", 1024, 2047)));
    }

    @Test
    void aMissingFileIsAFreshStart() throws Exception
    {
        assertThat(new StateStore(dir, clock).load().status()).isEqualTo(StateStore.Status.MISSING);
    }

    @Test
    void whatIsWrittenIsReadBack() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.write(sample());
        final StateStore.Loaded loaded = store.load();
        assertThat(loaded.status()).isEqualTo(StateStore.Status.LOADED);
        assertThat(loaded.state()).isEqualTo(sample());
        assertThat(Files.exists(dir.resolve(StateStore.TEMP))).isFalse();
        assertThat(Files.readString(store.file())).contains("\"fail_closed\" : true", "\"block\" : 3");
    }

    @Test
    void aCorruptFileIsMovedAsideAndTheStartIsEmpty() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        Files.writeString(store.file(), "{\"version\": 1, \"host\": {\"region\": \"ord\", ");
        final StateStore.Loaded loaded = store.load();
        assertThat(loaded.status()).isEqualTo(StateStore.Status.CORRUPT);
        assertThat(loaded.state()).isNull();
        assertThat(loaded.aside()).isEqualTo(dir.resolve("state.json.corrupt-20260102T030405.678Z"));
        assertThat(Files.readString(loaded.aside())).startsWith("{\"version\": 1");
        assertThat(Files.exists(store.file())).isFalse();
        assertThat(store.load().status()).isEqualTo(StateStore.Status.MISSING);
    }

    @Test
    void unknownFieldsAreIgnoredWithAWarningAndWrongTypesAreCorrupt() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        // fields a newer egressd of the same format version may add, at the top and inside a section
        Files.writeString(store.file(), "{\"version\": 1, \"host\": {\"region\": \"ord\", \"block_count\": 64,"
            + " \"block_size\": 1024, \"destination_cap\": 1024, \"later\": [1, {\"a\": 2}]}, \"surprise\": 1}");
        final StateStore.Loaded loaded = store.load();
        assertThat(loaded.status()).isEqualTo(StateStore.Status.LOADED);
        assertThat(loaded.state().host().region()).isEqualTo("ord");
        assertThat(loaded.state().host().destinationCap()).isEqualTo(1024);
        Files.writeString(store.file(), "{\"version\": 1, \"host\": {\"region\": 7, \"block_count\": \"x\","
            + " \"block_size\": 1024, \"destination_cap\": 1024}}");
        assertThat(store.load().status()).as("a known field of the wrong type").isEqualTo(StateStore.Status.CORRUPT);
        Files.writeString(store.file(), "[]");
        assertThat(new StateStore(dir, Clock.offset(clock, java.time.Duration.ofSeconds(1))).load().status())
            .isEqualTo(StateStore.Status.CORRUPT);
        Files.writeString(store.file(), "");
        assertThat(new StateStore(dir, Clock.offset(clock, java.time.Duration.ofSeconds(2))).load().status())
            .isEqualTo(StateStore.Status.CORRUPT);
    }

    @Test
    void aNewerFormatStopsStartUpAndIsLeftAlone() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        Files.writeString(store.file(), "{\"version\": 2, \"host\": {\"region\": \"ord\", \"block_count\": 64,"
            + " \"block_size\": 1024, \"destination_cap\": 1024}}");
        assertThatThrownBy(store::load).hasMessageContaining("format version 2");
        assertThat(Files.exists(store.file())).isTrue();
    }

    @Test
    void aCrashBetweenTempWriteAndRenameLeavesTheOldStateAndTheTempFileIsIgnored() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.write(sample());
        // The crash: a half-written temp file, never renamed.
        Files.writeString(dir.resolve(StateStore.TEMP), "{\"version\": 1, \"apps\": [{\"id\": \"half");
        assertThat(store.load().state()).isEqualTo(sample());
        // The next write goes through the same temp name and replaces it completely.
        final DesiredState next = DesiredState.empty(sample().host());
        store.write(next);
        assertThat(store.load().state()).isEqualTo(next);
        assertThat(Files.exists(dir.resolve(StateStore.TEMP))).isFalse();
    }

    @Test
    void theDirectoryLockKeepsASecondOwnerOut() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.lock();
        try
        {
            assertThatThrownBy(() -> new StateStore(dir, clock).lock()).hasMessageContaining("locked");
        }
        finally
        {
            store.unlock();
        }
        final StateStore again = new StateStore(dir, clock);
        again.lock();
        again.unlock();
    }

    @Test
    void drainingAddressesAreWrittenAndReadBackAndAFileWithoutThemReadsAsNone() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.write(sample());
        assertThat(Files.readString(store.file())).doesNotContain("draining");
        assertThat(store.load().state().draining()).isEmpty();
        final DesiredState draining = sample().withDraining(List.of(new DesiredState.Draining(
            new DesiredState.Element("uplink4", null, "203.0.113.40", null, null, null), 1_767_323_045_678L)));
        store.write(draining);
        assertThat(Files.readString(store.file())).contains("\"draining\"", "\"until_epoch_millis\" : 1767323045678");
        assertThat(store.load().state()).isEqualTo(draining);
    }

    @Test
    void aDirectoryFsyncThatFailsAfterTheRenameIsRetriedOnceAndTheWriteStands() throws Exception
    {
        final java.util.concurrent.atomic.AtomicInteger calls = new java.util.concurrent.atomic.AtomicInteger();
        final StateStore store = new StateStore(dir, clock, d ->
        {
            calls.incrementAndGet();
            throw new java.io.IOException("EIO (test)");
        });
        store.write(sample()); // no exception: the new file is in place, so the change is committed
        assertThat(calls.get()).isEqualTo(2);
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(sample());
    }

    @Test
    void aDirectoryFsyncThatFailsOnceThenWorksIsQuiet() throws Exception
    {
        final java.util.concurrent.atomic.AtomicInteger calls = new java.util.concurrent.atomic.AtomicInteger();
        final StateStore store = new StateStore(dir, clock, d ->
        {
            if (calls.incrementAndGet() == 1)
            {
                throw new java.io.IOException("EINTR (test)");
            }
        });
        store.write(sample());
        assertThat(calls.get()).isEqualTo(2);
        assertThat(store.load().state()).isEqualTo(sample());
    }
}
