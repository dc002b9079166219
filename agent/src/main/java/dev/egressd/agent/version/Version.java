package dev.egressd.agent.version;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Properties;

/**
 * The version and commit this build was made from: one low place that the daemon, the API and egressctl all read.
 * The values come from {@code version.properties}, filled in by Maven (the commit by {@code git describe}).
 */
public final class Version
{
    /** What {@link #version()} and {@link #revision()} say when the build did not record the value. */
    public static final String UNKNOWN = "unknown";

    private static final Properties PROPERTIES = load();

    private Version()
    {
    }

    /**
     * The version this build was made from, read from the jar's resources.
     *
     * @return the project version, e.g. {@code 0.1.0-SNAPSHOT}.
     */
    public static String version()
    {
        return value("version");
    }

    /**
     * The git commit this build was made from, as Prometheus' {@code build_info} metrics carry it.
     *
     * @return the full commit id, with {@code -dirty} appended when tracked files had uncommitted changes at build
     *         time; {@link #UNKNOWN} when the build ran outside a git checkout.
     */
    public static String revision()
    {
        return value("revision");
    }

    /**
     * The one-line answer to {@code --version}: name, version and commit.
     *
     * @param program the program's name, e.g. {@code egressd}.
     * @return e.g. {@code egressd 0.1.0-SNAPSHOT (revision 9b33618c...)}.
     */
    public static String line(final String program)
    {
        return program + " " + version() + " (revision " + revision() + ")";
    }

    /** A value, or {@link #UNKNOWN} when it is missing or still Maven's unfilled {@code ${...}} placeholder. */
    private static String value(final String key)
    {
        final String value = PROPERTIES.getProperty(key, "").strip();
        return value.isEmpty() || value.startsWith("${") ? UNKNOWN : value;
    }

    private static Properties load()
    {
        final Properties properties = new Properties();
        try (InputStream in = Version.class.getResourceAsStream("version.properties"))
        {
            if (in != null)
            {
                properties.load(in);
            }
            return properties;
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }
}
