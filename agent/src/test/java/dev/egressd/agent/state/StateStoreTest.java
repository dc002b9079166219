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
        // The next snapshot goes through the same temp name and replaces it completely.
        final DesiredState next = DesiredState.empty(sample().host());
        store.snapshot(next);
        assertThat(store.load().state()).isEqualTo(next);
        assertThat(Files.exists(dir.resolve(StateStore.TEMP))).isFalse();
    }

    @Test
    void aStopSnapshotOfWhatTheSnapshotAlreadyHoldsWritesNothingAndOneAfterAChangeWritesIt() throws Exception
    {
        final StateStore first = new StateStore(dir, clock);
        first.load();
        first.write(sample());
        first.write(withMachine(sample(), "m5", 5));
        assertThat(first.snapshotIfChanged(withMachine(sample(), "m5", 5)))
            .as("a journal record follows the snapshot: folded into a new one").isTrue();
        final long snapshots = first.snapshots();
        final byte[] onDisk = Files.readAllBytes(first.file());
        final byte[] journal = Files.readAllBytes(first.journal());

        final StateStore restarted = new StateStore(dir, clock);
        assertThat(restarted.load().state()).isEqualTo(withMachine(sample(), "m5", 5));
        assertThat(restarted.snapshotIfChanged(withMachine(sample(), "m5", 5))).isFalse();
        assertThat(restarted.snapshots()).isZero();
        assertThat(Files.readAllBytes(restarted.file())).isEqualTo(onDisk);
        assertThat(Files.readAllBytes(restarted.journal())).isEqualTo(journal);
        assertThat(first.snapshots()).isEqualTo(snapshots);

        assertThat(restarted.snapshotIfChanged(sample())).as("another state is written").isTrue();
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(sample());
        restarted.write(withMachine(sample(), "m6", 6));
        assertThat(restarted.snapshotIfChanged(withMachine(sample(), "m6", 6))).as("after a change").isTrue();
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(withMachine(sample(), "m6", 6));
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
        store.snapshot(draining);
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
        assertThat(calls.get()).as("the failed one, its retry, and the one after the journal's rename").isEqualTo(3);
        assertThat(store.load().state()).isEqualTo(sample());
    }

    // ------------------------------------------------------------------------------------------------ journal

    private static DesiredState withMachine(final DesiredState state, final String id, final int block)
    {
        final List<DesiredState.MachineEntry> machines = new java.util.ArrayList<>(state.machines());
        machines.removeIf(m -> m.id().equals(id));
        machines.add(new DesiredState.MachineEntry(id, "a1", "tap-" + id, "10.77.1." + block, null, null,
            new DesiredState.Slot("203.0.113.10", block), null));
        machines.sort(java.util.Comparator.comparing(DesiredState.MachineEntry::id));
        return new DesiredState(state.version(), state.host(), state.apps(), machines, state.recovered(),
            state.draining());
    }

    private static DesiredState withoutMachine(final DesiredState state, final String id)
    {
        final List<DesiredState.MachineEntry> machines = new java.util.ArrayList<>(state.machines());
        machines.removeIf(m -> m.id().equals(id));
        return new DesiredState(state.version(), state.host(), state.apps(), machines, state.recovered(),
            state.draining());
    }

    @Test
    void aChangeAppendsOneSmallRecordAndLeavesTheSnapshotAlone() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.write(sample());
        assertThat(store.snapshots()).isEqualTo(1);
        final String snapshot = Files.readString(store.file());
        final long journal = Files.size(store.journal());
        final long written = store.bytesWritten();
        final long syncs = store.syncs();
        final DesiredState next = withMachine(sample(), "m5", 5).withDraining(List.of(new DesiredState.Draining(
            new DesiredState.Element("uplink4", null, "203.0.113.40", null, null, null), 1_767_323_045_678L)));
        store.write(next);
        final DesiredState removed = withoutMachine(next, "m1");
        store.write(removed);
        assertThat(Files.readString(store.file())).as("the snapshot is not rewritten").isEqualTo(snapshot);
        assertThat(store.syncs() - syncs).as("one fsync per change").isEqualTo(2);
        final long growth = Files.size(store.journal()) - journal;
        assertThat(growth).isEqualTo(store.bytesWritten() - written).isLessThan(600);
        final String records = new String(Files.readAllBytes(store.journal()), java.nio.charset.StandardCharsets.UTF_8);
        assertThat(records).contains("\"m5\"", "\"machines_removed\":[\"m1\"]", "until_epoch_millis")
            .doesNotContain("\"m2\"");
        final StateStore.Loaded loaded = new StateStore(dir, clock).load();
        assertThat(loaded.status()).isEqualTo(StateStore.Status.LOADED);
        assertThat(loaded.state()).isEqualTo(removed);
    }

    @Test
    void aTornLastRecordIsDroppedAndCutOffAndTheNextChangeAppendsAfterTheLastGoodOne() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.write(sample());
        final DesiredState s2 = withMachine(sample(), "m5", 5);
        store.write(s2);
        final long good = Files.size(store.journal());
        store.write(withMachine(s2, "m6", 6));
        final byte[] all = Files.readAllBytes(store.journal());
        for (final int keep : new int[] {(int)good + 5, (int)good + 20, all.length - 1})
        {
            // a crash in the middle of the last record: a prefix of it is on disk
            Files.write(store.journal(), java.util.Arrays.copyOf(all, keep));
            final StateStore again = new StateStore(dir, clock);
            assertThat(again.load().state()).as("cut at %d", keep).isEqualTo(s2);
            assertThat(Files.size(store.journal())).as("the torn record is cut off").isEqualTo(good);
        }
        // the file grew but the data never reached the disk: zeros where the record should be
        final byte[] zeros = java.util.Arrays.copyOf(java.util.Arrays.copyOf(all, (int)good), all.length);
        Files.write(store.journal(), zeros);
        final StateStore again = new StateStore(dir, clock);
        assertThat(again.load().state()).isEqualTo(s2);
        final DesiredState s4 = withMachine(s2, "m7", 7);
        again.write(s4);
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(s4);
    }

    @Test
    void aDamagedRecordWithValidOnesAfterItIsCorruptAndBothFilesAreKeptAside() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.write(sample());
        final long head = Files.size(store.journal());
        store.write(withMachine(sample(), "m5", 5));
        store.write(withMachine(sample(), "m6", 6));
        final byte[] bytes = Files.readAllBytes(store.journal());
        bytes[(int)head + 20] ^= 0x20; // a flipped bit in the payload of the first change
        Files.write(store.journal(), bytes);
        final StateStore.Loaded loaded = new StateStore(dir, clock).load();
        assertThat(loaded.status()).isEqualTo(StateStore.Status.CORRUPT);
        assertThat(loaded.state()).isNull();
        assertThat(loaded.detail()).contains("damaged", "valid record follows");
        assertThat(loaded.aside()).isEqualTo(dir.resolve("journal.corrupt-20260102T030405.678Z"));
        assertThat(Files.readAllBytes(loaded.aside())).isEqualTo(bytes);
        assertThat(dir.resolve("state.json.corrupt-20260102T030405.678Z")).exists();
        assertThat(store.file()).doesNotExist();
        assertThat(store.journal()).doesNotExist();
    }

    @Test
    void aSnapshotFoldsTheJournalInAndAJournalOlderThanTheSnapshotIsIgnored() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.compactEvery(3);
        DesiredState state = sample();
        store.write(state);
        final long head = Files.size(store.journal());
        byte[] before = null;
        for (int i = 0; i < 3; i++)
        {
            state = withMachine(state, "n" + i, 10 + i);
            store.write(state);
            if (i == 1)
            {
                before = Files.readAllBytes(store.journal());
            }
        }
        // the 3rd change was appended as the 3rd record, then the snapshot folded the journal in and started it again
        assertThat(store.snapshots()).isEqualTo(2);
        assertThat(Files.size(store.journal())).isEqualTo(head);
        assertThat(Files.readString(store.file())).contains("\"n2\"");
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(state);
        // a journal older than the snapshot that holds no marker of it (a synchronous snapshot's crash between the
        // two renames, of a change the old journal never got): the snapshot holds more than the journal
        Files.write(store.journal(), before);
        final StateStore again = new StateStore(dir, clock);
        assertThat(again.load().state()).as("the snapshot holds what the old journal held").isEqualTo(state);
        // and the next change does not append to that journal: it writes a snapshot and a new journal
        final DesiredState next = withMachine(state, "n9", 19);
        again.write(next);
        assertThat(again.snapshots()).isEqualTo(1);
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(next);
    }

    @Test
    void aStartReplaysTheJournalAndTheFirstWriteAfterItFoldsItIntoASnapshot() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.write(sample());
        final DesiredState s2 = withMachine(sample(), "m5", 5);
        store.write(s2);
        final StateStore again = new StateStore(dir, clock);
        assertThat(again.load().state()).isEqualTo(s2);
        final DesiredState s3 = withMachine(s2, "m6", 6);
        again.write(s3);
        assertThat(again.snapshots()).isEqualTo(1);
        assertThat(Files.readString(store.file())).contains("\"m6\"");
    }

    @Test
    void aStateFileFromBeforeTheJournalLoadsAndTheFirstChangeStartsTheJournal() throws Exception
    {
        // exactly what an egressd before the journal wrote: state.json alone, indented JSON
        Files.writeString(store(dir).file(), "{\n  \"version\" : 1,\n  \"host\" : {\"region\" : \"ord\", "
            + "\"block_count\" : 64, \"block_size\" : 1024, \"destination_cap\" : 1024},\n  \"apps\" : [ {\"id\" : "
            + "\"a1\", \"fail_closed\" : true, \"pairs\" : [ {\"ipv4\" : \"203.0.113.10\", \"ipv6\" : \"2001:db8::10\", "
            + "\"drained\" : false} ], \"waiting\" : [ \"m9\" ]} ],\n  \"machines\" : [ {\"id\" : \"m1\", \"app\" : "
            + "\"a1\", \"interface\" : \"tap-m1\", \"ipv4\" : \"10.77.0.2\", \"ipv6\" : \"fd77::2\", \"slot\" : "
            + "{\"pair\" : \"203.0.113.10\", \"block\" : 3}}, {\"id\" : \"m2\", \"app\" : \"a1\", \"interface\" : "
            + "\"tap-m2\", \"ipv4\" : \"10.77.0.3\", \"machine_scoped\" : {\"ipv4\" : \"203.0.113.20\", \"ipv6\" : "
            + "\"2001:db8::20\"}} ],\n  \"recovered\" : [ {\"kind\" : \"snat4\", \"address\" : \"10.77.0.9\", "
            + "\"egress\" : \"203.0.113.30\", \"first_port\" : 1024, \"last_port\" : 2047} ]\n}\n");
        final StateStore store = new StateStore(dir, clock);
        final StateStore.Loaded loaded = store.load();
        assertThat(loaded.status()).isEqualTo(StateStore.Status.LOADED);
        assertThat(loaded.state()).isEqualTo(sample());
        assertThat(store.journal()).doesNotExist();
        final DesiredState s2 = withMachine(sample(), "m5", 5);
        store.write(s2);
        assertThat(store.snapshots()).as("the first change writes a snapshot and starts the journal").isEqualTo(1);
        assertThat(store.journal()).exists();
        final DesiredState s3 = withMachine(s2, "m6", 6);
        store.write(s3);
        assertThat(store.snapshots()).isEqualTo(1);
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(s3);
    }

    private StateStore store(final Path where)
    {
        return new StateStore(where, clock);
    }

    @Test
    void anUnwritableDirectoryFailsTheWriteAndLeavesWhatIsOnDiskAsItWas() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.write(sample());
        final DesiredState s2 = withMachine(sample(), "m5", 5);
        store.write(s2);
        StateFiles.blockWrites(dir);
        assertThatThrownBy(() -> store.write(withMachine(s2, "m6", 6)))
            .isInstanceOf(StateStore.StateWriteException.class)
            .hasMessageContaining(store.journal().toString()).hasMessageContaining("Is a directory");
        assertThatThrownBy(() -> store.snapshot(withMachine(s2, "m6", 6)))
            .isInstanceOf(StateStore.StateWriteException.class)
            .hasMessageContaining(dir.resolve(StateStore.TEMP).toString());
        StateFiles.unblockWrites(dir);
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(s2);
        final DesiredState s3 = withMachine(s2, "m7", 7);
        store.write(s3);
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(s3);
    }

    @Test
    void aFailedAppendIsCutOffSoTheJournalEndsAtTheLastAnsweredChange() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.write(sample());
        final DesiredState s2 = withMachine(sample(), "m5", 5);
        store.write(s2);
        final long size = Files.size(store.journal());
        // garbage after the last answered record, as a write that failed half-way leaves
        Files.write(store.journal(), new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13},
            java.nio.file.StandardOpenOption.APPEND);
        final DesiredState s3 = withMachine(s2, "m6", 6);
        store.write(s3); // written at the end of the last good record, over the garbage
        assertThat(Files.size(store.journal())).isGreaterThan(size);
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(s3);
    }

    @Test
    void journalFramingTellsATornTailFromADamagedMiddle()
    {
        final byte[] a = Journal.frame("{\"a\":1}".getBytes(java.nio.charset.StandardCharsets.UTF_8));
        final byte[] b = Journal.frame("{\"b\":2}".getBytes(java.nio.charset.StandardCharsets.UTF_8));
        final byte[] both = new byte[a.length + b.length];
        System.arraycopy(a, 0, both, 0, a.length);
        System.arraycopy(b, 0, both, a.length, b.length);
        final Journal.Read whole = Journal.read(both);
        assertThat(whole.payloads()).hasSize(2);
        assertThat(whole.torn()).isFalse();
        assertThat(whole.corrupt()).isNull();
        // a damaged length (the two copies disagree) in the first record, the second intact: corrupt
        final byte[] badLength = both.clone();
        badLength[3] ^= 1;
        assertThat(Journal.read(badLength).corrupt()).contains("byte 0");
        // the same damage in the last record: torn
        final byte[] badTail = both.clone();
        badTail[a.length + 3] ^= 1;
        final Journal.Read torn = Journal.read(badTail);
        assertThat(torn.torn()).isTrue();
        assertThat(torn.payloads()).hasSize(1);
        assertThat(torn.valid()).isEqualTo(a.length);
    }

    @Test
    void aStateNotInIdOrderIsWrittenWholeSoItReadsBackExactly() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.write(sample());
        final List<DesiredState.MachineEntry> reversed = new java.util.ArrayList<>(sample().machines());
        java.util.Collections.reverse(reversed);
        final DesiredState unsorted = new DesiredState(1, sample().host(), sample().apps(), reversed,
            sample().recovered());
        store.write(unsorted);
        assertThat(store.snapshots()).isEqualTo(2);
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(unsorted);
        // and a sorted one after it goes to the journal again
        store.write(withMachine(sample(), "m5", 5));
        assertThat(store.snapshots()).isEqualTo(2);
        assertThat(new StateStore(dir, clock).load().state()).isEqualTo(withMachine(sample(), "m5", 5));
    }
}
