package dev.egressd.agent.api;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.egressd.agent.conntrack.ConnectionQueries;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.conntrack.ConntrackTable;
import dev.egressd.agent.reconcile.Health;
import dev.egressd.agent.reconcile.KernelStatus;
import dev.egressd.agent.reconcile.Ledger;
import dev.egressd.agent.reconcile.RegionLedger;
import dev.egressd.agent.reconcile.Steering;
import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.version.Version;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.ledger.DestinationUsage;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import dev.egressd.core.plan.PlanElement;

import java.util.List;
import java.util.Optional;

/** The API's JSON views, built on the control loop thread. */
final class Views
{
    private Views()
    {
    }

    static ObjectNode machine(final EgressAllocator.MachineView view, final ConnectionQueries conntrack)
    {
        final ObjectNode node = machine(view);
        if (conntrack != null)
        {
            final ConnectionQueries.MachineSummary summary = conntrack.summary(view.machine().id());
            final ObjectNode c = node.putObject("connections");
            c.put("total", summary == null ? 0 : summary.total());
            c.put("busiest_use", summary == null ? 0
                : ConnectionQueries.use(summary.busiest(), conntrack.destinationCap()));
        }
        return node;
    }

    static ObjectNode connections(final ConnectionQueries.Connections c)
    {
        final ObjectNode node = Body.MAPPER.createObjectNode();
        node.put("machine", c.machine());
        node.put("cap", c.cap());
        node.put("total", c.total());
        if (c.busiest() == null)
        {
            node.putNull("busiest");
        }
        else
        {
            node.putObject("busiest").put("destination", c.busiest().destination())
                .put("connections", c.busiest().count())
                .put("use", ConnectionQueries.use(c.busiest().count(), c.cap()));
        }
        final ArrayNode destinations = node.putArray("destinations");
        for (final DestinationUsage d : c.destinations())
        {
            destinations.addObject().put("destination", d.destination()).put("connections", d.count())
                .put("use", ConnectionQueries.use(d.count(), c.cap())).put("ports_in_use", d.portsInUse());
        }
        node.put("violations", c.violations());
        return node;
    }

    static ObjectNode machine(final EgressAllocator.MachineView view)
    {
        final Machine m = view.machine();
        final ObjectNode node = Body.MAPPER.createObjectNode();
        node.put("id", m.id());
        node.put("app", m.app());
        node.put("interface", m.iface());
        node.put("ipv4", text(m.ipv4()));
        node.put("ipv6", text(m.ipv6()));
        node.put("pin", text(m.pin()));
        final Egress egress = view.egress();
        final ObjectNode e = node.putObject("egress");
        e.put("scope", egress.scope().wireName());
        e.put("ipv4", egress.pair() == null ? null : egress.pair().ipv4().toString());
        e.put("ipv6", egress.pair() == null ? null : egress.pair().ipv6().toString());
        if (egress.firstPort() > 0)
        {
            final ObjectNode ports = e.putObject("ports");
            ports.put("first", egress.firstPort());
            ports.put("last", egress.lastPort());
        }
        else
        {
            e.putNull("ports");
        }
        if (egress.scope() == Scope.APP)
        {
            e.put("block", egress.block());
        }
        e.put("reason", egress.reason());
        if (view.machineScopedPair() != null)
        {
            final ObjectNode scoped = node.putObject("machine_scoped_pair");
            scoped.put("ipv4", view.machineScopedPair().ipv4().toString());
            scoped.put("ipv6", view.machineScopedPair().ipv6().toString());
        }
        return node;
    }

    /**
     * A pair's view.
     *
     * @param view      the pair.
     * @param localHost this host's id in region mode (its own holders then name it too), or null.
     * @return the view.
     */
    static ObjectNode pair(final EgressAllocator.PairView view, final String localHost)
    {
        final ObjectNode node = Body.MAPPER.createObjectNode();
        node.put("ipv4", view.pair().ipv4().toString());
        node.put("ipv6", view.pair().ipv6().toString());
        node.put("region", view.pair().region());
        node.put("app", view.app());
        node.put("drained", view.drained());
        final ObjectNode slots = node.putObject("slots");
        slots.put("capacity", view.capacity());
        slots.put("used", view.used());
        slots.put("free", view.free());
        final ArrayNode holders = node.putArray("holders");
        for (final EgressAllocator.SlotHolder holder : view.slots())
        {
            final ObjectNode h = holders.addObject().put("block", holder.block()).put("machine", holder.machine());
            final String host = holder.host() != null ? holder.host() : localHost;
            if (host != null)
            {
                // region mode: which host's machine holds the block (the allocator's own carry no host)
                h.put("host", host);
            }
        }
        return node;
    }

    static Optional<ObjectNode> app(final ControlLoop loop, final String id)
    {
        for (final EgressAllocator.AppView app : loop.allocator().apps())
        {
            if (app.id().equals(id))
            {
                return Optional.of(app(loop.allocator(), app, loop.ledger().hostId()));
            }
        }
        return Optional.empty();
    }

    static ObjectNode app(final EgressAllocator allocator, final EgressAllocator.AppView app, final String localHost)
    {
        final ObjectNode node = Body.MAPPER.createObjectNode();
        node.put("id", app.id());
        node.put("fail_closed", app.failClosed());
        final ArrayNode pairs = node.putArray("pairs");
        for (final EgressAllocator.PairView pair : allocator.pairs())
        {
            if (pair.app().equals(app.id()))
            {
                pairs.add(pair(pair, localHost));
            }
        }
        node.put("free_slots", app.freeSlots());
        final ArrayNode machines = node.putArray("machines");
        for (final EgressAllocator.MachineView view : allocator.machines())
        {
            if (view.machine().app().equals(app.id()))
            {
                machines.add(view.machine().id());
            }
        }
        final ArrayNode waiting = node.putArray("waiting");
        app.waiting().forEach(waiting::add);
        if (app.pairsLost())
        {
            // Only when true: a restore lost the app's pairs and its machines are refused until a pair is added.
            node.put("pairs_lost", true);
        }
        return node;
    }

    static ObjectNode health(final Health health, final String stateProblem, final String version)
    {
        return health(health, stateProblem, version, null);
    }

    static ObjectNode health(final Health health, final String stateProblem, final String version,
        final ConntrackTable.Fill table)
    {
        return health(health, stateProblem, version, table, null);
    }

    static ObjectNode health(final Health health, final String stateProblem, final String version,
        final ConntrackTable.Fill table, final String arpSysctls)
    {
        final ObjectNode node = Body.MAPPER.createObjectNode();
        node.put("status", health.kernel() == KernelStatus.UNAVAILABLE
            || health.kernel() == KernelStatus.STARTING || stateProblem != null ? "degraded" : "ok");
        node.put("kernel", health.kernel().wireName());
        node.put("state", stateProblem == null ? "ok" : "unwritable: " + stateProblem);
        node.put("version", version);
        node.put("revision", Version.revision());
        node.put("reconciles", health.reconciles());
        node.put("repairs", health.repairs());
        node.put("consecutive_failures", health.consecutiveFailures());
        node.put("last_error", health.lastError());
        node.put("last_repair", health.lastRepair());
        if (table == null)
        {
            node.putNull("conntrack");
        }
        else
        {
            node.putObject("conntrack").put("entries", table.entries()).put("max", table.max())
                .put("percent", table.percent()).put("drops", table.drops())
                .put("insert_failed", table.insertFailed());
        }
        // Only with the pair addresses on lo (docs/region.md, "Addresses on lo"): "ok" or what is wrong.
        node.put("arp_sysctls", arpSysctls);
        return node;
    }

    static ObjectNode state(final ControlLoop loop, final String version)
    {
        return state(loop, version, null);
    }

    static ObjectNode state(final ControlLoop loop, final String version, final ConntrackTable.Fill table)
    {
        final EgressAllocator allocator = loop.allocator();
        final HostSettings settings = loop.settings();
        final ObjectNode node = Body.MAPPER.createObjectNode();
        final ObjectNode host = node.putObject("host");
        host.put("region", settings.region());
        host.put("block_count", settings.layout().blockCount());
        host.put("block_size", settings.layout().blockSize());
        host.put("destination_cap", settings.destinationCap());
        host.put("pair_address_device", settings.pairAddressDevice().wireName());
        node.set("health", health(loop.health(), loop.stateProblem(), version, table, loop.arpSysctls()));
        final ArrayNode apps = node.putArray("apps");
        for (final EgressAllocator.AppView app : allocator.apps())
        {
            apps.add(app(allocator, app, loop.ledger().hostId()));
        }
        final ArrayNode machines = node.putArray("machines");
        for (final EgressAllocator.MachineView view : allocator.machines())
        {
            machines.add(machine(view));
        }
        final ArrayNode recovered = node.putArray("recovered");
        final List<PlanElement> elements = List.copyOf(loop.recovered());
        for (final PlanElement element : elements)
        {
            final DesiredState.Element data = StateMapper.toData(element);
            recovered.add(Body.MAPPER.valueToTree(data));
        }
        return node;
    }

    /**
     * {@code GET /v1/region}: the ledger this host uses and, in region mode, what its cache of the region holds.
     *
     * @param ledger the loop's ledger.
     * @return the view.
     */
    static ObjectNode region(final Ledger ledger, final EgressAllocator allocator)
    {
        final ObjectNode node = Body.MAPPER.createObjectNode();
        if (!(ledger instanceof RegionLedger region))
        {
            node.put("ledger", "local");
            return node;
        }
        final RegionLedger.View v = region.view(allocator);
        node.put("ledger", "etcd");
        node.put("host", v.host());
        node.put("region", v.region());
        node.put("available", v.available());
        node.put("problem", v.problem());
        node.put("revision", v.revision());
        final long lag = region.lastApplyNanos();
        if (lag < 0)
        {
            node.putNull("cache_lag_seconds");
        }
        else
        {
            node.put("cache_lag_seconds", lag / 1e9);
        }
        final ArrayNode hosts = node.putArray("hosts");
        for (final RegionStore.HostRecord h : v.hosts())
        {
            final ObjectNode host = hosts.addObject();
            host.put("id", h.id());
            host.put("alive", h.alive());
            host.put("mark", h.mark());
            host.put("slots", v.slotsByHost().getOrDefault(h.id(), 0));
            final ArrayNode addresses = host.putArray("addresses");
            h.addresses().forEach(addresses::add);
        }
        final ArrayNode routers = node.putArray("routers");
        v.routers().forEach((id, applied) -> routers.addObject().put("id", id).put("applied", applied));
        final ObjectNode slots = node.putObject("slots_by_host");
        v.slotsByHost().forEach(slots::put);
        node.put("pending_releases", v.pendingReleases());
        final ArrayNode mismatches = node.putArray("mismatches");
        v.mismatches().forEach(mismatches::add);
        final RegionStore.Stats stats = region.storeStats();
        node.putObject("requests").put("total", stats.requests()).put("failures", stats.failures())
            .put("conflicts", stats.conflicts()).put("seconds", stats.nanos() / 1e9);
        node.put("slot_conflicts", region.slotConflicts());
        return node;
    }

    /**
     * The {@code "steering"} of a placement's or a host deletion's answer: whether the region's routers steer by
     * its revision.
     *
     * @param s the steering.
     * @return {@code {"state", "revision", "waiting_for"}}.
     */
    static ObjectNode steering(final Steering s)
    {
        final ObjectNode node = Body.MAPPER.createObjectNode();
        node.put("state", s.state().text());
        node.put("revision", s.revision());
        final ArrayNode waiting = node.putArray("waiting_for");
        s.waitingFor().forEach(waiting::add);
        return node;
    }

    private static String text(final Object o)
    {
        return o == null ? null : o.toString();
    }
}
