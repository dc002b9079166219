package dev.egressd.agent.state;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayDeque;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/** The snapshot that compaction makes due, written off the writer's thread (StateStore's class comment). */
class BackgroundSnapshotTest
{
    @TempDir
    Path dir;

    @TempDir
    Path crashes;

    private final Clock clock = Clock.fixed(Instant.parse("2026-01-02T03:04:05.678Z"), ZoneOffset.UTC);

    private DesiredState loadFrom(final Path where) throws IOException
    {
        final StateStore.Loaded loaded = new StateStore(where, clock).load();
        assertThat(loaded.status()).as("load of %s", where).isEqualTo(StateStore.Status.LOADED);
        return loaded.state();
    }

    @Test
    void aDueSnapshotIsWrittenOffTheWriterAfterTheChangeIsInTheJournal() throws Exception
    {
        final ArrayDeque<Runnable> queued = new ArrayDeque<>();
        final StateStore store = new StateStore(dir, clock).snapshotsOn(queued::add);
        store.compactEvery(3);
        DesiredState state = StateStoreTest.sample();
        store.write(state); // the first write is a whole snapshot, on the writer: there is no journal yet
        final String first = Files.readString(store.file());
        for (int i = 0; i < 3; i++)
        {
            state = StateFiles.withMachine(state, "n" + i, 10 + i);
            store.write(state);
        }
        assertThat(queued).as("the third record made a snapshot due: handed off, not written").hasSize(1);
        assertThat(Files.readString(store.file())).as("the writer did not write the snapshot").isEqualTo(first);
        assertThat(loadFrom(dir)).as("the change is on disk when write returns").isEqualTo(state);
        final DesiredState atHandOff = state;
        // the writer goes on while the snapshot is pending: appended to the journal as usual, no second snapshot
        state = StateFiles.withMachine(state, "n3", 13);
        store.write(state);
        assertThat(queued).hasSize(1);
        queued.poll().run();
        assertThat(store.snapshots()).isEqualTo(2);
        assertThat(Files.readString(store.file())).as("the state handed off").isEqualTo(store.toJson(atHandOff));
        assertThat(loadFrom(dir)).as("the record written meanwhile was carried into the new journal")
            .isEqualTo(state);
        final String journal = new String(Files.readAllBytes(store.journal()), java.nio.charset.StandardCharsets.UTF_8);
        assertThat(journal).as("compacted: the new journal holds only what followed the snapshot")
            .contains("\"n3\"").doesNotContain("\"n0\"", "\"snapshot\"");
        state = StateFiles.withMachine(state, "n4", 14);
        store.write(state);
        assertThat(loadFrom(dir)).isEqualTo(state);
    }

    /** Without preallocation, and with a small one that the records outgrow (the journal grows in runs of zeros). */
    @ParameterizedTest(name = "preallocating {0} bytes")
    @ValueSource(ints = {0, 700})
    void aCrashAtEveryStepOfABackgroundSnapshotLosesNothingAnswered(final int preallocate) throws Exception
    {
        // inline: the steps run inside the due write
        final StateStore store = new StateStore(dir, clock).preallocate(preallocate);
        store.compactEvery(3);
        final DesiredState[] answered = {StateStoreTest.sample()};
        final Map<String, DesiredState> expected = new LinkedHashMap<>();
        final int[] extra = {100};
        store.observeSteps(step ->
        {
            try
            {
                // a crash now: what is on disk is what a restart reads (every write before this point was forced)
                final Path image = crashes.resolve(step);
                copy(dir, image);
                expected.put(step, answered[0]);
                if (!step.equals("journal-written"))
                {
                    // the writer keeps answering changes while the snapshot is written (it holds no lock here)
                    answered[0] = StateFiles.withMachine(answered[0], "w" + extra[0], extra[0] % 200);
                    extra[0]++;
                    store.write(answered[0]);
                }
            }
            catch (final IOException e)
            {
                throw new IllegalStateException(e);
            }
        });
        store.write(answered[0]);
        for (int i = 0; i < 3; i++)
        {
            answered[0] = StateFiles.withMachine(answered[0], "n" + i, 10 + i);
            store.write(answered[0]);
        }
        assertThat(expected.keySet()).containsExactly("temp-written", "marked", "renamed", "journal-written",
            "journal-renamed");
        for (final Map.Entry<String, DesiredState> crash : expected.entrySet())
        {
            final Path image = crashes.resolve(crash.getKey());
            assertThat(loadFrom(image)).as("a crash at %s", crash.getKey()).isEqualTo(crash.getValue());
            // and the daemon goes on from there: changes after the restart append and read back
            final StateStore again = new StateStore(image, clock).preallocate(preallocate);
            again.compactEvery(3);
            DesiredState after = again.load().state();
            for (int i = 0; i < 4; i++)
            {
                after = StateFiles.withMachine(after, "r" + i, 50 + i);
                again.write(after);
                assertThat(loadFrom(image)).as("after a crash at %s, change %d", crash.getKey(), i).isEqualTo(after);
            }
        }
        assertThat(loadFrom(dir)).isEqualTo(answered[0]);
    }

    @Test
    void aSnapshotThatCannotBeWrittenLeavesEveryChangeInTheJournal() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        store.compactEvery(2);
        DesiredState state = StateStoreTest.sample();
        store.write(state);
        final String first = Files.readString(store.file());
        Files.createDirectory(dir.resolve(StateStore.TEMP)); // the snapshot's temp file cannot be created
        for (int i = 0; i < 5; i++)
        {
            state = StateFiles.withMachine(state, "n" + i, 10 + i);
            store.write(state);
            assertThat(loadFrom(dir)).isEqualTo(state);
        }
        assertThat(store.snapshotFailures()).as("tried once, then not again within a second").isEqualTo(1);
        assertThat(Files.readString(store.file())).isEqualTo(first);
        Files.delete(dir.resolve(StateStore.TEMP));
        store.snapshot(state);
        assertThat(Files.readString(store.file())).contains("\"n4\"");
        assertThat(loadFrom(dir)).isEqualTo(state);
    }

    @ParameterizedTest(name = "preallocating {0} bytes")
    @ValueSource(ints = {0, 700, StateStore.PREALLOCATE})
    void onItsOwnThreadManyCompactionsUnderAStreamOfChangesReadBackExactly(final int preallocate) throws Exception
    {
        final StateStore store = new StateStore(dir, clock).snapshotsInBackground().preallocate(preallocate);
        store.compactEvery(5);
        DesiredState state = StateStoreTest.sample();
        store.write(state);
        for (int i = 0; i < 300; i++)
        {
            state = StateFiles.withMachine(state, "n" + (i % 40), 10 + i % 200);
            store.write(state);
        }
        store.awaitSnapshot();
        assertThat(store.snapshots()).isGreaterThan(3);
        assertThat(store.snapshotFailures()).isZero();
        assertThat(loadFrom(dir)).isEqualTo(state);
    }

    private static void copy(final Path from, final Path to) throws IOException
    {
        Files.createDirectories(to);
        try (Stream<Path> files = Files.list(from))
        {
            for (final Path f : (Iterable<Path>)files::iterator)
            {
                if (Files.isRegularFile(f) && !f.getFileName().toString().equals(StateStore.LOCK))
                {
                    Files.copy(f, to.resolve(f.getFileName()));
                }
            }
        }
    }
}
