package dev.egressd.agent.router;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.egressd.agent.kernel.nft.NftException;
import dev.egressd.agent.kernel.nft.NftablesClient;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An in-memory {@link NftablesClient} that understands the text {@link SteeringTable} emits and nothing more: the
 * table block, {@code add rule}, {@code add|delete element}, {@code add|delete table}, and {@code list table} /
 * {@code list chain} as JSON shaped like nft 1.0.6's. As the kernel: a transaction is applied to a copy and
 * committed only if every command succeeded; deleting a missing element fails "No such file or directory", adding an
 * existing key with other data fails "File exists". Every committed transaction is logged to a shared event list
 * (for the order of changes against the policy routing).
 */
final class FakeSteeringNft implements NftablesClient
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern ELEMENT = Pattern.compile("(add|delete) element inet (\\w+) (\\w+) \\{ (.+) \\}");
    private static final Pattern TABLE = Pattern.compile("(add|delete) table inet (\\w+)");
    private static final Pattern RULE = Pattern.compile("add rule inet (\\w+) (\\w+) (.+)");
    private static final Pattern DECL = Pattern.compile("\\s*(set|map|chain) (\\w+) \\{.*");

    /** One table: sets and maps (element key text to data text, "" for sets), its chain's rules or null. */
    static final class Table
    {
        final Map<String, Map<String, String>> sets = new LinkedHashMap<>();
        List<String> rules;

        Table copy()
        {
            final Table t = new Table();
            sets.forEach((k, v) -> t.sets.put(k, new LinkedHashMap<>(v)));
            t.rules = rules == null ? null : new ArrayList<>(rules);
            return t;
        }
    }

    private Map<String, Table> tables = new LinkedHashMap<>();
    private final Consumer<String> events;
    private int transactions;
    private boolean failNext;

    FakeSteeringNft(final Consumer<String> events)
    {
        this.events = events;
    }

    synchronized int transactions()
    {
        return transactions;
    }

    /** @return the elements of a map (key text to mark), or null if the table or map is missing. */
    synchronized Map<String, String> elements(final String table, final String set)
    {
        final Table t = tables.get(table);
        return t == null || !t.sets.containsKey(set) ? null : Map.copyOf(t.sets.get(set));
    }

    /** A hand edit: deletes an element (no transaction is logged). */
    synchronized void handDelete(final String table, final String set, final String key)
    {
        tables.get(table).sets.get(set).remove(key);
    }

    /** @return whether the table has its chain. */
    synchronized boolean hasChain(final String table)
    {
        final Table t = tables.get(table);
        return t != null && t.rules != null;
    }

    /** A hand edit: deletes the chain. */
    synchronized void handDeleteChain(final String table)
    {
        tables.get(table).rules = null;
    }

    /** The next transaction fails, as one the kernel refused (nothing changes). */
    synchronized void failNextRun()
    {
        failNext = true;
    }

    @Override
    public synchronized void run(final String script) throws NftException
    {
        if (failNext)
        {
            failNext = false;
            throw error(script, "Could not process rule: Operation not supported (simulated)");
        }
        final Map<String, Table> work = new LinkedHashMap<>();
        tables.forEach((k, v) -> work.put(k, v.copy()));
        final List<String> log = new ArrayList<>();
        final String[] lines = script.split("\n");
        for (int i = 0; i < lines.length; i++)
        {
            final String line = lines[i].strip();
            Matcher m;
            if (line.isEmpty())
            {
                continue;
            }
            if ((m = TABLE.matcher(line)).matches())
            {
                if ("add".equals(m.group(1)))
                {
                    work.putIfAbsent(m.group(2), new Table());
                }
                else if (work.remove(m.group(2)) == null)
                {
                    throw error(script, "Could not process rule: No such file or directory");
                }
                log.add(m.group(1) + " table");
            }
            else if (line.startsWith("table inet "))
            {
                final Table t = work.computeIfAbsent(line.split(" ")[2], n -> new Table());
                while (!lines[++i].strip().equals("}"))
                {
                    final Matcher d = DECL.matcher(lines[i]);
                    if (!d.matches())
                    {
                        throw error(script, "syntax error: " + lines[i]);
                    }
                    if ("chain".equals(d.group(1)))
                    {
                        t.rules = t.rules == null ? new ArrayList<>() : t.rules;
                    }
                    else
                    {
                        t.sets.putIfAbsent(d.group(2), new LinkedHashMap<>());
                    }
                }
            }
            else if ((m = RULE.matcher(line)).matches())
            {
                final Table t = work.get(m.group(1));
                if (t == null || t.rules == null)
                {
                    throw error(script, "Could not process rule: No such file or directory");
                }
                t.rules.add(m.group(3));
            }
            else if ((m = ELEMENT.matcher(line)).matches())
            {
                final Table t = work.get(m.group(2));
                final Map<String, String> set = t == null ? null : t.sets.get(m.group(3));
                if (set == null)
                {
                    throw error(script, "Could not process rule: No such file or directory");
                }
                for (final String item : m.group(4).split(", "))
                {
                    final int colon = item.indexOf(" : ");
                    final String key = colon < 0 ? item : item.substring(0, colon);
                    final String data = colon < 0 ? "" : item.substring(colon + 3);
                    if ("add".equals(m.group(1)))
                    {
                        final String old = set.putIfAbsent(key, data);
                        if (old != null && !old.equals(data))
                        {
                            throw error(script, "Could not process rule: File exists");
                        }
                        log.add("nft add " + m.group(3) + " " + key + " : " + data);
                    }
                    else
                    {
                        if (set.remove(key) == null)
                        {
                            throw error(script, "Could not process rule: No such file or directory");
                        }
                        log.add("nft delete " + m.group(3) + " " + key);
                    }
                }
            }
            else
            {
                throw error(script, "the fake does not understand: " + line);
            }
        }
        tables = work;
        transactions++;
        log.forEach(events);
    }

    private static NftException error(final String script, final String text)
    {
        return new NftException(script, "Error: " + text);
    }

    @Override
    public synchronized String runJson(final String command) throws NftException
    {
        final String[] words = command.split(" ");
        final Table t = tables.get(words[3]);
        if (t == null || "chain".equals(words[1]) && t.rules == null)
        {
            throw error(command, "No such file or directory; did you mean ...");
        }
        final ObjectNode root = JSON.createObjectNode();
        final ArrayNode items = root.putArray("nftables");
        if ("table".equals(words[1]))
        {
            items.addObject().putObject("table").put("family", "inet").put("name", words[3]);
            t.sets.forEach((name, elements) ->
            {
                final boolean map = name.startsWith("blk") || name.startsWith("icmp");
                final ObjectNode set = items.addObject().putObject(map ? "map" : "set");
                set.put("family", "inet").put("name", name).put("table", words[3]);
                final ArrayNode elem = set.putArray("elem");
                elements.forEach((key, data) ->
                {
                    if (!map)
                    {
                        elem.add(key);
                        return;
                    }
                    final String[] parts = key.split(" \\. ");
                    final String[] ports = parts[1].split("-");
                    final ArrayNode pair = elem.addArray();
                    final ArrayNode concat = pair.addObject().putArray("concat");
                    concat.add(parts[0]);
                    concat.addObject().putArray("range").add(Integer.parseInt(ports[0])).add(Integer.parseInt(ports[1]));
                    pair.add(Integer.decode(data));
                });
            });
        }
        if (t.rules != null)
        {
            items.addObject().putObject("chain").put("family", "inet").put("table", words[3])
                .put("name", SteeringTable.CHAIN).put("handle", 99);
            for (final String rule : t.rules)
            {
                final ObjectNode r = items.addObject().putObject("rule");
                r.put("chain", SteeringTable.CHAIN).putArray("expr").addObject().put("text", rule);
            }
        }
        return root.toString();
    }
}
