package dev.egressd.agent.kernel;

import dev.egressd.agent.kernel.rtnetlink.InterfaceAddress;
import dev.egressd.agent.kernel.rtnetlink.RtnetlinkAddresses;
import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.kernel.nft.LibNftablesClient;
import dev.egressd.agent.kernel.nft.NftDataplane;
import dev.egressd.agent.kernel.nft.NftException;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The kernel as the daemon sees it: egressd's nftables table plus the static egress addresses egressd
 * owns on the uplink, read as one {@link KernelPlan} and changed by one list of {@link PlanChange}s.
 * This is the only kernel facade the daemon calls.
 *
 * <p><strong>One thread.</strong> The nft context and the rtnetlink socket belong to the network
 * namespace of the thread that opened them and are not thread-safe, so every call must come from the
 * thread that created this object (in tests a {@code NetNamespace} thread); any other thread gets an
 * {@link IllegalStateException}.
 *
 * <p><strong>Order of an apply</strong> (why: addresses go through rtnetlink, outside the nft
 * transaction, so their order against it is visible to packets):
 * <ol>
 * <li>add the uplink addresses of the changes, so an egress address is on the uplink before any map
 *     points a guest at it;</li>
 * <li>one atomic nft transaction for every other change (DESIGN invariant 7);</li>
 * <li>remove the uplink addresses of the changes, only after no map points at them any more.</li>
 * </ol>
 * {@code PlanDiff} already orders its changes this way; the phases here do not depend on it.
 *
 * <p><strong>Ownership.</strong> Only addresses marked as egressd's (IFA_PROTO, see
 * {@link RtnetlinkAddresses}) are removed or torn down; anything else on the uplink is never touched.
 *
 * <p><strong>Foreign addresses the plan wants.</strong> When the plan asks for an egress address that is
 * already on the uplink without egressd's mark (put there by hand or by other software), the add leaves
 * it exactly as it is ({@link RtnetlinkAddresses.AddResult#FOREIGN}): not marked, not rewritten, and
 * therefore never removed, whatever the plan does later. It still serves as the egress address (SNAT only
 * needs it on the uplink). So that the diff is stable and does not try to add it again on every
 * reconcile, this object remembers the foreign addresses it was asked to add, and {@link #read()} lists
 * each of them as present for as long as it is on the uplink; a REMOVE of one only forgets it. The memory
 * is per process: after a restart the first reconcile adds it again, finds it foreign again, and from then
 * on the diff is empty. {@link #foreignAddresses()} lists them, for the operator (an IPv6 one that was
 * not added with {@code preferred_lft 0} can be picked by masquerade, recipe pitfall 7).
 */
public final class KernelDataplane implements AutoCloseable
{
    private static final Logger LOG = LoggerFactory.getLogger(KernelDataplane.class);
    private final NftDataplane nft;
    private final RtnetlinkAddresses addresses;
    private final String uplink;
    private final Thread owner;
    /** What {@link #open} opened and {@link #close} must close; null when the caller owns the parts. */
    private final LibNftablesClient ownedClient;
    private boolean closed;
    /** Addresses the plan wanted that were on the uplink without egressd's mark: used, never touched. */
    private final Set<PlanElement> foreign = new LinkedHashSet<>();

    /**
     * A facade over parts the caller opened and keeps owning ({@link #close()} closes neither). The
     * uplink is the one in the table's configuration, so the addresses and the table's
     * {@code oifname} can never disagree. The calling thread becomes the only thread allowed to use it.
     *
     * @param nft       the table.
     * @param addresses the rtnetlink client, opened in the same network namespace as the nft client.
     */
    public KernelDataplane(final NftDataplane nft, final RtnetlinkAddresses addresses)
    {
        this(nft, addresses, null);
    }

    private KernelDataplane(final NftDataplane nft, final RtnetlinkAddresses addresses,
                            final LibNftablesClient ownedClient)
    {
        this.nft = nft;
        this.addresses = addresses;
        this.uplink = nft.config().uplink();
        this.owner = Thread.currentThread();
        this.ownedClient = ownedClient;
    }

    /**
     * Opens a libnftables context and an rtnetlink socket in the calling thread's network namespace.
     * Every later call must come from this same thread; {@link #close()} frees both.
     *
     * @param config the table, uplink, guest interfaces and cap.
     * @return the dataplane.
     * @throws IllegalStateException if libnftables is missing (the message says what to install).
     * @throws IOException           if the nft context or the netlink socket cannot be opened.
     */
    public static KernelDataplane open(final DataplaneConfig config) throws IOException
    {
        final LibNftablesClient client = LibNftablesClient.open();
        try
        {
            return new KernelDataplane(new NftDataplane(client, config), RtnetlinkAddresses.open(), client);
        }
        catch (final IOException | RuntimeException e)
        {
            client.close();
            throw e;
        }
    }

    /**
     * The configuration.
     *
     * @return the table's configuration.
     */
    public DataplaneConfig config()
    {
        return nft.config();
    }

    /**
     * Creates egressd's table when it is absent, and repairs its fixed part (chains, rules, cap, uplink
     * name, counters) in one transaction when it differs from the configuration; never reloads an existing
     * table, so sets, maps and meters keep their elements (see {@link NftDataplane#ensureTable()}). What
     * it did is logged at WARN.
     *
     * @return true if the table was created or repaired.
     * @throws NftException if nft refuses to list or repair the table.
     */
    public boolean ensureTable() throws NftException
    {
        checkThread();
        final boolean changed = nft.ensureTable();
        if (changed)
        {
            LOG.warn("{}", nft.lastRepair());
        }
        return changed;
    }

    /**
     * The egress addresses the plan wanted that were already on the uplink without egressd's mark, and
     * still are: egressd uses them but never changes or removes them (see the class comment).
     *
     * @return the addresses, as plan elements.
     */
    public Set<PlanElement> foreignAddresses()
    {
        checkThread();
        return Set.copyOf(foreign);
    }

    /**
     * What the kernel holds now: the table's elements plus the uplink addresses egressd owns, as
     * {@link PlanElement.Uplink4} and {@link PlanElement.Uplink6}, plus the foreign addresses it was asked
     * to add that are still on the uplink (see the class comment).
     *
     * @return the plan read from the kernel.
     * @throws NftException if the table cannot be listed ({@link NftException#isNotFound()} when absent).
     * @throws IOException  if the uplink's addresses cannot be dumped (e.g. the uplink is gone).
     */
    public KernelPlan read() throws IOException
    {
        checkThread();
        return withUplink(nft.read());
    }

    /**
     * As {@link #read()}, but always a deep read of the nft table ({@link NftDataplane#readFull()}).
     *
     * @return the plan read from the kernel.
     * @throws NftException if the table cannot be listed ({@link NftException#isNotFound()} when absent).
     * @throws IOException  if the uplink's addresses cannot be dumped (e.g. the uplink is gone).
     */
    public KernelPlan readFull() throws IOException
    {
        checkThread();
        return withUplink(nft.readFull());
    }

    /**
     * Paces the deep checks of the nft table ({@link NftDataplane#paceDeepChecks}).
     *
     * @param factor 0 for a deep read and check every time (the default); e.g. 9 for at most a tenth of the time.
     */
    public void paceDeepChecks(final int factor)
    {
        checkThread();
        nft.paceDeepChecks(factor, System::nanoTime);
    }

    /**
     * How many deep reads and deep checks of the nft table were done ({@link NftDataplane#deepCounts()}).
     *
     * @return {deep reads, deep checks}.
     */
    public int[] deepCounts()
    {
        checkThread();
        return nft.deepCounts();
    }

    private KernelPlan withUplink(final KernelPlan table) throws IOException
    {
        final List<PlanElement> elements = new ArrayList<>(table.elements());
        final List<InterfaceAddress> onUplink = addresses.addresses(uplink);
        for (final InterfaceAddress a : onUplink)
        {
            if (a.isOwned())
            {
                elements.add(a.ipv4() != null ? new PlanElement.Uplink4(a.ipv4()) : new PlanElement.Uplink6(a.ipv6()));
            }
        }
        // A foreign address removed by hand is forgotten: the diff then adds it, as egressd's.
        foreign.removeIf(e -> onUplink.stream().noneMatch(a -> !a.isOwned() && blocks(a, e)));
        for (final PlanElement e : foreign)
        {
            if (!elements.contains(e))
            {
                elements.add(e);
            }
        }
        return KernelPlan.of(elements);
    }

    /**
     * Applies changes: uplink addresses added, then one nft transaction, then uplink addresses removed
     * (see the class comment for why). All or nothing up to the transaction: if adding an address or the
     * transaction fails, the addresses this call created are removed again (best effort) and the failure
     * is rethrown, so the kernel is as before. An address that was already on the uplink without
     * egressd's mark is used as it is and never claimed, changed or removed (see the class comment): a
     * REMOVE of it only forgets it.
     *
     * <p>Once the transaction has succeeded the new state is in force; a removal that then fails leaves
     * an extra address on the uplink that no map points at (harmless, and removed by the next reconcile).
     * Every removal is still tried, and the first failure is thrown with the others suppressed.
     *
     * @param changes the changes, e.g. {@code PlanDiff.between(read(), desired)}.
     * @throws NftException if nft refuses the transaction (the message names the change it blamed).
     * @throws IOException  if rtnetlink refuses an address.
     */
    public void apply(final List<PlanChange> changes) throws IOException
    {
        checkThread();
        final List<PlanElement> toAdd = new ArrayList<>();
        final List<PlanElement> toRemove = new ArrayList<>();
        for (final PlanChange change : changes)
        {
            if (isUplink(change.element()))
            {
                switch (change.op())
                {
                    case ADD -> toAdd.add(change.element());
                    case REMOVE -> toRemove.add(change.element());
                    case REPLACE ->
                    {
                        // Cannot come from PlanDiff (an address is its own key); handled in the safe order anyway.
                        toAdd.add(change.element());
                        toRemove.add(change.previous());
                    }
                    default -> throw new IllegalStateException("unknown op " + change.op());
                }
            }
        }

        // 1. Addresses first. Only those this call created are undone on failure.
        final List<PlanElement> created = new ArrayList<>();
        try
        {
            for (final PlanElement e : toAdd)
            {
                if (add(e) == RtnetlinkAddresses.AddResult.CREATED)
                {
                    created.add(e);
                }
            }
        }
        catch (final IOException | RuntimeException e)
        {
            undo(created, e);
            throw e;
        }

        // 2. One atomic transaction for everything else (NftDataplane skips the uplink kinds).
        try
        {
            nft.apply(changes);
        }
        catch (final IOException | RuntimeException e)
        {
            undo(created, e);
            throw e;
        }

        // 3. Addresses last: nothing points at them any more.
        IOException failure = null;
        for (final PlanElement e : toRemove)
        {
            try
            {
                remove(e);
            }
            catch (final IOException x)
            {
                if (failure == null)
                {
                    failure = x;
                }
                else
                {
                    failure.addSuppressed(x);
                }
            }
        }
        if (failure != null)
        {
            throw failure;
        }
    }

    /**
     * Packets seen by each named counter of the table.
     *
     * @return counter name to packets.
     * @throws NftException if the counters cannot be listed.
     */
    public Map<String, Long> counters() throws NftException
    {
        checkThread();
        return nft.counters();
    }

    /**
     * Removes everything egressd put in the kernel: the table, then every uplink address egressd owns
     * (in that order, so no map points at an address while it goes). For the explicit teardown command
     * only: every static guest loses egress. Idempotent: a missing table is not an error. Addresses not
     * marked as egressd's stay, the foreign ones the plan used included (they are forgotten).
     *
     * @throws NftException if nft refuses to delete the table; then no address is removed, since the
     *                      maps may still point at them.
     * @throws IOException  if an address cannot be removed.
     */
    public void teardown() throws IOException
    {
        checkThread();
        try
        {
            nft.deleteTable();
        }
        catch (final NftException e)
        {
            if (!e.isNotFound())
            {
                throw e;
            }
        }
        foreign.clear(); // never egressd's to remove; nothing is wanted any more
        for (final InterfaceAddress a : addresses.ownedAddresses(uplink))
        {
            if (a.ipv4() != null)
            {
                addresses.remove(uplink, a.ipv4());
            }
            else
            {
                addresses.remove(uplink, a.ipv6());
            }
        }
    }

    /**
     * Frees what {@link #open} opened (the nft context and the netlink socket); for a dataplane made
     * from parts the caller owns, does nothing. Idempotent; must be called on the owning thread.
     */
    @Override
    public void close()
    {
        if (closed || ownedClient == null)
        {
            closed = true;
            return;
        }
        checkThread();
        closed = true;
        try
        {
            addresses.close();
        }
        finally
        {
            ownedClient.close();
        }
    }

    private RtnetlinkAddresses.AddResult add(final PlanElement e) throws IOException
    {
        final RtnetlinkAddresses.AddResult result = e instanceof PlanElement.Uplink4 u
            ? addresses.add(uplink, u.address())
            : addresses.add(uplink, ((PlanElement.Uplink6)e).address());
        if (result == RtnetlinkAddresses.AddResult.FOREIGN && foreign.add(e))
        {
            LOG.warn("egress address {} is already on {} without egressd's mark: using it as it is; egressd will "
                + "never change or remove it", e, uplink);
        }
        return result;
    }

    private void remove(final PlanElement e) throws IOException
    {
        if (foreign.remove(e))
        {
            return; // not egressd's: forgotten, never removed
        }
        if (e instanceof PlanElement.Uplink4 u)
        {
            addresses.remove(uplink, u.address());
        }
        else
        {
            addresses.remove(uplink, ((PlanElement.Uplink6)e).address());
        }
    }

    /** Best effort: removes the addresses this call created; a failure is attached to the original one. */
    private void undo(final List<PlanElement> created, final Throwable cause)
    {
        for (final PlanElement e : created)
        {
            try
            {
                remove(e);
            }
            catch (final IOException | RuntimeException x)
            {
                cause.addSuppressed(x);
            }
        }
    }

    /** Whether an address on the uplink makes the kernel refuse to add {@code e} (EEXIST). */
    private static boolean blocks(final InterfaceAddress a, final PlanElement e)
    {
        return e instanceof PlanElement.Uplink4 u ? u.address().equals(a.ipv4()) && a.isHostPrefix()
            : ((PlanElement.Uplink6)e).address().equals(a.ipv6());
    }

    private static boolean isUplink(final PlanElement e)
    {
        return e instanceof PlanElement.Uplink4 || e instanceof PlanElement.Uplink6;
    }

    private void checkThread()
    {
        if (closed)
        {
            throw new IllegalStateException("KernelDataplane is closed");
        }
        if (Thread.currentThread() != owner)
        {
            throw new IllegalStateException("KernelDataplane used from thread " + Thread.currentThread().getName()
                + "; it belongs to " + owner.getName() + " (its nft context and netlink socket live in that"
                + " thread's network namespace and are not thread-safe)");
        }
    }
}
