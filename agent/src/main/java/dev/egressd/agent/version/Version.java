package dev.egressd.agent.version;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Properties;

/** The version this build was made from: one low place that the daemon, the API and egressctl all read. */
public final class Version
{
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
        try (InputStream in = Version.class.getResourceAsStream("version.properties"))
        {
            if (in == null)
            {
                return "unknown";
            }
            final Properties properties = new Properties();
            properties.load(in);
            return properties.getProperty("version", "unknown");
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }
}
