package dev.egressd.agent;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The agent's layout as docs/design.md ("Architecture") draws it: every import points down. Read from the
 * sources, so a new upward arrow fails the build the day it is written, not at the next review.
 */
class LayeringTest
{
    /** Top-level package to floor: a package may import only packages on a higher floor number (lower down). */
    private static final Map<String, Integer> FLOORS = Map.ofEntries(
        Map.entry("", 0),
        Map.entry("api", 1), Map.entry("metrics", 1), Map.entry("cli", 1),
        Map.entry("reconcile", 2), Map.entry("router", 2),
        Map.entry("conntrack", 3),
        Map.entry("refusals", 4),
        Map.entry("kernel", 5),
        Map.entry("netlink", 6),
        Map.entry("state", 7), Map.entry("region", 7), Map.entry("config", 7), Map.entry("version", 7),
        Map.entry("natives", 8));

    private static final Path SOURCES = Path.of("src/main/java/dev/egressd/agent");
    private static final Pattern IMPORT =
        Pattern.compile("^import (?:static )?dev\\.egressd\\.agent\\.((?:[a-z]\\w*\\.)*)[A-Z]", Pattern.MULTILINE);

    @Test
    void everyImportPointsDown() throws IOException
    {
        final List<String> upward = new ArrayList<>();
        int imports = 0;
        try (Stream<Path> files = Files.walk(SOURCES))
        {
            for (final Path file : (Iterable<Path>) files.filter(f -> f.toString().endsWith(".java"))::iterator)
            {
                final String from = packageOf(SOURCES.relativize(file.getParent()).toString().replace('/', '.'));
                final Matcher m = IMPORT.matcher(Files.readString(file));
                while (m.find())
                {
                    imports++;
                    final String to = packageOf(m.group(1).isEmpty() ? "" : m.group(1).substring(0, m.group(1).length() - 1));
                    if (!allowed(from, to))
                    {
                        upward.add(SOURCES.relativize(file) + ": " + display(from) + " -> " + display(to));
                    }
                }
            }
        }
        assertThat(imports).as("the scan found the agent's imports").isGreaterThan(100);
        assertThat(upward).as("imports that point up (or sideways) in docs/design.md's layout").isEmpty();
    }

    @Test
    void everyTopLevelPackageHasAFloor() throws IOException
    {
        try (Stream<Path> dirs = Files.list(SOURCES))
        {
            assertThat(dirs.filter(Files::isDirectory).map(d -> d.getFileName().toString()))
                .as("a new package needs a line in docs/design.md and a floor here")
                .allSatisfy(name -> assertThat(FLOORS).containsKey(name));
        }
    }

    private static boolean allowed(final String from, final String to)
    {
        final String fromTop = top(from);
        final String toTop = top(to);
        if (fromTop.equals(toTop))
        {
            // Within one room: a parent may use its subpackages, a subpackage never its parent.
            return from.equals(to) || to.startsWith(from + ".") || !from.startsWith(to + ".")
                && !to.isEmpty() && !from.isEmpty();
        }
        return FLOORS.get(toTop) > FLOORS.get(fromTop);
    }

    private static String packageOf(final String relative)
    {
        return relative.equals(".") ? "" : relative;
    }

    private static String top(final String pkg)
    {
        final int dot = pkg.indexOf('.');
        return dot < 0 ? pkg : pkg.substring(0, dot);
    }

    private static String display(final String pkg)
    {
        return pkg.isEmpty() ? "(root)" : pkg;
    }
}
