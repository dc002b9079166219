package dev.egressd.agent.kernel.nft;

import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;

import java.util.ArrayList;
import java.util.List;

/**
 * Turns plan changes into the nft text of their element operations: what {@link NftDataplane#apply} sends over
 * netlink, in nft's language, for the operator (the command an error names) and the docs. The table's chains are
 * never touched here: see {@link Ruleset}.
 *
 * <p>One command per line and one element per command, so the line nft blames on failure identifies
 * the plan change ({@link #renderEach}). Uplink address changes are skipped: they go through rtnetlink,
 * not nft.
 */
public final class PlanRenderer
{
    private final String table;

    /**
     * A renderer for one table.
     *
     * @param config the configuration naming the table.
     */
    public PlanRenderer(final DataplaneConfig config)
    {
        this.table = config.table();
    }

    /**
     * One nft transaction for all the changes, in their order.
     *
     * @param changes the changes (uplink ones are skipped).
     * @return the nft text, one command per line; empty when nothing is nft's business.
     * @throws IllegalArgumentException if an element cannot be rendered safely (e.g. a bad interface name).
     */
    public String render(final List<PlanChange> changes)
    {
        final StringBuilder sb = new StringBuilder();
        for (final Rendered rendered : renderEach(changes))
        {
            for (final String line : rendered.lines())
            {
                sb.append(line).append('\n');
            }
        }
        return sb.toString();
    }

    /**
     * A change and the nft commands it became.
     *
     * @param change the plan change.
     * @param lines  its commands, one per line.
     */
    public record Rendered(PlanChange change, List<String> lines)
    {
    }

    /**
     * The commands of each change, for attributing an nft failure to the change that caused it.
     *
     * @param changes the changes.
     * @return one entry per change that nft applies (uplink changes are left out).
     */
    public List<Rendered> renderEach(final List<PlanChange> changes)
    {
        final List<Rendered> out = new ArrayList<>(changes.size());
        for (final PlanChange change : changes)
        {
            final List<String> lines = new ArrayList<>(4);
            switch (change.op())
            {
                case ADD -> add(change.element(), lines);
                case REMOVE -> remove(change.element(), lines);
                case REPLACE -> replace(change.previous(), change.element(), lines);
                default -> throw new IllegalArgumentException("unknown op " + change.op());
            }
            if (!lines.isEmpty())
            {
                out.add(new Rendered(change, List.copyOf(lines)));
            }
        }
        return out;
    }

    private void add(final PlanElement element, final List<String> lines)
    {
        if (element instanceof PlanElement.Snat4 snat)
        {
            checkPorts(element, snat.firstPort(), snat.lastPort());
        }
        if (element instanceof PlanElement.Snat6 snat)
        {
            checkPorts(element, snat.firstPort(), snat.lastPort());
        }
        final String text = keyAndData(element);
        if (text != null)
        {
            lines.add(element("add", element.kind(), text));
        }
    }

    private void remove(final PlanElement element, final List<String> lines)
    {
        final String key = keyOnly(element);
        if (key != null)
        {
            lines.add(element("delete", element.kind(), key));
        }
    }

    private void replace(final PlanElement previous, final PlanElement element, final List<String> lines)
    {
        // 'add element' of an existing key with other data fails (File exists): delete, then add, in
        // the one transaction, so no packet sees the key missing.
        if (previous != null)
        {
            remove(previous, lines);
        }
        add(element, lines);
    }

    /** nft would take a reversed or out-of-range block as a syntax error for the whole transaction. */
    private static void checkPorts(final PlanElement element, final int firstPort, final int lastPort)
    {
        if (firstPort < 0 || lastPort > 65535 || firstPort > lastPort)
        {
            throw new IllegalArgumentException("ports: " + firstPort + "-" + lastPort
                + " is not a port range (0 <= first <= last <= 65535) in " + element);
        }
    }

    private String element(final String verb, final String set, final String text)
    {
        return verb + " element inet " + table + " " + set + " { " + text + " }";
    }

    private static String keyAndData(final PlanElement element)
    {
        if (element instanceof PlanElement.Snat4 snat)
        {
            return snat.guest() + " : " + snat.egress() + " . " + Ruleset.ports(snat.firstPort(), snat.lastPort());
        }
        if (element instanceof PlanElement.Snat6 snat)
        {
            return snat.guest() + " : " + snat.egress() + " . " + Ruleset.ports(snat.firstPort(), snat.lastPort());
        }
        return keyOnly(element);
    }

    private static String keyOnly(final PlanElement element)
    {
        if (element instanceof PlanElement.Static4 e)
        {
            return e.guest().toString();
        }
        if (element instanceof PlanElement.Static6 e)
        {
            return e.guest().toString();
        }
        if (element instanceof PlanElement.Guest4 e)
        {
            return ifname(e.iface()) + " . " + e.address();
        }
        if (element instanceof PlanElement.Guest6 e)
        {
            return ifname(e.iface()) + " . " + e.address();
        }
        if (element instanceof PlanElement.Snat4 e)
        {
            return e.guest().toString();
        }
        if (element instanceof PlanElement.Snat6 e)
        {
            return e.guest().toString();
        }
        // Uplink4 / Uplink6: addresses on the uplink are rtnetlink's business, not nft's.
        return null;
    }

    private static String ifname(final String iface)
    {
        DataplaneConfig.checkIfname("iface", iface);
        return '"' + iface + '"';
    }
}
