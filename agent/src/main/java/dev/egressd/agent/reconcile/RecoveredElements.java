package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.KernelException;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanElement;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Kernel elements kept after a lost or corrupt state file (docs/design.md, "Recovered elements"): part of the
 * desired plan and of the state file until a machine or pair of the allocator claims them or the operator forgets
 * them, so no running machine loses or changes its egress until the orchestrator re-sends it.
 *
 * <p>Loop thread only. A mutation changes the live set; {@link #commit()} and {@link #rollback()} follow the
 * loop's committed state.
 */
final class RecoveredElements
{
    private static final Logger LOG = LoggerFactory.getLogger(RecoveredElements.class);

    private final HostSettings settings;
    private final Set<PlanElement> live = new LinkedHashSet<>();
    private Set<PlanElement> committed;

    /**
     * Starts from the elements the state file kept.
     *
     * @param settings the host settings (region and block layout, to restore machines).
     * @param initial  the recovered elements, already committed.
     */
    RecoveredElements(final HostSettings settings, final Set<PlanElement> initial)
    {
        this.settings = settings;
        this.live.addAll(initial);
        this.committed = Set.copyOf(initial);
    }

    /**
     * Reads the recovered elements the state file kept; one that cannot be read is skipped with a warning.
     *
     * @param entries the state's {@code recovered}.
     * @return the elements, in the file's order.
     */
    static Set<PlanElement> fromState(final List<DesiredState.Element> entries)
    {
        final Set<PlanElement> recovered = new LinkedHashSet<>();
        for (final DesiredState.Element element : entries)
        {
            try
            {
                recovered.add(StateMapper.fromData(element));
            }
            catch (final IllegalArgumentException e)
            {
                LOG.warn("state: skipping recovered element {}: {}", element, e.getMessage());
            }
        }
        return recovered;
    }

    /**
     * The elements not yet claimed.
     *
     * @return the live set.
     */
    Set<PlanElement> elements()
    {
        return live;
    }

    /**
     * Whether none is left.
     *
     * @return true if empty.
     */
    boolean isEmpty()
    {
        return live.isEmpty();
    }

    /**
     * Start-up without a state file: keep everything the kernel holds that the allocator does not account for.
     * An address on the uplink no SNAT element points at is left out: not provably egressd's, never touched.
     *
     * @param kernel    the kernel.
     * @param allocator the allocator as rebuilt.
     * @return how many elements were recovered.
     * @throws KernelException if the kernel cannot be read.
     */
    int recoverFromKernel(final Kernel kernel, final EgressAllocator allocator) throws KernelException
    {
        final KernelPlan raw = kernel.read();
        final KernelPlan own = StateMapper.plan(allocator, List.of(), settings.pairAddressDevice());
        final Set<Object> egresses = new HashSet<>();
        for (final PlanElement element : raw.elements())
        {
            if (element instanceof PlanElement.Snat4 s)
            {
                egresses.add(s.egress());
            }
            else if (element instanceof PlanElement.Snat6 s)
            {
                egresses.add(s.egress());
            }
        }
        int count = 0;
        for (final PlanElement element : raw.elements())
        {
            final boolean uplink = element instanceof PlanElement.Uplink4 || element instanceof PlanElement.Uplink6;
            if (uplink && !egresses.contains(addressOf(element)))
            {
                continue; // an address on the uplink no guest leaves from: not provably egressd's, never touched
            }
            if (!own.elements(element.kind()).containsKey(element.key()) && live.add(element))
            {
                count++;
            }
        }
        return count;
    }

    /**
     * Puts a new machine whose guest address the kernel still maps back on exactly that pair and block, or on its
     * machine-scoped pair when the kernel gave it the whole port range.
     *
     * @param machine   the machine, not yet known to the allocator.
     * @param allocator the allocator.
     * @return the allocator's outcome, or null when nothing recovered maps it or it cannot be put back there (the
     *         caller then places it anew).
     */
    Outcome restore(final Machine machine, final EgressAllocator allocator)
    {
        PlanElement.Snat4 snat4 = null;
        PlanElement.Snat6 snat6 = null;
        for (final PlanElement element : live)
        {
            if (element instanceof PlanElement.Snat4 s && s.guest().equals(machine.ipv4()))
            {
                snat4 = s;
            }
            else if (element instanceof PlanElement.Snat6 s && s.guest().equals(machine.ipv6()))
            {
                snat6 = s;
            }
        }
        if (snat4 == null && snat6 == null)
        {
            return null;
        }
        final int first = snat4 != null ? snat4.firstPort() : snat6.firstPort();
        final int last = snat4 != null ? snat4.lastPort() : snat6.lastPort();
        Outcome outcome = null;
        if (first <= 1 && last == 65535 && snat4 != null && snat6 != null)
        {
            outcome = allocator.restoreMachineScoped(machine,
                new EgressPair(snat4.egress(), snat6.egress(), settings.region()));
        }
        else
        {
            Ipv4Address pair = snat4 != null ? snat4.egress() : null;
            if (pair == null)
            {
                for (final EgressAllocator.PairView view : allocator.pairs())
                {
                    if (view.pair().ipv6().equals(snat6.egress()))
                    {
                        pair = view.pair().ipv4();
                    }
                }
            }
            final int block = settings.layout().blockOf(first);
            if (pair != null && block >= 0)
            {
                outcome = allocator.restoreMachine(machine, pair, block);
            }
        }
        if (outcome == null || !outcome.ok())
        {
            LOG.warn("machine {}: the kernel had it on {} ports {}..{} but that cannot be restored ({}); placing anew",
                machine.id(), snat4 != null ? snat4.egress() : snat6.egress(), first, last, outcome);
            return null;
        }
        LOG.info("machine {}: restored from the kernel table on {} ports {}..{}", machine.id(),
            snat4 != null ? snat4.egress() : snat6.egress(), first, last);
        return outcome;
    }

    /**
     * Drops the elements that machines or pairs of the allocator now account for.
     *
     * @param allocator the allocator after a mutation.
     */
    void prune(final EgressAllocator allocator)
    {
        if (live.isEmpty())
        {
            return;
        }
        final Set<Object> claimed = new HashSet<>();
        final Set<String> ifaces = new HashSet<>();
        for (final EgressAllocator.MachineView view : allocator.machines())
        {
            if (view.machine().ipv4() != null)
            {
                claimed.add(view.machine().ipv4());
            }
            if (view.machine().ipv6() != null)
            {
                claimed.add(view.machine().ipv6());
            }
            ifaces.add(view.machine().iface());
            if (view.machineScopedPair() != null)
            {
                claimed.add(view.machineScopedPair().ipv4());
                claimed.add(view.machineScopedPair().ipv6());
            }
        }
        for (final EgressAllocator.PairView view : allocator.pairs())
        {
            claimed.add(view.pair().ipv4());
            claimed.add(view.pair().ipv6());
        }
        final Set<Object> held = heldGuests(allocator);
        live.removeIf(e -> isClaimed(e, claimed, ifaces) && !held.contains(addressOf(e)));
    }

    /**
     * The recovered egress elements (static class and SNAT mapping) of re-sent machines whose recovered pair the
     * allocator does not hold yet: they win over the allocator's plan for those guests, so a machine re-sent
     * before its pair keeps leaving from its recovered pair and block (rather than from the host address, or a
     * block of another pair it would have to leave again) until the pair is back and it is put back there.
     *
     * @param allocator the allocator.
     * @return the elements; empty when none is held.
     */
    List<PlanElement> holding(final EgressAllocator allocator)
    {
        if (live.isEmpty())
        {
            return List.of();
        }
        final Set<Object> held = heldGuests(allocator);
        if (held.isEmpty())
        {
            return List.of();
        }
        final List<PlanElement> holding = new ArrayList<>();
        for (final PlanElement e : live)
        {
            final boolean egress = e instanceof PlanElement.Snat4 || e instanceof PlanElement.Snat6
                || e instanceof PlanElement.Static4 || e instanceof PlanElement.Static6;
            if (egress && held.contains(addressOf(e)))
            {
                holding.add(e);
            }
        }
        return holding;
    }

    /**
     * After a mutation, puts back on exactly their recovered pair and block the re-sent machines whose recovered
     * pair the allocator holds again but that are not on it (re-sent before their pair, they waited, or the
     * allocator placed them on another pair's free block). The machines still waiting for their own pair are
     * taken out and put back too, so a block they were given on the returning pair is free for its recovered
     * holder. A machine that cannot be put back there (its block is taken, its app changed) is placed anew.
     *
     * @param allocator the allocator after the mutation.
     * @return the ids of the machines put back.
     */
    List<String> reseat(final EgressAllocator allocator)
    {
        if (live.isEmpty())
        {
            return List.of();
        }
        final Set<Object> pairs = pairAddresses(allocator);
        final Map<Object, PlanElement> mappings = mappings();
        final List<Machine> back = new ArrayList<>();
        final List<Machine> waiting = new ArrayList<>();
        for (final EgressAllocator.MachineView view : allocator.machines())
        {
            final PlanElement mapping = mappingOf(mappings, view.machine());
            if (mapping == null || isOn(view.egress(), mapping))
            {
                continue;
            }
            (pairs.contains(egressOf(mapping)) ? back : waiting).add(view.machine());
        }
        if (back.isEmpty())
        {
            return List.of();
        }
        for (final Machine m : back)
        {
            allocator.removeMachine(m.id());
        }
        for (final Machine m : waiting)
        {
            allocator.removeMachine(m.id());
        }
        final List<String> ids = new ArrayList<>();
        for (final Machine m : back)
        {
            if (restore(m, allocator) == null)
            {
                allocator.upsertMachine(m);
            }
            ids.add(m.id());
        }
        for (final Machine m : waiting)
        {
            allocator.upsertMachine(m);
        }
        return ids;
    }

    /** Guest addresses of the allocator's machines whose live recovered SNAT leaves from a pair it lacks. */
    private Set<Object> heldGuests(final EgressAllocator allocator)
    {
        final Set<Object> held = new HashSet<>();
        if (live.isEmpty())
        {
            return held;
        }
        final Set<Object> pairs = pairAddresses(allocator);
        final Map<Object, PlanElement> mappings = mappings();
        if (mappings.isEmpty())
        {
            return held;
        }
        for (final EgressAllocator.MachineView view : allocator.machines())
        {
            final PlanElement mapping = mappingOf(mappings, view.machine());
            if (mapping != null && !pairs.contains(egressOf(mapping)))
            {
                if (view.machine().ipv4() != null)
                {
                    held.add(view.machine().ipv4());
                }
                if (view.machine().ipv6() != null)
                {
                    held.add(view.machine().ipv6());
                }
            }
        }
        return held;
    }

    /**
     * The live recovered SNAT mappings on an app pair's block, by guest address (one pass, so a host with
     * thousands of machines pays O(machines + elements) per mutation). A mapping on the whole port range is a
     * machine-scoped pair's, restored when the machine is re-sent: never held.
     */
    private Map<Object, PlanElement> mappings()
    {
        final Map<Object, PlanElement> mappings = new HashMap<>();
        for (final PlanElement e : live)
        {
            if (e instanceof PlanElement.Snat4 s && !(s.firstPort() <= 1 && s.lastPort() == 65535))
            {
                mappings.put(s.guest(), s);
            }
            else if (e instanceof PlanElement.Snat6 s && !(s.firstPort() <= 1 && s.lastPort() == 65535))
            {
                mappings.put(s.guest(), s);
            }
        }
        return mappings;
    }

    /** A machine's recovered mapping (IPv4 first), or null. */
    private static PlanElement mappingOf(final Map<Object, PlanElement> mappings, final Machine machine)
    {
        final PlanElement four = machine.ipv4() == null ? null : mappings.get(machine.ipv4());
        return four != null ? four : machine.ipv6() == null ? null : mappings.get(machine.ipv6());
    }

    private static Object egressOf(final PlanElement mapping)
    {
        return mapping instanceof PlanElement.Snat4 s ? s.egress() : ((PlanElement.Snat6)mapping).egress();
    }

    private static boolean isOn(final dev.egressd.core.model.Egress egress, final PlanElement mapping)
    {
        if (egress.pair() == null)
        {
            return false;
        }
        if (mapping instanceof PlanElement.Snat4 s)
        {
            return egress.pair().ipv4().equals(s.egress()) && egress.firstPort() == s.firstPort()
                && egress.lastPort() == s.lastPort();
        }
        final PlanElement.Snat6 s = (PlanElement.Snat6)mapping;
        return egress.pair().ipv6().equals(s.egress()) && egress.firstPort() == s.firstPort()
            && egress.lastPort() == s.lastPort();
    }

    /** Every pair address the allocator holds: its app pairs and its machines' machine-scoped pairs. */
    private static Set<Object> pairAddresses(final EgressAllocator allocator)
    {
        final Set<Object> pairs = new HashSet<>();
        for (final EgressAllocator.PairView view : allocator.pairs())
        {
            pairs.add(view.pair().ipv4());
            pairs.add(view.pair().ipv6());
        }
        for (final EgressAllocator.MachineView view : allocator.machines())
        {
            if (view.machineScopedPair() != null)
            {
                pairs.add(view.machineScopedPair().ipv4());
                pairs.add(view.machineScopedPair().ipv6());
            }
        }
        return pairs;
    }

    /**
     * Forgets every element (the operator says the orchestrator has re-sent all it still wants); the next sync
     * removes them from the kernel.
     *
     * @return the outcome.
     */
    Outcome forget()
    {
        live.clear();
        return Outcome.Done.NOTHING;
    }

    /** The live set is now committed (the state holding it is on disk). */
    void commit()
    {
        committed = Set.copyOf(live);
    }

    /** Back to the committed set (the mutation failed). */
    void rollback()
    {
        live.clear();
        live.addAll(committed);
    }

    private static boolean isClaimed(final PlanElement e, final Set<Object> claimed, final Set<String> ifaces)
    {
        if (e instanceof PlanElement.Guest4 g)
        {
            return claimed.contains(g.address()) || ifaces.contains(g.iface());
        }
        if (e instanceof PlanElement.Guest6 g)
        {
            return claimed.contains(g.address()) || ifaces.contains(g.iface());
        }
        return claimed.contains(addressOf(e));
    }

    private static Object addressOf(final PlanElement e)
    {
        if (e instanceof PlanElement.Static4 s)
        {
            return s.guest();
        }
        if (e instanceof PlanElement.Static6 s)
        {
            return s.guest();
        }
        if (e instanceof PlanElement.Snat4 s)
        {
            return s.guest();
        }
        if (e instanceof PlanElement.Snat6 s)
        {
            return s.guest();
        }
        if (e instanceof PlanElement.Uplink4 u)
        {
            return u.address();
        }
        if (e instanceof PlanElement.Uplink6 u)
        {
            return u.address();
        }
        return null;
    }
}
