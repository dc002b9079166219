package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code egressctl conns ID}: one machine's per-destination use of the connection cap. */
@Command(name = "conns", description = "One machine's per-destination use of the connection cap: its busiest "
    + "destinations, connections, use of the cap and source ports in use, and its block violations.")
final class ConnsCommand extends CtlCommand
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
}
