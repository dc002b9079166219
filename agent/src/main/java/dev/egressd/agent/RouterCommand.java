package dev.egressd.agent;

import com.sun.net.httpserver.HttpServer;
import dev.egressd.agent.config.BadSettingException;
import dev.egressd.agent.config.RouterConfig;
import dev.egressd.agent.kernel.Sysctl;
import dev.egressd.agent.kernel.nft.LibNftablesClient;
import dev.egressd.agent.kernel.nft.netlink.NfTables;
import dev.egressd.agent.kernel.nft.netlink.NftNetlink;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting;
import dev.egressd.agent.kernel.rtnetlink.RtnetlinkPolicyRouting;
import dev.egressd.agent.metrics.EgressMetrics;
import dev.egressd.agent.metrics.RouterMetrics;
import dev.egressd.agent.region.EtcdRegionStore;
import dev.egressd.agent.router.PolicyTables;
import dev.egressd.agent.router.Router;
import dev.egressd.agent.router.SteeringTable;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;

/**
 * {@code egressd router}: the router role (docs/region.md, "The router"). Runs in the foreground until stopped;
 * stopping leaves the kernel's steering in place. Exit codes: 0 stopped, 1 start-up failed, 2 bad setting.
 */
@Command(name = "router", mixinStandardHelpOptions = true, versionProvider = Egressd.VersionProvider.class,
    description = "Steer the replies to a region's shared addresses to the host that holds each port block "
        + "(docs/region.md). Every setting can be given in the config file or as a flag, which wins.")
public final class RouterCommand implements Callable<Integer>
{
    private static final Logger LOG = LoggerFactory.getLogger(RouterCommand.class);
    /** The rtnetlink implementation of {@link PolicyRouting}, found by name with its static {@code open()}. */

    @Option(names = "--config", paramLabel = "FILE", description = "config file (default /etc/egressd/router.conf)")
    Path config;

    @Option(names = "--region", description = "the region it steers, e.g. ord") String region;
    @Option(names = "--etcd-endpoints", description = "etcd client URLs, comma-separated") String endpoints;
    @Option(names = "--etcd-prefix", description = "etcd key prefix (default /egressd)") String prefix;
    @Option(names = "--etcd-ca-file", description = "CA of etcd's server certificate (TLS)") String caFile;
    @Option(names = "--etcd-cert-file", description = "client certificate for etcd (TLS)") String certFile;
    @Option(names = "--etcd-key-file", description = "client key for etcd, PKCS#8 PEM (TLS)") String keyFile;
    @Option(names = "--etcd-deadline-ms", description = "how long one etcd request may take (default 2000)")
    String deadline;
    @Option(names = "--router-id", description = "this router's id (default the host name)") String routerId;
    @Option(names = "--router-table", description = "nftables table (default egressd_router)") String table;
    @Option(names = "--router-table-base", description = "routing tables base+1..base+4095 are the router's "
        + "(default 7000)") String tableBase;
    @Option(names = "--block-size", description = "ports per slot, as on the hosts (default 1024)") String blockSize;
    @Option(names = "--metrics-listen", description = "host:port for /metrics, or off (default 127.0.0.1:9465)")
    String metrics;
    @Option(names = "--log-format", description = "log lines: text or json (default text)") String logFormat;

    /**
     * The settings given as flags, by config key.
     *
     * @return key to value, only those given.
     */
    Map<String, String> flags()
    {
        final Map<String, String> flags = new LinkedHashMap<>();
        Egressd.put(flags, "region", region);
        Egressd.put(flags, "etcd-endpoints", endpoints);
        Egressd.put(flags, "etcd-prefix", prefix);
        Egressd.put(flags, "etcd-ca-file", caFile);
        Egressd.put(flags, "etcd-cert-file", certFile);
        Egressd.put(flags, "etcd-key-file", keyFile);
        Egressd.put(flags, "etcd-deadline-ms", deadline);
        Egressd.put(flags, "router-id", routerId);
        Egressd.put(flags, "router-table", table);
        Egressd.put(flags, "router-table-base", tableBase);
        Egressd.put(flags, "block-size", blockSize);
        Egressd.put(flags, "metrics-listen", metrics);
        Egressd.put(flags, "log-format", logFormat);
        return flags;
    }

    @Override
    public Integer call() throws Exception
    {
        final RouterConfig settings;
        try
        {
            settings = RouterConfig.load(config, flags());
        }
        catch (final BadSettingException e)
        {
            System.err.println(Logging.errorPrefix() + "egressd router: " + e.getMessage());
            return 2;
        }
        Logging.apply(Logging.layout(settings.logFormat()), "System.out"); // the router logs to stdout
        final Parts parts = new Parts();
        try
        {
            start(settings, parts);
        }
        catch (final Exception | LinkageError e)
        {
            System.err.println(Logging.errorPrefix() + "egressd router: start-up failed: " + e.getMessage());
            LOG.error("router start-up failed", e);
            parts.close();
            return 1;
        }
        final CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() ->
        {
            parts.close();
            stopped.countDown();
        }, "egressd-router-stop"));
        stopped.await();
        return 0;
    }

    /** What a running router holds, closed in reverse order (the kernel's steering stays). */
    private static final class Parts
    {
        LibNftablesClient nft;
        PolicyRouting routing;
        NftNetlink nfnl;
        EtcdRegionStore store;
        Router router;
        HttpServer metrics;
        SdNotify notify;

        synchronized void close()
        {
            if (metrics != null)
            {
                metrics.stop(0);
                metrics = null;
            }
            if (router != null)
            {
                router.close();
                router = null;
            }
            if (store != null)
            {
                store.close();
                store = null;
            }
            if (routing != null)
            {
                routing.close();
                routing = null;
            }
            if (nfnl != null)
            {
                nfnl.close();
                nfnl = null;
            }
            if (nft != null)
            {
                nft.close();
                nft = null;
            }
            if (notify != null)
            {
                notify.close();
                notify = null;
            }
        }
    }

    private static void start(final RouterConfig settings, final Parts parts) throws Exception
    {
        // Replies the router itself sends for a packet (ICMP errors, e.g. for PMTU) carry the packet's mark,
        // so they take the host's table back like the packet would have: without this, bulk TCP stalled.
        Sysctl.write("net.ipv4.fwmark_reflect", "1");
        Sysctl.write("net.ipv6.fwmark_reflect", "1");
        parts.nft = LibNftablesClient.open();
        parts.nfnl = NftNetlink.open(NfTables.NFPROTO_INET, settings.table());
        parts.routing = RtnetlinkPolicyRouting.open();
        final EtcdRegionStore.Tls tls = settings.caFile() == null && settings.certFile() == null ? null
            : new EtcdRegionStore.Tls(settings.caFile(), settings.certFile(), settings.keyFile());
        parts.store = new EtcdRegionStore(settings.endpoints(), settings.prefix(), settings.region(),
            Duration.ofMillis(settings.deadlineMillis()), tls, EtcdRegionStore.DEFAULT_LEASE_TTL);
        parts.router = new Router(parts.store, new SteeringTable(parts.nft, parts.nfnl, settings.table()),
            new PolicyTables(parts.routing, settings.tableBase()),
            new Router.Settings(settings.routerId(), settings.blockSize(), settings.tableBase()), System::nanoTime);
        if (settings.metricsListen() != null)
        {
            final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            EgressMetrics.bindProcessMeters(registry);
            new RouterMetrics(parts.router).bindTo(registry);
            parts.metrics = HttpServer.create(settings.metricsListen(), 16);
            parts.metrics.createContext("/metrics", exchange ->
            {
                try (exchange)
                {
                    final byte[] body = registry.scrape().getBytes(StandardCharsets.UTF_8);
                    exchange.getResponseHeaders().set("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
                    exchange.sendResponseHeaders(200, body.length);
                    try (OutputStream out = exchange.getResponseBody())
                    {
                        out.write(body);
                    }
                }
            });
            parts.metrics.setExecutor(Executors.newSingleThreadExecutor(r ->
            {
                final Thread t = new Thread(r, "egressd-router-metrics");
                t.setDaemon(true);
                return t;
            }));
            parts.metrics.start();
        }
        parts.router.start();
        LOG.info("router {}: region {} (etcd {} prefix {}), table inet {}, routing tables {}..{}, block size {},"
                + " metrics {}", settings.routerId(), settings.region(), settings.endpoints(), settings.prefix(),
            settings.table(), settings.tableBase() + 1, settings.tableBase() + 4095, settings.blockSize(),
            settings.metricsListen() == null ? "off" : settings.metricsListen());
        parts.notify = new SdNotify(System.getenv("NOTIFY_SOCKET"));
        parts.notify.notify("READY=1");
        StartupPhases.served();
    }

}
