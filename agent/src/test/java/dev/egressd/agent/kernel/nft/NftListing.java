package dev.egressd.agent.kernel.nft;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A {@link FakeNftablesClient} table as text, in the shape {@code nft list table inet NAME} of nft 1.0.6 prints it,
 * for golden comparisons: named counters, then sets and maps, then chains, each in creation order and separated by a
 * blank line, indented with tabs.
 *
 * <p>What nft does to the text that the fake's model can follow is done here as nft does it: set elements are
 * sorted by their key's value as nft compares them (a single address numerically; a concatenation, or a string,
 * as the host-endian number its bytes make, so the last field counts first on x86), and wrapped as nft wraps them
 * (two IPv4 addresses a line, five ports, one of anything else); a set's {@code size} comes before its
 * {@code flags}; a base chain's numeric priority is printed by its standard name; an anonymous set of protocols
 * in a rule is sorted by protocol number. Rules are otherwise printed as they were written: nft's own
 * normalisation of other expressions is not modelled.
 */
final class NftListing
{
    /** nft's continuation of a set's element list on a new line. */
    private static final String NEWLINE = ",\n\t\t\t     ";
    private static final Pattern PROTOCOL_SET = Pattern.compile("(meta l4proto|ip protocol|ip6 nexthdr) \\{ ([^}]+) \\}");
    private static final Map<String, Integer> PROTOCOLS = Map.of("icmp", 1, "igmp", 2, "tcp", 6, "udp", 17,
        "gre", 47, "esp", 50, "ah", 51, "ipv6-icmp", 58, "sctp", 132);
    private static final Pattern HOOK = Pattern.compile("type (\\w+) hook (\\w+) priority ([\\w-]+); policy (\\w+);");

    private NftListing()
    {
    }

    static String table(final String name, final FakeNftablesClient.FakeTable table)
    {
        final StringBuilder sb = new StringBuilder("table inet ").append(name).append(" {\n");
        final List<String> blocks = new ArrayList<>();
        table.counters.forEach((counter, packets) -> blocks.add("\tcounter " + counter + " {\n\t\tpackets " + packets
            + " bytes " + packets * 100 + "\n\t}\n"));
        table.sets.forEach((set, fake) -> blocks.add(set(set, fake)));
        table.chains.forEach((chain, rules) -> blocks.add(chain(chain, table.hooks.get(chain), rules)));
        sb.append(String.join("\n", blocks));
        return sb.append("}\n").toString();
    }

    private static String set(final String name, final FakeNftablesClient.FakeSet set)
    {
        final StringBuilder sb = new StringBuilder("\t").append(set.map ? "map " : "set ").append(name).append(" {\n");
        sb.append("\t\ttype ").append(set.type).append('\n');
        set.options.stream().filter(o -> o.startsWith("size ")).forEach(o -> sb.append("\t\t").append(o).append('\n'));
        set.options.stream().filter(o -> !o.startsWith("size ")).forEach(o -> sb.append("\t\t").append(o).append('\n'));
        if (!set.elements.isEmpty())
        {
            final List<String> fields = List.of(set.type.split(" : ")[0].split(" \\. "));
            final List<Map.Entry<String, String>> sorted = new ArrayList<>(set.elements.entrySet());
            sorted.sort(Comparator.comparing(e -> sortValue(fields, e.getKey()), Arrays::compareUnsigned));
            sb.append("\t\telements = { ");
            final int perLine = fields.size() > 1 ? 1 : switch (fields.get(0))
            {
                case "ipv4_addr" -> 2;
                case "inet_service", "inet_proto", "mark", "integer" -> 5;
                default -> 1;
            };
            int count = 0;
            for (int i = 0; i < sorted.size(); i++)
            {
                final Map.Entry<String, String> element = sorted.get(i);
                if (i > 0)
                {
                    sb.append(count == 0 ? NEWLINE : ", ");
                }
                sb.append(key(fields, element.getKey()));
                if (!element.getValue().isEmpty())
                {
                    sb.append(" : ").append(element.getValue());
                }
                count = ++count == perLine ? 0 : count;
            }
            sb.append(" }\n");
        }
        return sb.append("\t}\n").toString();
    }

    /** A key as nft prints it: strings (interface names) quoted. */
    private static String key(final List<String> fields, final String key)
    {
        final String[] values = key.split(" \\. ");
        for (int i = 0; i < values.length && i < fields.size(); i++)
        {
            if (fields.get(i).equals("ifname"))
            {
                values[i] = '"' + values[i] + '"';
            }
        }
        return String.join(" . ", values);
    }

    /**
     * The bytes nft sorts a key by. One field of a network-order type is its value, compared from the first byte;
     * a string is kept in host order, and a concatenation is its fields' bytes read as one host-endian number: both
     * are compared from the last byte (x86 is little-endian), so they are returned reversed.
     */
    private static byte[] sortValue(final List<String> fields, final String key)
    {
        final String[] values = key.split(" \\. ");
        final ByteBuffer bytes = ByteBuffer.allocate(16 * values.length);
        for (int i = 0; i < values.length; i++)
        {
            bytes.put(fieldBytes(i < fields.size() ? fields.get(i) : "", values[i]));
        }
        final byte[] out = Arrays.copyOf(bytes.array(), bytes.position());
        if (values.length > 1 || fields.get(0).equals("ifname"))
        {
            for (int i = 0, j = out.length - 1; i < j; i++, j--)
            {
                final byte b = out[i];
                out[i] = out[j];
                out[j] = b;
            }
        }
        return out;
    }

    private static byte[] fieldBytes(final String type, final String value)
    {
        return switch (type)
        {
            case "ipv4_addr" -> Ipv4Address.parse(value).toBytes();
            case "ipv6_addr" -> Ipv6Address.parse(value).toBytes();
            case "inet_service" -> ByteBuffer.allocate(2).putShort((short)Integer.parseInt(value)).array();
            case "ifname" -> Arrays.copyOf(value.getBytes(StandardCharsets.US_ASCII), 16);
            default -> value.getBytes(StandardCharsets.UTF_8);
        };
    }

    private static String chain(final String name, final String hook, final List<String> rules)
    {
        final StringBuilder sb = new StringBuilder("\tchain ").append(name).append(" {\n");
        if (hook != null)
        {
            sb.append("\t\t").append(declaration(hook)).append('\n');
        }
        rules.forEach(rule -> sb.append("\t\t").append(sortProtocolSets(rule)).append('\n'));
        return sb.append("\t}\n").toString();
    }

    /** A base chain's declaration with a numeric priority printed by its standard name, as nft does. */
    private static String declaration(final String hook)
    {
        final Matcher m = HOOK.matcher(hook);
        if (!m.matches() || !m.group(3).matches("-?\\d+"))
        {
            return hook;
        }
        final String name = switch (Integer.parseInt(m.group(3)))
        {
            case -300 -> "raw";
            case -150 -> "mangle";
            case -100 -> m.group(2).equals("prerouting") ? "dstnat" : m.group(3);
            case 0 -> "filter";
            case 50 -> "security";
            case 100 -> m.group(2).equals("postrouting") ? "srcnat" : m.group(3);
            default -> m.group(3);
        };
        return "type " + m.group(1) + " hook " + m.group(2) + " priority " + name + "; policy " + m.group(4) + ";";
    }

    /** {@code meta l4proto { udp, tcp }} as nft lists it: {@code { tcp, udp }}, by protocol number. */
    private static String sortProtocolSets(final String rule)
    {
        final Matcher m = PROTOCOL_SET.matcher(rule);
        final StringBuilder sb = new StringBuilder();
        while (m.find())
        {
            final List<String> names = new ArrayList<>(List.of(m.group(2).split(",\\s*")));
            if (PROTOCOLS.keySet().containsAll(names))
            {
                names.sort(Comparator.comparing(PROTOCOLS::get));
            }
            m.appendReplacement(sb, Matcher.quoteReplacement(m.group(1) + " { " + String.join(", ", names) + " }"));
        }
        m.appendTail(sb);
        return sb.toString();
    }
}
