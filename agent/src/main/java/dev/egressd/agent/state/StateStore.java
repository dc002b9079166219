package dev.egressd.agent.state;

import com.fasterxml.jackson.core.JsonProcessingException;
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
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Clock;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;

/**
 * The daemon's desired state on disk: {@code <state-dir>/state.json}.
 *
 * <p>Writes are atomic and durable: the JSON goes to {@code state.json.tmp} in the same directory, is forced to
 * disk, renamed over {@code state.json} (an atomic rename), and then the directory itself is forced so the rename
 * survives a power cut. A crash at any point leaves either the old or the new file, never a mix; a temp file
 * left behind by a crash is ignored (and overwritten by the next write).
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

    private final Path dir;
    private final Clock clock;
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
        this.dir = dir;
        this.clock = clock;
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
            final DesiredState state = mapper.readValue(bytes, DesiredState.class);
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
     * @throws IOException if it could not be written; the previous file is then intact.
     */
    public void write(final DesiredState state) throws IOException
    {
        Files.createDirectories(dir);
        final byte[] bytes = mapper.writeValueAsBytes(state);
        final Path temp = dir.resolve(TEMP);
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
        forceDirectory();
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

    private void forceDirectory() throws IOException
    {
        try (FileChannel channel = FileChannel.open(dir, StandardOpenOption.READ))
        {
            channel.force(true);
        }
    }
}
