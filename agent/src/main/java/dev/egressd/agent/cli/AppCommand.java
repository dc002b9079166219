package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

import java.util.ArrayList;
import java.util.List;

/** {@code egressctl app APP}: one app, its pairs and machines. */
@Command(name = "app", description = "One app: fail-closed flag, its pairs with their slots, its machines and "
    + "its waiting queue.")
final class AppCommand extends CtlCommand
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
