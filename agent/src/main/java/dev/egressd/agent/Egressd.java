package dev.egressd.agent;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Properties;

/** The egressd daemon's entry point. */
public final class Egressd
{
    private Egressd()
    {
    }

    /**
     * The version this build was made from, read from the jar's resources.
     *
     * @return the project version, e.g. {@code 0.1.0-SNAPSHOT}.
     */
    public static String version()
    {
        try (InputStream in = Egressd.class.getResourceAsStream("version.properties"))
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

    /**
     * Starts the daemon.
     *
     * @param args command-line arguments.
     */
    public static void main(final String[] args)
    {
        if (args.length > 0 && ("--version".equals(args[0]) || "version".equals(args[0])))
        {
            System.out.println("egressd " + version());
            return;
        }
        System.out.println("egressd " + version());
    }
}
