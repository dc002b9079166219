package dev.egressd.agent.kernel;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Pattern;

/**
 * Kernel parameters through {@code /proc/sys} (what {@code sysctl} does, without running it), in the calling
 * thread's network namespace for the per-namespace ones ({@code net.*}).
 */
public final class Sysctl
{
    private static final Path ROOT = Path.of("/proc/sys");
    /** Dotted keys of letters, digits, '_' and '-' (interface names may hold '-'); no path tricks. */
    private static final Pattern KEY = Pattern.compile("[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)+");

    private Sysctl()
    {
    }

    /**
     * Reads a parameter.
     *
     * @param key e.g. {@code net.ipv4.fwmark_reflect}.
     * @return its value, trimmed.
     * @throws IOException naming the key if it cannot be read.
     */
    public static String read(final String key) throws IOException
    {
        final Path path = path(key);
        try
        {
            return Files.readString(path, StandardCharsets.US_ASCII).trim();
        }
        catch (final IOException e)
        {
            throw new IOException("sysctl " + key + ": cannot read " + path + ": " + e, e);
        }
    }

    /**
     * Writes a parameter.
     *
     * @param key   e.g. {@code net.ipv4.fwmark_reflect}.
     * @param value the value.
     * @throws IOException naming the key if it cannot be written.
     */
    public static void write(final String key, final String value) throws IOException
    {
        final Path path = path(key);
        try
        {
            Files.writeString(path, value + "\n", StandardCharsets.US_ASCII);
        }
        catch (final IOException e)
        {
            throw new IOException("sysctl " + key + "=" + value + ": cannot write " + path + ": " + e, e);
        }
    }

    private static Path path(final String key) throws IOException
    {
        if (key == null || !KEY.matcher(key).matches())
        {
            throw new IOException("sysctl key " + key + " is not a dotted parameter name");
        }
        return ROOT.resolve(key.replace('.', '/'));
    }
}
