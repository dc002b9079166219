package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code egressctl pairs}: every egress pair held on this host. */
@Command(name = "pairs", description = "Every egress pair held on this host: app-scoped pairs with their slots "
    + "and drain flag, and machine-scoped (legacy) pairs.")
final class PairsCommand extends CtlCommand
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
