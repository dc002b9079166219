package dev.egressd.agent.state;

import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.alloc.SlotLedger;
import dev.egressd.core.alloc.Parsed;
import dev.egressd.core.alloc.RequestText;
import dev.egressd.core.model.AddressDevice;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.KernelPlanner;
import dev.egressd.core.plan.PlanElement;
import dev.egressd.core.plan.PlannedMachine;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Turns the allocator into the state file's {@link DesiredState} and back, and both into the kernel plan.
 *
 * <p>Rebuild order is the allocator's restart order: apps, their pairs and drain flags, the machines that held a
 * slot or a machine-scoped pair (restored on that exact placement), then the waiting machines in queue order.
 */
public final class StateMapper
{
    /** The loopback interface: where {@link AddressDevice#LO} puts an address. */
    public static final String LOOPBACK = "lo";

    private StateMapper()
    {
    }

    /**
     * The allocator rebuilt from a state, and what could not be restored.
     *
     * @param allocator the allocator.
     * @param problems  one line per entry that was refused (the entry is then skipped or placed anew).
     */
    public record Rebuilt(EgressAllocator allocator, List<String> problems)
    {
    }

    /**
     * The host section of the state file for these settings.
     *
     * @param settings the settings.
     * @return the host section.
     */
    public static DesiredState.Host host(final HostSettings settings)
    {
        return new DesiredState.Host(settings.region(), settings.layout().blockCount(), settings.layout().blockSize(),
            settings.destinationCap());
    }

    /**
     * Exports an allocator's state.
     *
     * @param allocator the allocator.
     * @param recovered recovered kernel elements still unclaimed.
     * @return the state.
     */
    public static DesiredState export(final EgressAllocator allocator, final Collection<PlanElement> recovered)
    {
        final Map<String, List<DesiredState.Pair>> pairsByApp = new HashMap<>();
        for (final EgressAllocator.PairView pair : allocator.pairs())
        {
            pairsByApp.computeIfAbsent(pair.app(), k -> new ArrayList<>()).add(new DesiredState.Pair(
                pair.pair().ipv4().toString(), pair.pair().ipv6().toString(), pair.drained()));
        }
        final List<DesiredState.App> apps = new ArrayList<>();
        for (final EgressAllocator.AppView app : allocator.apps())
        {
            apps.add(new DesiredState.App(app.id(), app.failClosed(), pairsByApp.getOrDefault(app.id(), List.of()),
                app.waiting(), app.pairsLost() ? Boolean.TRUE : null));
        }
        final List<DesiredState.MachineEntry> machines = new ArrayList<>();
        for (final EgressAllocator.MachineView view : allocator.machines())
        {
            final Machine m = view.machine();
            final DesiredState.Slot slot = view.egress().scope() == Scope.APP
                ? new DesiredState.Slot(view.egress().pair().ipv4().toString(), view.egress().block()) : null;
            final EgressPair scoped = view.machineScopedPair();
            machines.add(new DesiredState.MachineEntry(m.id(), m.app(), m.iface(), text(m.ipv4()), text(m.ipv6()),
                text(m.pin()), slot,
                scoped == null ? null : new DesiredState.ScopedPair(scoped.ipv4().toString(), scoped.ipv6().toString()),
                view.pairLost() ? Boolean.TRUE : null));
        }
        final List<DesiredState.Element> elements = new ArrayList<>();
        for (final PlanElement element : recovered)
        {
            elements.add(toData(element));
        }
        return new DesiredState(DesiredState.VERSION, host(allocator.settings()), apps, machines, elements);
    }

    /**
     * Why a state cannot be restored under new host settings without moving placed machines, or null if it can: a
     * machine's slot is a port range its partners' firewalls and connection tracking see, so a new block size (every
     * block's ports change), fewer blocks than a placed machine's block, or another region (every pair belongs to
     * its region) would change the source of running machines behind the operator's back. More blocks of the same
     * size, or another destination cap, move nobody.
     *
     * @param state    the loaded state.
     * @param settings the settings from the config.
     * @return the setting at fault and the problem, or null.
     */
    public static String[] layoutProblem(final DesiredState state, final HostSettings settings)
    {
        final DesiredState.Host was = state.host();
        int placed = 0;
        int highest = -1;
        for (final DesiredState.MachineEntry m : state.machines())
        {
            if (m.slot() != null)
            {
                placed++;
                highest = Math.max(highest, m.slot().block());
            }
        }
        int pairs = 0;
        for (final DesiredState.App app : state.apps())
        {
            pairs += app.pairs().size();
        }
        final String how = "; keep the old value, or remove those machines first (DELETE /v1/machines/{id}), or start "
            + "from an empty state (egressd --teardown --yes, then move the state directory's files away)";
        if (!was.region().equals(settings.region()) && (pairs > 0 || placed > 0))
        {
            return new String[] {"region", settings.region(), "the state holds " + pairs + " pairs and " + placed
                + " placed machines of region " + was.region() + "; another region would drop them all" + how};
        }
        if (placed == 0)
        {
            return null;
        }
        if (was.blockSize() != settings.layout().blockSize())
        {
            return new String[] {"block-size", Integer.toString(settings.layout().blockSize()), "the state places "
                + placed + " machines on blocks of " + was.blockSize() + " ports; blocks of "
                + settings.layout().blockSize() + " would change every placed machine's source ports" + how};
        }
        if (highest >= settings.layout().blockCount())
        {
            return new String[] {"block-count", Integer.toString(settings.layout().blockCount()), "the state places a "
                + "machine on block " + highest + "; " + settings.layout().blockCount() + " blocks would move it" + how};
        }
        return null;
    }

    /**
     * Rebuilds an allocator from a state.
     *
     * @param settings the host settings (from the config; a state made under another layout is restored as far as
     *                 it fits).
     * @param state    the state.
     * @param seed     the placement tie-break seed.
     * @return the allocator and the problems met.
     */
    public static Rebuilt rebuild(final HostSettings settings, final DesiredState state, final long seed)
    {
        return rebuild(settings, state, seed, SlotLedger.LOCAL);
    }

    /**
     * Rebuilds an allocator from a state, with the slot ledger it asks before taking a slot (waiting machines are
     * placed anew at the end, through it).
     *
     * @param settings the host settings.
     * @param state    the state.
     * @param seed     the placement tie-break seed.
     * @param ledger   the slot ledger.
     * @return the allocator and the problems met.
     */
    public static Rebuilt rebuild(final HostSettings settings, final DesiredState state, final long seed,
        final SlotLedger ledger)
    {
        final EgressAllocator allocator = new EgressAllocator(settings, seed, ledger);
        final List<String> problems = new ArrayList<>();
        // Fail-closed apps and machines whose pairs this restore lost (or an earlier one did, and no pair is back):
        // held closed at the end, so none of their machines falls back to the host address (invariant 3).
        final Set<String> appsLost = new LinkedHashSet<>();
        final Set<String> machinesLost = new LinkedHashSet<>();
        for (final DesiredState.App app : state.apps())
        {
            check(problems, "app " + app.id(), allocator.upsertApp(app.id(), app.failClosed()));
            if (app.lostPairs())
            {
                appsLost.add(app.id());
            }
            for (final DesiredState.Pair pair : app.pairs())
            {
                final Parsed<EgressPair> parsed = RequestText.pair(pair.ipv4(), pair.ipv6(), null, settings.region());
                final Outcome added = parsed.then(p -> allocator.addPair(app.id(), p));
                if (!check(problems, "pair " + pair.ipv4() + " of app " + app.id(), added))
                {
                    appsLost.add(app.id());
                }
                if (added.ok() && pair.drained())
                {
                    check(problems, "drain of pair " + pair.ipv4(),
                        parsed.then(p -> allocator.setDrained(app.id(), p.ipv4(), true)));
                }
            }
        }
        final Map<String, DesiredState.MachineEntry> waiting = new HashMap<>();
        for (final DesiredState.MachineEntry entry : state.machines())
        {
            final Machine machine;
            try
            {
                machine = machine(entry);
            }
            catch (final IllegalArgumentException e)
            {
                problems.add("machine " + entry.id() + ": " + e.getMessage());
                continue;
            }
            if (entry.lostPair())
            {
                machinesLost.add(entry.id());
            }
            if (entry.machineScoped() != null)
            {
                machinesLost.add(entry.id());
                try
                {
                    final EgressPair scoped = new EgressPair(Ipv4Address.parse(entry.machineScoped().ipv4()),
                        Ipv6Address.parse(entry.machineScoped().ipv6()), settings.region());
                    if (check(problems, "machine " + entry.id(), allocator.restoreMachineScoped(machine, scoped)))
                    {
                        machinesLost.remove(entry.id());
                        continue;
                    }
                }
                catch (final IllegalArgumentException e)
                {
                    problems.add("machine " + entry.id() + ": " + e.getMessage());
                }
            }
            else if (entry.slot() != null)
            {
                try
                {
                    final Outcome restored = allocator.restoreMachine(machine, Ipv4Address.parse(entry.slot().pair()),
                        entry.slot().block());
                    if (check(problems, "machine " + entry.id() + " on " + entry.slot().pair() + " block "
                        + entry.slot().block(), restored))
                    {
                        continue;
                    }
                }
                catch (final IllegalArgumentException e)
                {
                    problems.add("machine " + entry.id() + ": " + e.getMessage());
                }
            }
            waiting.put(entry.id(), entry);
        }
        // Waiting machines in their old queue order, then any others (restores that failed are placed anew).
        final Set<String> order = new LinkedHashSet<>();
        for (final DesiredState.App app : state.apps())
        {
            order.addAll(app.waiting());
        }
        order.addAll(waiting.keySet().stream().sorted().toList());
        for (final String id : order)
        {
            final DesiredState.MachineEntry entry = waiting.remove(id);
            if (entry != null)
            {
                check(problems, "machine " + id, allocator.upsertMachine(machine(entry)));
            }
        }
        // Each does nothing for an app that is not fail-closed, or a machine that found a pair anyway.
        for (final EgressAllocator.AppView app : allocator.apps())
        {
            if (appsLost.contains(app.id()))
            {
                check(problems, "hold app " + app.id() + " closed", allocator.holdClosed(app.id()));
            }
        }
        for (final String id : machinesLost)
        {
            if (allocator.machine(id).isPresent())
            {
                check(problems, "hold machine " + id + " closed", allocator.holdMachineClosed(id));
            }
        }
        return new Rebuilt(allocator, problems);
    }

    /**
     * The kernel plan of an allocator plus recovered and lingering elements that the allocator does not override.
     *
     * @param allocator the allocator.
     * @param extra     elements kept besides the allocator's (recovered ones, released addresses draining).
     * @return the plan.
     */
    public static KernelPlan plan(final EgressAllocator allocator, final Collection<PlanElement> extra)
    {
        return plan(allocator, extra, AddressDevice.UPLINK);
    }

    /**
     * The kernel plan of an allocator plus recovered and lingering elements that the allocator does not override,
     * with the app-scoped pairs' addresses on a chosen device (machine-scoped pairs stay on the uplink).
     *
     * @param allocator the allocator.
     * @param extra     elements kept besides the allocator's (recovered ones, released addresses draining).
     * @param appDevice where the app-scoped pairs' addresses go ({@link HostSettings#pairAddressDevice()}).
     * @return the plan.
     */
    public static KernelPlan plan(final EgressAllocator allocator, final Collection<PlanElement> extra,
        final AddressDevice appDevice)
    {
        final List<PlannedMachine> machines = new ArrayList<>();
        final List<EgressPair> pairs = new ArrayList<>();
        final List<EgressPair> machinePairs = new ArrayList<>();
        for (final EgressAllocator.PairView pair : allocator.pairs())
        {
            pairs.add(pair.pair());
        }
        for (final EgressAllocator.MachineView view : allocator.machines())
        {
            machines.add(new PlannedMachine(view.machine(), view.egress()));
            if (view.machineScopedPair() != null)
            {
                machinePairs.add(view.machineScopedPair());
            }
        }
        final KernelPlan own = KernelPlanner.plan(machines, pairs, machinePairs, appDevice);
        if (extra.isEmpty())
        {
            return own;
        }
        final List<PlanElement> all = own.elements();
        final Set<String> guestsClaimed = new HashSet<>();
        for (final PlanElement element : all)
        {
            guestsClaimed.add(element.kind() + "|" + element.key());
        }
        for (final PlanElement element : extra)
        {
            if (guestsClaimed.add(element.kind() + "|" + element.key()))
            {
                all.add(element);
            }
        }
        return KernelPlan.of(all);
    }

    /**
     * A machine record from its state entry.
     *
     * @param entry the entry.
     * @return the machine.
     * @throws IllegalArgumentException if an address does not parse.
     */
    public static Machine machine(final DesiredState.MachineEntry entry)
    {
        return new Machine(entry.id(), entry.app(), entry.iface(),
            entry.ipv4() == null ? null : Ipv4Address.parse(entry.ipv4()),
            entry.ipv6() == null ? null : Ipv6Address.parse(entry.ipv6()),
            entry.pin() == null ? null : Ipv4Address.parse(entry.pin()));
    }

    /**
     * An element as data.
     *
     * @param element the element.
     * @return its data form.
     */
    public static DesiredState.Element toData(final PlanElement element)
    {
        if (element instanceof PlanElement.Static4 e)
        {
            return new DesiredState.Element(e.kind(), null, e.guest().toString(), null, null, null);
        }
        if (element instanceof PlanElement.Static6 e)
        {
            return new DesiredState.Element(e.kind(), null, e.guest().toString(), null, null, null);
        }
        if (element instanceof PlanElement.Guest4 e)
        {
            return new DesiredState.Element(e.kind(), e.iface(), e.address().toString(), null, null, null);
        }
        if (element instanceof PlanElement.Guest6 e)
        {
            return new DesiredState.Element(e.kind(), e.iface(), e.address().toString(), null, null, null);
        }
        if (element instanceof PlanElement.Snat4 e)
        {
            return new DesiredState.Element(e.kind(), null, e.guest().toString(), e.egress().toString(),
                e.firstPort(), e.lastPort());
        }
        if (element instanceof PlanElement.Snat6 e)
        {
            return new DesiredState.Element(e.kind(), null, e.guest().toString(), e.egress().toString(),
                e.firstPort(), e.lastPort());
        }
        // An address on lo names it as its interface; one on the uplink names none (as before lo was an option).
        if (element instanceof PlanElement.Uplink4 e)
        {
            return new DesiredState.Element(e.kind(), deviceName(e.device()), e.address().toString(), null, null,
                null);
        }
        final PlanElement.Uplink6 e = (PlanElement.Uplink6)element;
        return new DesiredState.Element(e.kind(), deviceName(e.device()), e.address().toString(), null, null, null);
    }

    /**
     * An element from its data form.
     *
     * @param data the data.
     * @return the element.
     * @throws IllegalArgumentException if the data is not a valid element.
     */
    public static PlanElement fromData(final DesiredState.Element data)
    {
        final String kind = String.valueOf(data.kind());
        return switch (kind)
        {
            case "static4" -> new PlanElement.Static4(Ipv4Address.parse(data.address()));
            case "static6" -> new PlanElement.Static6(Ipv6Address.parse(data.address()));
            case "guests4" -> new PlanElement.Guest4(requireText(data.iface()), Ipv4Address.parse(data.address()));
            case "guests6" -> new PlanElement.Guest6(requireText(data.iface()), Ipv6Address.parse(data.address()));
            case "snat4" -> new PlanElement.Snat4(Ipv4Address.parse(data.address()), Ipv4Address.parse(data.egress()),
                port(data.firstPort()), port(data.lastPort()));
            case "snat6" -> new PlanElement.Snat6(Ipv6Address.parse(data.address()), Ipv6Address.parse(data.egress()),
                port(data.firstPort()), port(data.lastPort()));
            case "uplink4" -> new PlanElement.Uplink4(Ipv4Address.parse(data.address()), device(data.iface()));
            case "uplink6" -> new PlanElement.Uplink6(Ipv6Address.parse(data.address()), device(data.iface()));
            default -> throw new IllegalArgumentException("unknown element kind " + kind);
        };
    }

    /** The interface an address element names: none for the uplink, {@code lo} for lo. */
    private static String deviceName(final AddressDevice device)
    {
        return device == AddressDevice.LO ? LOOPBACK : null;
    }

    private static AddressDevice device(final String iface)
    {
        if (iface == null)
        {
            return AddressDevice.UPLINK;
        }
        if (LOOPBACK.equals(iface))
        {
            return AddressDevice.LO;
        }
        throw new IllegalArgumentException("an egress address is on the uplink (no interface) or on lo, not on "
            + iface);
    }

    private static String requireText(final String text)
    {
        if (text == null || text.isEmpty())
        {
            throw new IllegalArgumentException("missing interface");
        }
        return text;
    }

    private static int port(final Integer port)
    {
        if (port == null || port < 1 || port > 65535)
        {
            throw new IllegalArgumentException("bad port " + port);
        }
        return port;
    }

    private static boolean check(final List<String> problems, final String what, final Outcome outcome)
    {
        if (outcome instanceof Outcome.Refusal refusal)
        {
            problems.add(what + ": " + refusal.code() + " (" + refusal.field() + "): " + refusal.message());
            return false;
        }
        return true;
    }

    private static String text(final Object address)
    {
        return address == null ? null : address.toString();
    }
}
