package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** {@code egressctl machine ID}: one machine explained, from the API, the kernel status and /metrics. */
@Command(name = "machine", description = "Explains one machine: scope, pair, block and ports, the reason, "
    + "whether the kernel holds it, its per-destination use of the cap and its counters (where the daemon "
    + "serves them).")
final class MachineCommand extends CtlCommand
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
