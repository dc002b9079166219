package dev.egressd.agent.state;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A journal with zeros written ahead of its records ({@link StateStore#preallocated()}): appends overwrite them in
 * place, zeros after the last record read as the end, and a record a crash tore is still dropped.
 */
class PreallocatedJournalTest
{
    @TempDir
    Path dir;

    private final Clock clock = Clock.fixed(Instant.parse("2026-01-02T03:04:05.678Z"), ZoneOffset.UTC);

    private StateStore.Loaded load() throws Exception
    {
        return new StateStore(dir, clock).load();
    }

    /** The journal's records: its bytes up to the end of the last valid record. */
    private long recordsEnd() throws Exception
    {
        return Journal.read(Files.readAllBytes(dir.resolve(StateStore.JOURNAL))).valid();
    }

    @Test
    void appendsOverwriteTheZerosAndTheFileKeepsItsSize() throws Exception
    {
        final StateStore store = new StateStore(dir, clock).preallocate(StateStore.PREALLOCATE);
        DesiredState state = StateStoreTest.sample();
        store.write(state); // the first write is a snapshot and a new journal: its head, then the zeros
        final long size = Files.size(store.journal());
        final long head = recordsEnd();
        assertThat(size).isEqualTo(head + StateStore.PREALLOCATE);
        for (int i = 0; i < 20; i++)
        {
            state = StateFiles.withMachine(state, "n" + i, 10 + i);
            store.write(state);
            assertThat(Files.size(store.journal())).as("change %d: no size change to commit", i).isEqualTo(size);
        }
        assertThat(recordsEnd()).isGreaterThan(head);
        final byte[] bytes = Files.readAllBytes(store.journal());
        final Journal.Read read = Journal.read(bytes);
        assertThat(read.torn()).as("the zeros are the end, not a torn record").isFalse();
        assertThat(read.corrupt()).isNull();
        assertThat(read.payloads()).hasSize(21);
        final StateStore.Loaded loaded = load();
        assertThat(loaded.status()).isEqualTo(StateStore.Status.LOADED);
        assertThat(loaded.state()).isEqualTo(state);
        assertThat(Files.readAllBytes(store.journal())).as("a start keeps the zeros").isEqualTo(bytes);
    }

    @Test
    void theJournalGrowsByRunsOfZerosOnceTheRecordsReachThem() throws Exception
    {
        final int run = 600;
        final StateStore store = new StateStore(dir, clock).preallocate(run);
        DesiredState state = StateStoreTest.sample();
        store.write(state);
        final List<Long> sizes = new ArrayList<>();
        for (int i = 0; i < 40; i++)
        {
            state = StateFiles.withMachine(state, "n" + i, 10 + i);
            store.write(state);
            final long size = Files.size(store.journal());
            assertThat(size - recordsEnd()).as("zeros after change %d", i).isPositive().isLessThanOrEqualTo(run);
            if (sizes.isEmpty() || sizes.get(sizes.size() - 1) != size)
            {
                sizes.add(size);
            }
            assertThat(load().state()).as("change %d reads back", i).isEqualTo(state);
        }
        assertThat(sizes.size()).as("grown a few times, not at every change: " + sizes).isBetween(3, 30);
    }

    @Test
    void aCrashInTheMiddleOfAnAppendDropsTheTornRecordAndTheNextChangeOverwritesIt() throws Exception
    {
        final StateStore store = new StateStore(dir, clock).preallocate(StateStore.PREALLOCATE);
        final DesiredState s1 = StateStoreTest.sample();
        store.write(s1);
        final DesiredState s2 = StateFiles.withMachine(s1, "m5", 5);
        store.write(s2);
        final int good = (int)recordsEnd();
        final DesiredState s3 = StateFiles.withMachine(s2, "m6", 6);
        store.write(s3);
        final int end = (int)recordsEnd();
        final byte[] all = Files.readAllBytes(store.journal());
        final byte[] snapshot = Files.readAllBytes(store.file());
        assertThat(end).isGreaterThan(good);
        for (int keep = good + 1; keep < end; keep++)
        {
            // a crash while the last record was written: a prefix of it reached the disk, zeros after it
            final byte[] crashed = Arrays.copyOf(Arrays.copyOf(all, keep), all.length);
            Files.write(store.file(), snapshot); // the last round's change after the restart wrote a snapshot
            Files.write(store.journal(), crashed);
            final StateStore again = new StateStore(dir, clock).preallocate(StateStore.PREALLOCATE);
            final StateStore.Loaded loaded = again.load();
            assertThat(loaded.status()).as("cut at %d", keep).isEqualTo(StateStore.Status.LOADED);
            assertThat(loaded.state()).as("cut at %d: the torn change was never answered", keep).isEqualTo(s2);
            assertThat(recordsEnd()).as("cut at %d", keep).isEqualTo(good);
            // the restarted daemon's next change goes where the torn one was, and reads back
            final DesiredState s4 = StateFiles.withMachine(s2, "m7", 7);
            again.write(s4);
            assertThat(load().state()).as("cut at %d, then a change", keep).isEqualTo(s4);
        }
        // the record's later part reached the disk and its start did not (its header is zeros): torn as well
        final byte[] headless = all.clone();
        Arrays.fill(headless, good, good + Journal.HEADER, (byte)0);
        Files.write(store.file(), snapshot);
        Files.write(store.journal(), headless);
        assertThat(Journal.read(headless).torn()).isTrue();
        assertThat(load().state()).isEqualTo(s2);
        // the whole record on disk: answered, kept
        Files.write(store.journal(), all);
        assertThat(load().state()).isEqualTo(s3);
    }

    @Test
    void aDamagedRecordWithValidOnesAfterItIsStillCorrupt() throws Exception
    {
        final StateStore store = new StateStore(dir, clock).preallocate(StateStore.PREALLOCATE);
        store.write(StateStoreTest.sample());
        final int head = (int)recordsEnd();
        store.write(StateFiles.withMachine(StateStoreTest.sample(), "m5", 5));
        store.write(StateFiles.withMachine(StateStoreTest.sample(), "m6", 6));
        final byte[] bytes = Files.readAllBytes(store.journal());
        bytes[head + 20] ^= 0x20;
        Files.write(store.journal(), bytes);
        final StateStore.Loaded loaded = load();
        assertThat(loaded.status()).isEqualTo(StateStore.Status.CORRUPT);
        assertThat(loaded.detail()).contains("damaged", "valid record follows");
    }

    @Test
    void aJournalWrittenWithoutZerosReadsTheSameAndZerosReadAsTheEndWithoutPreallocation() throws Exception
    {
        final StateStore plain = new StateStore(dir, clock);
        DesiredState state = StateStoreTest.sample();
        plain.write(state);
        state = StateFiles.withMachine(state, "m5", 5);
        plain.write(state);
        final byte[] bytes = Files.readAllBytes(plain.journal());
        // an upgrade: the journal an egressd without preallocation wrote, continued by one with it
        final StateStore upgraded = new StateStore(dir, clock).preallocate(StateStore.PREALLOCATE);
        assertThat(upgraded.load().state()).isEqualTo(state);
        state = StateFiles.withMachine(state, "m6", 6);
        upgraded.write(state);
        assertThat(Files.size(plain.journal())).as("it grew by a run of zeros")
            .isGreaterThan(bytes.length + StateStore.PREALLOCATE / 2);
        // and a downgrade: read by an egressd without preallocation, the zeros are the end
        final StateStore downgraded = new StateStore(dir, clock);
        assertThat(downgraded.load().state()).isEqualTo(state);
        state = StateFiles.withMachine(state, "m7", 7);
        downgraded.write(state);
        assertThat(load().state()).isEqualTo(state);
    }

    @Test
    void aStoreThatWantsPreallocationPreallocatesOnADiskButNotInMemory() throws Exception
    {
        final StateStore store = new StateStore(dir, clock).preallocated();
        assertThat(store.load().status()).isEqualTo(StateStore.Status.MISSING);
        store.write(StateStoreTest.sample());
        final String type = Files.getFileStore(dir).type();
        final long zeros = Files.size(store.journal()) - recordsEnd();
        if ("tmpfs".equals(type) || "ramfs".equals(type))
        {
            assertThat(zeros).as("on %s", type).isZero();
        }
        else
        {
            assertThat(zeros).as("on %s", type).isEqualTo(StateStore.PREALLOCATE);
        }
    }
}
