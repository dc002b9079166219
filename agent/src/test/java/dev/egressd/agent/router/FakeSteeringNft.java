package dev.egressd.agent.router;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.egressd.agent.kernel.nft.NftException;
import dev.egressd.agent.kernel.nft.NftablesClient;
import dev.egressd.agent.kernel.nft.netlink.NfTablesClient;
import dev.egressd.agent.kernel.nft.netlink.NftNetlink;
import dev.egressd.agent.kernel.nft.netlink.NftOp;
import dev.egressd.agent.kernel.nft.netlink.NftRefusedException;
import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.netlink.NetlinkException;
import java.io.IOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An in-memory kernel table for {@link SteeringTable}, both as the {@link NftablesClient} (the text it emits and
 * nothing more: the table block, {@code add rule}, {@code add|delete element}, {@code add|delete table}, and
 * {@code list table} / {@code list chain} as JSON shaped like nft 1.0.6's) and as the {@link NfTablesClient} (element
 * batches, dumps, the chain's fingerprint and the generation id), over one model whose element keys are nft's text.
 * As the kernel: a transaction or batch is applied to a copy and committed only if every change succeeded; deleting
 * a missing element fails ENOENT, adding an existing key with other data fails EEXIST; every committed transaction
 * and every hand edit moves the generation id. Every committed transaction is logged to a shared event list (for
 * the order of changes against the policy routing).
 */
final class FakeSteeringNft implements NftablesClient, NfTablesClient
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
    private int generation = 1;
    private int dumps;

    FakeSteeringNft(final Consumer<String> events)
    {
        this.events = events;
    }

    synchronized int transactions()
    {
        return transactions;
    }

    /** @return the element dumps answered so far (one per map or set). */
    synchronized int dumps()
    {
        return dumps;
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
        generation++;
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
        generation++;
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
        generation++;
        log.forEach(events);
    }

    // ---- nf_tables netlink: the table is the one SteeringTable names; keys and data as the kernel stores them.

    @Override
    public synchronized void commit(final List<? extends NftOp> ops) throws IOException
    {
        if (ops.isEmpty())
        {
            return;
        }
        if (failNext)
        {
            failNext = false;
            throw new NftRefusedException("inet fake", 0, ops.get(0).describe(), LibC.EINVAL, "simulated", 1);
        }
        final Map<String, Table> work = new LinkedHashMap<>();
        tables.forEach((k, v) -> work.put(k, v.copy()));
        final Table t = work.get(onlyTable());
        final List<String> log = new ArrayList<>();
        for (int i = 0; i < ops.size(); i++)
        {
            final NftOp op = ops.get(i);
            if (op instanceof NftOp.AddElement a)
            {
                final Map<String, String> set = t == null ? null : t.sets.get(a.set());
                if (set == null)
                {
                    throw new NftRefusedException("inet fake", i, op.describe(), LibC.ENOENT, null, 1);
                }
                final String key = keyText(a.set(), a.key(), a.keyEnd());
                final String data = a.data() == null ? "" : markText(a.data());
                final String old = set.putIfAbsent(key, data);
                if (old != null && !old.equals(data))
                {
                    throw new NftRefusedException("inet fake", i, op.describe(), LibC.EEXIST, null, 1);
                }
                log.add("nft add " + a.set() + " " + key + " : " + data);
            }
            else if (op instanceof NftOp.DeleteElement d)
            {
                final Map<String, String> set = t == null ? null : t.sets.get(d.set());
                final String key = keyText(d.set(), d.key(), d.keyEnd());
                if (set == null || set.remove(key) == null)
                {
                    throw new NftRefusedException("inet fake", i, op.describe(), LibC.ENOENT, null, 1);
                }
                log.add("nft delete " + d.set() + " " + key);
            }
            else
            {
                throw new IllegalArgumentException("the fake does not understand " + op.describe());
            }
        }
        tables = work;
        transactions++;
        generation++;
        log.forEach(events);
    }

    @Override
    public synchronized int generation()
    {
        return generation;
    }

    @Override
    public synchronized List<NftNetlink.Element> elements(final String set) throws IOException
    {
        final Table t = tables.get(onlyTable());
        if (t == null || !t.sets.containsKey(set))
        {
            throw new NetlinkException("NFT_MSG_GETSETELEM " + set, LibC.ENOENT, (String) null);
        }
        dumps++;
        final List<NftNetlink.Element> out = new ArrayList<>();
        for (final Map.Entry<String, String> e : t.sets.get(set).entrySet())
        {
            final String[] parts = e.getKey().split(" \\. ");
            if (parts.length == 1)
            {
                out.add(new NftNetlink.Element(address(parts[0]), null));
                continue;
            }
            final String[] ports = parts[1].split("-");
            final byte[] mark = ByteBuffer.allocate(4).order(ByteOrder.nativeOrder()).putInt(Integer.decode(e.getValue()))
                .array();
            out.add(new NftNetlink.Element(key(parts[0], Integer.parseInt(ports[0])), mark,
                key(parts[0], Integer.parseInt(ports[1]))));
        }
        return out;
    }

    @Override
    public synchronized byte[] chainFingerprint(final String chain) throws IOException
    {
        final Table t = tables.get(onlyTable());
        if (t == null || t.rules == null)
        {
            throw new NetlinkException("NFT_MSG_GETCHAIN " + chain, LibC.ENOENT, (String) null);
        }
        return String.join("\n", t.rules).getBytes(StandardCharsets.UTF_8);
    }

    @Override
    public Map<String, NftNetlink.Counter> counters()
    {
        throw new UnsupportedOperationException("the router reads no counters");
    }

    /** The one table the router's client is bound to (the fake holds at most one). */
    private String onlyTable()
    {
        return tables.isEmpty() ? "" : tables.keySet().iterator().next();
    }

    private static String keyText(final String set, final byte[] key, final byte[] keyEnd) throws IOException
    {
        if (keyEnd == null)
        {
            return addressText(key, key.length);
        }
        final int a = key.length - 4;
        return addressText(key, a) + " . " + ((key[a] & 0xFF) << 8 | key[a + 1] & 0xFF) + "-"
            + ((keyEnd[a] & 0xFF) << 8 | keyEnd[a + 1] & 0xFF);
    }

    private static String addressText(final byte[] b, final int length) throws IOException
    {
        try
        {
            return InetAddress.getByAddress(java.util.Arrays.copyOf(b, length)).getHostAddress();
        }
        catch (final UnknownHostException e)
        {
            throw new IOException(e);
        }
    }

    private static String markText(final byte[] data)
    {
        return "0x" + Integer.toHexString(ByteBuffer.wrap(data).order(ByteOrder.nativeOrder()).getInt());
    }

    private static byte[] address(final String text)
    {
        return SteeringPlan.address(text).getAddress();
    }

    private static byte[] key(final String address, final int port)
    {
        final byte[] a = address(address);
        final byte[] k = new byte[a.length + 4];
        System.arraycopy(a, 0, k, 0, a.length);
        k[a.length] = (byte) (port >>> 8);
        k[a.length + 1] = (byte) port;
        return k;
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
