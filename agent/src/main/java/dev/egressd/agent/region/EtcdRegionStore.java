package dev.egressd.agent.region;

import dev.egressd.agent.region.RegionKeys.AliveValue;
import dev.egressd.agent.region.RegionKeys.AppValue;
import dev.egressd.agent.region.RegionKeys.HostValue;
import dev.egressd.agent.region.RegionKeys.MachineValue;
import dev.egressd.agent.region.RegionKeys.PairValue;
import dev.egressd.agent.region.RegionKeys.RouterValue;
import dev.egressd.agent.region.RegionKeys.SlotValue;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import io.etcd.jetcd.ClientBuilder;
import io.etcd.jetcd.KV;
import io.etcd.jetcd.KeyValue;
import io.etcd.jetcd.Watch;
import io.etcd.jetcd.common.exception.CompactedException;
import io.etcd.jetcd.common.exception.ErrorCode;
import io.etcd.jetcd.common.exception.EtcdException;
import io.etcd.jetcd.common.exception.EtcdExceptionFactory;
import io.etcd.jetcd.kv.GetResponse;
import io.etcd.jetcd.kv.TxnResponse;
import io.etcd.jetcd.op.Cmp;
import io.etcd.jetcd.op.CmpTarget;
import io.etcd.jetcd.op.Op;
import io.etcd.jetcd.options.DeleteOption;
import io.etcd.jetcd.options.GetOption;
import io.etcd.jetcd.options.PutOption;
import io.etcd.jetcd.options.WatchOption;
import io.etcd.jetcd.watch.WatchEvent;
import io.etcd.jetcd.watch.WatchResponse;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.MethodDescriptor;
import io.grpc.StatusException;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.GrpcSslContexts;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;

import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;
import java.util.function.UnaryOperator;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The region store on etcd (jetcd). Keys and values: docs/region.md.
 *
 * <p>Every public call is one budget of {@code deadline}: each etcd request it makes waits only for what is left of
 * it, and a request past it throws {@link RegionUnavailableException} (a write's outcome then unknown). Each gRPC
 * call also carries the deadline itself (except the watch stream), and jetcd's own retries are off, so a request
 * this store gave up on is never sent later by the client behind its back.
 *
 * <p>Watch deliveries run on the store's own thread, one at a time and in revision order; host liveness (the
 * {@code alive/<id>} key on a lease) and a router's key ({@code routers/<id>} on the router's own lease) are kept
 * on a second thread, so a slow keep-alive never delays a delivery.
 */
public final class EtcdRegionStore implements RegionStore
{
    /** The default key prefix. */
    public static final String DEFAULT_PREFIX = "/egressd";
    /** The default deadline of one call. */
    public static final Duration DEFAULT_DEADLINE = Duration.ofSeconds(2);
    /** The default TTL of the host's liveness lease. */
    public static final Duration DEFAULT_LEASE_TTL = Duration.ofSeconds(10);
    /** etcd's default {@code --max-txn-ops}: the most operations in one branch of a transaction. */
    static final int MAX_TXN_OPS = 128;
    /** The gRPC method that must not carry a deadline: the watch stream lives as long as the watch. */
    private static final String WATCH_METHOD = "etcdserverpb.Watch/Watch";
    private static final long WATCH_RETRY_MIN_MILLIS = 200;
    private static final long WATCH_RETRY_MAX_MILLIS = 5_000;
    private static final int ATTEMPTS = 3;

    private static final Logger LOG = LoggerFactory.getLogger(EtcdRegionStore.class);

    /**
     * TLS to etcd: a CA to trust (required for TLS), and an optional client certificate with its key.
     *
     * @param caFile   PEM CA bundle ({@code etcd-ca-file}).
     * @param certFile PEM client certificate ({@code etcd-cert-file}), or null.
     * @param keyFile  PEM PKCS#8 private key ({@code etcd-key-file}), or null; given exactly when certFile is.
     */
    public record Tls(Path caFile, Path certFile, Path keyFile)
    {
    }

    private final RegionKeys keys;
    private final Duration deadline;
    private final Duration leaseTtl;
    private final Client client;
    private final KV kv;
    private final ScheduledExecutorService events;
    private final ScheduledExecutorService liveness;
    private final AtomicLong requests = new AtomicLong();
    private final AtomicLong failures = new AtomicLong();
    private final AtomicLong conflicts = new AtomicLong();
    private final AtomicLong nanos = new AtomicLong();
    private final List<RegionWatch> watches = new ArrayList<>();
    private final LeasedKey hostAlive;
    private final LeasedKey routerAlive;
    private volatile boolean closed;

    /**
     * A store with the default prefix, deadline, lease TTL and no TLS.
     *
     * @param endpoints etcd's client URLs.
     * @param region    this host's region.
     */
    public EtcdRegionStore(final List<String> endpoints, final String region)
    {
        this(endpoints, DEFAULT_PREFIX, region, DEFAULT_DEADLINE, null, DEFAULT_LEASE_TTL);
    }

    /**
     * A store.
     *
     * @param endpoints etcd's client URLs ({@code http://} or, with TLS, {@code https://}).
     * @param prefix    the key prefix ({@link #DEFAULT_PREFIX}).
     * @param region    this host's region.
     * @param deadline  the deadline of one call ({@link #DEFAULT_DEADLINE}).
     * @param tls       TLS files, or null for plain text.
     * @param leaseTtl  the TTL of the host's liveness lease, whole seconds ({@link #DEFAULT_LEASE_TTL}).
     * @throws IllegalArgumentException a setting is wrong; the message names it.
     */
    public EtcdRegionStore(final List<String> endpoints, final String prefix, final String region,
        final Duration deadline, final Tls tls, final Duration leaseTtl)
    {
        this.keys = new RegionKeys(prefix, region);
        if (deadline == null || deadline.isNegative() || deadline.isZero() || deadline.compareTo(Duration.ofMinutes(1)) > 0)
        {
            throw new IllegalArgumentException("etcd-deadline: " + deadline + " is not within (0, 60 s]");
        }
        if (leaseTtl == null || leaseTtl.getSeconds() < 2 || leaseTtl.getNano() != 0 || leaseTtl.getSeconds() > 3600)
        {
            throw new IllegalArgumentException("etcd-lease-ttl: " + leaseTtl + " is not whole seconds within 2..3600");
        }
        this.deadline = deadline;
        this.leaseTtl = leaseTtl;
        final URI[] uris = endpoints(endpoints, tls != null);
        final ClientBuilder builder = Client.builder()
            .endpoints(uris)
            // One RPC per request: retries are the caller's decision, after a re-read (outcome unknown).
            .retryMaxAttempts(0)
            .connectTimeout(deadline)
            .interceptor(new DeadlineInterceptor(deadline));
        if (tls != null)
        {
            builder.sslContext(sslContext(tls));
        }
        this.client = builder.build();
        this.kv = client.getKVClient();
        // Connect now, in the background: the first real call should not spend its deadline loading the gRPC and
        // vert.x classes and opening the connection.
        kv.get(bytes(keys.base()), GetOption.builder().withCountOnly(true).build()).whenComplete((r, t) ->
        {
            if (t != null)
            {
                LOG.debug("region store: first contact with etcd failed: {}", t.getMessage());
            }
        });
        this.events = Executors.newSingleThreadScheduledExecutor(daemon("egressd-region-" + region));
        this.liveness = Executors.newSingleThreadScheduledExecutor(daemon("egressd-region-liveness"));
        this.hostAlive = new LeasedKey("host", keys::alive, "mark host %s alive");
        this.routerAlive = new LeasedKey("router", keys::router, "publish router %s");
    }

    private static URI[] endpoints(final List<String> endpoints, final boolean tls)
    {
        if (endpoints == null || endpoints.isEmpty())
        {
            throw new IllegalArgumentException("etcd-endpoints: none given");
        }
        final URI[] uris = new URI[endpoints.size()];
        for (int i = 0; i < uris.length; i++)
        {
            final String text = endpoints.get(i);
            final String want = tls ? "https" : "http";
            final URI uri;
            try
            {
                uri = URI.create(text == null ? "" : text.trim());
            }
            catch (final IllegalArgumentException e)
            {
                throw new IllegalArgumentException("etcd-endpoints: " + text + " is not " + want
                    + "://host:port (not a URL)", e);
            }
            if (!want.equals(uri.getScheme()) || uri.getHost() == null || uri.getPort() <= 0)
            {
                throw new IllegalArgumentException("etcd-endpoints: " + text + " is not " + want
                    + "://host:port" + (tls ? " (TLS files are set)" : " (set etcd-ca-file for https)"));
            }
            uris[i] = uri;
        }
        return uris;
    }

    /**
     * The client's TLS context from PEM files, each checked first so a wrong setting is named.
     *
     * @param tls the files.
     * @return the context.
     */
    static SslContext sslContext(final Tls tls)
    {
        readable("etcd-ca-file", tls.caFile());
        if ((tls.certFile() == null) != (tls.keyFile() == null))
        {
            throw new IllegalArgumentException(tls.certFile() == null
                ? "etcd-cert-file: missing (etcd-key-file is set; a client certificate needs both)"
                : "etcd-key-file: missing (etcd-cert-file is set; a client certificate needs both)");
        }
        if (tls.certFile() != null)
        {
            readable("etcd-cert-file", tls.certFile());
            readable("etcd-key-file", tls.keyFile());
        }
        final SslContextBuilder builder = GrpcSslContexts.forClient();
        try
        {
            builder.trustManager(tls.caFile().toFile());
        }
        catch (final IllegalArgumentException e)
        {
            throw new IllegalArgumentException("etcd-ca-file: " + tls.caFile() + " holds no PEM certificate: "
                + e.getMessage(), e);
        }
        if (tls.certFile() != null)
        {
            try
            {
                builder.keyManager(tls.certFile().toFile(), tls.keyFile().toFile());
            }
            catch (final IllegalArgumentException e)
            {
                throw new IllegalArgumentException("etcd-cert-file/etcd-key-file: " + tls.certFile() + ", "
                    + tls.keyFile() + " are not a PEM certificate and its PKCS#8 key: " + e.getMessage(), e);
            }
        }
        try
        {
            return builder.build();
        }
        catch (final IOException | RuntimeException e)
        {
            throw new IllegalArgumentException("etcd-ca-file/etcd-cert-file/etcd-key-file: cannot build TLS from "
                + tls.caFile() + (tls.certFile() == null ? "" : ", " + tls.certFile() + ", " + tls.keyFile())
                + ": " + e.getMessage(), e);
        }
    }

    private static void readable(final String setting, final Path file)
    {
        if (file == null)
        {
            throw new IllegalArgumentException(setting + ": missing");
        }
        if (!Files.isRegularFile(file) || !Files.isReadable(file))
        {
            throw new IllegalArgumentException(setting + ": " + file + " is not a readable file");
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Reads

    @Override
    public RegionSnapshot read() throws RegionUnavailableException
    {
        final Budget budget = budget();
        final GetResponse all = await(kv.get(bytes(keys.base()), GetOption.builder().isPrefix(true).build()), budget,
            "read the region", false);
        final Map<String, RegionApp> apps = new TreeMap<>();
        final Map<Ipv4Address, RegionPair> pairs = new TreeMap<>();
        final Map<SlotId, SlotRecord> slots = new TreeMap<>();
        final Map<String, HostValue> hostValues = new TreeMap<>();
        final Map<String, Boolean> alive = new HashMap<>();
        final Map<String, RouterRecord> routers = new TreeMap<>();
        for (final KeyValue entry : all.getKvs())
        {
            final String key = entry.getKey().toString(StandardCharsets.UTF_8).substring(keys.base().length());
            try
            {
                if (key.startsWith(RegionKeys.APPS))
                {
                    final String id = key.substring(RegionKeys.APPS.length());
                    apps.put(id, app(id, entry.getValue().getBytes()));
                }
                else if (key.startsWith(RegionKeys.PAIRS))
                {
                    final RegionPair pair = pair(entry.getValue().getBytes());
                    pairs.put(pair.pair().ipv4(), pair);
                }
                else if (key.startsWith(RegionKeys.SLOTS))
                {
                    final SlotId id = RegionKeys.parseSlot(key.substring(RegionKeys.SLOTS.length()));
                    slots.put(id, slot(id, entry));
                }
                else if (key.startsWith(RegionKeys.HOSTS))
                {
                    hostValues.put(key.substring(RegionKeys.HOSTS.length()), hostValue(entry));
                }
                else if (key.startsWith(RegionKeys.ALIVE))
                {
                    alive.put(key.substring(RegionKeys.ALIVE.length()), true);
                }
                else if (key.startsWith(RegionKeys.ROUTERS))
                {
                    final String id = key.substring(RegionKeys.ROUTERS.length());
                    routers.put(id, router(id, entry));
                }
            }
            catch (final IOException | RuntimeException e)
            {
                skipped(key, e);
            }
        }
        final Map<String, HostRecord> hosts = new TreeMap<>();
        hostValues.forEach((id, v) -> hosts.put(id, new HostRecord(id, v.addresses(), alive.containsKey(id),
            v.mark())));
        return new RegionSnapshot(all.getHeader().getRevision(), apps, pairs, slots, hosts, routers);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Slots

    @Override
    public ClaimAnswer claim(final SlotId slot, final String host, final String machine)
        throws RegionUnavailableException
    {
        RegionKeys.slot("slot", slot);
        RegionKeys.id("host", host);
        RegionKeys.id("machine", machine);
        final Budget budget = budget();
        final ByteSequence slotKey = bytes(keys.slot(slot));
        final ByteSequence machineKey = bytes(keys.machine(machine));
        final ByteSequence ours = value(new SlotValue(host, machine, false, 0));
        final ByteSequence index = value(new MachineValue(host, slot.pair().toString(), slot.block()));
        // Both absent: the common case, one round trip.
        Cmp slotFree = new Cmp(slotKey, Cmp.Op.EQUAL, CmpTarget.createRevision(0));
        SlotRecord current = null;
        for (int attempt = 0; attempt < ATTEMPTS; attempt++)
        {
            final TxnResponse answer = await(kv.txn()
                .If(slotFree, new Cmp(machineKey, Cmp.Op.EQUAL, CmpTarget.createRevision(0)))
                .Then(Op.put(slotKey, ours, PutOption.DEFAULT), Op.put(machineKey, index, PutOption.DEFAULT))
                .Else(Op.get(slotKey, GetOption.DEFAULT), Op.get(machineKey, GetOption.DEFAULT))
                .commit(), budget, "claim " + slot, true);
            if (answer.isSucceeded())
            {
                return new Claimed(new SlotRecord(slot, host, machine, false, 0, answer.getHeader().getRevision()));
            }
            final KeyValue slotKv = first(answer.getGetResponses().get(0));
            final KeyValue machineKv = first(answer.getGetResponses().get(1));
            current = slotKv == null ? null : slotOrNull(slot, slotKv);
            if (current != null && host.equals(current.host()) && machine.equals(current.machine())
                && !current.leaving())
            {
                // Ours already: a repeated claim after an unknown outcome.
                return new Claimed(current);
            }
            final boolean quarantineOver = current != null && current.quarantined()
                && current.quarantineUntilMillis() <= System.currentTimeMillis();
            if (slotKv != null && !quarantineOver)
            {
                conflicts.incrementAndGet();
                return new Taken(current);
            }
            if (machineKv != null)
            {
                conflicts.incrementAndGet();
                final MachineValue elsewhere = machineOrNull(machineKv);
                return new MachineElsewhere(elsewhere == null ? null : elsewhere.host(),
                    elsewhere == null ? null : new SlotId(Ipv4Address.parse(elsewhere.pair()), elsewhere.block()));
            }
            // A quarantine that is over: take the slot if it is still that quarantine (its mod revision); or the
            // slot was deleted in between: claim it as free again.
            slotFree = slotKv == null ? new Cmp(slotKey, Cmp.Op.EQUAL, CmpTarget.createRevision(0))
                : new Cmp(slotKey, Cmp.Op.EQUAL, CmpTarget.modRevision(slotKv.getModRevision()));
        }
        conflicts.incrementAndGet();
        if (current != null)
        {
            return new Taken(current);
        }
        throw new RegionUnavailableException("claim " + slot + ": the slot kept changing under " + ATTEMPTS
            + " attempts", false, null);
    }

    @Override
    public boolean release(final SlotId slot, final String host, final String machine)
        throws RegionUnavailableException
    {
        RegionKeys.slot("slot", slot);
        RegionKeys.id("host", host);
        RegionKeys.id("machine", machine);
        final Budget budget = budget();
        final ByteSequence slotKey = bytes(keys.slot(slot));
        final ByteSequence machineKey = bytes(keys.machine(machine));
        ByteSequence expected = value(new SlotValue(host, machine, false, 0));
        for (int attempt = 0; attempt < ATTEMPTS; attempt++)
        {
            final TxnResponse answer = await(kv.txn()
                .If(new Cmp(slotKey, Cmp.Op.EQUAL, CmpTarget.value(expected)))
                .Then(Op.delete(slotKey, DeleteOption.DEFAULT), Op.delete(machineKey, DeleteOption.DEFAULT))
                .Else(Op.get(slotKey, GetOption.DEFAULT))
                .commit(), budget, "release " + slot, true);
            if (answer.isSucceeded())
            {
                return true;
            }
            final KeyValue slotKv = first(answer.getGetResponses().get(0));
            if (slotKv == null)
            {
                return true;
            }
            final SlotRecord current = slotOrNull(slot, slotKv);
            if (current == null || !host.equals(current.host()) || !machine.equals(current.machine()))
            {
                return false;
            }
            // Ours, marked leaving: release that exact value.
            expected = slotKv.getValue();
        }
        return false;
    }

    @Override
    public boolean markLeaving(final SlotId slot, final String host, final String machine)
        throws RegionUnavailableException
    {
        RegionKeys.slot("slot", slot);
        RegionKeys.id("host", host);
        RegionKeys.id("machine", machine);
        final ByteSequence slotKey = bytes(keys.slot(slot));
        final ByteSequence leaving = value(new SlotValue(host, machine, true, 0));
        final TxnResponse answer = await(kv.txn()
            .If(new Cmp(slotKey, Cmp.Op.EQUAL, CmpTarget.value(value(new SlotValue(host, machine, false, 0)))))
            .Then(Op.put(slotKey, leaving, PutOption.DEFAULT))
            .Else(Op.get(slotKey, GetOption.DEFAULT))
            .commit(), budget(), "mark " + slot + " leaving", true);
        if (answer.isSucceeded())
        {
            return true;
        }
        final KeyValue slotKv = first(answer.getGetResponses().get(0));
        return slotKv != null && slotKv.getValue().equals(leaving);
    }

    @Override
    public ClaimAnswer handover(final String machine, final String fromHost, final String toHost)
        throws RegionUnavailableException
    {
        return handover(machine, fromHost, toHost, -1);
    }

    /**
     * {@link #handover(String, String, String)} fenced by the slot's mod revision as the caller saw it when the
     * slot was marked leaving (a watch or a snapshot): a slot marked, released and claimed and marked again since
     * has the same value but another revision, and is refused.
     *
     * @param machine     the machine.
     * @param fromHost    the host it comes from.
     * @param toHost      this host.
     * @param modRevision the leaving slot's mod revision, or -1 for whichever is current.
     * @return {@link Claimed} or {@link Taken} (holder null: the machine holds no slot in the region).
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    public ClaimAnswer handover(final String machine, final String fromHost, final String toHost,
        final long modRevision) throws RegionUnavailableException
    {
        RegionKeys.id("machine", machine);
        RegionKeys.id("from host", fromHost);
        RegionKeys.id("to host", toHost);
        final Budget budget = budget();
        final ByteSequence machineKey = bytes(keys.machine(machine));
        final KeyValue machineKv = first(await(kv.get(machineKey), budget, "handover " + machine, false));
        final MachineValue index = machineKv == null ? null : machineOrNull(machineKv);
        if (index == null)
        {
            conflicts.incrementAndGet();
            return new Taken(null);
        }
        final SlotId slot = new SlotId(Ipv4Address.parse(index.pair()), index.block());
        final ByteSequence slotKey = bytes(keys.slot(slot));
        final KeyValue slotKv = first(await(kv.get(slotKey), budget, "handover " + machine, false));
        final SlotRecord current = slotKv == null ? null : slotOrNull(slot, slotKv);
        if (current != null && toHost.equals(current.host()) && machine.equals(current.machine())
            && !current.leaving() && toHost.equals(index.host()))
        {
            // Handed over already: a repeated handover after an unknown outcome.
            return new Claimed(current);
        }
        if (current == null || !fromHost.equals(current.host()) || !machine.equals(current.machine())
            || !current.leaving() || modRevision >= 0 && current.modRevision() != modRevision)
        {
            conflicts.incrementAndGet();
            return new Taken(current);
        }
        final TxnResponse answer = await(kv.txn()
            .If(new Cmp(slotKey, Cmp.Op.EQUAL, CmpTarget.value(slotKv.getValue())),
                new Cmp(slotKey, Cmp.Op.EQUAL, CmpTarget.modRevision(slotKv.getModRevision())),
                new Cmp(machineKey, Cmp.Op.EQUAL, CmpTarget.value(machineKv.getValue())))
            .Then(Op.put(slotKey, value(new SlotValue(toHost, machine, false, 0)), PutOption.DEFAULT),
                Op.put(machineKey, value(new MachineValue(toHost, index.pair(), index.block())), PutOption.DEFAULT))
            .Else(Op.get(slotKey, GetOption.DEFAULT))
            .commit(), budget, "handover " + slot, true);
        if (answer.isSucceeded())
        {
            return new Claimed(new SlotRecord(slot, toHost, machine, false, 0, answer.getHeader().getRevision()));
        }
        conflicts.incrementAndGet();
        final KeyValue now = first(answer.getGetResponses().get(0));
        return new Taken(now == null ? null : slotOrNull(slot, now));
    }

    @Override
    public List<SlotId> quarantineHost(final String host, final long untilMillis) throws RegionUnavailableException
    {
        return quarantine(host, untilMillis).slots();
    }

    @Override
    public Quarantine quarantine(final String host, final long untilMillis) throws RegionUnavailableException
    {
        RegionKeys.id("host", host);
        final Budget budget = budget();
        final ByteSequence quarantine = value(new SlotValue(null, null, false, untilMillis));
        final List<SlotId> quarantined = new ArrayList<>();
        for (int attempt = 0; attempt < ATTEMPTS; attempt++)
        {
            final GetResponse all = await(kv.get(bytes(keys.base()), GetOption.builder().isPrefix(true).build()),
                budget, "quarantine host " + host, false);
            final Map<SlotId, KeyValue> held = new TreeMap<>();
            final List<ByteSequence> machines = new ArrayList<>();
            ByteSequence markKey = null;
            for (final KeyValue entry : all.getKvs())
            {
                final String key = entry.getKey().toString(StandardCharsets.UTF_8).substring(keys.base().length());
                if (key.startsWith(RegionKeys.SLOTS))
                {
                    final SlotId id;
                    try
                    {
                        id = RegionKeys.parseSlot(key.substring(RegionKeys.SLOTS.length()));
                    }
                    catch (final RuntimeException e)
                    {
                        continue;
                    }
                    final SlotRecord record = slotOrNull(id, entry);
                    if (record != null && host.equals(record.host()))
                    {
                        held.put(id, entry);
                    }
                }
                else if (key.startsWith(RegionKeys.MACHINES))
                {
                    final MachineValue index = machineOrNull(entry);
                    if (index != null && host.equals(index.host()))
                    {
                        machines.add(entry.getKey());
                    }
                }
                else if (key.startsWith(RegionKeys.MARKS)
                    && host.equals(entry.getValue().toString(StandardCharsets.UTF_8)))
                {
                    // the host's mark is free again once its host key is gone (a router then drops its table)
                    markKey = entry.getKey();
                }
            }
            // Each slot's put is fenced by its mod revision, so a slot that changed since the read (a handover
            // finishing) is not quarantined blindly: the batch fails and the host is read again.
            boolean raced = false;
            final List<Map.Entry<SlotId, KeyValue>> entries = new ArrayList<>(held.entrySet());
            final int perTxn = MAX_TXN_OPS / 2;
            for (int from = 0; from < entries.size() && !raced; from += perTxn)
            {
                final List<Map.Entry<SlotId, KeyValue>> batch = entries.subList(from, Math.min(entries.size(),
                    from + perTxn));
                final Cmp[] ifs = new Cmp[batch.size()];
                final Op[] thens = new Op[batch.size() * 2];
                for (int i = 0; i < batch.size(); i++)
                {
                    final KeyValue entry = batch.get(i).getValue();
                    final SlotRecord record = slotOrNull(batch.get(i).getKey(), entry);
                    ifs[i] = new Cmp(entry.getKey(), Cmp.Op.EQUAL, CmpTarget.modRevision(entry.getModRevision()));
                    thens[2 * i] = Op.put(entry.getKey(), quarantine, PutOption.DEFAULT);
                    thens[2 * i + 1] = Op.delete(bytes(keys.machine(record.machine())), DeleteOption.DEFAULT);
                }
                final TxnResponse answer = await(kv.txn().If(ifs).Then(thens).commit(), budget,
                    "quarantine host " + host, true);
                if (answer.isSucceeded())
                {
                    batch.forEach(e -> quarantined.add(e.getKey()));
                }
                else
                {
                    raced = true;
                }
            }
            if (raced)
            {
                continue;
            }
            // The machine keys left (a machine whose slot was released between our reads) and the host's keys.
            final List<Op> rest = new ArrayList<>();
            machines.forEach(m -> rest.add(Op.delete(m, DeleteOption.DEFAULT)));
            rest.add(Op.delete(bytes(keys.host(host)), DeleteOption.DEFAULT));
            rest.add(Op.delete(bytes(keys.alive(host)), DeleteOption.DEFAULT));
            if (markKey != null)
            {
                rest.add(Op.delete(markKey, DeleteOption.DEFAULT));
            }
            long revision = 0;
            for (int from = 0; from < rest.size(); from += MAX_TXN_OPS)
            {
                revision = await(kv.txn().Then(rest.subList(from, Math.min(rest.size(), from + MAX_TXN_OPS))
                    .toArray(Op[]::new)).commit(), budget, "quarantine host " + host, true).getHeader().getRevision();
            }
            return new Quarantine(quarantined, revision);
        }
        throw new RegionUnavailableException("quarantine host " + host + ": its slots kept changing under "
            + ATTEMPTS + " attempts; " + quarantined.size() + " quarantined so far", false, null);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Apps and pairs

    @Override
    public void putApp(final RegionApp app) throws RegionUnavailableException
    {
        RegionKeys.id("app", app.id());
        await(kv.put(bytes(keys.app(app.id())), value(new AppValue(app.failClosed()))), budget(), "put app " + app.id(),
            true);
    }

    @Override
    public RegionPair createPair(final RegionPair pair) throws RegionUnavailableException
    {
        RegionKeys.id("app", pair.app());
        final ByteSequence key = bytes(keys.pair(pair.pair().ipv4()));
        final TxnResponse answer = await(kv.txn()
            .If(new Cmp(key, Cmp.Op.EQUAL, CmpTarget.createRevision(0)))
            .Then(Op.put(key, value(pairValue(pair)), PutOption.DEFAULT))
            .Else(Op.get(key, GetOption.DEFAULT))
            .commit(), budget(), "create pair " + pair.pair().ipv4(), true);
        if (answer.isSucceeded())
        {
            return null;
        }
        final KeyValue existingKv = first(answer.getGetResponses().get(0));
        if (existingKv == null)
        {
            throw new RegionUnavailableException("create pair " + pair.pair().ipv4()
                + ": refused, yet the key is absent; read again", false, null);
        }
        final RegionPair existing;
        try
        {
            existing = pair(existingKv.getValue().getBytes());
        }
        catch (final IOException | RuntimeException e)
        {
            throw new RegionUnavailableException("create pair " + pair.pair().ipv4() + ": the existing value is not a "
                + "pair (" + e.getMessage() + ")", false, e);
        }
        return existing.app().equals(pair.app()) && existing.pair().equals(pair.pair()) ? null : existing;
    }

    @Override
    public boolean setDrained(final Ipv4Address ipv4, final boolean drained) throws RegionUnavailableException
    {
        final Budget budget = budget();
        final ByteSequence key = bytes(keys.pair(ipv4));
        for (int attempt = 0; attempt < ATTEMPTS; attempt++)
        {
            final KeyValue existingKv = first(await(kv.get(key), budget, "drain pair " + ipv4, false));
            if (existingKv == null)
            {
                return false;
            }
            final RegionPair existing;
            try
            {
                existing = pair(existingKv.getValue().getBytes());
            }
            catch (final IOException | RuntimeException e)
            {
                throw new RegionUnavailableException("drain pair " + ipv4 + ": the value is not a pair ("
                    + e.getMessage() + ")", false, e);
            }
            final TxnResponse answer = await(kv.txn()
                .If(new Cmp(key, Cmp.Op.EQUAL, CmpTarget.modRevision(existingKv.getModRevision())))
                .Then(Op.put(key, value(pairValue(new RegionPair(existing.app(), existing.pair(), drained))),
                    PutOption.DEFAULT))
                .commit(), budget, "drain pair " + ipv4, true);
            if (answer.isSucceeded())
            {
                return true;
            }
        }
        throw new RegionUnavailableException("drain pair " + ipv4 + ": the pair kept changing under " + ATTEMPTS
            + " attempts", false, null);
    }

    @Override
    public void deletePair(final Ipv4Address ipv4) throws RegionUnavailableException
    {
        await(kv.delete(bytes(keys.pair(ipv4))), budget(), "delete pair " + ipv4, true);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Hosts

    @Override
    public HostRecord registerHost(final HostRecord host) throws RegionUnavailableException
    {
        RegionKeys.id("host", host.id());
        hostAlive.checkId(host.id());
        final Budget budget = budget();
        final List<String> addresses = List.copyOf(host.addresses());
        final int mark = writeHost(host.id(), addresses, budget);
        hostAlive.hold(host.id(), () -> new AliveValue(System.currentTimeMillis()), budget);
        return new HostRecord(host.id(), addresses, true, mark);
    }

    /**
     * Writes the host key with its mark: the mark it holds already (a restart), or the lowest free one, taken with
     * its {@code marks/<n>} key in the same transaction (created only if absent, so two hosts never share one).
     *
     * @return the mark.
     */
    private int writeHost(final String id, final List<String> addresses, final Budget budget)
        throws RegionUnavailableException
    {
        final ByteSequence hostKey = bytes(keys.host(id));
        final ByteSequence owner = ByteSequence.from(id, StandardCharsets.UTF_8);
        final java.util.Set<Integer> used = new java.util.HashSet<>();
        // The registration is one write to its caller (repeating it is harmless): a read in it that fails leaves
        // the outcome unknown like its writes.
        final GetResponse marks = await(kv.get(bytes(keys.base() + RegionKeys.MARKS),
            GetOption.builder().isPrefix(true).build()), budget, "register host " + id, true);
        for (final KeyValue entry : marks.getKvs())
        {
            final String n = entry.getKey().toString(StandardCharsets.UTF_8)
                .substring((keys.base() + RegionKeys.MARKS).length());
            try
            {
                used.add(Integer.parseInt(n));
            }
            catch (final NumberFormatException e)
            {
                skipped(n, e);
            }
        }
        KeyValue hostKv = first(await(kv.get(hostKey), budget, "register host " + id, true));
        int candidate = 1;
        // false once the host key's mark turned out to be another host's: a new one is taken
        boolean keep = true;
        // Each round trip either writes or learns one more mark (or the host key) taken: bounded by the marks.
        for (int round = 0; round <= RegionStore.MAX_HOST_MARK + ATTEMPTS; round++)
        {
            final int held = hostKv == null || !keep ? 0 : markOf(hostKv);
            final Cmp hostSame = hostKv == null ? new Cmp(hostKey, Cmp.Op.EQUAL, CmpTarget.createRevision(0))
                : new Cmp(hostKey, Cmp.Op.EQUAL, CmpTarget.modRevision(hostKv.getModRevision()));
            final int mark;
            final Cmp markFree;
            if (held > 0)
            {
                // Re-registration: keep the mark, re-creating its marks/ key if it is missing (or ours already).
                mark = held;
                final KeyValue markKv = first(await(kv.get(bytes(keys.mark(mark))), budget, "register host " + id,
                    true));
                if (markKv != null && !markKv.getValue().equals(owner))
                {
                    LOG.error("region: host {}'s mark {} is held by {} in {}; assigning another", id, mark,
                        markKv.getValue().toString(StandardCharsets.UTF_8), keys.mark(mark));
                    used.add(mark);
                    keep = false;
                    continue;
                }
                markFree = markKv == null ? new Cmp(bytes(keys.mark(mark)), Cmp.Op.EQUAL, CmpTarget.createRevision(0))
                    : new Cmp(bytes(keys.mark(mark)), Cmp.Op.EQUAL, CmpTarget.value(owner));
            }
            else
            {
                while (used.contains(candidate))
                {
                    candidate++;
                }
                if (candidate > RegionStore.MAX_HOST_MARK)
                {
                    throw new RegionUnavailableException("register host " + id + ": all " + RegionStore.MAX_HOST_MARK
                        + " host marks are taken (delete hosts that are gone)", false, null);
                }
                mark = candidate;
                markFree = new Cmp(bytes(keys.mark(mark)), Cmp.Op.EQUAL, CmpTarget.createRevision(0));
            }
            final TxnResponse answer = await(kv.txn()
                .If(markFree, hostSame)
                .Then(Op.put(bytes(keys.mark(mark)), owner, PutOption.DEFAULT),
                    Op.put(hostKey, value(new HostValue(addresses, mark)), PutOption.DEFAULT))
                .Else(Op.get(bytes(keys.mark(mark)), GetOption.DEFAULT), Op.get(hostKey, GetOption.DEFAULT))
                .commit(), budget, "register host " + id, true);
            if (answer.isSucceeded())
            {
                return mark;
            }
            final KeyValue markNow = first(answer.getGetResponses().get(0));
            final KeyValue hostNow = first(answer.getGetResponses().get(1));
            if (markNow != null && !markNow.getValue().equals(owner))
            {
                used.add(mark); // another host won the mark: the next one
            }
            hostKv = hostNow;
        }
        throw new RegionUnavailableException("register host " + id + ": no mark could be taken", false, null);
    }

    private static int markOf(final KeyValue hostKv)
    {
        try
        {
            return hostValue(hostKv).mark();
        }
        catch (final IOException | RuntimeException e)
        {
            skipped(hostKv.getKey().toString(StandardCharsets.UTF_8), e);
            return 0;
        }
    }

    @Override
    public void publishRouter(final String router, final long applied) throws RegionUnavailableException
    {
        RegionKeys.id("router", router);
        if (applied < 0)
        {
            throw new IllegalArgumentException("applied: " + applied + " is not a revision (0 or more)");
        }
        routerAlive.hold(router, () -> new RouterValue(applied), budget());
    }

    /**
     * When the next renewal of a liveness lease is due: a third of the TTL after one that worked, a ninth after one
     * that failed. With a fixed third, two renewals that each ran into the deadline (a slow etcd, a loaded host) took
     * 2 x (TTL / 3 + deadline) > TTL, and the host looked dead to the region although it only waited; retried at a
     * ninth, it gets about four tries within one TTL.
     */
    static long renewalDelayMillis(final Duration leaseTtl, final boolean lastRenewed)
    {
        return leaseTtl.toMillis() / (lastRenewed ? 3 : 9);
    }

    /**
     * A key kept on a lease of its own and renewed on the liveness thread: the host's {@code alive/<id>} and a
     * router's {@code routers/<id>}. One id per store. The lease is granted on first use and again when etcd says
     * it expired (an outage longer than the TTL), and the key is written again then, so it never stays on a dead
     * lease; between those, a renewal is one keep-alive.
     */
    private final class LeasedKey
    {
        private final String kind;
        private final UnaryOperator<String> keyOf;
        private final String putWhat;
        private final Object lock = new Object();
        private String id;
        private Supplier<Object> value;
        private long lease;
        private boolean written;

        LeasedKey(final String kind, final UnaryOperator<String> keyOf, final String putWhat)
        {
            this.kind = kind;
            this.keyOf = keyOf;
            this.putWhat = putWhat;
        }

        /** Refuses a second id before anything is written for it. */
        void checkId(final String candidate)
        {
            synchronized (lock)
            {
                if (id != null && !id.equals(candidate))
                {
                    throw new IllegalStateException(kind + ": this store holds " + kind + " " + id + " already, not "
                        + candidate);
                }
            }
        }

        /** Writes the key with value's current value now, and keeps it alive from then on. */
        void hold(final String newId, final Supplier<Object> newValue, final Budget budget)
            throws RegionUnavailableException
        {
            synchronized (lock)
            {
                checkId(newId);
                final boolean first = id == null;
                id = newId;
                value = newValue;
                written = false;
                publish(budget);
                if (first)
                {
                    renewIn(renewalDelayMillis(leaseTtl, true));
                }
            }
        }

        private void renewIn(final long millis)
        {
            try
            {
                liveness.schedule(this::renewQuietly, millis, TimeUnit.MILLISECONDS);
            }
            catch (final java.util.concurrent.RejectedExecutionException e)
            {
                // Closed: the lease is left to expire.
            }
        }

        private void renewQuietly()
        {
            boolean renewed = false;
            try
            {
                synchronized (lock)
                {
                    if (closed)
                    {
                        return;
                    }
                    publish(budget());
                    renewed = true;
                }
            }
            catch (final RegionUnavailableException e)
            {
                LOG.debug("region {} liveness: {}", kind, e.getMessage());
            }
            catch (final RuntimeException e)
            {
                LOG.warn("region {} liveness failed", kind, e);
            }
            renewIn(renewalDelayMillis(leaseTtl, renewed));
        }

        /** Renews the lease when the key is written, else grants one if needed and writes the key. Lock held. */
        private void publish(final Budget budget) throws RegionUnavailableException
        {
            if (lease != 0 && written)
            {
                try
                {
                    await(client.getLeaseClient().keepAliveOnce(lease), budget, "keep " + kind + " " + id + " alive",
                        false);
                    return;
                }
                catch (final RegionUnavailableException e)
                {
                    if (!expired(e))
                    {
                        throw e;
                    }
                    LOG.warn("region: {} {}'s lease {} expired; granting a new one", kind, id, Long.toHexString(lease));
                    lease = 0;
                }
            }
            if (lease == 0)
            {
                lease = await(client.getLeaseClient().grant(leaseTtl.getSeconds()), budget, "grant " + kind + " " + id
                    + " a lease", true).getID();
                written = false;
            }
            try
            {
                await(kv.put(bytes(keyOf.apply(id)), value(value.get()), PutOption.builder().withLeaseId(lease)
                    .build()), budget, String.format(putWhat, id), true);
            }
            catch (final RegionUnavailableException e)
            {
                if (expired(e))
                {
                    lease = 0; // the lease expired between the keep-alive or the grant and the put: granted again
                }
                throw e;
            }
            written = true;
        }

        private static boolean expired(final RegionUnavailableException e)
        {
            return errorCode(e.getCause()) == ErrorCode.NOT_FOUND;
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Watch

    @Override
    public AutoCloseable watch(final long fromRevision, final Listener listener)
    {
        if (fromRevision < 1)
        {
            throw new IllegalArgumentException("watch: from revision " + fromRevision + " is not 1 or more");
        }
        final RegionWatch watch = new RegionWatch(fromRevision, listener);
        synchronized (watches)
        {
            if (closed)
            {
                throw new IllegalStateException("the region store is closed");
            }
            watches.add(watch);
        }
        events.execute(watch::subscribe);
        return () ->
        {
            try
            {
                events.execute(watch::stop);
            }
            catch (final java.util.concurrent.RejectedExecutionException e)
            {
                // The store is closed, and its watches with it.
            }
        };
    }

    /** One watch: all its state is touched on the store's thread only. */
    private final class RegionWatch
    {
        private final Listener listener;
        /** The next revision to deliver. */
        private long next;
        /** Drops callbacks of a jetcd watcher this watch has closed. */
        private int generation;
        private Watch.Watcher watcher;
        private boolean stopped;
        private long retryMillis = WATCH_RETRY_MIN_MILLIS;
        /** Hosts as of {@code next - 1}: the host key's value (addresses and mark) and the liveness key. */
        private final Map<String, HostValue> addresses = new HashMap<>();
        private final Map<String, Boolean> alive = new HashMap<>();

        RegionWatch(final long from, final Listener listener)
        {
            this.next = from;
            this.listener = listener;
        }

        void subscribe()
        {
            if (stopped || closed)
            {
                return;
            }
            try
            {
                loadHosts();
            }
            catch (final RegionUnavailableException e)
            {
                if (compactedAway(e))
                {
                    compacted();
                    return;
                }
                interrupted(e.getMessage());
                return;
            }
            final int mine = ++generation;
            watcher = client.getWatchClient().watch(bytes(keys.base()),
                WatchOption.builder().isPrefix(true).withRevision(next).build(),
                Watch.listener(r -> post(mine, () -> deliver(r)), t -> post(mine, () -> failed(t)),
                    () -> post(mine, () -> interrupted("the watch stream ended"))));
        }

        private void post(final int mine, final Runnable task)
        {
            try
            {
                events.execute(() ->
                {
                    if (mine == generation && !stopped && !closed)
                    {
                        task.run();
                    }
                });
            }
            catch (final java.util.concurrent.RejectedExecutionException e)
            {
                // Closed: nothing more to deliver.
            }
        }

        /** The hosts' keys as of {@code next - 1}, so a liveness change can be told with the host's addresses. */
        private void loadHosts() throws RegionUnavailableException
        {
            addresses.clear();
            alive.clear();
            if (next <= 1)
            {
                return;
            }
            final Budget budget = budget();
            final GetOption at = GetOption.builder().isPrefix(true).withRevision(next - 1).build();
            for (final KeyValue entry : await(kv.get(bytes(keys.base() + RegionKeys.HOSTS), at), budget,
                "watch: read hosts", false).getKvs())
            {
                final String id = entry.getKey().toString(StandardCharsets.UTF_8)
                    .substring((keys.base() + RegionKeys.HOSTS).length());
                try
                {
                    addresses.put(id, hostValue(entry));
                }
                catch (final IOException | RuntimeException e)
                {
                    skipped(id, e);
                }
            }
            for (final KeyValue entry : await(kv.get(bytes(keys.base() + RegionKeys.ALIVE), at), budget,
                "watch: read hosts", false).getKvs())
            {
                alive.put(entry.getKey().toString(StandardCharsets.UTF_8)
                    .substring((keys.base() + RegionKeys.ALIVE).length()), true);
            }
        }

        private void deliver(final WatchResponse response)
        {
            final List<RegionChange> changes = new ArrayList<>();
            // A transaction's events share one revision: all of them are new, not only its first key's.
            final long from = next;
            for (final WatchEvent event : response.getEvents())
            {
                final KeyValue entry = event.getKeyValue();
                if (entry.getModRevision() < from)
                {
                    continue;
                }
                final RegionChange change = change(event.getEventType() == WatchEvent.EventType.DELETE, entry);
                if (change != null)
                {
                    changes.add(change);
                }
                next = Math.max(next, entry.getModRevision() + 1);
            }
            retryMillis = WATCH_RETRY_MIN_MILLIS;
            if (!changes.isEmpty())
            {
                try
                {
                    listener.changed(List.copyOf(changes));
                }
                catch (final RuntimeException e)
                {
                    // The listener's bug must not end the watch: the next changes still come.
                    LOG.warn("region watch listener failed", e);
                }
            }
        }

        private RegionChange change(final boolean deleted, final KeyValue entry)
        {
            final long revision = entry.getModRevision();
            final String key = entry.getKey().toString(StandardCharsets.UTF_8).substring(keys.base().length());
            try
            {
                if (key.startsWith(RegionKeys.APPS))
                {
                    final String id = key.substring(RegionKeys.APPS.length());
                    return new AppChange(revision, id, deleted ? null : app(id, entry.getValue().getBytes()));
                }
                if (key.startsWith(RegionKeys.PAIRS))
                {
                    final Ipv4Address ipv4 = Ipv4Address.parse(key.substring(RegionKeys.PAIRS.length()));
                    return new PairChange(revision, ipv4, deleted ? null : pair(entry.getValue().getBytes()));
                }
                if (key.startsWith(RegionKeys.SLOTS))
                {
                    final SlotId id = RegionKeys.parseSlot(key.substring(RegionKeys.SLOTS.length()));
                    return new SlotChange(revision, id, deleted ? null : slot(id, entry));
                }
                if (key.startsWith(RegionKeys.HOSTS))
                {
                    final String id = key.substring(RegionKeys.HOSTS.length());
                    if (deleted)
                    {
                        addresses.remove(id);
                        return new HostChange(revision, id, null);
                    }
                    final HostValue v = hostValue(entry);
                    addresses.put(id, v);
                    return new HostChange(revision, id, new HostRecord(id, v.addresses(), alive.containsKey(id),
                        v.mark()));
                }
                if (key.startsWith(RegionKeys.ALIVE))
                {
                    final String id = key.substring(RegionKeys.ALIVE.length());
                    if (deleted)
                    {
                        alive.remove(id);
                    }
                    else
                    {
                        alive.put(id, true);
                    }
                    final HostValue v = addresses.get(id);
                    return v == null ? null : new HostChange(revision, id, new HostRecord(id, v.addresses(), !deleted,
                        v.mark()));
                }
                if (key.startsWith(RegionKeys.ROUTERS))
                {
                    final String id = key.substring(RegionKeys.ROUTERS.length());
                    return new RouterChange(revision, id, deleted ? null : router(id, entry));
                }
            }
            catch (final IOException | RuntimeException e)
            {
                skipped(key, e);
            }
            // machines/ is the claims' index and marks/ the marks' index (the host key carries the mark): not news
            // for anyone above the store.
            return null;
        }

        private void failed(final Throwable problem)
        {
            closeWatcher();
            if (compactedAway(problem))
            {
                compacted();
                return;
            }
            interrupted(problem.getMessage() == null ? problem.toString() : problem.getMessage());
        }

        private void compacted()
        {
            stopped = true;
            listener.compacted();
        }

        private void interrupted(final String problem)
        {
            closeWatcher();
            listener.interrupted(problem);
            final long delay = retryMillis;
            retryMillis = Math.min(WATCH_RETRY_MAX_MILLIS, retryMillis * 2);
            try
            {
                events.schedule(this::subscribe, delay, TimeUnit.MILLISECONDS);
            }
            catch (final java.util.concurrent.RejectedExecutionException e)
            {
                // Closed.
            }
        }

        private void closeWatcher()
        {
            generation++;
            final Watch.Watcher w = watcher;
            watcher = null;
            if (w != null)
            {
                try
                {
                    w.close();
                }
                catch (final RuntimeException e)
                {
                    LOG.debug("closing a region watch", e);
                }
            }
        }

        void stop()
        {
            stopped = true;
            closeWatcher();
            synchronized (watches)
            {
                watches.remove(this);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------

    @Override
    public Stats stats()
    {
        return new Stats(requests.get(), failures.get(), conflicts.get(), nanos.get());
    }

    /**
     * Compacts etcd's history up to a revision, for tests of a watch that falls behind.
     *
     * @param revision the revision.
     * @throws RegionUnavailableException past the deadline or unreachable.
     */
    void compact(final long revision) throws RegionUnavailableException
    {
        await(kv.compact(revision), budget(), "compact", true);
    }

    @Override
    public void close()
    {
        synchronized (watches)
        {
            if (closed)
            {
                return;
            }
            closed = true;
        }
        // The liveness lease is left to expire, not revoked: a daemon restarting within the TTL never looks dead.
        liveness.shutdownNow();
        try
        {
            events.submit(() ->
            {
                synchronized (watches)
                {
                    new ArrayList<>(watches).forEach(RegionWatch::stop);
                }
            }).get(deadline.toMillis(), TimeUnit.MILLISECONDS);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
        catch (final ExecutionException | TimeoutException | java.util.concurrent.RejectedExecutionException e)
        {
            LOG.debug("closing the region watches", e);
        }
        events.shutdownNow();
        client.close();
    }

    // ---------------------------------------------------------------------------------------------------------
    // Requests

    /** The time one public call may take. */
    private final class Budget
    {
        private final long end = System.nanoTime() + deadline.toNanos();

        long remainingNanos()
        {
            return Math.max(0, end - System.nanoTime());
        }
    }

    private Budget budget()
    {
        if (closed)
        {
            throw new IllegalStateException("the region store is closed");
        }
        return new Budget();
    }

    private <T> T await(final CompletableFuture<T> future, final Budget budget, final String what,
        final boolean write) throws RegionUnavailableException
    {
        requests.incrementAndGet();
        final long start = System.nanoTime();
        try
        {
            return future.get(budget.remainingNanos(), TimeUnit.NANOSECONDS);
        }
        catch (final TimeoutException e)
        {
            future.cancel(true);
            failures.incrementAndGet();
            throw new RegionUnavailableException(what + ": etcd did not answer within " + deadline.toMillis() + " ms",
                write, e);
        }
        catch (final ExecutionException e)
        {
            failures.incrementAndGet();
            final Throwable cause = e.getCause() == null ? e : e.getCause();
            throw new RegionUnavailableException(what + ": " + (cause.getMessage() == null ? cause.toString()
                : cause.getMessage()), write && !refused(cause), cause);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            future.cancel(true);
            failures.incrementAndGet();
            throw new RegionUnavailableException(what + ": interrupted", write, e);
        }
        finally
        {
            nanos.addAndGet(System.nanoTime() - start);
        }
    }

    /** Whether etcd answered a request with a refusal, which it applied none of. */
    private static boolean refused(final Throwable cause)
    {
        final ErrorCode code = errorCode(cause);
        return code != null && switch (code)
        {
            case INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE, PERMISSION_DENIED, UNAUTHENTICATED,
                RESOURCE_EXHAUSTED, ALREADY_EXISTS, NOT_FOUND -> true;
            default -> false;
        };
    }

    /**
     * etcd's answer code, however jetcd delivered it: the lease calls fail with its {@code EtcdException}, but puts
     * and transactions with gRPC's own {@code StatusRuntimeException} (a put on an expired lease: NOT_FOUND).
     *
     * @return the code, or null when the failure is not an answer of etcd's (a timeout, a closed client).
     */
    static ErrorCode errorCode(final Throwable cause)
    {
        if (cause instanceof EtcdException ee)
        {
            return ee.getErrorCode();
        }
        if (cause instanceof StatusRuntimeException || cause instanceof StatusException)
        {
            return EtcdExceptionFactory.toEtcdException(cause).getErrorCode();
        }
        return null;
    }

    /** Whether etcd refused a revision that compaction removed (whatever wraps its answer). */
    private static boolean compactedAway(final Throwable problem)
    {
        for (Throwable t = problem; t != null; t = t.getCause() == t ? null : t.getCause())
        {
            if (t instanceof CompactedException
                || String.valueOf(t.getMessage()).contains("required revision has been compacted"))
            {
                return true;
            }
        }
        return false;
    }

    /** Puts the store's deadline on each gRPC call but the watch stream. */
    private static final class DeadlineInterceptor implements ClientInterceptor
    {
        private final Duration deadline;

        DeadlineInterceptor(final Duration deadline)
        {
            this.deadline = deadline;
        }

        @Override
        public <Q, R> ClientCall<Q, R> interceptCall(final MethodDescriptor<Q, R> method,
            final CallOptions options, final Channel next)
        {
            if (WATCH_METHOD.equals(method.getFullMethodName()) || options.getDeadline() != null)
            {
                return next.newCall(method, options);
            }
            return next.newCall(method, options.withDeadlineAfter(deadline.toNanos(), TimeUnit.NANOSECONDS));
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Values

    private static ByteSequence bytes(final String key)
    {
        return ByteSequence.from(key, StandardCharsets.UTF_8);
    }

    private static ByteSequence value(final Object value)
    {
        return ByteSequence.from(RegionKeys.write(value));
    }

    private static KeyValue first(final GetResponse response)
    {
        return response.getKvs().isEmpty() ? null : response.getKvs().get(0);
    }

    private static RegionApp app(final String id, final byte[] bytes) throws IOException
    {
        return new RegionApp(id, RegionKeys.read(bytes, AppValue.class).failClosed());
    }

    private static PairValue pairValue(final RegionPair pair)
    {
        return new PairValue(pair.app(), pair.pair().ipv4().toString(), pair.pair().ipv6().toString(),
            pair.pair().region(), pair.drained());
    }

    private static RegionPair pair(final byte[] bytes) throws IOException
    {
        final PairValue v = RegionKeys.read(bytes, PairValue.class);
        return new RegionPair(v.app(), new EgressPair(Ipv4Address.parse(v.ipv4()), Ipv6Address.parse(v.ipv6()),
            v.region()), v.drained());
    }

    private static SlotRecord slot(final SlotId id, final KeyValue entry) throws IOException
    {
        final SlotValue v = RegionKeys.read(entry.getValue().getBytes(), SlotValue.class);
        return new SlotRecord(id, v.host(), v.host() == null ? null : v.machine(), v.leaving(),
            v.quarantineUntil(), entry.getModRevision());
    }

    private static SlotRecord slotOrNull(final SlotId id, final KeyValue entry)
    {
        try
        {
            return slot(id, entry);
        }
        catch (final IOException | RuntimeException e)
        {
            skipped(entry.getKey().toString(StandardCharsets.UTF_8), e);
            return null;
        }
    }

    private static MachineValue machineOrNull(final KeyValue entry)
    {
        try
        {
            return RegionKeys.read(entry.getValue().getBytes(), MachineValue.class);
        }
        catch (final IOException | RuntimeException e)
        {
            skipped(entry.getKey().toString(StandardCharsets.UTF_8), e);
            return null;
        }
    }

    private static HostValue hostValue(final KeyValue entry) throws IOException
    {
        final HostValue v = RegionKeys.read(entry.getValue().getBytes(), HostValue.class);
        return new HostValue(v.addresses() == null ? List.of() : List.copyOf(v.addresses()), v.mark());
    }

    private static RouterRecord router(final String id, final KeyValue entry) throws IOException
    {
        return new RouterRecord(id, RegionKeys.read(entry.getValue().getBytes(), RouterValue.class).applied());
    }

    private static void skipped(final String key, final Exception e)
    {
        LOG.warn("region: skipping key {}: its value is not what egressd writes ({})", key, e.getMessage());
    }

    private static java.util.concurrent.ThreadFactory daemon(final String name)
    {
        return r ->
        {
            final Thread t = new Thread(r, name);
            t.setDaemon(true);
            return t;
        };
    }
}
