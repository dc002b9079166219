package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** egressctl's commands but {@code check} ({@link CheckCommand}). */
final class Commands
{
    private Commands()
    {
    }

    @Command(name = "status", description = "Host summary and health: daemon and kernel status, layout, counts of "
        + "apps, pairs, slots and machines by scope. Exits 1 when the daemon reports itself degraded.")
    static final class Status extends CtlCommand
    {
        @Override
        int run() throws CtlException
        {
            final JsonNode state = get("/v1/state");
            final JsonNode health = state.path("health");
            final JsonNode host = state.path("host");
            final Map<String, Integer> scopes = new LinkedHashMap<>();
            for (final String scope : List.of("app", "machine", "host", "pending"))
            {
                scopes.put(scope, 0);
            }
            final List<String> pending = new ArrayList<>();
            int machineScoped = 0;
            for (final JsonNode m : state.path("machines"))
            {
                final String scope = m.path("egress").path("scope").asText("unknown");
                scopes.merge(scope, 1, Integer::sum);
                if ("pending".equals(scope))
                {
                    pending.add(m.path("id").asText());
                }
                if (m.path("machine_scoped_pair").isObject())
                {
                    machineScoped++;
                }
            }
            int appPairs = 0;
            int drained = 0;
            int capacity = 0;
            int used = 0;
            int free = 0;
            for (final JsonNode app : state.path("apps"))
            {
                for (final JsonNode pair : app.path("pairs"))
                {
                    appPairs++;
                    drained += pair.path("drained").asBoolean() ? 1 : 0;
                    capacity += pair.path("slots").path("capacity").asInt();
                    used += pair.path("slots").path("used").asInt();
                    free += pair.path("slots").path("free").asInt();
                }
            }
            final int machines = state.path("machines").size();
            final int recovered = state.path("recovered").size();
            final boolean ok = "ok".equals(health.path("status").asText());
            if (json)
            {
                final ObjectNode node = DaemonClient.MAPPER.createObjectNode();
                node.set("host", host);
                node.set("health", health);
                final ObjectNode summary = node.putObject("summary");
                summary.put("apps", state.path("apps").size());
                summary.putObject("pairs").put("app", appPairs).put("machine", machineScoped).put("drained", drained);
                summary.putObject("slots").put("capacity", capacity).put("used", used).put("free", free);
                final ObjectNode byScope = summary.putObject("machines").put("total", machines);
                scopes.forEach(byScope::put);
                final ArrayNode p = summary.putArray("pending");
                pending.forEach(p::add);
                summary.put("recovered", recovered);
                printJson(node);
            }
            else
            {
                final List<String[]> lines = new ArrayList<>();
                lines.add(new String[] {"egressd", text(health, "version")});
                lines.add(new String[] {"status", health.path("status").asText()});
                lines.add(new String[] {"kernel", health.path("kernel").asText() + " (" + health.path("reconciles")
                    .asLong() + " reconciles, " + health.path("repairs").asLong() + " repairs, "
                    + health.path("consecutive_failures").asInt() + " consecutive failures)"});
                lines.add(new String[] {"last error", text(health, "last_error")});
                lines.add(new String[] {"last repair", text(health, "last_repair")});
                lines.add(new String[] {"region", text(host, "region")});
                lines.add(new String[] {"layout", host.path("block_count").asInt() + " slots per pair x "
                    + host.path("block_size").asInt() + " ports; destination cap " + host.path("destination_cap")
                    .asInt()});
                lines.add(new String[] {"apps", String.valueOf(state.path("apps").size())});
                lines.add(new String[] {"pairs", (appPairs + machineScoped) + ": " + appPairs + " app-scoped ("
                    + drained + " drained), " + machineScoped + " machine-scoped"});
                lines.add(new String[] {"slots", used + " used, " + free + " free of " + capacity});
                final StringBuilder m = new StringBuilder().append(machines).append(':');
                scopes.forEach((scope, n) -> m.append(' ').append(n).append(' ').append(scope).append(','));
                m.setLength(m.length() - 1);
                lines.add(new String[] {"machines", m.toString()});
                if (!pending.isEmpty())
                {
                    lines.add(new String[] {"pending", String.join(", ", pending) + " (traffic refused until a "
                        + "slot frees)"});
                }
                lines.add(new String[] {"recovered", recovered + " kernel elements"
                    + (recovered == 0 ? "" : " kept from a lost state file (DELETE /v1/recovered forgets them)")});
                Table.keyValues(out(), lines);
            }
            return ok ? ExitCodes.OK : ExitCodes.ERROR;
        }
    }

    @Command(name = "machines", description = "Every machine on this host: its app, guest interface and addresses, "
        + "and which address it leaves from (scope, egress pair, block and ports).")
    static final class Machines extends CtlCommand
    {
        @Option(names = "--app", paramLabel = "APP", description = "only the machines of this app")
        String app;

        @Option(names = "--scope", paramLabel = "SCOPE", description = "only machines of this scope: "
            + "${COMPLETION-CANDIDATES}", completionCandidates = Scopes.class)
        String scope;

        @Override
        int run() throws CtlException
        {
            final JsonNode state = get("/v1/state");
            final ArrayNode selected = DaemonClient.MAPPER.createArrayNode();
            for (final JsonNode m : state.path("machines"))
            {
                if ((app == null || app.equals(m.path("app").asText()))
                    && (scope == null || scope.equals(m.path("egress").path("scope").asText())))
                {
                    selected.add(m);
                }
            }
            if (json)
            {
                printJson(selected);
                return ExitCodes.OK;
            }
            final Table table = new Table("ID", "APP", "INTERFACE", "GUEST", "SCOPE", "EGRESS", "BLOCK", "PORTS");
            for (final JsonNode m : selected)
            {
                final JsonNode e = m.path("egress");
                table.row(text(m, "id"), text(m, "app"), text(m, "interface"), join(text(m, "ipv4"), text(m, "ipv6")),
                    text(e, "scope"), join(text(e, "ipv4"), text(e, "ipv6")), text(e, "block"), ports(e));
            }
            table.print(out());
            return ExitCodes.OK;
        }
    }

    /** The scopes, for completion. */
    static final class Scopes extends ArrayList<String>
    {
        private static final long serialVersionUID = 1L;

        Scopes()
        {
            super(List.of("app", "machine", "host", "pending"));
        }
    }

    @Command(name = "machine", description = "Explains one machine: scope, pair, block and ports, the reason, "
        + "whether the kernel holds it, its per-destination use of the cap and its counters (where the daemon "
        + "serves them).")
    static final class MachineCmd extends CtlCommand
    {
        @Parameters(index = "0", paramLabel = "ID", description = "the machine id")
        String id;

        @Override
        int run() throws CtlException
        {
            final JsonNode machine = get("/v1/machines/" + path(id));
            // /v1/health answers 503 with the same body while the kernel is unavailable: still an explanation.
            final DaemonClient.Answer healthAnswer = send("GET", "/v1/health", null);
            if (healthAnswer.status() != 200 && !healthAnswer.json().has("kernel"))
            {
                throw daemonError("GET", "/v1/health", healthAnswer);
            }
            final JsonNode health = healthAnswer.json();
            final JsonNode egress = machine.path("egress");
            final String scope = egress.path("scope").asText();
            final DaemonClient.Answer appAnswer = send("GET", "/v1/apps/" + path(machine.path("app").asText()), null);
            final JsonNode app = appAnswer.status() == 200 ? appAnswer.json() : null;
            final DaemonClient.Answer conns = send("GET", "/v1/machines/" + path(id) + "/connections?top=3", null);
            final JsonNode connections = conns.status() == 200 ? conns.json() : null;
            final Map<String, String> counters = counters();
            final Kernel kernel = kernel(health, scope, egress);
            if (json)
            {
                final ObjectNode node = DaemonClient.MAPPER.createObjectNode();
                node.set("machine", machine);
                node.set("app", app);
                final ObjectNode k = node.putObject("kernel");
                k.put("status", health.path("kernel").asText());
                if (kernel.holds() == null)
                {
                    k.putNull("holds");
                }
                else
                {
                    k.put("holds", kernel.holds());
                }
                k.put("explain", kernel.explain());
                node.set("connections", connections);
                final ObjectNode c = node.putObject("counters");
                counters.forEach(c::put);
                printJson(node);
                return ExitCodes.OK;
            }
            final List<String[]> lines = new ArrayList<>();
            lines.add(new String[] {"machine", text(machine, "id")});
            lines.add(new String[] {"app", text(machine, "app") + (app == null ? "" : app.path("fail_closed")
                .asBoolean() ? " (fail-closed: no slot means no traffic)" : " (falls back to the host address)")});
            lines.add(new String[] {"interface", text(machine, "interface")});
            lines.add(new String[] {"guest", join(text(machine, "ipv4"), text(machine, "ipv6"))});
            lines.add(new String[] {"pin", text(machine, "pin")});
            lines.add(new String[] {"scope", scope});
            lines.add(new String[] {"egress", join(text(egress, "ipv4"), text(egress, "ipv6"))});
            if ("app".equals(scope))
            {
                lines.add(new String[] {"block", text(egress, "block") + " (ports " + ports(egress) + ")"});
                final JsonNode pair = appPair(app, text(egress, "ipv4"));
                if (pair != null)
                {
                    lines.add(new String[] {"pair", text(pair, "ipv4") + ": " + pair.path("slots").path("used")
                        .asInt() + " of " + pair.path("slots").path("capacity").asInt() + " slots used"
                        + (pair.path("drained").asBoolean() ? ", drained (no new machines)" : "")});
                }
            }
            else if ("machine".equals(scope))
            {
                lines.add(new String[] {"ports", ports(egress) + " (machine-scoped: the whole range)"});
            }
            if ("pending".equals(scope) && app != null)
            {
                final List<String> waiting = new ArrayList<>();
                app.path("waiting").forEach(w -> waiting.add(w.asText()));
                final int position = waiting.indexOf(id);
                if (position >= 0)
                {
                    lines.add(new String[] {"waiting", "position " + (position + 1) + " of " + waiting.size()
                        + " for a slot of app " + text(machine, "app")});
                }
            }
            lines.add(new String[] {"reason", text(egress, "reason")});
            lines.add(new String[] {"kernel", kernel.explain()});
            if (connections != null)
            {
                final JsonNode busiest = connections.path("busiest");
                lines.add(new String[] {"connections", connections.path("total").asInt() + " open; cap "
                    + connections.path("cap").asInt() + " per destination"
                    + (busiest.isObject() ? "; busiest " + text(busiest, "destination") + " with "
                    + busiest.path("connections").asInt() + " (" + percent(busiest.path("use").asDouble()) + ")" : "")
                    + "; " + connections.path("violations").asLong() + " block violations"});
            }
            else
            {
                lines.add(new String[] {"connections", conns.status() == 404 && "not_found".equals(conns.errorCode())
                    ? "not served by this egressd (GET /v1/machines/{id}/connections)"
                    : "unavailable: " + conns.errorMessage()});
            }
            if (counters.isEmpty())
            {
                lines.add(new String[] {"counters", "none for this machine in /metrics"});
            }
            else
            {
                boolean first = true;
                for (final Map.Entry<String, String> c : counters.entrySet())
                {
                    lines.add(new String[] {first ? "counters" : "", c.getKey() + " " + c.getValue()});
                    first = false;
                }
            }
            Table.keyValues(out(), lines);
            return ExitCodes.OK;
        }

        private static JsonNode appPair(final JsonNode app, final String ipv4)
        {
            if (app == null || ipv4 == null)
            {
                return null;
            }
            for (final JsonNode pair : app.path("pairs"))
            {
                if (ipv4.equals(pair.path("ipv4").asText()))
                {
                    return pair;
                }
            }
            return null;
        }

        /** The machine's samples in {@code GET /metrics} (those labelled {@code machine="ID"}), if served. */
        private Map<String, String> counters() throws CtlException
        {
            final Map<String, String> counters = new LinkedHashMap<>();
            final DaemonClient.Answer metrics = send("GET", "/metrics", null);
            if (metrics.status() != 200)
            {
                return counters;
            }
            final Pattern label = Pattern.compile("[{,]machine=\"" + Pattern.quote(id) + "\"");
            for (final String line : metrics.text().split("\n"))
            {
                if (line.startsWith("#") || line.isBlank())
                {
                    continue;
                }
                final Matcher m = label.matcher(line);
                final int space = line.lastIndexOf(' ');
                if (m.find() && space > 0)
                {
                    counters.put(line.substring(0, space).trim(), line.substring(space + 1).trim());
                }
            }
            return counters;
        }

        /** Whether the kernel holds the machine's egress: null when unknown. */
        record Kernel(Boolean holds, String explain)
        {
        }

        static Kernel kernel(final JsonNode health, final String scope, final JsonNode egress)
        {
            final String status = health.path("kernel").asText();
            final String what = switch (scope)
            {
                case "app" -> "SNAT to " + join(text(egress, "ipv4"), text(egress, "ipv6")) + " ports "
                    + ports(egress);
                case "machine" -> "SNAT to " + join(text(egress, "ipv4"), text(egress, "ipv6")) + ", any port";
                case "host" -> "masquerade to the host's uplink address";
                case "pending" -> "its traffic refused (fail-closed), never leaked from the host address";
                default -> "its elements";
            };
            return switch (status)
            {
                case "in_sync" -> new Kernel(true, "holds it: " + what + " (the table is in sync with the state)");
                case "repaired_drift" -> new Kernel(true, "holds it: " + what + " (the last reconcile repaired "
                    + "drift: " + text(health, "last_repair") + ")");
                case "starting" -> new Kernel(null, "not known yet: the daemon has not read the kernel");
                default -> new Kernel(null, "unknown: the kernel is " + status + " ("
                    + health.path("consecutive_failures").asInt() + " consecutive failures: "
                    + text(health, "last_error") + "); the daemon retries with back-off");
            };
        }
    }

    @Command(name = "pairs", description = "Every egress pair held on this host: app-scoped pairs with their slots "
        + "and drain flag, and machine-scoped (legacy) pairs.")
    static final class Pairs extends CtlCommand
    {
        @Option(names = "--holders", description = "list which machine holds each block instead")
        boolean holders;

        @Override
        int run() throws CtlException
        {
            final JsonNode state = get("/v1/state");
            final ArrayNode pairs = DaemonClient.MAPPER.createArrayNode();
            for (final JsonNode app : state.path("apps"))
            {
                for (final JsonNode pair : app.path("pairs"))
                {
                    final ObjectNode p = ((ObjectNode)pair.deepCopy()).put("scope", "app");
                    pairs.add(p);
                }
            }
            for (final JsonNode m : state.path("machines"))
            {
                final JsonNode scoped = m.path("machine_scoped_pair");
                if (scoped.isObject())
                {
                    final ObjectNode p = pairs.addObject();
                    p.put("ipv4", text(scoped, "ipv4"));
                    p.put("ipv6", text(scoped, "ipv6"));
                    p.put("region", text(state.path("host"), "region"));
                    p.put("app", text(m, "app"));
                    p.put("scope", "machine");
                    p.put("machine", text(m, "id"));
                }
            }
            if (json)
            {
                printJson(pairs);
                return ExitCodes.OK;
            }
            final int size = state.path("host").path("block_size").asInt();
            if (holders)
            {
                final Table table = new Table("IPV4", "SCOPE", "BLOCK", "PORTS", "MACHINE");
                for (final JsonNode p : pairs)
                {
                    if ("machine".equals(text(p, "scope")))
                    {
                        table.row(text(p, "ipv4"), "machine", null, "1-65535", text(p, "machine"));
                        continue;
                    }
                    for (final JsonNode h : p.path("holders"))
                    {
                        final int block = h.path("block").asInt();
                        table.row(text(p, "ipv4"), "app", block, Math.max(1, block * size) + "-"
                            + (block * size + size - 1), text(h, "machine"));
                    }
                }
                table.print(out());
                return ExitCodes.OK;
            }
            final Table table = new Table("IPV4", "IPV6", "APP", "SCOPE", "DRAINED", "USED", "FREE", "CAPACITY");
            for (final JsonNode p : pairs)
            {
                if ("machine".equals(text(p, "scope")))
                {
                    table.row(text(p, "ipv4"), text(p, "ipv6"), text(p, "app"), "machine:" + text(p, "machine"),
                        null, null, null, null);
                }
                else
                {
                    final JsonNode slots = p.path("slots");
                    table.row(text(p, "ipv4"), text(p, "ipv6"), text(p, "app"), "app",
                        p.path("drained").asBoolean() ? "yes" : "no", slots.path("used").asInt(),
                        slots.path("free").asInt(), slots.path("capacity").asInt());
                }
            }
            table.print(out());
            return ExitCodes.OK;
        }
    }

    @Command(name = "apps", description = "Every app known on this host: fail-closed flag, pairs, free slots, "
        + "machines and the machines waiting for a slot.")
    static final class Apps extends CtlCommand
    {
        @Override
        int run() throws CtlException
        {
            final JsonNode state = get("/v1/state");
            if (json)
            {
                printJson(state.path("apps"));
                return ExitCodes.OK;
            }
            final Table table = new Table("ID", "FAIL-CLOSED", "PAIRS", "FREE-SLOTS", "MACHINES", "WAITING");
            for (final JsonNode app : state.path("apps"))
            {
                final List<String> waiting = new ArrayList<>();
                app.path("waiting").forEach(w -> waiting.add(w.asText()));
                table.row(text(app, "id"), app.path("fail_closed").asBoolean() ? "yes" : "no",
                    app.path("pairs").size(), app.path("free_slots").asInt(), app.path("machines").size(),
                    String.join(",", waiting));
            }
            table.print(out());
            return ExitCodes.OK;
        }
    }

    @Command(name = "app", description = "One app: fail-closed flag, its pairs with their slots, its machines and "
        + "its waiting queue.")
    static final class AppCmd extends CtlCommand
    {
        @Parameters(index = "0", paramLabel = "APP", description = "the app id")
        String id;

        @Override
        int run() throws CtlException
        {
            final JsonNode app = get("/v1/apps/" + path(id));
            if (json)
            {
                printJson(app);
                return ExitCodes.OK;
            }
            final List<String> machines = new ArrayList<>();
            app.path("machines").forEach(m -> machines.add(m.asText()));
            final List<String> waiting = new ArrayList<>();
            app.path("waiting").forEach(m -> waiting.add(m.asText()));
            Table.keyValues(out(), List.of(
                new String[] {"app", text(app, "id")},
                new String[] {"fail-closed", app.path("fail_closed").asBoolean() ? "yes (no slot: traffic refused)"
                    : "no (no slot: masquerade to the host address)"},
                new String[] {"free slots", String.valueOf(app.path("free_slots").asInt())},
                new String[] {"machines", machines.size() + (machines.isEmpty() ? "" : ": "
                    + String.join(", ", machines))},
                new String[] {"waiting", waiting.isEmpty() ? "none" : String.join(", ", waiting)}));
            if (app.path("pairs").size() > 0)
            {
                out().println();
                final Table table = new Table("IPV4", "IPV6", "REGION", "DRAINED", "USED", "FREE", "CAPACITY");
                for (final JsonNode p : app.path("pairs"))
                {
                    final JsonNode slots = p.path("slots");
                    table.row(text(p, "ipv4"), text(p, "ipv6"), text(p, "region"),
                        p.path("drained").asBoolean() ? "yes" : "no", slots.path("used").asInt(),
                        slots.path("free").asInt(), slots.path("capacity").asInt());
                }
                table.print(out());
            }
            return ExitCodes.OK;
        }
    }

    @Command(name = "conns", description = "One machine's per-destination use of the connection cap: its busiest "
        + "destinations, connections, use of the cap and source ports in use, and its block violations.")
    static final class Conns extends CtlCommand
    {
        @Parameters(index = "0", paramLabel = "ID", description = "the machine id")
        String id;

        @Option(names = "--top", paramLabel = "N", defaultValue = "10",
            description = "how many of the busiest destinations (default ${DEFAULT-VALUE})")
        int top;

        @Override
        int run() throws CtlException
        {
            if (top < 1)
            {
                throw new CommandLine.ParameterException(spec.commandLine(), "--top must be 1 or more, got " + top);
            }
            final String uri = "/v1/machines/" + path(id) + "/connections?top=" + top;
            final DaemonClient.Answer answer = send("GET", uri, null);
            if (answer.status() == 404 && "not_found".equals(answer.errorCode()))
            {
                if (json)
                {
                    printJson(answer.json());
                }
                throw new CtlException(ExitCodes.ERROR, "this egressd does not serve per-destination connections "
                    + "(GET /v1/machines/{id}/connections answered 404 not_found): upgrade it");
            }
            if (answer.status() != 200)
            {
                throw daemonError("GET", uri, answer);
            }
            final JsonNode c = answer.json();
            if (json)
            {
                printJson(c);
                return ExitCodes.OK;
            }
            final JsonNode busiest = c.path("busiest");
            out().println("machine " + text(c, "machine") + ": " + c.path("total").asInt() + " connections, cap "
                + c.path("cap").asInt() + " per destination"
                + (busiest.isObject() ? ", busiest " + text(busiest, "destination") + " at "
                + percent(busiest.path("use").asDouble()) : "")
                + ", " + c.path("violations").asLong() + " block violations");
            final Table table = new Table("DESTINATION", "CONNECTIONS", "USE", "PORTS-IN-USE", "LEVEL");
            for (final JsonNode d : c.path("destinations"))
            {
                final double use = d.path("use").asDouble();
                table.row(text(d, "destination"), d.path("connections").asInt(), percent(use),
                    text(d, "ports_in_use"), level(d.path("connections").asInt(), c.path("cap").asInt(), use));
            }
            if (table.size() > 0)
            {
                table.print(out());
            }
            return ExitCodes.OK;
        }
    }

    /**
     * The LEVEL of a destination's use of the cap: {@code high} from {@code ceil(80% of the cap)} connections,
     * {@code critical} from {@code ceil(95%)}: the ledger's own thresholds (DestinationLedger), so that LEVEL agrees
     * with {@code egressd_machines_saturated} and the refusal log. The daemon's {@code use} is rounded to three
     * decimals (819 of 1024 is 0.7998, answered as 0.8) and so cannot decide it.
     *
     * @param connections the destination's connections.
     * @param cap         the destination cap (0 when the answer has none: then {@code use} decides).
     * @param use         connections / cap, as answered.
     * @return {@code ok}, {@code high} or {@code critical}.
     */
    static String level(final int connections, final int cap, final double use)
    {
        if (cap <= 0)
        {
            return use >= 0.95 ? "critical" : use >= 0.80 ? "high" : "ok";
        }
        return connections >= (cap * 95L + 99) / 100 ? "critical" : connections >= (cap * 80L + 99) / 100 ? "high"
            : "ok";
    }

    /** drain and undrain. */
    abstract static class DrainBase extends CtlCommand
    {
        @Parameters(index = "0", paramLabel = "PAIR_IPV4", description = "the pair's IPv4 address")
        String ipv4;

        @Option(names = "--app", paramLabel = "APP", description = "the app owning the pair (default: looked up "
            + "in /v1/state)")
        String app;

        int change(final boolean drain) throws CtlException
        {
            String owner = app;
            if (owner == null)
            {
                for (final JsonNode a : get("/v1/state").path("apps"))
                {
                    for (final JsonNode p : a.path("pairs"))
                    {
                        if (ipv4.equals(p.path("ipv4").asText()))
                        {
                            owner = a.path("id").asText();
                        }
                    }
                }
                if (owner == null)
                {
                    throw new CtlException(ExitCodes.ERROR, ipv4 + " is not an app-scoped pair on this host");
                }
            }
            final JsonNode pair = call(drain ? "PUT" : "DELETE", "/v1/apps/" + path(owner) + "/pairs/" + path(ipv4)
                + "/drain", null);
            if (json)
            {
                printJson(pair);
                return ExitCodes.OK;
            }
            final JsonNode slots = pair.path("slots");
            out().println((drain ? "drained " : "undrained ") + text(pair, "ipv4") + " (app " + owner + "): "
                + (drain ? "no new machines are placed on it; its " + slots.path("used").asInt()
                + " machines keep their slots"
                : "it takes new machines again (" + slots.path("free").asInt() + " of "
                + slots.path("capacity").asInt() + " slots free)"));
            return ExitCodes.OK;
        }
    }

    @Command(name = "drain", description = "Drains an app-scoped pair: no new machine is placed on it; the machines "
        + "on it keep their slots (PUT /v1/apps/{app}/pairs/{ipv4}/drain). Repeating it is harmless.")
    static final class Drain extends DrainBase
    {
        @Override
        int run() throws CtlException
        {
            return change(true);
        }
    }

    @Command(name = "undrain", description = "Undrains a pair: it takes new machines again "
        + "(DELETE /v1/apps/{app}/pairs/{ipv4}/drain).")
    static final class Undrain extends DrainBase
    {
        @Override
        int run() throws CtlException
        {
            return change(false);
        }
    }
}
