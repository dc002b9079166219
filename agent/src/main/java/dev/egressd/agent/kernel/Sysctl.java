package dev.egressd.agent.kernel;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Reads and writes kernel parameters through {@code /proc/sys} of the calling thread's network namespace (the
 * {@code net.*} keys are per namespace), as {@code sysctl(8)} does, without running it. Used by the router role
 * ({@code net.ipv4.fwmark_reflect}, {@code rp_filter}, {@code src_valid_mark}) and by hosts ({@code arp_ignore},
 * {@code arp_announce}); see docs/region.md.
 *
 * <p>A key is written the sysctl way, dots between the parts ({@code net.ipv4.conf.all.arp_ignore}); a key with a
 * {@code /} is taken as the path under {@code /proc/sys} as it is, which is how an interface name holding a dot is
 * named ({@code net/ipv4/conf/eth0.100/rp_filter}).
 */
public final class Sysctl
{
    private static final Path PROC_SYS = Path.of("/proc/sys");

    private Sysctl()
    {
    }

    /**
     * The value of a kernel parameter.
     *
     * @param key e.g. {@code net.ipv4.conf.all.arp_ignore}.
     * @return the value without the trailing newline (several values stay separated by tabs, as the kernel
     *         prints them).
     * @throws IOException naming the key if it does not exist or cannot be read.
     * @throws IllegalArgumentException if the key is not a sysctl name.
     */
    public static String read(final String key) throws IOException
    {
        return read(PROC_SYS, key);
    }

    /**
     * Sets a kernel parameter.
     *
     * @param key   e.g. {@code net.ipv4.conf.all.arp_ignore}.
     * @param value e.g. {@code 1}.
     * @throws IOException naming the key and value if the key does not exist, the value is refused (EINVAL) or
     *                     the caller may not write it.
     * @throws IllegalArgumentException if the key is not a sysctl name or the value is empty or spans lines.
     */
    public static void write(final String key, final String value) throws IOException
    {
        write(PROC_SYS, key, value);
    }

    /** {@link #read(String)} under another root: for tests. */
    static String read(final Path root, final String key) throws IOException
    {
        final Path file = file(root, key);
        // A /proc/sys file reports size 0 and answers only a read at offset 0, so the first read asks for
        // everything (Files.readString would ask for one byte first and see a truncated value).
        try (InputStream in = Files.newInputStream(file))
        {
            final ByteArrayOutputStream out = new ByteArrayOutputStream();
            final byte[] buf = new byte[4096];
            int n;
            while ((n = in.read(buf)) > 0)
            {
                out.write(buf, 0, n);
            }
            return out.toString(StandardCharsets.US_ASCII).strip();
        }
        catch (final NoSuchFileException e)
        {
            throw failure("sysctl " + key + ": no such key (" + file + " does not exist)", e);
        }
        catch (final IOException e)
        {
            throw failure("sysctl " + key + ": cannot read " + file + ": " + reason(e), e);
        }
    }

    /** {@link #write(String, String)} under another root: for tests. */
    static void write(final Path root, final String key, final String value) throws IOException
    {
        if (value == null || value.isBlank() || value.indexOf('\n') >= 0 || value.indexOf('\r') >= 0)
        {
            throw new IllegalArgumentException("sysctl " + key + ": value must be one non-empty line: " + value);
        }
        final Path file = file(root, key);
        // One write(2) of the whole value: the kernel parses each write on its own.
        final ByteBuffer bytes = ByteBuffer.wrap((value.strip() + "\n").getBytes(StandardCharsets.US_ASCII));
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.WRITE))
        {
            channel.write(bytes);
            if (bytes.hasRemaining())
            {
                throw new IOException("short write");
            }
        }
        catch (final NoSuchFileException e)
        {
            throw failure("sysctl " + key + ": no such key (" + file + " does not exist)", e);
        }
        catch (final AccessDeniedException e)
        {
            throw failure("sysctl " + key + " = " + value.strip() + ": permission denied on " + file, e);
        }
        catch (final IOException e)
        {
            throw failure("sysctl " + key + " = " + value.strip() + ": refused: " + reason(e), e);
        }
    }

    /**
     * The file of a key.
     *
     * @throws IllegalArgumentException if the key is empty, has characters a sysctl name never has, or would
     *                                  leave the root ({@code ..}).
     */
    static Path file(final Path root, final String key)
    {
        if (key == null || key.isEmpty() || !key.matches("[A-Za-z0-9_.:@/-]+") || key.startsWith("/")
            || key.startsWith(".") || key.endsWith(".") || key.endsWith("/"))
        {
            throw new IllegalArgumentException("not a sysctl key: " + key);
        }
        final String relative = key.indexOf('/') >= 0 ? key : key.replace('.', '/');
        for (final String part : relative.split("/"))
        {
            if (part.isEmpty() || part.equals(".") || part.equals(".."))
            {
                throw new IllegalArgumentException("not a sysctl key: " + key);
            }
        }
        return root.resolve(relative);
    }

    private static String reason(final IOException e)
    {
        return e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    }

    private static IOException failure(final String message, final IOException cause)
    {
        return new IOException(message, cause);
    }
}
