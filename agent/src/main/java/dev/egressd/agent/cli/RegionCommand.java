package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import picocli.CommandLine.Command;

/** {@code egressctl region}: the region ledger as this host sees it. */
@Command(name = "region", description = "The region ledger as this host sees it (GET /v1/region): whether etcd "
    + "answers, the revision applied, the cache lag, the region's hosts with their liveness, mark and slots, its "
    + "routers with the revision each applied, and this host's slots that the ledger does not give to it.")
final class RegionCommand extends CtlCommand
{
    @Override
    int run() throws CtlException
    {
        final JsonNode region = get("/v1/region");
        if (json)
        {
            printJson(region);
            return ExitCodes.OK;
        }
        if (!"etcd".equals(text(region, "ledger")))
        {
            out().println("ledger: local (this host alone owns its slots; set ledger=etcd for region mode)");
            return ExitCodes.OK;
        }
        out().println("ledger:    etcd, region " + text(region, "region") + ", this host " + text(region, "host"));
        out().println("available: " + (region.path("available").asBoolean() ? "yes"
            : "NO (" + text(region, "problem") + "): new machines wait, placed ones keep their egress"));
        final JsonNode lag = region.path("cache_lag_seconds");
        out().println("revision:  " + region.path("revision").asLong() + " applied; cache lag "
            + (lag.isNumber() ? String.format(java.util.Locale.ROOT, "%.3f s", lag.asDouble()) : "-"));
        final JsonNode requests = region.path("requests");
        out().println("requests:  " + requests.path("total").asLong() + " (" + requests.path("failures").asLong()
            + " failed, " + requests.path("conflicts").asLong() + " lost races); pending releases "
            + region.path("pending_releases").asInt() + "; slot conflicts " + region.path("slot_conflicts").asLong());
        final Table table = new Table("HOST", "ALIVE", "MARK", "SLOTS", "ADDRESSES");
        for (final JsonNode h : region.path("hosts"))
        {
            final StringBuilder addresses = new StringBuilder();
            h.path("addresses").forEach(a -> addresses.append(addresses.length() == 0 ? "" : ",").append(a.asText()));
            final int mark = h.path("mark").asInt();
            table.row(text(h, "id"), h.path("alive").asBoolean() ? "yes" : "no", mark == 0 ? "-" : mark,
                h.path("slots").asInt(), addresses.length() == 0 ? "-" : addresses.toString());
        }
        table.print(out());
        final long revision = region.path("revision").asLong();
        if (region.path("routers").isEmpty())
        {
            out().println("routers:   none (placements are answered at once, steering no_router)");
        }
        else
        {
            final Table routers = new Table("ROUTER", "APPLIED", "BEHIND");
            for (final JsonNode r : region.path("routers"))
            {
                final long applied = r.path("applied").asLong();
                routers.row(text(r, "id"), applied, applied >= revision ? "-" : Long.toString(revision - applied));
            }
            routers.print(out());
        }
        for (final JsonNode m : region.path("mismatches"))
        {
            out().println("MISMATCH: " + m.asText());
        }
        return ExitCodes.OK;
    }
}
