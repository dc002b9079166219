package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.List;

/** {@code egressctl machines}: every machine on this host and where it leaves from. */
@Command(name = "machines", description = "Every machine on this host: its app, guest interface and addresses, "
    + "and which address it leaves from (scope, egress pair, block and ports).")
final class MachinesCommand extends CtlCommand
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

    /** The scopes, for completion. */
    static final class Scopes extends ArrayList<String>
    {
        private static final long serialVersionUID = 1L;

        Scopes()
        {
            super(List.of("app", "machine", "host", "pending"));
        }
    }
}
