package dev.egressd.agent.kernel.nft;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.egressd.agent.kernel.nft.netlink.NfTables;
import dev.egressd.agent.kernel.nft.netlink.NfTablesClient;
import dev.egressd.agent.kernel.nft.netlink.NftExpr;
import dev.egressd.agent.kernel.nft.netlink.NftOp;
import dev.egressd.agent.kernel.nft.netlink.NftRefusedException;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.egressd.core.model.Ipv6Address;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An in-memory {@link NftablesClient} that understands the nft text egressd emits (the {@link Ruleset}
 * block, element add/delete, chain add/flush/delete, rules in the per-guest chains) and nothing more.
 *
 * <p>Like the kernel (and knftables' Fake): a transaction is applied to a copy and committed only if
 * every command succeeded; {@code add element} of an existing key with other data fails "File exists",
 * deleting what is missing fails "No such file or directory", deleting a chain a verdict map still
 * jumps to fails "Device or resource busy". Listings come back as JSON shaped like nft 1.0.6's.
 */
public final class FakeNftablesClient implements NftablesClient, NfTablesClient
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern ELEMENT =
        Pattern.compile("(add|delete) element inet (\\w+) (\\w+) \\{ (.+) \\}");
    private static final Pattern CHAIN =
        Pattern.compile("(add|flush|delete) chain inet (\\w+) (\\w+)(?: \\{ (type .+) \\})?");
    private static final Pattern COUNTER = Pattern.compile("add counter inet (\\w+) (\\w+)");
    private static final Pattern SET = Pattern.compile("add (set|map) inet (\\w+) (\\w+) \\{ type ([^;]+);(.*)\\}");
    private static final Pattern HOOK =
        Pattern.compile("type (\\w+) hook (\\w+) priority ([\\w-]+); policy (\\w+);");
    private static final Pattern COMMENT = Pattern.compile(" comment \"([^\"]*)\"$");
    private static final Pattern RULE = Pattern.compile("add rule inet (\\w+) (\\w+) (.+)");
    private static final Pattern TABLE = Pattern.compile("(add|delete) table inet (\\w+)");
    private static final Pattern L4PROTO = Pattern.compile("^meta l4proto (?:(\\{ [^}]+ \\})|([\\w-]+)) snat ");
    private static final Pattern SNAT6 = Pattern.compile("snat ip6 to \\[([0-9a-fA-F:.]+)\\]:(\\d+)(?:-(\\d+))?");

    /** One set or map: its type text, declaration lines and elements (canonical key text to data text, "" for sets). */
    static final class FakeSet
    {
        String type = "";
        boolean map;
        /** What the declaration says besides the type, e.g. "flags dynamic", "size 65535", in the order given. */
        final List<String> options = new ArrayList<>();
        final Map<String, String> elements = new LinkedHashMap<>();

        FakeSet copy()
        {
            final FakeSet c = new FakeSet();
            c.type = type;
            c.map = map;
            c.options.addAll(options);
            c.elements.putAll(elements);
            return c;
        }
    }

    static final class FakeTable
    {
        final Map<String, Long> counters = new LinkedHashMap<>();
        final Map<String, FakeSet> sets = new LinkedHashMap<>();
        final Map<String, List<String>> chains = new LinkedHashMap<>();
        /** Base chains only: the declaration, e.g. "type filter hook forward priority filter; policy accept;". */
        final Map<String, String> hooks = new LinkedHashMap<>();

        FakeTable copy()
        {
            final FakeTable c = new FakeTable();
            c.counters.putAll(counters);
            c.hooks.putAll(hooks);
            sets.forEach((k, v) -> c.sets.put(k, v.copy()));
            chains.forEach((k, v) -> c.chains.put(k, new ArrayList<>(v)));
            return c;
        }
    }

    private Map<String, FakeTable> tables = new LinkedHashMap<>();
    private int setListings;
    private int tableListings;
    private final List<String> scripts = new ArrayList<>();

    /** Every script given to {@link #run}, successful or not. */
    public List<String> scripts()
    {
        return scripts;
    }

    /**
     * Every table as nft text, as {@code nft list ruleset} would print it (for one table: {@code nft list table
     * inet NAME}), for golden comparisons; {@link NftListing} says what of nft's printing the fake follows.
     *
     * @return the text.
     */
    public String dump()
    {
        final StringBuilder sb = new StringBuilder();
        tables.forEach((name, table) -> sb.append(NftListing.table(name, table)));
        return sb.toString();
    }

    /**
     * One table as {@code nft list table inet NAME} prints it.
     *
     * @param table the table's name.
     * @return the text.
     */
    public String dump(final String table)
    {
        final FakeTable t = tables.get(table);
        if (t == null)
        {
            throw new IllegalArgumentException("no table inet " + table);
        }
        return NftListing.table(table, t);
    }

    /** Sets a named counter's packets, as traffic would. */
    public void setCounter(final String table, final String counter, final long packets)
    {
        tables.get(table).counters.put(counter, packets);
    }

    /** The canonical element texts of one set or map ("key" or "key : data"). */
    public List<String> elements(final String table, final String set)
    {
        final List<String> out = new ArrayList<>();
        tables.get(table).sets.get(set).elements.forEach((k, v) -> out.add(v.isEmpty() ? k : k + " : " + v));
        return out;
    }

    /** The rules of one chain, as text. */
    public List<String> rules(final String table, final String chain)
    {
        return List.copyOf(tables.get(table).chains.get(chain));
    }

    @Override
    public void run(final String script) throws NftException
    {
        scripts.add(script);
        tables = apply(script);
        generation++;
    }

    /** The ruleset's generation: one more for every committed transaction, text or netlink, as in the kernel. */
    private int generation = 1;
    private int generationReads;

    @Override
    public int generation()
    {
        generationReads++;
        return generation;
    }

    /**
     * How many times the generation was asked for.
     *
     * @return the count.
     */
    public int generationReads()
    {
        return generationReads;
    }

    @Override
    public Map<String, dev.egressd.agent.kernel.nft.netlink.NftNetlink.Counter> counters() throws java.io.IOException
    {
        final FakeTable t = tables.get(table);
        if (t == null)
        {
            throw new dev.egressd.agent.netlink.NetlinkException("NFT_MSG_GETOBJ", 2, (String)null);
        }
        final Map<String, dev.egressd.agent.kernel.nft.netlink.NftNetlink.Counter> out = new LinkedHashMap<>();
        t.counters.forEach((name, packets) ->
            out.put(name, new dev.egressd.agent.kernel.nft.netlink.NftNetlink.Counter(packets, packets * 100)));
        return out;
    }

    /** Every batch given to {@link #commit} (over netlink), successful or not. */
    private final List<List<? extends NftOp>> batches = new ArrayList<>();
    private String table = "egressd";
    private int refuseNetlink;

    /**
     * The netlink batches committed so far.
     *
     * @return the batches.
     */
    public List<List<? extends NftOp>> batches()
    {
        return batches;
    }

    /**
     * Makes the next netlink batches be refused (EINVAL), as a kernel without nft_nat would.
     *
     * @param times how many.
     */
    public void refuseNetlink(final int times)
    {
        refuseNetlink = times;
    }

    /**
     * The table netlink batches apply to (one client per table, like NftNetlink).
     *
     * @param name the table.
     */
    public void netlinkTable(final String name)
    {
        table = name;
    }

    /**
     * Rules over netlink: appended to their chain as nft would list them (only the IPv6 map SNAT egressd builds),
     * with their comment; all or nothing, like the kernel.
     */
    @Override
    public void commit(final List<? extends NftOp> ops) throws NftRefusedException
    {
        batches.add(List.copyOf(ops));
        if (refuseNetlink > 0)
        {
            refuseNetlink--;
            throw new NftRefusedException("inet " + table, 0, ops.get(0).describe(), 22, null, 1);
        }
        final Map<String, FakeTable> work = new LinkedHashMap<>();
        tables.forEach((k, v) -> work.put(k, v.copy()));
        for (int i = 0; i < ops.size(); i++)
        {
            final NftOp op = ops.get(i);
            final FakeTable t = work.get(table);
            if (op instanceof NftOp.AddElement || op instanceof NftOp.DeleteElement)
            {
                element(t, i, op);
                continue;
            }
            if (!(op instanceof NftOp.AddRule rule))
            {
                throw new UnsupportedOperationException("the fake does not take " + op);
            }
            if (t == null || !t.chains.containsKey(rule.chain()))
            {
                throw new NftRefusedException("inet " + table, i, op.describe(), 2, null, 1);
            }
            t.chains.get(rule.chain()).add(text(rule));
        }
        tables = work;
        generation++;
    }

    /**
     * The table without elements, as the kernel's dumps give it: a rule's expressions are its text without the
     * comment (what nft wrote), a base chain's hook and policy as netlink numbers, sets with nft's data type ids.
     * Counted with the table listings (it is the deep check's read).
     */
    @Override
    public dev.egressd.agent.kernel.nft.netlink.NftNetlink.TableDump dumpTable() throws java.io.IOException
    {
        final FakeTable t = tables.get(table);
        if (t == null)
        {
            throw new dev.egressd.agent.netlink.NetlinkException("NFT_MSG_GETCHAIN", 2, (String)null);
        }
        tableListings++;
        final List<dev.egressd.agent.kernel.nft.netlink.NftNetlink.ChainInfo> chains = new ArrayList<>();
        final List<dev.egressd.agent.kernel.nft.netlink.NftNetlink.RuleInfo> rules = new ArrayList<>();
        t.chains.forEach((chain, list) ->
        {
            final String hook = t.hooks.get(chain);
            final Matcher m = hook == null ? null : HOOK.matcher(hook);
            if (m != null && m.matches())
            {
                chains.add(new dev.egressd.agent.kernel.nft.netlink.NftNetlink.ChainInfo(chain, -1, m.group(1),
                    List.of("prerouting", "input", "forward", "output", "postrouting").indexOf(m.group(2)), priority(m.group(3)),
                    "accept".equals(m.group(4)) ? NfTables.NF_ACCEPT : NfTables.NF_DROP, 0));
            }
            else
            {
                chains.add(new dev.egressd.agent.kernel.nft.netlink.NftNetlink.ChainInfo(chain, -1, null, -1, 0, -1, 0));
            }
            for (final String rule : list)
            {
                final Matcher comment = COMMENT.matcher(rule);
                final boolean commented = comment.find();
                final String body = commented ? rule.substring(0, comment.start()) : rule;
                rules.add(new dev.egressd.agent.kernel.nft.netlink.NftNetlink.RuleInfo(chain,
                    commented ? comment.group(1) : null, body.getBytes(java.nio.charset.StandardCharsets.UTF_8)));
            }
        });
        final List<dev.egressd.agent.kernel.nft.netlink.NftNetlink.ObjectInfo> objects = new ArrayList<>();
        t.counters.keySet().forEach(name ->
            objects.add(new dev.egressd.agent.kernel.nft.netlink.NftNetlink.ObjectInfo("counter", name, -1)));
        return new dev.egressd.agent.kernel.nft.netlink.NftNetlink.TableDump(chains, rules, setInfos(t), objects);
    }

    @Override
    public List<dev.egressd.agent.kernel.nft.netlink.NftNetlink.SetInfo> sets() throws java.io.IOException
    {
        final FakeTable t = tables.get(table);
        if (t == null)
        {
            throw new dev.egressd.agent.netlink.NetlinkException("NFT_MSG_GETSET", 2, (String)null);
        }
        return setInfos(t);
    }

    /** The sets' declarations as GETSET gives them: a map's data type as nft's type id (a verdict as the kernel's). */
    private static List<dev.egressd.agent.kernel.nft.netlink.NftNetlink.SetInfo> setInfos(final FakeTable t)
    {
        final List<dev.egressd.agent.kernel.nft.netlink.NftNetlink.SetInfo> out = new ArrayList<>();
        t.sets.forEach((name, set) ->
        {
            int dataType = 0;
            if (set.map)
            {
                final String data = set.type.substring(set.type.indexOf(':') + 1).strip().replace("interval ", "");
                dataType = switch (data)
                {
                    case "ipv4_addr . inet_service" -> 7 << 6 | 13;
                    case "ipv6_addr . inet_service" -> 8 << 6 | 13;
                    case "verdict" -> 0xffffff00;
                    default -> -1;
                };
            }
            out.add(new dev.egressd.agent.kernel.nft.netlink.NftNetlink.SetInfo(name, -1,
                set.map ? NfTables.NFT_SET_MAP : 0, 0, dataType, 0));
        });
        return out;
    }

    /** A set's elements as the kernel's dump gives them (bytes); counted with the set listings. */
    @Override
    public List<dev.egressd.agent.kernel.nft.netlink.NftNetlink.Element> elements(final String setName)
        throws java.io.IOException
    {
        final FakeTable t = tables.get(table);
        final FakeSet set = t == null ? null : t.sets.get(setName);
        if (set == null)
        {
            throw new dev.egressd.agent.netlink.NetlinkException("NFT_MSG_GETSETELEM", 2, (String)null);
        }
        setListings++;
        final List<dev.egressd.agent.kernel.nft.netlink.NftNetlink.Element> out = new ArrayList<>();
        set.elements.forEach((key, data) -> out.add(new dev.egressd.agent.kernel.nft.netlink.NftNetlink.Element(
            encodeKey(setName, key), data.isEmpty() ? null : encodeData(data))));
        return out;
    }

    private static byte[] encodeKey(final String set, final String key)
    {
        final String[] parts = key.split(" \\. ");
        return switch (set)
        {
            case "static4", "snat4" -> dev.egressd.agent.kernel.nft.netlink.NftElements.ipv4(
                dev.egressd.core.model.Ipv4Address.parse(key).bits());
            case "static6", "snat6" -> ip6bytes(key);
            case "guests4" -> dev.egressd.agent.kernel.nft.netlink.NftElements.ifnameIpv4(parts[0],
                dev.egressd.core.model.Ipv4Address.parse(parts[1]).bits());
            case "guests6" -> dev.egressd.agent.kernel.nft.netlink.NftElements.ifnameIpv6(parts[0],
                Ipv6Address.parse(parts[1]).high(), Ipv6Address.parse(parts[1]).low());
            default -> key.getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        };
    }

    private static byte[] ip6bytes(final String text)
    {
        final Ipv6Address a = Ipv6Address.parse(text);
        return dev.egressd.agent.kernel.nft.netlink.NftElements.ipv6(a.high(), a.low());
    }

    /** "egress . lo-hi" (or ". port") as the 16 or 40 data bytes. */
    private static byte[] encodeData(final String data)
    {
        final String[] parts = data.split(" \\. ");
        final String[] ports = parts[1].split("-");
        final int lo = Integer.parseInt(ports[0]);
        final int hi = ports.length == 2 ? Integer.parseInt(ports[1]) : lo;
        if (parts[0].indexOf(':') >= 0)
        {
            final Ipv6Address a = Ipv6Address.parse(parts[0]);
            return dev.egressd.agent.kernel.nft.netlink.NftElements.snat6(a.high(), a.low(), lo, hi);
        }
        return dev.egressd.agent.kernel.nft.netlink.NftElements.snat4(
            dev.egressd.core.model.Ipv4Address.parse(parts[0]).bits(), lo, hi);
    }

    /** An element message, with the kernel's semantics (EEXIST for other data under a key, ENOENT for a missing one). */
    private void element(final FakeTable t, final int index, final NftOp op) throws NftRefusedException
    {
        final boolean add = op instanceof NftOp.AddElement;
        final String setName = add ? ((NftOp.AddElement)op).set() : ((NftOp.DeleteElement)op).set();
        final byte[] key = add ? ((NftOp.AddElement)op).key() : ((NftOp.DeleteElement)op).key();
        final FakeSet set = t == null ? null : t.sets.get(setName);
        if (set == null)
        {
            throw new NftRefusedException("inet " + table, index, op.describe(), 2, null, 1);
        }
        final String keyText = switch (setName)
        {
            case "static4", "snat4" -> ip4(key, 0);
            case "static6", "snat6" -> ip6(key, 0);
            case "guests4" -> dev.egressd.agent.kernel.nft.netlink.NftElements.getIfname(key) + " . " + ip4(key, 16);
            case "guests6" -> dev.egressd.agent.kernel.nft.netlink.NftElements.getIfname(key) + " . " + ip6(key, 16);
            default -> throw new UnsupportedOperationException("the fake does not decode elements of " + setName);
        };
        if (!add)
        {
            if (set.elements.remove(keyText) == null)
            {
                throw new NftRefusedException("inet " + table, index, op.describe(), 2, null, 1);
            }
            return;
        }
        final byte[] d = ((NftOp.AddElement)op).data();
        String data = "";
        if (d != null)
        {
            final boolean v4 = d.length == 16;
            final int lo = dev.egressd.agent.kernel.nft.netlink.NftElements.getPort(d, v4 ? 4 : 16);
            final int hi = dev.egressd.agent.kernel.nft.netlink.NftElements.getPort(d, v4 ? 12 : 36);
            data = (v4 ? ip4(d, 0) : ip6(d, 0)) + " . " + (lo == hi ? Integer.toString(lo) : lo + "-" + hi);
        }
        if (set.map == data.isEmpty())
        {
            throw new NftRefusedException("inet " + table, index, op.describe(), 22, null, 1);
        }
        final String held = set.elements.get(keyText);
        if (held != null && !held.equals(data))
        {
            throw new NftRefusedException("inet " + table, index, op.describe(), 17, null, 1);
        }
        set.elements.put(keyText, data);
    }

    private static String ip4(final byte[] b, final int off)
    {
        return new dev.egressd.core.model.Ipv4Address(dev.egressd.agent.kernel.nft.netlink.NftElements.getInt(b, off))
            .toString();
    }

    private static String ip6(final byte[] b, final int off)
    {
        return new Ipv6Address(dev.egressd.agent.kernel.nft.netlink.NftElements.getLong(b, off),
            dev.egressd.agent.kernel.nft.netlink.NftElements.getLong(b, off + 8)).toString();
    }

    /** What nft lists for the IPv6 map SNAT rule. */
    private static String text(final NftOp.AddRule rule)
    {
        String proto = null;
        String map = null;
        for (int i = 0; i < rule.exprs().size(); i++)
        {
            final NftExpr e = rule.exprs().get(i);
            if (e instanceof NftExpr.Meta m && m.key() == NfTables.NFT_META_L4PROTO
                && rule.exprs().get(i + 1) instanceof NftExpr.CmpEq c)
            {
                proto = switch (c.data()[0])
                {
                    case 6 -> "tcp";
                    case 17 -> "udp";
                    case 58 -> "ipv6-icmp";
                    default -> Integer.toString(c.data()[0]);
                };
            }
            if (e instanceof NftExpr.Lookup l)
            {
                map = l.set();
            }
        }
        if (proto == null || map == null)
        {
            throw new UnsupportedOperationException("the fake lists only the IPv6 map SNAT rule: " + rule.exprs());
        }
        return "meta l4proto " + proto + " snat ip6 to ip6 saddr map @" + map
            + (rule.comment() == null ? "" : " comment \"" + rule.comment() + "\"");
    }

    @Override
    public void check(final String script) throws NftException
    {
        apply(script);
    }

    private Map<String, FakeTable> apply(final String script) throws NftException
    {
        final Map<String, FakeTable> work = new LinkedHashMap<>();
        tables.forEach((k, v) -> work.put(k, v.copy()));
        final String[] lines = script.split("\n");
        for (int i = 0; i < lines.length; i++)
        {
            final String line = lines[i].strip();
            if (line.isEmpty())
            {
                continue;
            }
            if (line.startsWith("table inet ") && line.endsWith("{"))
            {
                i = declareTable(work, lines, i, script);
                continue;
            }
            command(work, line, script);
        }
        return work;
    }

    private static int declareTable(final Map<String, FakeTable> work, final String[] lines, final int start,
        final String script) throws NftException
    {
        final String name = lines[start].strip().split("\\s+")[2];
        final FakeTable table = work.computeIfAbsent(name, n -> new FakeTable());
        String kind = null;
        String object = null;
        for (int i = start + 1; i < lines.length; i++)
        {
            final String line = lines[i].strip();
            if (line.equals("}"))
            {
                if (object == null)
                {
                    return i;
                }
                object = null;
                continue;
            }
            if (object == null)
            {
                final String[] words = line.split("\\s+");
                if (words.length != 3 || !words[2].equals("{"))
                {
                    throw error(script, "syntax error", line);
                }
                kind = words[0];
                object = words[1];
                switch (kind)
                {
                    case "counter" -> table.counters.putIfAbsent(object, 0L);
                    case "set", "map" ->
                    {
                        final FakeSet set = table.sets.computeIfAbsent(object, n -> new FakeSet());
                        set.map = kind.equals("map");
                    }
                    case "chain" -> table.chains.computeIfAbsent(object, n -> new ArrayList<>());
                    default -> throw error(script, "syntax error", line);
                }
                continue;
            }
            if (kind.equals("set") || kind.equals("map"))
            {
                if (line.startsWith("type "))
                {
                    table.sets.get(object).type = line.substring("type ".length());
                }
                else
                {
                    table.sets.get(object).options.add(line);
                }
            }
            else if (kind.equals("chain") && line.startsWith("type "))
            {
                table.hooks.put(object, line);
            }
            else if (kind.equals("chain"))
            {
                table.chains.get(object).add(line);
            }
        }
        throw error(script, "syntax error, unexpected end of file", lines[start]);
    }

    private static void command(final Map<String, FakeTable> work, final String line, final String script)
        throws NftException
    {
        Matcher m = TABLE.matcher(line);
        if (m.matches())
        {
            if (m.group(1).equals("add"))
            {
                work.computeIfAbsent(m.group(2), n -> new FakeTable());
            }
            else if (work.remove(m.group(2)) == null)
            {
                throw error(script, "Could not process rule: No such file or directory", line);
            }
            return;
        }
        m = ELEMENT.matcher(line);
        if (m.matches())
        {
            final FakeTable table = table(work, m.group(2), line, script);
            final FakeSet set = table.sets.get(m.group(3));
            if (set == null)
            {
                throw error(script, "Could not process rule: No such file or directory", line);
            }
            final String[] keyAndData = m.group(4).split(" : ", 2);
            final String key = canonical(keyAndData[0]);
            final String data = keyAndData.length == 2 ? canonical(keyAndData[1]) : "";
            if (set.map == data.isEmpty() && m.group(1).equals("add"))
            {
                throw error(script, "Error: " + (set.map ? "map needs data" : "set has no data"), line);
            }
            if (m.group(1).equals("add"))
            {
                if (data.startsWith("jump ") && !table.chains.containsKey(data.substring("jump ".length())))
                {
                    throw error(script, "Could not process rule: No such file or directory", line);
                }
                final String held = set.elements.get(key);
                if (held != null && !held.equals(data))
                {
                    throw error(script, "Could not process rule: File exists", line);
                }
                set.elements.put(key, data);
            }
            else if (set.elements.remove(key) == null)
            {
                throw error(script, "Could not process rule: No such file or directory", line);
            }
            return;
        }
        m = COUNTER.matcher(line);
        if (m.matches())
        {
            table(work, m.group(1), line, script).counters.putIfAbsent(m.group(2), 0L);
            return;
        }
        m = SET.matcher(line);
        if (m.matches())
        {
            final FakeTable table = table(work, m.group(2), line, script);
            final FakeSet held = table.sets.get(m.group(3));
            if (held == null)
            {
                final FakeSet set = new FakeSet();
                set.map = m.group(1).equals("map");
                set.type = m.group(4).strip();
                for (final String option : m.group(5).split(";"))
                {
                    if (!option.isBlank())
                    {
                        set.options.add(option.strip());
                    }
                }
                table.sets.put(m.group(3), set);
            }
            else if (!held.type.equals(m.group(4).strip()))
            {
                throw error(script, "Could not process rule: File exists", line);
            }
            return;
        }
        m = CHAIN.matcher(line);
        if (m.matches())
        {
            final FakeTable table = table(work, m.group(2), line, script);
            final String chain = m.group(3);
            switch (m.group(1))
            {
                case "add" ->
                {
                    final String hook = m.group(4);
                    if (!table.chains.containsKey(chain))
                    {
                        table.chains.put(chain, new ArrayList<>());
                        if (hook != null)
                        {
                            table.hooks.put(chain, hook);
                        }
                        return;
                    }
                    final String held = table.hooks.get(chain);
                    if ((held == null) != (hook == null))
                    {
                        throw error(script, "Could not process rule: Operation not supported", line);
                    }
                    if (hook != null)
                    {
                        final Matcher a = HOOK.matcher(held);
                        final Matcher b = HOOK.matcher(hook);
                        if (!a.matches() || !b.matches() || !a.group(1).equals(b.group(1))
                            || !a.group(2).equals(b.group(2)) || priority(a.group(3)) != priority(b.group(3)))
                        {
                            throw error(script, "Could not process rule: Operation not supported", line);
                        }
                        table.hooks.put(chain, hook); // the policy may change
                    }
                }
                case "flush" -> chain(table, chain, line, script).clear();
                default ->
                {
                    chain(table, chain, line, script);
                    for (final FakeSet set : table.sets.values())
                    {
                        if (set.elements.containsValue("jump " + chain))
                        {
                            throw error(script, "Could not process rule: Device or resource busy", line);
                        }
                    }
                    for (final List<String> rules : table.chains.values())
                    {
                        if (rules.stream().anyMatch(r -> r.matches(".*\\b(jump|goto) " + chain + "\\b.*")))
                        {
                            throw error(script, "Could not process rule: Device or resource busy", line);
                        }
                    }
                    table.chains.remove(chain);
                    table.hooks.remove(chain);
                }
            }
            return;
        }
        m = RULE.matcher(line);
        if (m.matches())
        {
            chain(table(work, m.group(1), line, script), m.group(2), line, script).add(m.group(3));
            return;
        }
        throw error(script, "syntax error (the fake does not understand this command)", line);
    }

    /** nft's named priorities as JSON lists them. */
    private static int priority(final String text)
    {
        return switch (text)
        {
            case "raw" -> -300;
            case "mangle" -> -150;
            case "dstnat" -> -100;
            case "filter" -> 0;
            case "security" -> 50;
            case "srcnat" -> 100;
            default -> Integer.parseInt(text);
        };
    }

    /** Edits a rule by hand, as {@code nft replace rule} would: the chain's rule at an index becomes another. */
    public void replaceRule(final String table, final String chain, final int index, final String rule)
    {
        tables.get(table).chains.get(chain).set(index, rule);
        generation++;
    }

    private static FakeTable table(final Map<String, FakeTable> work, final String name, final String line,
        final String script) throws NftException
    {
        final FakeTable table = work.get(name);
        if (table == null)
        {
            throw error(script, "Could not process rule: No such file or directory", line);
        }
        return table;
    }

    private static List<String> chain(final FakeTable table, final String name, final String line,
        final String script) throws NftException
    {
        final List<String> chain = table.chains.get(name);
        if (chain == null)
        {
            throw error(script, "Could not process rule: No such file or directory", line);
        }
        return chain;
    }

    /** Addresses as the kernel lists them (RFC 5952 IPv6), interface names without quotes. */
    private static String canonical(final String text)
    {
        final StringBuilder sb = new StringBuilder();
        for (final String token : text.strip().split(" "))
        {
            String t = token;
            if (t.startsWith("\"") && t.endsWith("\""))
            {
                t = t.substring(1, t.length() - 1);
            }
            else if (t.indexOf(':') >= 0)
            {
                t = Ipv6Address.parse(t).toString();
            }
            sb.append(sb.length() == 0 ? "" : " ").append(t);
        }
        return sb.toString();
    }

    private static NftException error(final String script, final String reason, final String line)
    {
        return new NftException(script, "Error: " + reason + "\n" + line + "\n");
    }

    @Override
    public String runJson(final String command) throws NftException
    {
        final ObjectNode root = JSON.createObjectNode();
        final ArrayNode items = root.putArray("nftables");
        items.addObject().putObject("metainfo").put("version", "1.0.6").put("json_schema_version", 1);
        final String[] words = command.strip().split("\\s+");
        if (command.strip().equals("list tables"))
        {
            tables.keySet().forEach(name -> table(items, name));
            return root.toString();
        }
        if (words.length == 5 && words[0].equals("list") && (words[1].equals("set") || words[1].equals("map"))
            && words[2].equals("inet"))
        {
            // list set|map inet TABLE NAME: nft finds a map only as a map and a set only as a set
            final FakeTable t = tables.get(words[3]);
            final FakeSet set = t == null ? null : t.sets.get(words[4]);
            if (set == null || set.map != words[1].equals("map"))
            {
                throw error(command, "No such file or directory", command);
            }
            setListings++;
            set(items, words[3], words[4], set);
            return root.toString();
        }
        final boolean counters = words.length == 5 && words[0].equals("list") && words[1].equals("counters")
            && words[2].equals("table") && words[3].equals("inet");
        final boolean table = words.length == 4 && words[0].equals("list") && words[1].equals("table")
            && words[2].equals("inet");
        if (words.length == 5 && words[0].equals("list") && words[1].equals("chain") && words[2].equals("inet"))
        {
            final FakeTable t = tables.get(words[3]);
            if (t == null || !t.chains.containsKey(words[4]))
            {
                throw error(command, "No such file or directory", command);
            }
            chainJson(items, words[3], words[4], t);
            return root.toString();
        }
        if (!counters && !table)
        {
            throw error(command, "syntax error (the fake does not understand this listing)", command);
        }
        final String name = words[words.length - 1];
        final FakeTable t = tables.get(name);
        if (t == null)
        {
            throw error(command, "No such file or directory", command);
        }
        if (table)
        {
            tableListings++;
            table(items, name);
        }
        t.counters.forEach((counter, packets) -> items.addObject().putObject("counter").put("family", "inet")
            .put("name", counter).put("table", name).put("packets", packets).put("bytes", packets * 100));
        if (counters)
        {
            return root.toString();
        }
        t.sets.forEach((setName, set) -> set(items, name, setName, set));
        t.chains.forEach((chain, rules) -> chainObject(items, name, chain, t));
        t.chains.forEach((chain, rules) -> rules(items, name, chain, rules));
        return root.toString();
    }

    /**
     * {@code list sets table inet TABLE} (sets only, as nft 1.0.6 lists them) and {@code list maps inet} (the
     * maps of every inet table), terse: without elements.
     */
    @Override
    public String runJsonTerse(final String command) throws NftException
    {
        final String[] words = command.strip().split("\\s+");
        final boolean sets = words.length == 5 && words[0].equals("list") && words[1].equals("sets")
            && words[2].equals("table") && words[3].equals("inet");
        final boolean maps = words.length == 3 && words[0].equals("list") && words[1].equals("maps")
            && words[2].equals("inet");
        if (!sets && !maps)
        {
            throw error(command, "syntax error (the fake does not understand this terse listing)", command);
        }
        if (sets && !tables.containsKey(words[4]))
        {
            throw error(command, "No such file or directory", command);
        }
        final ObjectNode root = JSON.createObjectNode();
        final ArrayNode items = root.putArray("nftables");
        items.addObject().putObject("metainfo").put("version", "1.0.6").put("json_schema_version", 1);
        tables.forEach((name, t) ->
        {
            if (maps || name.equals(words[4]))
            {
                t.sets.forEach((setName, set) ->
                {
                    if (set.map == maps)
                    {
                        items.addObject().putObject(set.map ? "map" : "set").put("family", "inet")
                            .put("name", setName).put("table", name);
                    }
                });
            }
        });
        return root.toString();
    }

    /**
     * How many {@code list set} / {@code list map} listings and {@code list table} listings were run.
     *
     * @return {set or map listings, table listings}.
     */
    public int[] listings()
    {
        return new int[] {setListings, tableListings};
    }

    private static void chainJson(final ArrayNode items, final String table, final String chain, final FakeTable t)
    {
        chainObject(items, table, chain, t);
        rules(items, table, chain, t.chains.get(chain));
    }

    private static void chainObject(final ArrayNode items, final String table, final String chain, final FakeTable t)
    {
        final ObjectNode c = items.addObject().putObject("chain").put("family", "inet").put("table", table)
            .put("name", chain);
        final String hook = t.hooks.get(chain);
        if (hook != null)
        {
            final Matcher m = HOOK.matcher(hook);
            if (m.matches())
            {
                c.put("type", m.group(1)).put("hook", m.group(2)).put("prio", priority(m.group(3)))
                    .put("policy", m.group(4));
            }
        }
    }

    private static void rules(final ArrayNode items, final String name, final String chain, final List<String> rules)
    {
        {
            for (final String rule : rules)
            {
                final ObjectNode r = items.addObject().putObject("rule").put("family", "inet").put("table", name)
                    .put("chain", chain);
                final Matcher comment = COMMENT.matcher(rule);
                if (comment.find())
                {
                    r.put("comment", comment.group(1));
                }
                final ArrayNode expr = r.putArray("expr");
                final Matcher l4 = L4PROTO.matcher(rule);
                if (l4.find())
                {
                    final ObjectNode match = expr.addObject().putObject("match").put("op", "==");
                    match.putObject("left").putObject("meta").put("key", "l4proto");
                    if (l4.group(1) != null)
                    {
                        match.putObject("right").putArray("set").add("tcp").add("udp").add("ipv6-icmp");
                    }
                    else
                    {
                        match.put("right", l4.group(2));
                    }
                }
                final Matcher m = SNAT6.matcher(rule);
                if (m.find())
                {
                    final ObjectNode snat = expr.addObject().putObject("snat").put("family", "ip6")
                        .put("addr", Ipv6Address.parse(m.group(1)).toString());
                    port(snat, "port", m.group(2), m.group(3));
                }
            }
        }
    }

    private static void table(final ArrayNode items, final String name)
    {
        items.addObject().putObject("table").put("family", "inet").put("name", name);
    }

    private static void set(final ArrayNode items, final String table, final String name, final FakeSet set)
    {
        final ObjectNode s = items.addObject().putObject(set.map ? "map" : "set").put("family", "inet")
            .put("name", name).put("table", table);
        if (set.elements.isEmpty())
        {
            return; // nft omits "elem" for an empty set
        }
        final ArrayNode elems = s.putArray("elem");
        set.elements.forEach((key, data) ->
        {
            if (!set.map)
            {
                value(elems, key);
                return;
            }
            final ArrayNode pair = elems.addArray();
            value(pair, key);
            if (data.startsWith("jump "))
            {
                pair.addObject().putObject("jump").put("target", data.substring("jump ".length()));
            }
            else
            {
                value(pair, data);
            }
        });
    }

    /** One value: a plain string, or {"concat": [...]} with port ranges as {"range": [a, b]}. */
    private static void value(final ArrayNode into, final String text)
    {
        final String[] parts = text.split(" \\. ");
        if (parts.length == 1)
        {
            into.add(text);
            return;
        }
        final ArrayNode concat = into.addObject().putArray("concat");
        for (final String part : parts)
        {
            if (part.matches("\\d+-\\d+"))
            {
                final String[] range = part.split("-");
                concat.addObject().putArray("range").add(Integer.parseInt(range[0])).add(Integer.parseInt(range[1]));
            }
            else if (part.matches("\\d+"))
            {
                concat.add(Integer.parseInt(part));
            }
            else
            {
                concat.add(part);
            }
        }
    }

    private static void port(final ObjectNode into, final String field, final String first, final String last)
    {
        if (last == null)
        {
            into.put(field, Integer.parseInt(first));
        }
        else
        {
            into.putObject(field).putArray("range").add(Integer.parseInt(first)).add(Integer.parseInt(last));
        }
    }
}
