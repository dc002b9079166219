package dev.egressd.agent.state;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationContext;
import com.fasterxml.jackson.databind.JsonDeserializer;
import com.fasterxml.jackson.databind.deser.DeserializationProblemHandler;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Clock;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

/**
 * The daemon's desired state on disk: a snapshot, {@code <state-dir>/state.json}, and a journal of the changes
 * accepted since, {@code <state-dir>/journal} (docs/design.md, "The state on disk").
 *
 * <p>A change ({@link #write}) appends one small record to the journal (what changed: the apps, machines and lists
 * it touched, see {@link StateChange}) and forces it to disk; nothing is answered before that. Every
 * {@value #COMPACT_RECORDS} records, or once the journal is as large as the snapshot, the whole state is written as
 * a new snapshot instead and the journal started anew.
 *
 * <p>The snapshot is written atomically as it always was: the JSON goes to {@code state.json.tmp} in the same
 * directory, is forced to disk, renamed over {@code state.json}, and the directory is forced. Only then is the new
 * journal (first record: the SHA-256 of the snapshot it follows) written to {@code journal.tmp}, forced and renamed
 * over {@code journal}. A journal whose first record names another snapshot is older than the snapshot (a crash
 * between the two renames) and is ignored: the snapshot holds everything it held.
 *
 * <p>At start-up ({@link #load()}) the snapshot is read and the journal replayed over it. A torn last record (a crash
 * while it was being written: the change was never answered) is dropped and cut off. A damaged record with a valid
 * one after it, or a snapshot that cannot be read, means the state on disk cannot be trusted: both files are moved
 * aside and the caller rebuilds from the kernel. A {@code state.json} without a journal (written by an egressd
 * before the journal) loads as it is; the first change then writes a snapshot and starts the journal.
 *
 * <p>Once the snapshot's rename succeeded the new file is what the next start reads, so a write that fails after it
 * (the directory fsync, the journal's rotation) is still committed: it is logged loudly, not reported as a failure
 * (the caller must not undo a change the next start would apply), and the next change writes a snapshot again.
 * A failed append is cut off again, so the journal ends at the last answered change.
 *
 * <p><strong>Compaction off the writer.</strong> When the journal is due for compaction, {@link #write} still appends
 * the change (so it is on disk when the call returns) and hands the state, an immutable value, with the journal's
 * length at that record, to the snapshot executor ({@link #snapshotsOn}; by default the caller's own thread). There:
 * (1) the JSON is written to {@code state.json.tmp} and forced; (2) a marker record is appended to the journal and
 * forced, naming that snapshot by its SHA-256 and the first record it does not hold (the writer kept appending
 * meanwhile); (3) the temp file is renamed over {@code state.json} and the directory forced; (4) the records the
 * snapshot does not hold (but the marker) are copied behind a new journal head naming the snapshot, and that journal is renamed over
 * the old one. Steps 2 and 4 hold the store's lock for a small append or copy; the snapshot's serialisation and its
 * large fsync do not. A crash at any step loses nothing answered: before step 3 the old snapshot and the whole
 * journal are read (markers change nothing); between 3 and 4 the journal names the older snapshot, and start-up
 * replays the records from the one the marker of the snapshot it finds names ({@link #load()}); a journal naming
 * another snapshot without such a marker is older than the snapshot, which holds all of it (a synchronous
 * snapshot). The journal is compacted only after the new snapshot is durable. If the background snapshot fails,
 * the journal keeps growing and a snapshot is tried again a second later.
 *
 * <p>One writer: {@link #write}, {@link #snapshot} and {@link #load} are called by the daemon's control loop only;
 * the background snapshot shares the journal with it under the store's lock.
 */
public final class StateStore
{
    /** The state file's name. */
    public static final String FILE = "state.json";

    /** The temp file a write goes through. */
    public static final String TEMP = "state.json.tmp";

    /** The journal of changes since the snapshot. */
    public static final String JOURNAL = "journal";

    /** The temp file a new journal goes through. */
    public static final String JOURNAL_TEMP = "journal.tmp";

    /** A snapshot is written after this many journal records. */
    public static final int COMPACT_RECORDS = 1000;

    /**
     * What {@link #preallocated()} grows the journal by, in zeros, ahead of its records: an append then overwrites
     * zeros already on disk, so its fdatasync forces the record alone and not the file's new size too (a metadata
     * change, a commit of the filesystem's own journal on ext4).
     */
    public static final int PREALLOCATE = 128 << 10;

    /** The journal may grow to the snapshot's size, and to at least this, before a snapshot replaces it. */
    private static final long MIN_JOURNAL_BYTES = 64 << 10;

    /** The lock file that keeps two daemons off one state directory. */
    public static final String LOCK = "lock";

    private static final Logger LOG = LoggerFactory.getLogger(StateStore.class);
    private static final DateTimeFormatter STAMP = DateTimeFormatter.ofPattern("yyyyMMdd'T'HHmmss.SSS'Z'")
        .withZone(ZoneOffset.UTC);

    /** Forces a directory's entries to disk; a seam so tests can make it fail. */
    @FunctionalInterface
    public interface DirectorySync
    {
        /** fsync of the directory itself. */
        DirectorySync FSYNC = dir ->
        {
            try (FileChannel channel = FileChannel.open(dir, StandardOpenOption.READ))
            {
                channel.force(true);
            }
        };

        /**
         * Forces the directory's entries to disk.
         *
         * @param dir the directory.
         * @throws IOException if it failed.
         */
        void force(Path dir) throws IOException;
    }

    private final Path dir;
    private final Clock clock;
    private final DirectorySync directorySync;
    private final ObjectMapper mapper = new ObjectMapper()
        .enable(SerializationFeature.INDENT_OUTPUT)
        .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
        .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
        .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    /** Journal records: compact, one line of JSON each. */
    private final ObjectMapper records = new ObjectMapper()
        .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
        .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
        .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    private FileChannel lockChannel;

    // what is on disk: written by the writer and by the background snapshot, under this store's lock
    /** The state the snapshot plus the journal hold, or null when unknown (the next write is a snapshot). */
    private DesiredState last;
    /** Whether the next write must be a snapshot (no journal that the next append can go to). */
    private boolean needSnapshot = true;
    /** Whether a snapshot should be taken in the background after the next append (a start found records). */
    private boolean snapshotDue;
    private long journalBytes;
    private int journalRecords;
    /** Bumped whenever the journal is replaced (compacted or started again): offsets taken before it are stale. */
    private long compactions;
    private long snapshotBytes;
    private int compactRecords = COMPACT_RECORDS;
    /** How long the record being appended took to diff and serialise, for {@link JournalEvent}. */
    private long recordNanos;
    /** Zeros written ahead of the journal's records ({@link #preallocated()}), 0 for none. Under the lock. */
    private int preallocate;
    /** Whether {@link #preallocated()} asked for it: it is decided at {@link #load()}, by the filesystem. */
    private boolean preallocateWanted;
    /** The journal file's length: its records, then zeros. Under the lock. */
    private long journalAllocated;
    private volatile long syncs;
    private volatile long bytesWritten;
    private volatile long snapshots;
    private volatile long snapshotFailures;

    /** Where snapshots due by the journal's size run; the caller's thread unless {@link #snapshotsOn} says. */
    private java.util.concurrent.Executor snapshotExecutor = Runnable::run;
    /** The background snapshot in flight, or null; writer thread only. */
    private java.util.concurrent.CompletableFuture<Void> inFlight;
    /** No background snapshot is started before this (System.nanoTime) after one failed. */
    private long retryAt;
    private boolean retryAtSet;
    /** Seen at each step of a background snapshot; tests copy the directory there to simulate a crash. */
    private java.util.function.Consumer<String> steps = step -> { };

    /** A read-only run of zeros the preallocation is written from. */
    private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(64 << 10).asReadOnlyBuffer();

    /**
     * An append that leaves fewer zeros than this after its record grows the preallocation (a record longer than
     * what is left would otherwise grow the file's size in the fdatasync it waits for).
     */
    private static final long HEADROOM = 16 << 10;

    /** The start of a marker record's payload: {@code {"snapshot":"<sha-256>"}}. */
    private static final byte[] MARKER_PREFIX = "{\"snapshot\":".getBytes(java.nio.charset.StandardCharsets.UTF_8);

    /** A journal's first record: which snapshot it follows. */
    record JournalHead(@JsonProperty("journal") int journal, @JsonProperty("base") String base)
    {
    }

    /**
     * A record appended just before a background snapshot is renamed into place: that snapshot holds the journal's
     * records before index {@code from} (the head is record 0), the ones from there on were appended after it.
     */
    record SnapshotMarker(@JsonProperty("snapshot") String snapshot, @JsonProperty("from") int from)
    {
    }

    /**
     * Creates a store.
     *
     * @param dir   the state directory; created if missing.
     * @param clock the clock that stamps a corrupt file's new name.
     */
    public StateStore(final Path dir, final Clock clock)
    {
        this(dir, clock, DirectorySync.FSYNC);
    }

    /**
     * Creates a store with a given directory sync (tests make it fail).
     *
     * @param dir           the state directory; created if missing.
     * @param clock         the clock that stamps a corrupt file's new name.
     * @param directorySync how the directory is forced to disk.
     */
    public StateStore(final Path dir, final Clock clock, final DirectorySync directorySync)
    {
        this.dir = dir;
        this.clock = clock;
        this.directorySync = directorySync;
    }

    /**
     * Creates a store with the system clock.
     *
     * @param dir the state directory.
     */
    public StateStore(final Path dir)
    {
        this(dir, Clock.systemUTC());
    }

    /**
     * Keeps {@value #PREALLOCATE} bytes of zeros written ahead of the journal's last record (docs/design.md, "The
     * state on disk"): an append overwrites them in place, so the file's size does not change and its fdatasync
     * has no metadata to commit. Zeros after the last record read as the journal's end ({@link Journal#read}), and a
     * record torn by a crash is still told by its CRC. Not on a filesystem in memory (tmpfs, ramfs: decided at
     * {@link #load()}), where an fdatasync costs nothing and the zeros would only take memory.
     *
     * @return this store.
     */
    public StateStore preallocated()
    {
        synchronized (this)
        {
            preallocateWanted = true;
        }
        return this;
    }

    /**
     * Preallocates this many bytes of zeros whatever the filesystem (tests), 0 for none.
     *
     * @param bytes the bytes.
     * @return this store.
     */
    StateStore preallocate(final int bytes)
    {
        synchronized (this)
        {
            preallocateWanted = false;
            preallocate = bytes;
        }
        return this;
    }

    /** Whether the state directory is on a filesystem in memory, where preallocating gains nothing. */
    private boolean inMemory()
    {
        try
        {
            final String type = Files.getFileStore(dir).type();
            return "tmpfs".equals(type) || "ramfs".equals(type);
        }
        catch (final IOException e)
        {
            return false;
        }
    }

    /**
     * Runs the snapshots that compaction makes due on an executor (the daemon: a thread of their own), so a change
     * never waits for a whole snapshot; without it they run on the writer's thread inside {@link #write}.
     *
     * @param executor where they run.
     * @return this store.
     */
    public StateStore snapshotsOn(final java.util.concurrent.Executor executor)
    {
        snapshotExecutor = java.util.Objects.requireNonNull(executor, "executor");
        return this;
    }

    /**
     * Runs the snapshots that compaction makes due on a thread of their own ({@code egressd-snapshot}, a daemon
     * thread that ends when idle).
     *
     * @return this store.
     */
    public StateStore snapshotsInBackground()
    {
        final java.util.concurrent.ThreadPoolExecutor executor = new java.util.concurrent.ThreadPoolExecutor(0, 1,
            5, java.util.concurrent.TimeUnit.SECONDS, new java.util.concurrent.LinkedBlockingQueue<>(), r ->
            {
                final Thread t = new Thread(r, "egressd-snapshot");
                t.setDaemon(true);
                return t;
            });
        return snapshotsOn(executor);
    }

    /**
     * Sees each step of a background snapshot by name (tests simulate a crash there).
     *
     * @param observer told {@code temp-written}, {@code marked}, {@code renamed}, {@code journal-written} (under
     *                 the store's lock: the observer must not write then) and {@code journal-renamed}.
     */
    void observeSteps(final java.util.function.Consumer<String> observer)
    {
        steps = observer;
    }

    /**
     * Waits for the background snapshot in flight, if any (its failure is logged where it happens, not here).
     * Writer thread only.
     */
    public void awaitSnapshot()
    {
        final java.util.concurrent.CompletableFuture<Void> f = inFlight;
        if (f == null)
        {
            return;
        }
        try
        {
            f.join();
        }
        catch (final java.util.concurrent.CompletionException | java.util.concurrent.CancellationException e)
        {
            // already logged by the snapshot
        }
        inFlight = null;
    }

    /**
     * Background snapshots that failed (the journal holds the changes; one is tried again later).
     *
     * @return the count.
     */
    public long snapshotFailures()
    {
        return snapshotFailures;
    }

    /**
     * The state file.
     *
     * @return its path.
     */
    public Path file()
    {
        return dir.resolve(FILE);
    }

    /**
     * The journal.
     *
     * @return its path.
     */
    public Path journal()
    {
        return dir.resolve(JOURNAL);
    }

    /**
     * Changes how many records the journal holds before a snapshot (tests, benchmarks).
     *
     * @param records the count, at least 1.
     */
    public void compactEvery(final int records)
    {
        if (records < 1)
        {
            throw new IllegalArgumentException("records: must be at least 1, not " + records);
        }
        compactRecords = records;
    }

    /**
     * How many times data was forced to disk for a write (one per journal record or snapshot).
     *
     * @return the count.
     */
    public long syncs()
    {
        return syncs;
    }

    /**
     * Bytes written to the state directory by writes (records and snapshots).
     *
     * @return the count.
     */
    public long bytesWritten()
    {
        return bytesWritten;
    }

    /**
     * Snapshots written.
     *
     * @return the count.
     */
    public long snapshots()
    {
        return snapshots;
    }

    /** What {@link #load()} found. */
    public enum Status
    {
        /** No state file: a fresh start (or it was lost); rebuild from the kernel. */
        MISSING,
        /** The state file was read. */
        LOADED,
        /** The state file could not be read: it was moved aside; rebuild from the kernel. */
        CORRUPT
    }

    /**
     * The result of a load.
     *
     * @param status what was found.
     * @param state  the state read, or null unless LOADED.
     * @param aside  where a corrupt file was moved, or null.
     * @param detail why the file was judged corrupt, or null.
     */
    public record Loaded(Status status, DesiredState state, Path aside, String detail)
    {
    }

    /**
     * Takes an exclusive lock on the state directory for the life of the process.
     *
     * @throws IOException if another process holds it, or the directory cannot be created.
     */
    public void lock() throws IOException
    {
        Files.createDirectories(dir);
        final FileChannel channel = FileChannel.open(dir.resolve(LOCK), StandardOpenOption.CREATE,
            StandardOpenOption.WRITE);
        final FileLock lock;
        try
        {
            lock = channel.tryLock();
        }
        catch (final OverlappingFileLockException e)
        {
            channel.close();
            throw new IOException("state directory " + dir + " is already locked by this process", e);
        }
        if (lock == null)
        {
            channel.close();
            throw new IOException("state directory " + dir + " is locked by another egressd");
        }
        lockChannel = channel;
    }

    /** Releases the lock taken by {@link #lock()}, if any. */
    public void unlock()
    {
        if (lockChannel != null)
        {
            try
            {
                lockChannel.close();
            }
            catch (final IOException e)
            {
                LOG.warn("closing the state lock: {}", e.toString());
            }
            lockChannel = null;
        }
    }

    /**
     * Reads the snapshot and replays the journal over it. A corrupt snapshot or journal is moved aside to
     * {@code <name>.corrupt-<UTC time>} and reported loudly, and the caller rebuilds from the kernel; a torn last
     * journal record is dropped.
     *
     * @return what was found.
     * @throws IOException if the directory cannot be read, a file cannot be moved aside, or the file was
     *                     written by a newer egressd (it is left alone so a downgrade destroys nothing).
     */
    public Loaded load() throws IOException
    {
        awaitSnapshot();
        synchronized (this)
        {
            return loadLocked();
        }
    }

    private Loaded loadLocked() throws IOException
    {
        if (preallocateWanted)
        {
            preallocate = inMemory() ? 0 : PREALLOCATE;
        }
        snapshotDue = false;
        last = null;
        needSnapshot = true;
        final Path file = file();
        final byte[] bytes;
        try
        {
            bytes = Files.readAllBytes(file);
        }
        catch (final NoSuchFileException e)
        {
            if (Files.exists(journal()))
            {
                // a journal is only ever started after its snapshot: without it, it cannot be replayed
                final Path aside = aside(journal());
                LOG.error("STATE: {} without {}; moved it to {}", journal(), file, aside);
            }
            return new Loaded(Status.MISSING, null, null, null);
        }
        String problem;
        try
        {
            final List<String> unknown = new ArrayList<>();
            final DesiredState state = mapper.reader().withHandler(new DeserializationProblemHandler()
            {
                @Override
                public boolean handleUnknownProperty(final DeserializationContext ctxt, final JsonParser p,
                    final JsonDeserializer<?> deserializer, final Object bean, final String name) throws IOException
                {
                    // A field a newer egressd of the same format version added: skipped with a warning, since
                    // judging the whole file corrupt would throw every placement away.
                    final String at = p.getParsingContext().pathAsPointer().toString();
                    unknown.add(at.endsWith("/" + name) ? at : at + "/" + name);
                    p.skipChildren();
                    return true;
                }
            }).readValue(bytes, DesiredState.class);
            if (!unknown.isEmpty())
            {
                LOG.warn("state: {} has fields this egressd does not know, ignored (written by a newer egressd?): {}",
                    file, unknown);
            }
            if (state == null || state.host() == null)
            {
                problem = "no host section";
            }
            else if (state.version() > DesiredState.VERSION)
            {
                throw new IOException(file + " has format version " + state.version() + " but this egressd reads "
                    + "up to " + DesiredState.VERSION + ": run the newer egressd or move the file away by hand");
            }
            else if (state.version() < 1)
            {
                problem = "format version " + state.version();
            }
            else
            {
                snapshotBytes = bytes.length;
                return replay(state, sha256(bytes));
            }
        }
        catch (final JsonProcessingException e)
        {
            problem = e.getOriginalMessage();
        }
        return corrupt(file, problem);
    }

    private Loaded replay(final DesiredState snapshot, final String base) throws IOException
    {
        final Path path = journal();
        final byte[] bytes;
        try
        {
            bytes = Files.readAllBytes(path);
        }
        catch (final NoSuchFileException e)
        {
            // a state.json from before the journal (or a crash before the first journal): the next write starts one
            last = snapshot;
            return new Loaded(Status.LOADED, snapshot, null, null);
        }
        final Journal.Read read = Journal.read(bytes);
        if (read.corrupt() != null)
        {
            return corrupt(path, read.corrupt());
        }
        if (read.payloads().isEmpty())
        {
            // it is written whole through a rename: an empty one is damaged, and cannot tell which state it follows
            return corrupt(path, "no first record");
        }
        final JournalHead head;
        try
        {
            head = records.readValue(read.payloads().get(0), JournalHead.class);
        }
        catch (final JsonProcessingException e)
        {
            return corrupt(path, "first record: " + e.getOriginalMessage());
        }
        if (head == null || head.base() == null || head.journal() != 1)
        {
            return corrupt(path, "first record: not a journal head of format 1");
        }
        int from = 1;
        if (!head.base().equals(base))
        {
            final int marker = markerFrom(read.payloads(), base);
            if (marker < 0)
            {
                // a crash after a synchronous snapshot's rename and before the journal's: the snapshot holds it all
                LOG.info("state: {} follows an older snapshot than {}; ignored (the snapshot holds it)", path,
                    file());
                last = snapshot;
                return new Loaded(Status.LOADED, snapshot, null, null);
            }
            // a crash after a background snapshot's rename and before the journal's: the snapshot holds the records
            // up to its marker, the ones after it were appended while it was written
            LOG.info("state: {} follows an older snapshot than {}; replaying the {} records written after it", path,
                file(), read.payloads().size() - marker);
            from = marker;
        }
        DesiredState state = snapshot;
        for (int i = from; i < read.payloads().size(); i++)
        {
            final byte[] payload = read.payloads().get(i);
            if (isMarker(payload))
            {
                continue; // a background snapshot that was, or was not, renamed into place: changes nothing
            }
            final StateChange change;
            try
            {
                change = records.readValue(payload, StateChange.class);
            }
            catch (final JsonProcessingException e)
            {
                return corrupt(path, "record " + i + ": " + e.getOriginalMessage());
            }
            state = change.applyTo(state);
        }
        journalBytes = read.valid();
        journalAllocated = bytes.length;
        journalRecords = read.payloads().size() - 1;
        last = state;
        needSnapshot = false;
        // the first write after a start folds the journal into a snapshot (in the background when so set)
        snapshotDue = journalRecords > 0;
        if (read.torn())
        {
            LOG.warn("state: the last {} bytes of {} are a record torn by a crash (its change was never answered); "
                + "dropped", bytes.length - read.valid(), path);
            try (FileChannel channel = FileChannel.open(path, StandardOpenOption.WRITE))
            {
                channel.truncate(read.valid());
                channel.force(true);
                journalAllocated = read.valid();
            }
            catch (final IOException e)
            {
                LOG.warn("state: could not cut the torn record off {} ({}); the next write is a snapshot", path,
                    e.toString());
                needSnapshot = true;
            }
        }
        return new Loaded(Status.LOADED, state, null, null);
    }

    private static boolean isMarker(final byte[] payload)
    {
        return java.util.Arrays.equals(payload, 0, Math.min(payload.length, MARKER_PREFIX.length), MARKER_PREFIX,
            0, MARKER_PREFIX.length);
    }

    /** The first record the snapshot {@code sha} does not hold, as its last marker says, or -1 without one. */
    private int markerFrom(final List<byte[]> payloads, final String sha)
    {
        for (int i = payloads.size() - 1; i >= 1; i--)
        {
            if (isMarker(payloads.get(i)))
            {
                try
                {
                    final SnapshotMarker marker = records.readValue(payloads.get(i), SnapshotMarker.class);
                    if (marker != null && sha.equals(marker.snapshot()) && marker.from() >= 1 && marker.from() <= i)
                    {
                        return marker.from();
                    }
                }
                catch (final IOException e)
                {
                    LOG.warn("state: record {} of {} looks like a snapshot marker but is not one ({})", i, journal(),
                        e.toString());
                }
            }
        }
        return -1;
    }

    private Loaded corrupt(final Path bad, final String problem) throws IOException
    {
        // the snapshot and the journal only mean something together: both go aside
        final Path snapshotAside = Files.exists(file()) ? aside(file()) : null;
        final Path journalAside = Files.exists(journal()) ? aside(journal()) : null;
        forceDirectory();
        final Path where = bad.equals(journal()) ? journalAside : snapshotAside;
        LOG.error("STATE FILE CORRUPT: {} ({}); moved it to {}{}; rebuilding the state from the kernel table",
            bad, problem, where, bad.equals(journal()) && snapshotAside != null ? " and " + file() + " to "
                + snapshotAside : journalAside != null && !bad.equals(journal()) ? " and " + journal() + " to "
                + journalAside : "");
        last = null;
        needSnapshot = true;
        return new Loaded(Status.CORRUPT, null, where, problem);
    }

    private Path aside(final Path file) throws IOException
    {
        final Path aside = file.resolveSibling(file.getFileName() + ".corrupt-" + STAMP.format(clock.instant()));
        Files.move(file, aside, StandardCopyOption.ATOMIC_MOVE);
        return aside;
    }

    private static String sha256(final byte[] bytes)
    {
        try
        {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
        }
        catch (final NoSuchAlgorithmException e)
        {
            throw new IllegalStateException("every JVM has SHA-256", e);
        }
    }

    /**
     * Persists a state: one journal record of what changed since the last write, forced to disk; or, when the
     * journal is due for compaction (or there is none to append to), a snapshot (see the class comment).
     *
     * @param state the state.
     * @throws IOException if it could not be written; what is on disk then still reads as before. Once a
     *                     snapshot is renamed into place the write counts as done: what fails after it is logged,
     *                     never thrown.
     */
    public void write(final DesiredState state) throws IOException
    {
        final boolean whole;
        synchronized (this)
        {
            whole = needSnapshot || last == null;
        }
        if (whole)
        {
            snapshot(state);
            return;
        }
        if (!StateChange.sortedById(state))
        {
            // replay puts apps and machines in id order (the allocator's): a state in another order is written
            // whole, so what is read back is exactly what was written
            LOG.warn("state: apps or machines not in id order; writing a snapshot instead of a journal record");
            snapshot(state);
            return;
        }
        final boolean due;
        final long atBytes;
        final int atRecords;
        final long atCompaction;
        synchronized (this)
        {
            final long started = System.nanoTime();
            final StateChange change = StateChange.between(last, state);
            if (change.isEmpty())
            {
                return;
            }
            final byte[] payload = records.writeValueAsBytes(change);
            recordNanos = System.nanoTime() - started;
            append(payload);
            last = state;
            due = snapshotDue || journalRecords >= compactRecords
                || journalBytes >= Math.max(MIN_JOURNAL_BYTES, snapshotBytes);
            atBytes = journalBytes;
            atRecords = journalRecords;
            atCompaction = compactions;
        }
        if (due)
        {
            startSnapshot(state, atBytes, atRecords, atCompaction);
        }
    }

    /** Appends one record and forces it to disk; on failure the journal is cut back. Under the lock. */
    private void append(final byte[] payload) throws IOException
    {
        final long started = System.nanoTime();
        final byte[] record = Journal.frame(payload);
        final Path path = journal();
        // opened for each append, not kept open: a journal made unwritable since (an immutable file, a file moved
        // aside) must refuse the next change
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.WRITE))
        {
            final long end = writeAt(channel, ByteBuffer.wrap(record), journalBytes);
            if (end > journalAllocated
                || preallocate > 0 && end + Math.min(HEADROOM, preallocate / 4) > journalAllocated)
            {
                // the file grows: by a run of zeros as well when preallocating, so the next appends do not
                final long from = Math.max(end, journalAllocated);
                journalAllocated = preallocate > 0 ? zeros(channel, from, end + preallocate) : end;
                bytesWritten += journalAllocated - from;
            }
            final long written = System.nanoTime();
            channel.force(false);
            final JournalEvent event = new JournalEvent();
            if (event.isEnabled())
            {
                event.bytes = record.length;
                event.record = recordNanos;
                event.write = written - started;
                event.force = System.nanoTime() - written;
                event.commit();
            }
            recordNanos = 0;
        }
        catch (final IOException e)
        {
            cutBack(path);
            throw new StateWriteException(describe(e, path), e);
        }
        journalBytes += record.length;
        journalRecords++;
        syncs++;
        bytesWritten += record.length;
    }

    /**
     * Starts a snapshot of a state the journal already holds, unless one is in flight or one failed less than a
     * second ago. Writer thread only.
     */
    private void startSnapshot(final DesiredState state, final long atBytes, final int atRecords,
        final long atCompaction)
    {
        if (inFlight != null && !inFlight.isDone())
        {
            return; // the journal keeps growing meanwhile; the next due write starts the next one
        }
        inFlight = null;
        if (retryAtSet && System.nanoTime() - retryAt < 0)
        {
            return;
        }
        final java.util.concurrent.CompletableFuture<Void> f = new java.util.concurrent.CompletableFuture<>();
        inFlight = f;
        try
        {
            snapshotExecutor.execute(() ->
            {
                try
                {
                    backgroundSnapshot(state, atBytes, atRecords, atCompaction);
                    f.complete(null);
                }
                catch (final RuntimeException | Error e)
                {
                    LOG.error("state: the background snapshot failed", e);
                    failedSnapshot();
                    f.completeExceptionally(e);
                }
            });
        }
        catch (final java.util.concurrent.RejectedExecutionException e)
        {
            inFlight = null;
            LOG.warn("state: no snapshot thread ({}); the journal holds the changes", e.toString());
        }
    }

    private synchronized void failedSnapshot()
    {
        snapshotFailures++;
        retryAt = System.nanoTime() + 1_000_000_000L;
        retryAtSet = true;
    }

    /**
     * Steps 1-4 of the class comment, on the snapshot executor, for a state the journal holds up to byte
     * {@code atBytes}, record {@code atRecords} (the writer goes on appending after them meanwhile).
     */
    private void backgroundSnapshot(final DesiredState state, final long atBytes, final int atRecords,
        final long atCompaction)
    {
        final byte[] bytes;
        final Path temp = dir.resolve(TEMP);
        try
        {
            bytes = mapper.writeValueAsBytes(state);
            writeSynced(temp, bytes);
        }
        catch (final IOException e)
        {
            LOG.error("STATE SNAPSHOT NOT WRITTEN: {}; the journal holds every change, retrying in a second",
                describe(e, temp));
            failedSnapshot();
            return;
        }
        steps.accept("temp-written");
        final String sha = sha256(bytes);
        final long markerStart;
        final long markerEnd;
        synchronized (this)
        {
            markerStart = journalBytes;
            if (needSnapshot || last == null)
            {
                return; // the writer lost its journal meanwhile: its next write is a whole snapshot anyway
            }
            if (compactions != atCompaction)
            {
                // the journal was compacted after the writer took its offsets (a snapshot in flight finished
                // between the write and this start): they no longer point into it; the next due write starts one
                return;
            }
            try
            {
                append(records.writeValueAsBytes(new SnapshotMarker(sha, atRecords + 1)));
                markerEnd = journalBytes;
            }
            catch (final IOException e)
            {
                LOG.error("STATE SNAPSHOT NOT WRITTEN: its marker could not be appended ({}); the journal holds "
                    + "every change, retrying in a second", e.getMessage());
                failedSnapshot();
                return;
            }
        }
        steps.accept("marked");
        try
        {
            Files.move(temp, file(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        }
        catch (final IOException e)
        {
            LOG.error("STATE SNAPSHOT NOT WRITTEN: {}; the journal holds every change, retrying in a second",
                describe(e, file()));
            failedSnapshot();
            return;
        }
        synchronized (this)
        {
            snapshots++;
            syncs++;
            bytesWritten += bytes.length;
        }
        steps.accept("renamed");
        if (!forceDirectoryOrLog())
        {
            // the journal with its marker reads right after either snapshot; it is compacted by the next one
            failedSnapshot();
            return;
        }
        final boolean rotated;
        synchronized (this)
        {
            rotated = rotate(sha, bytes.length, atBytes, atRecords, markerStart, markerEnd);
        }
        if (rotated)
        {
            steps.accept("journal-renamed");
        }
    }

    /**
     * Step 4, under the lock: a new journal of the snapshot's head and the records appended after the state it
     * holds (but its marker), renamed over the old one. On failure the old journal stays: with its marker it reads right after the new
     * snapshot, and the writer keeps appending to it.
     */
    private boolean rotate(final String sha, final long snapshotLength, final long heldBytes, final int recordsHeld,
        final long markerStart, final long markerEnd)
    {
        if (needSnapshot || last == null)
        {
            return false;
        }
        final Path journalTemp = dir.resolve(JOURNAL_TEMP);
        final byte[] next;
        try
        {
            final byte[] head = Journal.frame(records.writeValueAsBytes(new JournalHead(1, sha)));
            final int before = Math.toIntExact(markerStart - heldBytes);
            final int after = Math.toIntExact(journalBytes - markerEnd);
            next = java.util.Arrays.copyOf(head, head.length + before + after);
            try (FileChannel channel = FileChannel.open(journal(), StandardOpenOption.READ))
            {
                readFully(channel, ByteBuffer.wrap(next, head.length, before), heldBytes);
                readFully(channel, ByteBuffer.wrap(next, head.length + before, after), markerEnd);
            }
            writeSynced(journalTemp, next, preallocate);
            steps.accept("journal-written");
            Files.move(journalTemp, journal(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        }
        catch (final IOException | ArithmeticException e)
        {
            LOG.error("STATE JOURNAL NOT COMPACTED: {}; it still reads right after {} (its records after the "
                + "snapshot's marker are replayed), retrying in a second", e.getMessage(), file());
            failedSnapshot();
            return false;
        }
        bytesWritten += next.length + (long)preallocate;
        journalBytes = next.length;
        compactions++;
        journalAllocated = next.length + (long)preallocate;
        journalRecords -= recordsHeld + 1; // and the marker
        snapshotBytes = snapshotLength;
        snapshotDue = false;
        retryAtSet = false;
        if (!forceDirectoryOrLog())
        {
            needSnapshot = true; // the rename may be lost: appending to it could lose what follows
        }
        return true;
    }

    private void readFully(final FileChannel channel, final ByteBuffer buffer, final long from) throws IOException
    {
        long at = from;
        while (buffer.hasRemaining())
        {
            final int n = channel.read(buffer, at);
            if (n < 0)
            {
                throw new IOException(journal() + " is shorter than what was appended to it");
            }
            at += n;
        }
    }

    /** After a failed append: the journal must end at the last answered change again. */
    private void cutBack(final Path path)
    {
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.WRITE))
        {
            if (channel.size() > journalBytes)
            {
                channel.truncate(journalBytes);
                channel.force(true);
            }
            journalAllocated = journalBytes;
        }
        catch (final IOException e)
        {
            // a half record may be left at the end: a crash now drops it as torn; the next write replaces it all
            LOG.warn("state: could not cut a failed record off {} ({}); the next write is a snapshot", path,
                e.toString());
            needSnapshot = true;
        }
    }

    /**
     * Writes the whole state as a new snapshot and starts a new journal after it.
     *
     * @param state the state.
     * @throws IOException if the snapshot could not be written; the previous files are then intact.
     */
    public void snapshot(final DesiredState state) throws IOException
    {
        awaitSnapshot();
        synchronized (this)
        {
            snapshotLocked(state);
        }
    }

    /**
     * Writes the whole state as a new snapshot, unless the snapshot on disk already holds exactly it with nothing
     * journaled after it (a stop after a start that changed nothing: the rewrite would cost the stop a serialisation
     * and two fsyncs for the same bytes).
     *
     * @param state the state.
     * @return whether a snapshot was written.
     * @throws IOException if the snapshot could not be written; the previous files are then intact.
     */
    public boolean snapshotIfChanged(final DesiredState state) throws IOException
    {
        awaitSnapshot();
        synchronized (this)
        {
            if (!needSnapshot && journalRecords == 0 && state.equals(last))
            {
                return false;
            }
            snapshotLocked(state);
            return true;
        }
    }

    private void snapshotLocked(final DesiredState state) throws IOException
    {
        final byte[] bytes = mapper.writeValueAsBytes(state);
        final Path temp = dir.resolve(TEMP);
        try
        {
            Files.createDirectories(dir);
            writeSynced(temp, bytes);
            Files.move(temp, file(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        }
        catch (final IOException e)
        {
            throw new StateWriteException(describe(e, temp), e);
        }
        // From here on the new file is in place: the next start reads it, so this change is committed.
        last = state;
        snapshotBytes = bytes.length;
        needSnapshot = true;
        syncs++;
        snapshots++;
        bytesWritten += bytes.length;
        if (!forceDirectoryOrLog())
        {
            // the old journal stays: if the rename is lost, the old snapshot and its journal are what is read
            return;
        }
        final byte[] head = Journal.frame(records.writeValueAsBytes(new JournalHead(1, sha256(bytes))));
        final Path journalTemp = dir.resolve(JOURNAL_TEMP);
        try
        {
            writeSynced(journalTemp, head, preallocate);
            Files.move(journalTemp, journal(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        }
        catch (final IOException e)
        {
            LOG.error("STATE JOURNAL NOT STARTED: {} ({}); {} holds the change (it is what the next start reads); "
                + "the next change writes the whole state again", journal(), describe(e, journalTemp), file());
            return;
        }
        bytesWritten += head.length + (long)preallocate;
        journalBytes = head.length;
        compactions++;
        journalAllocated = head.length + (long)preallocate;
        journalRecords = 0;
        snapshotDue = false;
        needSnapshot = !forceDirectoryOrLog();
    }

    private static void writeSynced(final Path path, final byte[] bytes) throws IOException
    {
        writeSynced(path, bytes, 0);
    }

    /** Writes a file whole, then {@code zeros} bytes of zeros after it, and forces it to disk. */
    private static void writeSynced(final Path path, final byte[] bytes, final int zeros) throws IOException
    {
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
            StandardOpenOption.TRUNCATE_EXISTING))
        {
            final long end = writeAt(channel, ByteBuffer.wrap(bytes), 0);
            if (zeros > 0)
            {
                zeros(channel, end, end + zeros);
            }
            channel.force(true);
        }
    }

    /** Writes a buffer whole at a position; returns the position after it. */
    private static long writeAt(final FileChannel channel, final ByteBuffer buffer, final long from)
        throws IOException
    {
        long at = from;
        while (buffer.hasRemaining())
        {
            at += channel.write(buffer, at);
        }
        return at;
    }

    /** Writes zeros from {@code from} to {@code to} (not forced); returns {@code to}. */
    private static long zeros(final FileChannel channel, final long from, final long to) throws IOException
    {
        long at = from;
        while (at < to)
        {
            final ByteBuffer chunk = ZEROS.duplicate();
            chunk.limit((int)Math.min(chunk.capacity(), to - at));
            at = writeAt(channel, chunk, at);
        }
        return to;
    }



    private boolean forceDirectoryOrLog()
    {
        try
        {
            forceDirectory();
            return true;
        }
        catch (final IOException first)
        {
            LOG.warn("state: fsync of {} failed after the rename ({}); retrying once", dir, first.toString());
            try
            {
                forceDirectory();
                return true;
            }
            catch (final IOException again)
            {
                LOG.error("STATE DIRECTORY NOT SYNCED: {} holds the new state but the rename may not survive a "
                    + "power cut ({}); the change stands (it is what the next start reads); check the disk", file(),
                    again.toString());
                return false;
            }
        }
    }

    /**
     * The JSON text of a state, as written.
     *
     * @param state the state.
     * @return the text.
     * @throws IOException never in practice.
     */
    public String toJson(final DesiredState state) throws IOException
    {
        return mapper.writeValueAsString(state);
    }

    /**
     * A failed write of the state file, its message naming the file and the system's reason (the JDK gives only
     * the path for a permission error, and only the reason for a full disk).
     */
    public static final class StateWriteException extends IOException
    {
        private static final long serialVersionUID = 1L;

        StateWriteException(final String message, final IOException cause)
        {
            super(message, cause);
        }
    }

    /**
     * Says which file a failed write was at and why, as {@code <path>: <reason>}, the reason as the system
     * says it ("No space left on device", "Permission denied", "Read-only file system").
     *
     * @param e        the failure.
     * @param fallback the file being written when the failure does not name one.
     * @return the text.
     */
    public static String describe(final IOException e, final Path fallback)
    {
        if (e instanceof FileSystemException f)
        {
            final String file = f.getFile() != null ? f.getFile() : String.valueOf(fallback);
            String reason = f.getReason();
            if (reason == null)
            {
                reason = e instanceof AccessDeniedException ? "Permission denied"
                    : e instanceof NoSuchFileException ? "No such file or directory"
                    : e instanceof FileAlreadyExistsException ? "File exists"
                    : e.getClass().getSimpleName();
            }
            return file + ": " + reason;
        }
        return fallback + ": " + (e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName());
    }

    private void forceDirectory() throws IOException
    {
        directorySync.force(dir);
    }
}
