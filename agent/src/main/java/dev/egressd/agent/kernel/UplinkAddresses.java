package dev.egressd.agent.kernel;

import dev.egressd.agent.kernel.rtnetlink.InterfaceAddress;
import dev.egressd.agent.kernel.rtnetlink.RtnetlinkAddresses;
import dev.egressd.core.model.AddressDevice;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanElement;

import java.io.IOException;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The egress addresses on the uplink and on {@code lo}, as {@link PlanElement.Uplink4} and
 * {@link PlanElement.Uplink6} (each names its {@link AddressDevice}): the rtnetlink half of {@link NftKernel}. Its
 * errors leave here as {@link KernelException}s from {@link KernelException.Source#RTNETLINK}.
 *
 * <p><strong>Two devices.</strong> In region mode the app-scoped pairs' addresses go on {@code lo}
 * (docs/region.md, "Addresses on lo"); machine-scoped ones stay on the uplink. Both devices are read every time,
 * whatever the setting, so addresses egressd owns on the device it no longer uses are seen, drained and removed
 * like any other address the plan no longer wants.
 *
 * <p><strong>Ownership.</strong> Only addresses marked as egressd's (IFA_PROTO, see {@link RtnetlinkAddresses})
 * are removed or torn down; anything else on the uplink or lo is never touched.
 *
 * <p><strong>Foreign addresses the plan wants.</strong> When the plan asks for an egress address that is already
 * on the uplink without egressd's mark (put there by hand or by other software), the add leaves it exactly as it
 * is ({@link RtnetlinkAddresses.AddResult#FOREIGN}): not marked, not rewritten, and therefore never removed,
 * whatever the plan does later. It still serves as the egress address (SNAT only needs it on the host). So that
 * the diff is stable and does not try to add it again on every reconcile, this object remembers the foreign
 * addresses it was asked to add, and {@link #withUplink} lists each of them as present for as long as it is on its
 * device; a REMOVE of one only forgets it. The memory is per process: after a restart the first reconcile adds it
 * again, finds it foreign again, and from then on the diff is empty. {@link #foreign()} lists them, for the
 * operator (an IPv6 one that was not added with {@code preferred_lft 0} can be picked by masquerade,
 * docs/design.md, pitfall 7).
 *
 * <p>Used from the one thread that opened it (its socket lives in that thread's network namespace).
 */
final class UplinkAddresses implements AutoCloseable
{
    private static final Logger LOG = LoggerFactory.getLogger(UplinkAddresses.class);

    /** The loopback interface, where {@link AddressDevice#LO} puts an address. */
    static final String LOOPBACK = "lo";

    private final RtnetlinkAddresses rtnl;
    private final String uplink;
    /** The devices read, the uplink first; only the uplink if it is {@code lo} itself. */
    private final List<AddressDevice> devices;
    /** Addresses the plan wanted that were on the uplink without egressd's mark: used, never touched. */
    private final Set<PlanElement> foreign = new LinkedHashSet<>();
    /** The last plan read (handles on two threads may share this object: each value is immutable). */
    private volatile Last last;

    private UplinkAddresses(final RtnetlinkAddresses rtnl, final String uplink)
    {
        this.rtnl = rtnl;
        this.uplink = uplink;
        this.devices = LOOPBACK.equals(uplink) ? List.of(AddressDevice.UPLINK)
            : List.of(AddressDevice.UPLINK, AddressDevice.LO);
    }

    /**
     * The interface an element's address goes on.
     *
     * @param e an uplink element.
     * @return the uplink's name or {@code lo}.
     */
    String device(final PlanElement e)
    {
        return name(e instanceof PlanElement.Uplink4 u ? u.device() : ((PlanElement.Uplink6)e).device());
    }

    private String name(final AddressDevice device)
    {
        return device == AddressDevice.LO ? LOOPBACK : uplink;
    }

    /**
     * Opens an rtnetlink socket in the calling thread's network namespace.
     *
     * @param uplink the interface the egress addresses go on.
     * @return the addresses.
     * @throws KernelException if the socket cannot be opened.
     */
    static UplinkAddresses open(final String uplink) throws KernelException
    {
        try
        {
            return new UplinkAddresses(RtnetlinkAddresses.open(), uplink);
        }
        catch (final IOException e)
        {
            throw failure(e);
        }
    }

    /**
     * Whether a plan element is an uplink address (rtnetlink's business, not the table's).
     *
     * @param e the element.
     * @return true for {@link PlanElement.Uplink4} and {@link PlanElement.Uplink6}.
     */
    static boolean isUplink(final PlanElement e)
    {
        return e instanceof PlanElement.Uplink4 || e instanceof PlanElement.Uplink6;
    }

    /**
     * The table's elements plus the uplink addresses egressd owns, plus the foreign addresses it was asked to add
     * that are still on the uplink (see the class comment).
     *
     * @param table what the table holds.
     * @return the whole plan.
     * @throws KernelException if the uplink's addresses cannot be dumped (e.g. the uplink is gone).
     */
    KernelPlan withUplink(final KernelPlan table) throws KernelException
    {
        final List<PlanElement> elements = new ArrayList<>();
        final Map<AddressDevice, List<InterfaceAddress>> held = new EnumMap<>(AddressDevice.class);
        for (final AddressDevice device : devices)
        {
            final List<InterfaceAddress> on;
            try
            {
                on = rtnl.addresses(name(device));
            }
            catch (final IOException e)
            {
                throw failure(e);
            }
            held.put(device, on);
            for (final InterfaceAddress a : on)
            {
                if (a.isOwned())
                {
                    elements.add(a.ipv4() != null ? new PlanElement.Uplink4(a.ipv4(), device)
                        : new PlanElement.Uplink6(a.ipv6(), device));
                }
            }
        }
        // A foreign address removed by hand is forgotten: the diff then adds it, as egressd's.
        foreign.removeIf(e -> held.getOrDefault(deviceOf(e), List.of()).stream()
            .noneMatch(a -> !a.isOwned() && blocks(a, e)));
        for (final PlanElement e : foreign)
        {
            if (!elements.contains(e))
            {
                elements.add(e);
            }
        }
        // An unchanged read (the same table object: the generation did not move) with the same addresses gives
        // the same plan object back, so the reconcile can tell at a glance that nothing changed.
        final Last last = this.last;
        if (last != null && last.table() == table && last.addresses().equals(elements))
        {
            return last.plan();
        }
        final List<PlanElement> all = new ArrayList<>(table.elements());
        all.addAll(elements);
        final KernelPlan plan = KernelPlan.of(all);
        this.last = new Last(table, elements, plan);
        return plan;
    }

    /** The last {@link #withUplink} result: the table read, the address elements added, the plan. */
    private record Last(KernelPlan table, List<PlanElement> addresses, KernelPlan plan)
    {
    }

    /**
     * Puts an address on its device (the uplink or {@code lo}), marked as egressd's, unless it is there already; a
     * foreign one is remembered and left as it is.
     *
     * @param e an uplink element.
     * @return true if this call created it (so a failed apply takes it off again).
     * @throws KernelException if rtnetlink refuses.
     */
    boolean add(final PlanElement e) throws KernelException
    {
        final RtnetlinkAddresses.AddResult result;
        try
        {
            result = e instanceof PlanElement.Uplink4 u ? rtnl.add(device(e), u.address())
                : rtnl.add(device(e), ((PlanElement.Uplink6)e).address());
        }
        catch (final IOException x)
        {
            throw failure(x);
        }
        if (result == RtnetlinkAddresses.AddResult.FOREIGN && foreign.add(e))
        {
            LOG.warn("egress address {} is already on {} without egressd's mark: using it as it is; egressd will "
                + "never change or remove it", e, device(e));
        }
        return result == RtnetlinkAddresses.AddResult.CREATED;
    }

    /**
     * Takes an address off its device; a foreign one is only forgotten.
     *
     * @param e an uplink element.
     * @throws KernelException if rtnetlink refuses.
     */
    void remove(final PlanElement e) throws KernelException
    {
        if (foreign.remove(e))
        {
            return; // not egressd's: forgotten, never removed
        }
        try
        {
            if (e instanceof PlanElement.Uplink4 u)
            {
                rtnl.remove(device(e), u.address());
            }
            else
            {
                rtnl.remove(device(e), ((PlanElement.Uplink6)e).address());
            }
        }
        catch (final IOException x)
        {
            throw failure(x);
        }
    }

    /**
     * Best effort: takes off the addresses a failed apply created; a failure is attached to the original one.
     *
     * @param created the addresses the apply created.
     * @param cause   why the apply failed.
     */
    void undo(final List<PlanElement> created, final Throwable cause)
    {
        for (final PlanElement e : created)
        {
            try
            {
                remove(e);
            }
            catch (final KernelException | RuntimeException x)
            {
                cause.addSuppressed(x);
            }
        }
    }

    /**
     * The egress addresses the plan wanted that were already on the uplink without egressd's mark, and still are.
     *
     * @return the addresses, as plan elements.
     */
    Set<PlanElement> foreign()
    {
        return Set.copyOf(foreign);
    }

    /**
     * Takes every address egressd owns off the uplink and {@code lo}, for the teardown; the foreign ones stay and
     * are forgotten.
     *
     * @throws KernelException if an address cannot be removed.
     */
    void removeOwned() throws KernelException
    {
        foreign.clear(); // never egressd's to remove; nothing is wanted any more
        try
        {
            for (final AddressDevice device : devices)
            {
                final String ifname = name(device);
                for (final InterfaceAddress a : rtnl.ownedAddresses(ifname))
                {
                    if (a.ipv4() != null)
                    {
                        rtnl.remove(ifname, a.ipv4());
                    }
                    else
                    {
                        rtnl.remove(ifname, a.ipv6());
                    }
                }
            }
        }
        catch (final IOException e)
        {
            throw failure(e);
        }
    }

    @Override
    public void close()
    {
        rtnl.close();
    }

    private static AddressDevice deviceOf(final PlanElement e)
    {
        return e instanceof PlanElement.Uplink4 u ? u.device() : ((PlanElement.Uplink6)e).device();
    }

    /** Whether an address on the element's device makes the kernel refuse to add {@code e} (EEXIST). */
    private static boolean blocks(final InterfaceAddress a, final PlanElement e)
    {
        return e instanceof PlanElement.Uplink4 u ? u.address().equals(a.ipv4()) && a.isHostPrefix()
            : ((PlanElement.Uplink6)e).address().equals(a.ipv6());
    }

    private static KernelException failure(final IOException e)
    {
        return new KernelException(KernelException.Source.RTNETLINK, e.getMessage(), e);
    }
}
