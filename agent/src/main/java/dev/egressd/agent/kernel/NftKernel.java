package dev.egressd.agent.kernel;

import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.kernel.nft.LibNftablesClient;
import dev.egressd.agent.kernel.nft.NftDataplane;
import dev.egressd.agent.kernel.nft.Ruleset;
import dev.egressd.agent.kernel.nft.netlink.NfTables;
import dev.egressd.agent.kernel.nft.netlink.NftNetlink;
import dev.egressd.agent.kernel.nft.NftException;
import dev.egressd.agent.kernel.rtnetlink.RtnetlinkHost;
import dev.egressd.core.model.AddressDevice;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicReference;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The real kernel: egressd's nftables table ({@link NftDataplane}, through libnftables) plus the egress addresses
 * it owns on the uplink and on {@code lo} ({@link UplinkAddresses}, through rtnetlink), read as one {@link KernelPlan} and changed by
 * one list of {@link PlanChange}s. Each part's errors become a {@link KernelException} naming that part where the
 * part is called.
 *
 * <p><strong>One thread.</strong> The nft context and the rtnetlink socket belong to the network namespace of the
 * thread that opened them and are not thread-safe, so every call must come from that thread (the control loop's;
 * in tests a {@code NetNamespace} thread); any other thread gets an {@link IllegalStateException}. The daemon's
 * kernel ({@link #NftKernel(DataplaneConfig)}) is opened by its first call, on the loop's thread; {@link #open}
 * opens one at once on the calling thread; {@link #reader()} opens a second, read-only one on the calling thread
 * (the reconcile's reader) for the same table.
 *
 * <p><strong>Order of an apply</strong> (why: addresses go through rtnetlink, outside the nft transaction, so
 * their order against it is visible to packets):
 * <ol>
 * <li>add the uplink addresses of the changes, so an egress address is on the uplink before any map points a
 *     guest at it;</li>
 * <li>one atomic nft transaction for every other change (docs/design.md, invariant 7);</li>
 * <li>remove the uplink addresses of the changes, only after no map points at them any more.</li>
 * </ol>
 * {@code PlanDiff} already orders its changes this way; the phases here do not depend on it.
 */
public final class NftKernel implements Kernel, AutoCloseable
{
    /**
     * The listings of the nft table that load every rule (O(table) in libnftables 1.0.6: every set's elements
     * come with them; the fixed chains' fingerprints) take at most a fifth of the loop's time; the sets and maps
     * are read every reconcile (see {@code NftDataplane}, "Deep and shallow checks"). Measured by
     * {@code scripts/bench-drift} (with the per-guest IPv6 chains of an older egressd): at 4,000 machines a deep
     * cycle cost about 1 s, so one came every 5-6 s, and that is how long a fixed chain changed by hand takes to
     * be repaired there; on small hosts every reconcile is deep.
     */
    static final int DEEP_CHECK_FACTOR = 4;

    private static final Logger LOG = LoggerFactory.getLogger(NftKernel.class);

    private final DataplaneConfig config;
    /** Where the app-scoped pairs' addresses go: on lo, the ARP sysctls are raised at the open and checked after. */
    private final AddressDevice pairDevice;
    /** {@link #tableFingerprint()}, once computed (any thread: the same text each time). */
    private volatile String tableFingerprint;
    /** Where the ARP sysctls are read and written (the calling thread's namespace; a fake in tests). */
    private final LoopbackArp.Sysctls sysctls;
    /** The ARP sysctls as the last read found them: null when not checked, "ok", or the problem. */
    private volatile String arpSysctls;
    /** The generation the last apply's transaction produced ({@link #appliedGeneration()}); writer thread. */
    private long appliedGeneration = -1;
    private boolean appliedTransaction;
    /** The pace of deep checks set when the parts are opened. */
    private final int deepCheckFactor;
    /** A reading handle ({@link #reader()}): applies nothing, raises no sysctl. */
    private final boolean readOnly;
    /** The thread that opened the parts; null until then. */
    private Thread owner;
    private LibNftablesClient client;
    private NftNetlink netlink;
    private NftDataplane nft;
    private UplinkAddresses addresses;
    /** The reader of the host's own addresses and routes; opened by the first read. */
    private RtnetlinkHost host;
    /**
     * The host's own addresses as the last refresh found them; NONE until the first. Shared with the handles
     * {@link #reader()} opens: the reconcile's reads, which refresh it, run on a reader's handle, while the API asks
     * the writing handle.
     */
    private final AtomicReference<HostAddresses> hostAddresses;
    /** When the host's addresses were last read (System.nanoTime), so reads right after a change reuse them. */
    private long hostReadNanos;
    /** Why the last read of the host's addresses failed, or null when it worked. */
    private IOException hostReadFailure;
    private boolean closed;

    /**
     * The host's addresses are looked at by a kernel read at most this often: every reconcile pass (1 s), but not
     * again by the read after each change. Even then they are dumped only if the kernel announced a change of links,
     * addresses or routes ({@link RtnetlinkHost#readIfChanged()}).
     */
    static final long HOST_REFRESH_NANOS = 500_000_000L;

    /**
     * The daemon's kernel: nothing is opened until the first call, on the control loop's thread; deep checks are
     * paced (at most a fifth of the time).
     *
     * @param config the table, uplink, guest interfaces and destination cap.
     */
    public NftKernel(final DataplaneConfig config)
    {
        this(config, AddressDevice.UPLINK);
    }

    /**
     * The daemon's kernel, with the app-scoped pairs' addresses on a chosen device (the plan names each address's
     * device; this says whether the ARP sysctls matter): nothing is opened until the first call.
     *
     * @param config     the table, uplink, guest interfaces and destination cap.
     * @param pairDevice where the app-scoped pairs' addresses go.
     */
    public NftKernel(final DataplaneConfig config, final AddressDevice pairDevice)
    {
        this(config, pairDevice, LoopbackArp.PROC, DEEP_CHECK_FACTOR, false,
            new AtomicReference<>(HostAddresses.NONE));
    }

    private NftKernel(final DataplaneConfig config, final AddressDevice pairDevice,
        final LoopbackArp.Sysctls sysctls, final int deepCheckFactor, final boolean readOnly,
        final AtomicReference<HostAddresses> hostAddresses)
    {
        this.hostAddresses = hostAddresses;
        this.config = config;
        this.pairDevice = pairDevice;
        this.sysctls = sysctls;
        this.deepCheckFactor = deepCheckFactor;
        this.readOnly = readOnly;
    }

    /**
     * Opens a second kernel on the calling thread, in its network namespace, for the reconcile's reads and checks
     * (its own nft context and rtnetlink socket, paced as this one): it applies nothing ({@link #apply} throws) and
     * leaves the ARP sysctls to this one. Its {@link #ensureTable()} still creates or repairs the table's fixed
     * part: one nft transaction of chains and rules that keeps every set's elements, so it commutes with this
     * kernel's element changes. Close it on its thread.
     *
     * @return the reading kernel.
     * @throws KernelException if the nft context or the netlink socket cannot be opened.
     */
    @Override
    public NftKernel reader() throws KernelException
    {
        final NftKernel reader = new NftKernel(config, pairDevice, sysctls, deepCheckFactor, true,
            hostAddresses);
        reader.parts();
        return reader;
    }

    /**
     * Opens a libnftables context and an rtnetlink socket in the calling thread's network namespace, with every
     * read and check deep (unpaced: for the teardown, tests and benchmarks). Every later call must come from this
     * thread; {@link #close()} frees both.
     *
     * @param config the table, uplink, guest interfaces and cap.
     * @return the kernel.
     * @throws IllegalStateException if libnftables is missing (the message says what to install).
     * @throws KernelException       if the nft context or the netlink socket cannot be opened.
     */
    public static NftKernel open(final DataplaneConfig config) throws KernelException
    {
        return open(config, AddressDevice.UPLINK);
    }

    /**
     * As {@link #open(DataplaneConfig)}, with the app-scoped pairs' addresses on a chosen device: on
     * {@link AddressDevice#LO} the ARP sysctls of the calling thread's namespace are raised as the daemon's are.
     *
     * @param config     the table, uplink, guest interfaces and cap.
     * @param pairDevice where the app-scoped pairs' addresses go.
     * @return the kernel.
     * @throws KernelException if the nft context or the netlink socket cannot be opened.
     */
    public static NftKernel open(final DataplaneConfig config, final AddressDevice pairDevice) throws KernelException
    {
        final NftKernel kernel = new NftKernel(config, pairDevice, LoopbackArp.PROC, 0, false,
            new AtomicReference<>(HostAddresses.NONE));
        kernel.parts();
        return kernel;
    }

    /**
     * The configuration.
     *
     * @return the table's configuration.
     */
    public DataplaneConfig config()
    {
        return config;
    }

    /**
     * Creates egressd's table when it is absent, and repairs its fixed part (chains, rules, cap, uplink name,
     * counters) in one transaction when it differs from the configuration; never reloads an existing table, so
     * sets, maps and meters keep their elements (see {@link NftDataplane#ensureTable()}). What it did is logged at
     * WARN.
     *
     * @return true if the table was created or repaired.
     * @throws KernelException if nft refuses to list or repair the table.
     */
    @Override
    public boolean ensureTable() throws KernelException
    {
        final NftDataplane table = parts();
        final boolean changed;
        try
        {
            changed = table.ensureTable();
        }
        catch (final NftException e)
        {
            throw nftFailure(e);
        }
        if (changed)
        {
            LOG.warn("{}", table.lastRepair());
        }
        return changed;
    }

    /**
     * What the kernel holds now: the table's elements plus the uplink addresses egressd owns, plus the foreign
     * addresses it was asked to add that are still on the uplink (see {@link UplinkAddresses}). A table deleted
     * by hand is created again (empty), so the diff refills it.
     *
     * @return the plan read from the kernel.
     * @throws KernelException if the table or the uplink's addresses cannot be read (e.g. the uplink is gone).
     */
    @Override
    public KernelPlan read() throws KernelException
    {
        final KernelPlan table;
        try
        {
            // a reading handle infers nothing from its own last read: the sets are dumped again whenever the
            // ruleset's generation moved, whichever handle moved it
            table = parts().read();
        }
        catch (final NftException e)
        {
            if (!e.isNotFound())
            {
                throw nftFailure(e);
            }
            // The table was deleted by hand: put the static part back so the diff can refill it.
            ensureTable();
            return read();
        }
        checkArp();
        final KernelPlan plan = addresses.withUplink(table);
        refreshHost(false);
        return plan;
    }

    @Override
    public long appliedGeneration()
    {
        return appliedGeneration;
    }

    @Override
    public boolean appliedTransaction()
    {
        return appliedTransaction;
    }

    @Override
    public long generation()
    {
        try
        {
            parts();
            return netlink.generation() & 0xFFFFFFFFL;
        }
        catch (final IOException e)
        {
            LOG.debug("cannot read the nf_tables generation id: {}", e.getMessage());
            return -1;
        }
    }

    @Override
    public String tableFingerprint()
    {
        // the configuration and the device never change for this kernel: computed once (a start-up's decision to
        // trust the table, and every clean stop, ask for it)
        String fingerprint = tableFingerprint;
        if (fingerprint == null)
        {
            fingerprint = renderTableFingerprint();
            tableFingerprint = fingerprint;
        }
        return fingerprint;
    }

    private String renderTableFingerprint()
    {
        final Ruleset ruleset = new Ruleset(config);
        final StringBuilder text = new StringBuilder(ruleset.render()).append('\n').append(pairDevice);
        for (final Ruleset.StaticChain chain : ruleset.staticChains())
        {
            text.append('\n').append(chain.name()).append(' ').append(chain.fingerprints());
        }
        return sha256(text.toString());
    }

    /** The hex SHA-256 of a text. */
    static String sha256(final String text)
    {
        try
        {
            return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256")
                .digest(text.getBytes(java.nio.charset.StandardCharsets.UTF_8)));
        }
        catch (final java.security.NoSuchAlgorithmException e)
        {
            throw new IllegalStateException("every JVM has SHA-256", e);
        }
    }

    @Override
    public KernelPlan readTrusting(final KernelPlan table) throws KernelException
    {
        parts();
        final List<PlanElement> held = new ArrayList<>(table.size());
        for (final PlanElement e : table.elements())
        {
            if (!(e instanceof PlanElement.Uplink4) && !(e instanceof PlanElement.Uplink6))
            {
                held.add(e);
            }
        }
        checkArp();
        final KernelPlan plan = addresses.withUplink(KernelPlan.of(held));
        refreshHost(false);
        return plan;
    }

    /**
     * The addresses the host holds or routes as its own, as the last kernel read found them (read again by a
     * {@link #read()} at most every {@link #HOST_REFRESH_NANOS}).
     *
     * @return the snapshot; {@link HostAddresses#NONE} before the first read.
     */
    @Override
    public HostAddresses hostAddresses()
    {
        return hostAddresses.get();
    }

    /**
     * Reads the host's addresses and routes now (tests; the daemon's reads refresh them on their own).
     *
     * @return the snapshot.
     * @throws KernelException if they cannot be read.
     */
    public HostAddresses refreshHostAddresses() throws KernelException
    {
        parts();
        refreshHost(true);
        if (hostReadFailure != null)
        {
            throw new KernelException(KernelException.Source.RTNETLINK, "the host's addresses and routes could not be "
                + "read: " + hostReadFailure.getMessage(), hostReadFailure);
        }
        return hostAddresses.get();
    }

    /**
     * A failure keeps the last snapshot (logged once until a read works again): the table and the egress addresses
     * matter more than this check, so it never fails a reconcile.
     */
    private void refreshHost(final boolean now)
    {
        final long at = System.nanoTime();
        if (!now && hostReadNanos != 0 && at - hostReadNanos < HOST_REFRESH_NANOS)
        {
            return;
        }
        hostReadNanos = at;
        try
        {
            if (host == null)
            {
                host = RtnetlinkHost.open();
            }
            final RtnetlinkHost.Snapshot read = now ? host.read() : host.readIfChanged();
            if (read != null)
            {
                hostAddresses.set(HostAddresses.of(config.uplink(), read));
            }
            if (hostReadFailure != null)
            {
                LOG.info("the host's addresses and routes can be read again");
            }
            hostReadFailure = null;
        }
        catch (final IOException e)
        {
            if (hostReadFailure == null)
            {
                LOG.warn("the host's addresses and routes could not be read ({}); pair and guest addresses are checked "
                    + "against the last read", e.getMessage());
            }
            hostReadFailure = e;
        }
    }

    /**
     * The ARP sysctls pair addresses on lo need, as the last {@link #read()} found them.
     *
     * @return null when the pair addresses are on the uplink (or nothing was read yet), {@code ok}, or the problem
     *         ({@link LoopbackArp#problem}).
     */
    @Override
    public String arpSysctls()
    {
        return arpSysctls;
    }

    /** On lo, notes whether someone lowered the ARP sysctls since the start (reported, never changed back). */
    private void checkArp()
    {
        if (pairDevice == AddressDevice.LO)
        {
            arpSysctls = LoopbackArp.problem(sysctls, config.uplink()).orElse("ok");
        }
    }

    /**
     * As {@link #read()}, but always a deep read of the nft table ({@link NftDataplane#readFull()}).
     *
     * @return the plan read from the kernel.
     * @throws KernelException if the table or the uplink's addresses cannot be read.
     */
    public KernelPlan readFull() throws KernelException
    {
        final KernelPlan table;
        try
        {
            table = parts().readFull();
        }
        catch (final NftException e)
        {
            throw nftFailure(e);
        }
        return addresses.withUplink(table);
    }

    /**
     * Paces the deep checks of the nft table ({@link NftDataplane#paceDeepChecks}).
     *
     * @param factor 0 for a deep read and check every time; e.g. 9 for at most a tenth of the time.
     * @throws KernelException if the parts cannot be opened.
     */
    public void paceDeepChecks(final int factor) throws KernelException
    {
        parts().paceDeepChecks(factor, System::nanoTime);
    }

    /**
     * The egress addresses the plan wanted that were already on the uplink without egressd's mark, and still
     * are: egressd uses them but never changes or removes them (see {@link UplinkAddresses}).
     *
     * @return the addresses, as plan elements.
     * @throws KernelException if the parts cannot be opened.
     */
    public Set<PlanElement> foreignAddresses() throws KernelException
    {
        parts();
        return addresses.foreign();
    }

    /**
     * Applies changes: uplink addresses added, then one nft transaction, then uplink addresses removed (see the
     * class comment for why). All or nothing up to the transaction: if adding an address or the transaction
     * fails, the addresses this call created are removed again (best effort) and the failure is rethrown, so the
     * kernel is as before. An address that was already on the uplink without egressd's mark is used as it is and
     * never claimed, changed or removed: a REMOVE of it only forgets it.
     *
     * <p>Once the transaction has succeeded the new state is in force; a removal that then fails leaves an extra
     * address on the uplink that no map points at (harmless, and removed by the next reconcile). Every removal is
     * still tried, and the first failure is thrown with the others suppressed.
     *
     * @param changes the changes, e.g. {@code PlanDiff.between(read(), desired)}.
     * @throws KernelException if nft refuses the transaction (the message names the change it blamed) or
     *                         rtnetlink refuses an address.
     */
    @Override
    public void apply(final List<PlanChange> changes) throws KernelException
    {
        if (readOnly)
        {
            throw new IllegalStateException("a reading NftKernel applies nothing");
        }
        appliedGeneration = -1;
        final NftDataplane table = parts();
        final List<PlanElement> toAdd = new ArrayList<>();
        final List<PlanElement> toRemove = new ArrayList<>();
        for (final PlanChange change : changes)
        {
            if (UplinkAddresses.isUplink(change.element()))
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
                if (addresses.add(e))
                {
                    created.add(e);
                }
            }
        }
        catch (final KernelException | RuntimeException e)
        {
            addresses.undo(created, e);
            throw e;
        }

        // 2. One atomic transaction for everything else (NftDataplane skips the uplink kinds).
        try
        {
            final long started = System.nanoTime();
            table.apply(changes);
            appliedGeneration = table.committedGeneration();
            appliedTransaction = table.committedTransaction();
            final KernelBatchEvent event = new KernelBatchEvent();
            if (event.isEnabled())
            {
                event.changes = changes.size();
                event.batch = System.nanoTime() - started;
                event.commit();
            }
        }
        catch (final NftException e)
        {
            final KernelException failure = nftFailure(e);
            addresses.undo(created, failure);
            throw failure;
        }
        catch (final RuntimeException e)
        {
            addresses.undo(created, e);
            throw e;
        }

        // 3. Addresses last: nothing points at them any more.
        KernelException failure = null;
        for (final PlanElement e : toRemove)
        {
            try
            {
                addresses.remove(e);
            }
            catch (final KernelException x)
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
     * @throws KernelException if the counters cannot be listed.
     */
    @Override
    public Map<String, Long> counters() throws KernelException
    {
        try
        {
            return parts().counters();
        }
        catch (final NftException e)
        {
            throw nftFailure(e);
        }
    }

    /**
     * Removes everything egressd put in the kernel: the table, then every address egressd owns on the uplink and on
     * {@code lo} (in that
     * order, so no map points at an address while it goes). For the explicit teardown command only: every static
     * guest loses egress. Idempotent: a missing table is not an error. Addresses not marked as egressd's stay, the
     * foreign ones the plan used included (they are forgotten).
     *
     * @throws KernelException if nft refuses to delete the table (then no address is removed, since the maps may
     *                         still point at them), or an address cannot be removed.
     */
    public void teardown() throws KernelException
    {
        try
        {
            parts().deleteTable();
        }
        catch (final NftException e)
        {
            if (!e.isNotFound())
            {
                throw nftFailure(e);
            }
        }
        addresses.removeOwned();
    }

    /**
     * Frees the nft context and the netlink socket, if they were opened. Idempotent; must be called on the
     * owning thread.
     */
    @Override
    public void close()
    {
        if (closed || owner == null)
        {
            closed = true;
            return;
        }
        checkThread();
        closed = true;
        try
        {
            addresses.close();
            if (host != null)
            {
                host.close();
            }
        }
        finally
        {
            try
            {
                client.close();
            }
            finally
            {
                netlink.close();
            }
        }
    }

    /** The nft half, opening both halves on the calling thread at the first call; checks the thread after. */
    private NftDataplane parts() throws KernelException
    {
        if (owner != null || closed)
        {
            checkThread();
            return nft;
        }
        final LibNftablesClient opened;
        try
        {
            opened = LibNftablesClient.open();
        }
        catch (final NftException e)
        {
            throw nftFailure(e);
        }
        final NftNetlink nfnl;
        try
        {
            nfnl = NftNetlink.open(NfTables.NFPROTO_INET, config.table());
        }
        catch (final IOException | RuntimeException e)
        {
            opened.close();
            throw new KernelException(KernelException.Source.NFT, "cannot open an nf_tables netlink socket: " + e.getMessage(), e);
        }
        try
        {
            addresses = UplinkAddresses.open(config.uplink());
        }
        catch (final KernelException | RuntimeException e)
        {
            opened.close();
            nfnl.close();
            throw e;
        }
        if (pairDevice == AddressDevice.LO && !readOnly)
        {
            // Before any address goes on lo. Not fatal: under a unit that hides or freezes /proc/sys the operator
            // sets them (docs/region.md); the health and egressctl check say whether they are right.
            try
            {
                LoopbackArp.ensure(sysctls);
            }
            catch (final KernelException e)
            {
                LOG.error("pair addresses on lo: {}", e.getMessage());
            }
            checkArp();
        }
        client = opened;
        netlink = nfnl;
        nft = new NftDataplane(opened, nfnl, config);
        nft.paceDeepChecks(deepCheckFactor, System::nanoTime);
        owner = Thread.currentThread();
        return nft;
    }

    private void checkThread()
    {
        if (closed)
        {
            throw new IllegalStateException("NftKernel is closed");
        }
        if (Thread.currentThread() != owner)
        {
            throw new IllegalStateException("NftKernel used from thread " + Thread.currentThread().getName()
                + "; it belongs to " + owner.getName() + " (its nft context and netlink socket live in that"
                + " thread's network namespace and are not thread-safe)");
        }
    }

    private static KernelException nftFailure(final NftException e)
    {
        return new KernelException(KernelException.Source.NFT, e.getMessage(), e);
    }
}
