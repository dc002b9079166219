package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import picocli.CommandLine.Command;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** {@code egressctl status}: the host summary and health. */
@Command(name = "status", description = "Host summary and health: daemon and kernel status, layout, counts of "
    + "apps, pairs, slots and machines by scope. Exits 1 when the daemon reports itself degraded.")
final class StatusCommand extends CtlCommand
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
            if (!"ok".equals(health.path("state").asText("ok")))
            {
                lines.add(new String[] {"state", health.path("state").asText() + " (changes are refused)"});
            }
            lines.add(new String[] {"last repair", text(health, "last_repair")});
            lines.add(new String[] {"conntrack", conntrack(health.path("conntrack"))});
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

    /**
     * The kernel conntrack table's fill as one line.
     *
     * @param ct the health's {@code conntrack} object (null or missing when the daemon does not know it).
     * @return "N of MAX entries (P%)", with a warning when nearly full.
     */
    static String conntrack(final JsonNode ct)
    {
        if (!ct.isObject())
        {
            return "unknown (a dry run, or conntrack is not loaded)";
        }
        final long percent = ct.path("percent").asLong();
        final long drops = ct.path("drops").asLong();
        return ct.path("entries").asLong() + " of " + ct.path("max").asLong() + " entries (" + percent + "%)"
            + (percent >= NEARLY_FULL_PERCENT ? ", nearly full: new connections are dropped once full" : "")
            + (drops > 0 ? ", " + drops + " packets dropped while full" : "");
    }

    /** The fill at which status and check report the table (the daemon warns in its log at the same). */
    static final int NEARLY_FULL_PERCENT = 90;
}
