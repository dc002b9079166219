package dev.egressd.agent.router;

import dev.egressd.agent.kernel.rtnetlink.PolicyRouting;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Consumer;

/** An in-memory {@link PolicyRouting}: rules and routes as sets, each change logged to a shared event list. */
final class FakePolicyRouting implements PolicyRouting
{
    private final Set<Rule> rules = new LinkedHashSet<>();
    private final Set<Route> routes = new LinkedHashSet<>();
    private final Consumer<String> events;
    /** The next call fails, as a refused netlink request. */
    private boolean failNext;
    private int failures;

    FakePolicyRouting(final Consumer<String> events)
    {
        this.events = events;
    }

    synchronized Set<Rule> rules()
    {
        return Set.copyOf(rules);
    }

    synchronized Set<Route> routes()
    {
        return Set.copyOf(routes);
    }

    synchronized void handAdd(final Rule rule)
    {
        rules.add(rule);
    }

    synchronized void handAdd(final Route route)
    {
        routes.add(route);
    }

    synchronized void handDelete(final Rule rule)
    {
        rules.remove(rule);
    }

    synchronized int failures()
    {
        return failures;
    }

    synchronized void failNext()
    {
        failNext = true;
    }

    private void maybeFail() throws IOException
    {
        if (failNext)
        {
            failNext = false;
            failures++;
            throw new IOException("rtnetlink: simulated failure");
        }
    }

    @Override
    public synchronized List<Rule> rules(final int family, final int firstTable, final int lastTable)
        throws IOException
    {
        maybeFail();
        final List<Rule> out = new ArrayList<>();
        rules.stream().filter(r -> r.family() == family && r.table() >= firstTable && r.table() <= lastTable)
            .forEach(out::add);
        return out;
    }

    @Override
    public synchronized void addRule(final Rule rule) throws IOException
    {
        maybeFail();
        rules.add(rule);
        events.accept("rule add " + rule.mark() + "/" + rule.family());
    }

    @Override
    public synchronized void deleteRule(final Rule rule) throws IOException
    {
        maybeFail();
        rules.remove(rule);
        events.accept("rule delete " + rule.mark() + "/" + rule.family());
    }

    @Override
    public synchronized List<Route> routes(final int family, final int firstTable, final int lastTable)
        throws IOException
    {
        maybeFail();
        final List<Route> out = new ArrayList<>();
        routes.stream().filter(r -> r.family() == family && r.table() >= firstTable && r.table() <= lastTable)
            .forEach(out::add);
        return out;
    }

    @Override
    public synchronized void replaceRoute(final Route route) throws IOException
    {
        maybeFail();
        routes.removeIf(r -> r.family() == route.family() && r.table() == route.table()
            && r.destination().equals(route.destination()) && r.prefixLength() == route.prefixLength());
        routes.add(route);
        events.accept("route add " + route.table() + " " + route.destination().getHostAddress());
    }

    @Override
    public synchronized void deleteRoute(final Route route) throws IOException
    {
        maybeFail();
        routes.remove(route);
        events.accept("route delete " + route.table() + " " + route.destination().getHostAddress());
    }

    @Override
    public void close()
    {
    }
}
