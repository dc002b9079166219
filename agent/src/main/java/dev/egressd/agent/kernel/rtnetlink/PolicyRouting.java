package dev.egressd.agent.kernel.rtnetlink;

import java.io.IOException;
import java.net.InetAddress;
import java.util.List;

/**
 * The router role's policy routing (rtnetlink): one {@code ip rule fwmark M lookup T} per host mark and, in each
 * host's table, one route per shared address via the host. Only rules and routes in a table range the caller owns
 * are read or changed; everything else on the router is left alone.
 */
public interface PolicyRouting extends AutoCloseable
{
    /** {@code AF_INET} and {@code AF_INET6} from linux/socket.h. */
    int AF_INET = 2;
    int AF_INET6 = 10;

    /**
     * {@code ip [-6] rule add fwmark <mark> lookup <table> pref <priority>}.
     *
     * @param family   {@link #AF_INET} or {@link #AF_INET6}.
     * @param mark     the packet mark (matched with the full mask).
     * @param table    the routing table.
     * @param priority the rule's priority.
     */
    record Rule(int family, int mark, int table, int priority)
    {
    }

    /**
     * {@code ip [-6] route add <destination>/<prefixLength> via <gateway> table <table>}.
     *
     * @param family       {@link #AF_INET} or {@link #AF_INET6}.
     * @param table        the routing table.
     * @param destination  the destination (a shared address).
     * @param prefixLength its prefix length (32 or 128 for a shared address).
     * @param gateway      the next hop (the host's address of the same family).
     */
    record Route(int family, int table, InetAddress destination, int prefixLength, InetAddress gateway)
    {
    }

    /**
     * The rules of a family whose table lies within {@code [firstTable, lastTable]}.
     *
     * @throws IOException if the dump fails.
     */
    List<Rule> rules(int family, int firstTable, int lastTable) throws IOException;

    /** Adds a rule; an identical rule already there is not an error. */
    void addRule(Rule rule) throws IOException;

    /** Deletes a rule; a rule already gone is not an error. */
    void deleteRule(Rule rule) throws IOException;

    /**
     * The routes of a family in the tables within {@code [firstTable, lastTable]}.
     *
     * @throws IOException if the dump fails.
     */
    List<Route> routes(int family, int firstTable, int lastTable) throws IOException;

    /** Adds or replaces the route to a destination in a table ({@code NLM_F_REPLACE}). */
    void replaceRoute(Route route) throws IOException;

    /** Deletes a route; a route already gone is not an error. */
    void deleteRoute(Route route) throws IOException;

    @Override
    void close();
}
