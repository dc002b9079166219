package dev.egressd.agent.state;

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
import java.time.Clock;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;

/**
 * The daemon's desired state on disk: {@code <state-dir>/state.json}.
 *
 * <p>Writes are atomic and durable: the JSON goes to {@code state.json.tmp} in the same directory, is forced to
 * disk, renamed over {@code state.json} (an atomic rename), and then the directory itself is forced so the rename
 * survives a power cut. A crash at any point leaves either the old or the new file, never a mix; a temp file
 * left behind by a crash is ignored (and overwritten by the next write).
 *
 * <p>Once the rename succeeded the new file is what the next start reads, so a write that fails after it (the
 * directory fsync) is still committed: it is retried once, logged loudly if it fails again, and not reported as
 * a failure (the caller must not undo a change the next start would apply).
 *
 * <p>Not thread-safe: the daemon's control loop is its only writer.
 */
public final class StateStore
{
    /** The state file's name. */
    public static final String FILE = "state.json";

    /** The temp file a write goes through. */
    public static final String TEMP = "state.json.tmp";

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
    private FileChannel lockChannel;

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
     * The state file.
     *
     * @return its path.
     */
    public Path file()
    {
        return dir.resolve(FILE);
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
     * Reads the state file. A corrupt file is moved aside to {@code state.json.corrupt-<UTC time>} and reported
     * loudly, and the caller rebuilds from the kernel.
     *
     * @return what was found.
     * @throws IOException if the directory cannot be read, the file cannot be moved aside, or the file was
     *                     written by a newer egressd (it is left alone so a downgrade destroys nothing).
     */
    public Loaded load() throws IOException
    {
        final Path file = file();
        final byte[] bytes;
        try
        {
            bytes = Files.readAllBytes(file);
        }
        catch (final NoSuchFileException e)
        {
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
                return new Loaded(Status.LOADED, state, null, null);
            }
        }
        catch (final JsonProcessingException e)
        {
            problem = e.getOriginalMessage();
        }
        final Path aside = dir.resolve(FILE + ".corrupt-" + STAMP.format(clock.instant()));
        Files.move(file, aside, StandardCopyOption.ATOMIC_MOVE);
        forceDirectory();
        LOG.error("STATE FILE CORRUPT: {} ({}); moved it to {}; rebuilding the state from the kernel table",
            file, problem, aside);
        return new Loaded(Status.CORRUPT, null, aside, problem);
    }

    /**
     * Writes the state atomically and durably (see the class comment).
     *
     * @param state the state.
     * @throws IOException if it could not be written; the previous file is then intact. Once the new file is
     *                     renamed into place the write counts as done: a failing directory fsync after it is
     *                     retried once and then logged, never thrown.
     */
    public void write(final DesiredState state) throws IOException
    {
        final byte[] bytes = mapper.writeValueAsBytes(state);
        final Path temp = dir.resolve(TEMP);
        try
        {
            Files.createDirectories(dir);
            try (FileChannel channel = FileChannel.open(temp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING))
            {
                final ByteBuffer buffer = ByteBuffer.wrap(bytes);
                while (buffer.hasRemaining())
                {
                    channel.write(buffer);
                }
                channel.force(true);
            }
            Files.move(temp, file(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        }
        catch (final IOException e)
        {
            throw new StateWriteException(describe(e, temp), e);
        }
        // From here on the new file is in place: the next start reads it, so this change is committed.
        try
        {
            forceDirectory();
        }
        catch (final IOException first)
        {
            LOG.warn("state: fsync of {} failed after the rename ({}); retrying once", dir, first.toString());
            try
            {
                forceDirectory();
            }
            catch (final IOException again)
            {
                LOG.error("STATE DIRECTORY NOT SYNCED: {} holds the new state but the rename may not survive a "
                    + "power cut ({}); the change stands (it is what the next start reads); check the disk", file(),
                    again.toString());
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
