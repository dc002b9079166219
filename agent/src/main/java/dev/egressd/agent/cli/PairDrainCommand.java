package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** What {@code egressctl drain} and {@code undrain} share: the pair, its app, and the change. */
abstract class PairDrainCommand extends CtlCommand
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
