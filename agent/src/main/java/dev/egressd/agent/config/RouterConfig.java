package dev.egressd.agent.config;

import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The router role's settings ({@code egressd router}, docs/region.md "The router"): its config file (same syntax as
 * the host's, default {@code /etc/egressd/router.conf}) overlaid with flags of the same names. The etcd keys and
 * {@code block-size} mean what they mean on the hosts.
 *
 * @param region          the region it steers.
 * @param endpoints       etcd client URLs.
 * @param prefix          the etcd key prefix.
 * @param caFile          etcd's CA, or null.
 * @param certFile        the client certificate, or null.
 * @param keyFile         its key, or null.
 * @param deadlineMillis  how long one etcd request may take.
 * @param routerId        this router's id (its key {@code routers/<id>}).
 * @param table           the nftables table (family inet).
 * @param tableBase       the routing table base: host mark M uses table and rule priority base+M.
 * @param blockSize       ports per block (the hosts' {@code block-size}).
 * @param metricsListen   where {@code /metrics} is served, or null when off.
 * @param logFormat       {@code text} or {@code json}.
 */
public record RouterConfig(String region, List<String> endpoints, String prefix, Path caFile, Path certFile,
    Path keyFile, int deadlineMillis, String routerId, String table, int tableBase, int blockSize,
    InetSocketAddress metricsListen, String logFormat)
{
    /** The config file read when {@code --config} is not given; it may be absent. */
    public static final Path DEFAULT_CONFIG_FILE = Path.of("/etc/egressd/router.conf");

    /** The largest table base: base + 4095 (the largest host mark) must fit a routing table number. */
    public static final int MAX_TABLE_BASE = Integer.MAX_VALUE - 4095;

    /** Every setting with its default (null: none), in the order docs/config.md lists them. */
    public static final Map<String, String> DEFAULTS = defaults();

    /**
     * Copies the endpoints.
     *
     * @param region         the region.
     * @param endpoints      the endpoints.
     * @param prefix         the prefix.
     * @param caFile         the CA.
     * @param certFile       the certificate.
     * @param keyFile        the key.
     * @param deadlineMillis the deadline.
     * @param routerId       the id.
     * @param table          the table.
     * @param tableBase      the base.
     * @param blockSize      the block size.
     * @param metricsListen  the metrics address.
     * @param logFormat      the log format.
     */
    public RouterConfig
    {
        endpoints = List.copyOf(endpoints);
    }

    private static Map<String, String> defaults()
    {
        final Map<String, String> map = new LinkedHashMap<>();
        map.put("region", null);
        map.put("etcd-endpoints", "");
        map.put("etcd-prefix", "/egressd");
        map.put("etcd-ca-file", "");
        map.put("etcd-cert-file", "");
        map.put("etcd-key-file", "");
        map.put("etcd-deadline-ms", "2000");
        map.put("router-id", "");
        map.put("router-table", "egressd_router");
        map.put("router-table-base", "7000");
        map.put("block-size", "1024");
        map.put("metrics-listen", "127.0.0.1:9465");
        map.put("log-format", "text");
        return Collections.unmodifiableMap(map);
    }

    /**
     * Reads the config file (if any) and overlays the flags.
     *
     * @param configFile the file given with {@code --config}, or null for {@link #DEFAULT_CONFIG_FILE} (which may
     *                   be absent).
     * @param flags      settings given as flags, by key.
     * @return the validated settings.
     * @throws BadSettingException naming the first bad setting.
     */
    public static RouterConfig load(final Path configFile, final Map<String, String> flags) throws BadSettingException
    {
        return of(EgressdConfig.read(configFile == null ? DEFAULT_CONFIG_FILE : configFile, configFile != null, flags,
            DEFAULTS, "router setting"));
    }

    /**
     * Validates a complete map of settings.
     *
     * @param values every key of {@link #DEFAULTS}.
     * @return the settings.
     * @throws BadSettingException naming the first bad setting.
     */
    static RouterConfig of(final Map<String, String> values) throws BadSettingException
    {
        final String region = EgressdConfig.matching(values, "region", EgressdConfig.REGION,
            "must be 1..63 of a-z, 0-9 and '-', e.g. ord");
        final List<String> endpoints = EgressdConfig.commaList(values, "etcd-endpoints",
            e -> EgressdConfig.ENDPOINT.matcher(e).matches(),
            "each endpoint must be a URL like http://192.0.2.10:2379 (comma-separated)");
        if (endpoints.isEmpty())
        {
            throw new BadSettingException("etcd-endpoints", values.get("etcd-endpoints"),
                "missing: the router reads the region from etcd, e.g. http://192.0.2.10:2379");
        }
        final String prefix = EgressdConfig.matching(values, "etcd-prefix", EgressdConfig.PREFIX,
            "must be a key prefix like /egressd");
        final Path ca = EgressdConfig.optionalPath(values, "etcd-ca-file");
        final Path cert = EgressdConfig.optionalPath(values, "etcd-cert-file");
        final Path key = EgressdConfig.optionalPath(values, "etcd-key-file");
        if ((cert == null) != (key == null))
        {
            throw new BadSettingException(cert == null ? "etcd-cert-file" : "etcd-key-file", null,
                "etcd-cert-file and etcd-key-file go together: give both or neither");
        }
        final int deadline = EgressdConfig.integer(values, "etcd-deadline-ms", 100, 60000);
        String routerId = values.get("router-id");
        if (routerId == null || routerId.isEmpty())
        {
            routerId = EgressdConfig.localHostName();
        }
        if (!EgressdConfig.HOST_ID.matcher(routerId).matches())
        {
            throw new BadSettingException("router-id", routerId,
                "must be 1..63 of letters, digits, '_', '.', '-' (default: the host name)");
        }
        final String table = EgressdConfig.matching(values, "router-table", EgressdConfig.TABLE,
            "must be 1..32 letters, digits or '_', starting with a letter");
        // main (254), local (255) and default (253) must stay outside [base+1, base+4095]
        final int base = EgressdConfig.integer(values, "router-table-base", 255, MAX_TABLE_BASE);
        final int blockSize = EgressdConfig.integer(values, "block-size", 2, 1024);
        if (Integer.bitCount(blockSize) != 1)
        {
            throw new BadSettingException("block-size", values.get("block-size"), "must be a power of two in 2..1024");
        }
        final InetSocketAddress metrics = EgressdConfig.listen(values.get("metrics-listen"));
        final String logFormat = values.get("log-format");
        if (!"text".equals(logFormat) && !"json".equals(logFormat))
        {
            throw new BadSettingException("log-format", logFormat, "must be text or json");
        }
        return new RouterConfig(region, endpoints, prefix, ca, cert, key, deadline, routerId, table, base, blockSize,
            metrics, logFormat);
    }
}
