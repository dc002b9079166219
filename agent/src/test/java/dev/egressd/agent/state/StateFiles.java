package dev.egressd.agent.state;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Test helpers for the state directory: what the next start would read, and a directory where writes fail. */
public final class StateFiles
{
    private static final String HELD = "journal.held-by-test";

    private StateFiles()
    {
    }

    /**
     * What the next start reads (snapshot plus journal), as the snapshot's JSON text.
     *
     * @param dir the state directory.
     * @return the text, or "" when there is no state.
     * @throws IOException if it cannot be read.
     */
    public static String onDisk(final Path dir) throws IOException
    {
        final StateStore store = new StateStore(dir);
        final StateStore.Loaded loaded = store.load();
        return loaded.state() == null ? "" : store.toJson(loaded.state());
    }

    /**
     * Makes every write fail as on a full disk (as root too): directories where the snapshot's temp file, the
     * journal and the journal's temp file go; the journal itself is kept aside until {@link #unblockWrites}.
     *
     * @param dir the state directory.
     * @throws IOException if it cannot be done.
     */
    public static void blockWrites(final Path dir) throws IOException
    {
        if (Files.exists(dir.resolve(StateStore.JOURNAL)))
        {
            Files.move(dir.resolve(StateStore.JOURNAL), dir.resolve(HELD));
        }
        Files.createDirectory(dir.resolve(StateStore.JOURNAL));
        Files.createDirectory(dir.resolve(StateStore.TEMP));
        Files.createDirectory(dir.resolve(StateStore.JOURNAL_TEMP));
    }

    /**
     * Undoes {@link #blockWrites}.
     *
     * @param dir the state directory.
     * @throws IOException if it cannot be done.
     */
    public static void unblockWrites(final Path dir) throws IOException
    {
        Files.delete(dir.resolve(StateStore.JOURNAL));
        Files.delete(dir.resolve(StateStore.TEMP));
        Files.delete(dir.resolve(StateStore.JOURNAL_TEMP));
        if (Files.exists(dir.resolve(HELD)))
        {
            Files.move(dir.resolve(HELD), dir.resolve(StateStore.JOURNAL));
        }
    }
}
