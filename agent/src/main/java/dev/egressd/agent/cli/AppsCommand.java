package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import picocli.CommandLine.Command;

import java.util.ArrayList;
import java.util.List;

/** {@code egressctl apps}: every app known on this host. */
@Command(name = "apps", description = "Every app known on this host: fail-closed flag, pairs, free slots, "
    + "machines and the machines waiting for a slot.")
final class AppsCommand extends CtlCommand
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
