package dev.egressd.agent.state;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/** Test helpers for the state directory: what the next start would read, and a directory where writes fail. */
public final class StateFiles
{
    private static final String HELD = "journal.held-by-test";

    private StateFiles()
    {
    }

    /**
     * A state with one machine of app a1 put (or replaced) on a slot of pair 203.0.113.10, in id order.
     *
     * @param state the state.
     * @param id    the machine.
     * @param block its block on the pair (its guest address is 10.77.1.block).
     * @return the new state.
     */
    public static DesiredState withMachine(final DesiredState state, final String id, final int block)
    {
        final List<DesiredState.MachineEntry> machines = new ArrayList<>(state.machines());
        machines.removeIf(m -> m.id().equals(id));
        machines.add(new DesiredState.MachineEntry(id, "a1", "tap-" + id, "10.77.1." + block, null, null,
            new DesiredState.Slot("203.0.113.10", block), null));
        machines.sort(Comparator.comparing(DesiredState.MachineEntry::id));
        return new DesiredState(state.version(), state.host(), state.apps(), machines, state.recovered(),
            state.draining());
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
