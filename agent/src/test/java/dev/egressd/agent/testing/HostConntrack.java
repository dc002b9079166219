package dev.egressd.agent.testing;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A lab host's conntrack table, read with {@code conntrack -L}: the fixture's independent view, to compare with
 * what egressd reads through ctnetlink.
 */
public final class HostConntrack
{
    private final Lab lab;

    HostConntrack(final Lab lab)
    {
        this.lab = lab;
    }

    /**
     * The host's conntrack entries matching a filter of {@code conntrack -L}.
     *
     * @param family {@code ipv4} or {@code ipv6}.
     * @param filter e.g. {@code -s 10.77.0.2}; none for every entry.
     * @return the entries.
     */
    public List<ConntrackEntry> entries(final String family, final String... filter)
    {
        final List<String> cmd = new ArrayList<>(List.of("conntrack", "-L", "-f", family));
        cmd.addAll(Arrays.asList(filter));
        final Shell.Exec exec = lab.exec("host", cmd.toArray(String[]::new));
        final List<ConntrackEntry> entries = new ArrayList<>();
        for (final String line : exec.output().split("\n"))
        {
            if (line.isBlank() || line.startsWith("conntrack v"))
            {
                continue;
            }
            final ConntrackEntry entry = parse(line);
            if (entry != null)
            {
                entries.add(entry);
            }
        }
        return entries;
    }

    /** One line of {@code conntrack -L}: the original half's and the reply half's key=value tokens. */
    private static ConntrackEntry parse(final String line)
    {
        final String[] tokens = line.trim().split("\\s+");
        final List<Map<String, String>> halves = new ArrayList<>();
        for (final String token : tokens)
        {
            final int eq = token.indexOf('=');
            if (eq < 0)
            {
                continue;
            }
            final String key = token.substring(0, eq);
            if (key.equals("src"))
            {
                halves.add(new HashMap<>());
            }
            if (!halves.isEmpty())
            {
                halves.get(halves.size() - 1).putIfAbsent(key, token.substring(eq + 1));
            }
        }
        if (halves.size() < 2)
        {
            return null;
        }
        final Map<String, String> orig = halves.get(0);
        final Map<String, String> reply = halves.get(1);
        final String port = reply.containsKey("dport") ? reply.get("dport") : reply.getOrDefault("id", "-1");
        return new ConntrackEntry(tokens[0].toLowerCase(Locale.ROOT), orig.get("src"), orig.get("dst"),
            reply.get("dst"), Integer.parseInt(port), line);
    }
}
