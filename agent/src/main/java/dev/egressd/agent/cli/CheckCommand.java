package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.egressd.agent.kernel.LoopbackArp;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.net.SocketException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code egressctl check}: this host's egress, from {@code /v1/state} (with its health) and this network namespace's
 * interfaces. Exits 1 if any check fails (with {@code --strict}, if any warns).
 */
@Command(name = "check", description = {
    "Checks this host's egress: the daemon answers; the kernel table is in sync with the state; every held egress "
        + "address (IPv4 and IPv6 of every app-scoped and machine-scoped pair) is on an interface of this host; "
        + "every machine leaves from a held pair, inside its block, and no two share a block; the kernel's conntrack "
        + "table is below 90%% of nf_conntrack_max; in region mode, the region ledger answers and every slot this "
        + "host holds is its own there; with the pair addresses on lo, the app pairs' addresses are on lo and "
        + "net.ipv4.conf.all.arp_ignore/arp_announce are at least 1/2; and it warns of "
        + "pending machines, drift repaired by the last reconcile and recovered kernel elements.",
    "Exits 0 when nothing failed, 1 when a check failed (or, with --strict, warned), 3 when the daemon is "
        + "unreachable, 4 when permission is denied. Run it in the daemon's network namespace."})
final class CheckCommand extends CtlCommand
{
    @Option(names = "--strict", description = "a warning fails the check too (exit 1)")
    boolean strict;

    @Option(names = "--skip-addresses", description = "do not look for the egress addresses on this host's "
        + "interfaces (when run outside the daemon's network namespace)")
    boolean skipAddresses;

    /** One check's outcome. */
    record Result(String check, String status, String detail)
    {
    }

    private final List<Result> results = new ArrayList<>();

    private void ok(final String check, final String detail)
    {
        results.add(new Result(check, "ok", detail));
    }

    private void warn(final String check, final String detail)
    {
        results.add(new Result(check, "warn", detail));
    }

    private void fail(final String check, final String detail)
    {
        results.add(new Result(check, "fail", detail));
    }

    @Override
    int run() throws CtlException
    {
        final JsonNode state = get("/v1/state");
        final JsonNode health = state.path("health");
        ok("daemon", "egressd " + health.path("version").asText() + " answers on " + top.socket);
        kernel(health);
        final String stateDisk = health.path("state").asText("ok");
        if (!"ok".equals(stateDisk))
        {
            fail("state", "the state file cannot be written, changes are refused: " + stateDisk);
        }
        conntrack(health.path("conntrack"));
        final DaemonClient.Answer region = send("GET", "/v1/region", null);
        if (region.status() == 200)
        {
            region(region.json()); // an older daemon has no region route: nothing to check
        }
        final Map<String, String> held = heldPairs(state);
        final boolean onLo = "lo".equals(state.path("host").path("pair_address_device").asText());
        addresses(held, onLo ? appPairs(state) : Map.of());
        if (onLo)
        {
            arp(health);
        }
        machines(state, held);
        final List<String> pending = new ArrayList<>();
        for (final JsonNode m : state.path("machines"))
        {
            if ("pending".equals(m.path("egress").path("scope").asText()))
            {
                pending.add(m.path("id").asText() + " (app " + m.path("app").asText() + ")");
            }
        }
        if (pending.isEmpty())
        {
            ok("pending", "no machine is waiting for a slot");
        }
        else
        {
            warn("pending", pending.size() + " machines wait for a slot, their traffic refused: "
                + String.join(", ", pending));
        }
        final int recovered = state.path("recovered").size();
        if (recovered == 0)
        {
            ok("recovered", "no kernel elements kept from a lost state file");
        }
        else
        {
            warn("recovered", recovered + " kernel elements kept from a lost state file: once the orchestrator "
                + "has re-sent its machines, DELETE /v1/recovered forgets the rest");
        }
        final long failures = results.stream().filter(r -> "fail".equals(r.status())).count();
        final long warnings = results.stream().filter(r -> "warn".equals(r.status())).count();
        final boolean ok = failures == 0 && (!strict || warnings == 0);
        if (json)
        {
            final ObjectNode node = DaemonClient.MAPPER.createObjectNode();
            node.put("ok", ok);
            node.put("failures", failures);
            node.put("warnings", warnings);
            final var checks = node.putArray("checks");
            for (final Result r : results)
            {
                checks.addObject().put("check", r.check()).put("status", r.status()).put("detail", r.detail());
            }
            printJson(node);
        }
        else
        {
            final Table table = new Table("CHECK", "STATUS", "DETAIL");
            for (final Result r : results)
            {
                table.row(r.check(), r.status().toUpperCase(java.util.Locale.ROOT), r.detail());
            }
            table.print(out());
            out().println(failures == 0 && warnings == 0 ? "check: ok"
                : "check: " + failures + " failed, " + warnings + " warnings" + (ok ? "" : " -> exit 1"));
        }
        return ok ? ExitCodes.OK : ExitCodes.ERROR;
    }

    /** In region mode: etcd answers, and every slot this host's kernel holds is this host's in the region's ledger. */
    private void region(final JsonNode region)
    {
        if (!"etcd".equals(text(region, "ledger")))
        {
            return;
        }
        if (region.path("available").asBoolean())
        {
            ok("region", "the region ledger answers (revision " + region.path("revision").asLong() + ")");
        }
        else
        {
            fail("region", "the region ledger is unavailable (" + text(region, "problem")
                + "): new machines wait, placed ones keep their egress");
        }
        final java.util.List<String> mismatches = new ArrayList<>();
        region.path("mismatches").forEach(m -> mismatches.add(m.asText()));
        if (mismatches.isEmpty())
        {
            ok("region-slots", "every slot this host holds is its own in the region's ledger");
        }
        else
        {
            fail("region-slots", mismatches.size() + " slots held here are not this host's in the region's ledger: "
                + String.join("; ", mismatches));
        }
    }

    private void kernel(final JsonNode health)
    {
        final String status = health.path("kernel").asText();
        final String counts = health.path("reconciles").asLong() + " reconciles, " + health.path("repairs").asLong()
            + " repairs";
        switch (status)
        {
            case "in_sync" -> ok("kernel", "the table is in sync with the state (" + counts + ")");
            case "repaired_drift" -> warn("kernel", "the last reconcile found drift and repaired it: "
                + text(health, "last_repair") + " (" + counts + ")");
            case "starting" -> fail("kernel", "the daemon has not read the kernel yet");
            default -> fail("kernel", "the kernel is " + status + " (" + health.path("consecutive_failures").asInt()
                + " consecutive failures): " + text(health, "last_error"));
        }
    }

    private void conntrack(final JsonNode ct)
    {
        if (!ct.isObject())
        {
            ok("conntrack", "table fill not known to the daemon (a dry run, or conntrack is not loaded)");
        }
        else if (ct.path("percent").asLong() >= StatusCommand.NEARLY_FULL_PERCENT)
        {
            fail("conntrack", "the kernel's conntrack table is " + StatusCommand.conntrack(ct)
                + "; raise net.netfilter.nf_conntrack_max");
        }
        else
        {
            ok("conntrack", StatusCommand.conntrack(ct));
        }
    }

    /**
     * With the pair addresses on lo: the ARP sysctls as the daemon last read them; if the daemon cannot read them
     * (a unit that hides /proc/sys) and this runs in its namespace, as read here.
     */
    private void arp(final JsonNode health)
    {
        String problem = health.path("arp_sysctls").isTextual() ? health.path("arp_sysctls").asText() : null;
        if (problem == null)
        {
            return; // an older daemon, or nothing read yet
        }
        if (problem.startsWith(LoopbackArp.UNREADABLE) && !skipAddresses)
        {
            problem = LoopbackArp.problem(top.sysctls()).orElse("ok");
        }
        if ("ok".equals(problem))
        {
            ok("arp-sysctls", LoopbackArp.ARP_IGNORE + " and " + LoopbackArp.ARP_ANNOUNCE + " keep this host from "
                + "answering ARP for, and announcing, the shared pair addresses on lo");
        }
        else
        {
            fail("arp-sysctls", problem);
        }
    }

    /** The app-scoped pairs: IPv4 to IPv6. */
    private static Map<String, String> appPairs(final JsonNode state)
    {
        final Map<String, String> pairs = new LinkedHashMap<>();
        for (final JsonNode app : state.path("apps"))
        {
            for (final JsonNode pair : app.path("pairs"))
            {
                pairs.put(pair.path("ipv4").asText(), pair.path("ipv6").asText());
            }
        }
        return pairs;
    }

    /** Every held pair: IPv4 to IPv6, app-scoped and machine-scoped. */
    private static Map<String, String> heldPairs(final JsonNode state)
    {
        final Map<String, String> held = new LinkedHashMap<>();
        for (final JsonNode app : state.path("apps"))
        {
            for (final JsonNode pair : app.path("pairs"))
            {
                held.put(pair.path("ipv4").asText(), pair.path("ipv6").asText());
            }
        }
        for (final JsonNode m : state.path("machines"))
        {
            final JsonNode scoped = m.path("machine_scoped_pair");
            if (scoped.isObject())
            {
                held.put(scoped.path("ipv4").asText(), scoped.path("ipv6").asText());
            }
        }
        return held;
    }

    /**
     * Every held pair's addresses are on an interface; with the pair addresses on lo, the app-scoped ones on lo.
     *
     * @param held   every held pair.
     * @param onLo   the app-scoped pairs, when their addresses belong on lo; else empty.
     */
    private void addresses(final Map<String, String> held, final Map<String, String> onLo)
    {
        if (skipAddresses || held.isEmpty())
        {
            if (held.isEmpty())
            {
                ok("addresses", "no egress pair is held on this host");
            }
            return;
        }
        final Map<String, String> local;
        try
        {
            local = top.localAddresses().list();
        }
        catch (final SocketException e)
        {
            fail("addresses", "cannot list this host's interfaces: " + e.getMessage());
            return;
        }
        for (final Map.Entry<String, String> pair : held.entrySet())
        {
            for (final String address : List.of(pair.getKey(), pair.getValue()))
            {
                final String nic = local.get(Addresses.canonical(address));
                final boolean lo = onLo.containsKey(pair.getKey());
                if (nic == null)
                {
                    fail("address " + address, "not on any interface of this host: its machines cannot leave "
                        + "from it (the daemon puts it on " + (lo ? "lo" : "the uplink") + ")");
                }
                else if (lo && !"lo".equals(nic))
                {
                    warn("address " + address, "on " + nic + ", not on lo: this host answers ARP/ND for a shared "
                        + "pair address (put there by hand or by other software? egressd never moves an address it "
                        + "does not own; docs/region.md, \"Addresses on lo\")");
                }
                else
                {
                    ok("address " + address, "on " + nic);
                }
            }
        }
    }

    private void machines(final JsonNode state, final Map<String, String> held)
    {
        final int size = state.path("host").path("block_size").asInt();
        final int count = state.path("host").path("block_count").asInt();
        final Map<String, String> blocks = new HashMap<>();
        int problems = 0;
        int checked = 0;
        for (final JsonNode m : state.path("machines"))
        {
            final String id = m.path("id").asText();
            final JsonNode e = m.path("egress");
            final String scope = e.path("scope").asText();
            if (!"app".equals(scope) && !"machine".equals(scope))
            {
                continue;
            }
            checked++;
            final String ipv4 = e.path("ipv4").asText();
            if (!held.containsKey(ipv4))
            {
                fail("machine " + id, "leaves from " + ipv4 + ", which is not a pair held on this host");
                problems++;
                continue;
            }
            if ("app".equals(scope))
            {
                final int block = e.path("block").asInt(-1);
                final int first = e.path("ports").path("first").asInt();
                final int last = e.path("ports").path("last").asInt();
                if (block < 0 || block >= count || first != Math.max(1, block * size)
                    || last != block * size + size - 1)
                {
                    fail("machine " + id, "block " + block + " ports " + first + "-" + last + " do not match the "
                        + "layout (" + count + " blocks of " + size + " ports)");
                    problems++;
                }
                final String other = blocks.put(ipv4 + "/" + block, id);
                if (other != null)
                {
                    fail("machine " + id, "holds block " + block + " of " + ipv4 + " as " + other + " does");
                    problems++;
                }
            }
        }
        if (problems == 0)
        {
            ok("machines", checked + " machines leave from held pairs, inside their blocks, no block shared");
        }
    }
}
