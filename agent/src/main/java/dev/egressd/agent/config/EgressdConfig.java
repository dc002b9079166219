package dev.egressd.agent.config;

import dev.egressd.core.model.AddressDevice;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.HostSettings;

import java.io.IOException;
import java.io.Reader;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.regex.Pattern;

/**
 * The daemon's settings: the config file (Java properties syntax, every key documented in
 * {@code docs/config.md}) overlaid with command-line flags of the same names.
 *
 * @param region                the host's region, e.g. {@code ord} (required).
 * @param uplink                the uplink interface that carries the egress addresses (required).
 * @param guestInterfaces       the guest interface name pattern, nft wildcard syntax, e.g. {@code tap-*}.
 * @param apiSocket             the control-plane API's unix socket.
 * @param apiGroup              a group whose members may use the API besides root, or null.
 * @param metricsListen         where {@code /metrics} is served, or null when {@code off}.
 * @param stateDir              where {@code state.json} lives.
 * @param table                 the nftables table owned by the daemon ({@code inet} family).
 * @param destinationCap        the most concurrent connections per machine per destination IP.
 * @param blockCount            blocks per egress IPv4 (slots per pair).
 * @param blockSize             source ports per block.
 * @param conntrackDrainSeconds how long a released egress address stays on the uplink so established
 *                              connections can finish (the conntrack TCP established timeout is longer;
 *                              350 s covers what NAT gateways commonly keep).
 * @param logFormat             the refusal log's line format, {@code text} or {@code json}.
 * @param ledger                who owns the slots: this host alone (the default) or the region's etcd.
 * @param pairAddressDevice     where the app-scoped pairs' addresses go: the uplink, or {@code lo} (docs/region.md,
 *                              "Addresses on lo"); machine-scoped pairs are always on the uplink.
 */
public record EgressdConfig(
    String region,
    String uplink,
    String guestInterfaces,
    Path apiSocket,
    String apiGroup,
    InetSocketAddress metricsListen,
    Path stateDir,
    String table,
    int destinationCap,
    int blockCount,
    int blockSize,
    int conntrackDrainSeconds,
    String logFormat,
    LedgerSettings ledger,
    AddressDevice pairAddressDevice)
{
    /**
     * Who owns the slots (docs/region.md).
     *
     * @param etcd              false: the local ledger (this host's state file); true: the region's etcd.
     * @param endpoints         etcd client URLs, e.g. {@code http://192.0.2.10:2379}.
     * @param prefix            the key prefix; the region's keys are under {@code <prefix>/<region>/}.
     * @param caFile            the CA that signed etcd's server certificate, or null (plain HTTP).
     * @param certFile          this host's client certificate, or null.
     * @param keyFile           its key (PKCS#8 PEM), or null.
     * @param hostId            this host's id in the region (default the host name).
     * @param deadlineMillis    how long any one etcd request may take before it counts as unavailable.
     * @param quarantineSeconds how long the blocks of a deleted host wait before they are reused.
     * @param hostAddresses     the addresses the region's routers reach this host by (published in etcd).
     * @param routerConfirmMillis how long a placement's answer waits for the region's routers to steer by it; 0: no
     *                          wait.
     */
    public record LedgerSettings(boolean etcd, List<String> endpoints, String prefix, Path caFile, Path certFile,
        Path keyFile, String hostId, int deadlineMillis, int quarantineSeconds, List<String> hostAddresses,
        int routerConfirmMillis)
    {
        /**
         * Copies the endpoint list.
         *
         * @param etcd              etcd or local.
         * @param endpoints         the endpoints.
         * @param prefix            the prefix.
         * @param caFile            the CA file.
         * @param certFile          the certificate file.
         * @param keyFile           the key file.
         * @param hostId            the host id.
         * @param deadlineMillis    the deadline.
         * @param quarantineSeconds the quarantine.
         * @param hostAddresses     the host's addresses.
         * @param routerConfirmMillis the routers' confirmation wait.
         */
        public LedgerSettings
        {
            endpoints = List.copyOf(endpoints);
            hostAddresses = List.copyOf(hostAddresses);
        }
    }

    /** The config file read when {@code --config} is not given; it may be absent. */
    public static final Path DEFAULT_CONFIG_FILE = Path.of("/etc/egressd/egressd.conf");

    /** Every setting, in the order docs/config.md lists them, with its default (null: none). */
    public static final Map<String, String> DEFAULTS = defaults();

    static final Pattern REGION = Pattern.compile("[a-z0-9][a-z0-9-]{0,62}");
    private static final Pattern IFNAME = Pattern.compile("[A-Za-z0-9_.-]{1,15}");
    private static final Pattern IFPATTERN = Pattern.compile("[A-Za-z0-9_.-]{1,14}\\*?|[A-Za-z0-9_.-]{15}");
    private static final Pattern GROUP = Pattern.compile("[A-Za-z_][A-Za-z0-9_.-]{0,31}");
    static final Pattern TABLE = Pattern.compile("[A-Za-z][A-Za-z0-9_]{0,31}");

    /** The longest unix socket path: sun_path holds 108 bytes including the terminating NUL. */
    private static final int MAX_SOCKET_PATH = 107;

    private static Map<String, String> defaults()
    {
        final Map<String, String> map = new LinkedHashMap<>();
        map.put("region", null);
        map.put("uplink", null);
        map.put("guest-interfaces", "tap-*");
        map.put("api-socket", "/run/egressd/api.sock");
        map.put("api-group", "");
        map.put("metrics-listen", "127.0.0.1:9464");
        map.put("state-dir", "/var/lib/egressd");
        map.put("table", "egressd");
        map.put("destination-cap", "1024");
        map.put("block-count", "64");
        map.put("block-size", "1024");
        map.put("conntrack-drain-seconds", "350");
        map.put("log-format", "text");
        map.put("ledger", "local");
        map.put("etcd-endpoints", "");
        map.put("etcd-prefix", "/egressd");
        map.put("etcd-ca-file", "");
        map.put("etcd-cert-file", "");
        map.put("etcd-key-file", "");
        map.put("host-id", "");
        map.put("etcd-deadline-ms", "2000");
        map.put("region-quarantine-seconds", "120");
        map.put("region-host-addresses", "");
        // Empty: by the ledger (uplink with local, lo with etcd).
        map.put("pair-address-device", "");
        map.put("router-confirm-ms", "3000");
        return java.util.Collections.unmodifiableMap(map);
    }

    /**
     * The host settings the allocator works with.
     *
     * @return region, block layout, destination cap and where the app-scoped pairs' addresses go.
     */
    public HostSettings hostSettings()
    {
        return new HostSettings(region, new BlockLayout(blockCount, blockSize), destinationCap, pairAddressDevice);
    }

    /**
     * What is odd, not wrong, about where the pair addresses go: logged at WARN at the start.
     *
     * @return the warnings, one line each; empty for the defaults.
     */
    public List<String> addressWarnings()
    {
        if (ledger.etcd() && pairAddressDevice == AddressDevice.UPLINK)
        {
            return List.of("pair-address-device=uplink with ledger=etcd: every host holding a slot of a shared pair "
                + "answers ARP/ND for its addresses and uses them as ARP sender, so the router's neighbour entry for "
                + "them flips between hosts; right only while no router role steers replies (docs/region.md, "
                + "\"Addresses on lo\")");
        }
        if (!ledger.etcd() && pairAddressDevice == AddressDevice.LO)
        {
            return List.of("pair-address-device=lo with ledger=local: this host does not answer ARP/ND for its pair "
                + "addresses, so replies reach it only if the network routes them to it");
        }
        return List.of();
    }

    /**
     * Loads the settings: defaults, then the config file, then the flags.
     *
     * @param configFile the config file, or null for {@link #DEFAULT_CONFIG_FILE}, which may be absent (an
     *                   explicitly named file must exist).
     * @param flags      settings given on the command line, by key; they win over the file.
     * @return the validated settings.
     * @throws BadSettingException naming the first bad setting.
     */
    public static EgressdConfig load(final Path configFile, final Map<String, String> flags)
        throws BadSettingException
    {
        return of(read(configFile == null ? DEFAULT_CONFIG_FILE : configFile, configFile != null, flags, DEFAULTS,
            "setting"));
    }

    /**
     * Reads settings: the defaults, then the config file's (a missing default file is no error), then the flags,
     * each key checked against the defaults.
     *
     * @param file     the config file.
     * @param required whether the file was named (then it must exist).
     * @param flags    settings given as flags, by key.
     * @param defaults every known key with its default.
     * @param kind     what a setting is called in errors ("setting", "router setting").
     * @return every key's value.
     * @throws BadSettingException naming an unknown key or an unreadable file.
     */
    static Map<String, String> read(final Path file, final boolean required, final Map<String, String> flags,
        final Map<String, String> defaults, final String kind) throws BadSettingException
    {
        final Map<String, String> values = new LinkedHashMap<>(defaults);
        try (Reader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8))
        {
            final Properties properties = new Properties();
            properties.load(reader);
            for (final String key : new TreeSet<>(properties.stringPropertyNames()))
            {
                if (!defaults.containsKey(key))
                {
                    throw new BadSettingException(key, properties.getProperty(key),
                        "unknown " + kind + " in " + file + " (known: " + String.join(", ", defaults.keySet()) + ")");
                }
                values.put(key, properties.getProperty(key).trim());
            }
        }
        catch (final NoSuchFileException e)
        {
            if (required)
            {
                throw new BadSettingException("config", file.toString(), "no such file");
            }
        }
        catch (final IOException | IllegalArgumentException e)
        {
            throw new BadSettingException("config", file.toString(), "cannot read: " + e.getMessage());
        }
        for (final Map.Entry<String, String> flag : flags.entrySet())
        {
            if (!defaults.containsKey(flag.getKey()))
            {
                throw new BadSettingException(flag.getKey(), flag.getValue(), "unknown " + kind);
            }
            if (flag.getValue() != null)
            {
                values.put(flag.getKey(), flag.getValue().trim());
            }
        }
        return values;
    }

    /**
     * Validates a complete map of settings.
     *
     * @param values every key of {@link #DEFAULTS}.
     * @return the settings.
     * @throws BadSettingException naming the first bad setting.
     */
    static EgressdConfig of(final Map<String, String> values) throws BadSettingException
    {
        final String region = matching(values, "region", REGION, "must be 1..63 of a-z, 0-9 and '-', e.g. ord");
        final String uplink = matching(values, "uplink", IFNAME,
            "must be an interface name of 1..15 letters, digits, '_', '.', '-'");
        final String guests = matching(values, "guest-interfaces", IFPATTERN,
            "must be an interface name or a prefix ending in '*', e.g. tap-*");
        final Path apiSocket = absolutePath(values, "api-socket");
        if (apiSocket.toString().getBytes(StandardCharsets.UTF_8).length > MAX_SOCKET_PATH)
        {
            throw new BadSettingException("api-socket", values.get("api-socket"),
                "longer than the " + MAX_SOCKET_PATH + " bytes a unix socket path may have");
        }
        final String group = values.get("api-group");
        if (group != null && !group.isEmpty() && !GROUP.matcher(group).matches())
        {
            throw new BadSettingException("api-group", group, "must be a group name, or empty for root only");
        }
        final InetSocketAddress metrics = listen(values.get("metrics-listen"));
        final Path stateDir = absolutePath(values, "state-dir");
        final String table = matching(values, "table", TABLE, "must be 1..32 letters, digits or '_', starting with a letter");
        final int cap = integer(values, "destination-cap", 1, 65535);
        final int blockCount = integer(values, "block-count", 1, 64);
        final int blockSize = integer(values, "block-size", 2, 1024);
        if (Integer.bitCount(blockSize) != 1)
        {
            throw new BadSettingException("block-size", values.get("block-size"), "must be a power of two in 2..1024");
        }
        if ((long)blockCount * blockSize > 65536)
        {
            throw new BadSettingException("block-count", values.get("block-count"),
                "block-count * block-size must be at most 65536 (the ports of one address)");
        }
        final int drain = integer(values, "conntrack-drain-seconds", 0, 86400);
        final String logFormat = values.get("log-format");
        if (!"text".equals(logFormat) && !"json".equals(logFormat))
        {
            throw new BadSettingException("log-format", logFormat, "must be text or json");
        }
        final LedgerSettings ledger = ledger(values);
        final AddressDevice device = pairAddressDevice(values, ledger, uplink);
        return new EgressdConfig(region, uplink, guests, apiSocket, group == null || group.isEmpty() ? null : group,
            metrics, stateDir, table, cap, blockCount, blockSize, drain, logFormat, ledger, device);
    }

    /**
     * The settings as the config file would spell them, for logs and {@code GET /v1/health}.
     *
     * @return key to value, in documented order.
     */
    public Map<String, String> asMap()
    {
        final Map<String, String> map = new LinkedHashMap<>();
        map.put("region", region);
        map.put("uplink", uplink);
        map.put("guest-interfaces", guestInterfaces);
        map.put("api-socket", apiSocket.toString());
        map.put("api-group", apiGroup == null ? "" : apiGroup);
        map.put("metrics-listen", metricsListen == null ? "off"
            : (metricsListen.getHostString().contains(":") ? "[" + metricsListen.getHostString() + "]"
                : metricsListen.getHostString()) + ":" + metricsListen.getPort());
        map.put("state-dir", stateDir.toString());
        map.put("table", table);
        map.put("destination-cap", Integer.toString(destinationCap));
        map.put("block-count", Integer.toString(blockCount));
        map.put("block-size", Integer.toString(blockSize));
        map.put("conntrack-drain-seconds", Integer.toString(conntrackDrainSeconds));
        map.put("log-format", logFormat);
        map.put("ledger", ledger.etcd() ? "etcd" : "local");
        map.put("etcd-endpoints", String.join(",", ledger.endpoints()));
        map.put("etcd-prefix", ledger.prefix());
        map.put("etcd-ca-file", ledger.caFile() == null ? "" : ledger.caFile().toString());
        map.put("etcd-cert-file", ledger.certFile() == null ? "" : ledger.certFile().toString());
        map.put("etcd-key-file", ledger.keyFile() == null ? "" : ledger.keyFile().toString());
        map.put("host-id", ledger.hostId());
        map.put("etcd-deadline-ms", Integer.toString(ledger.deadlineMillis()));
        map.put("region-quarantine-seconds", Integer.toString(ledger.quarantineSeconds()));
        map.put("region-host-addresses", String.join(",", ledger.hostAddresses()));
        map.put("pair-address-device", pairAddressDevice.wireName());
        map.put("router-confirm-ms", Integer.toString(ledger.routerConfirmMillis()));
        return map;
    }

    /**
     * The settings that can change on SIGHUP without a restart; the others need one (they shape the kernel
     * table, the allocator's layout or the open socket: api-group is the socket's group, given to it when it is
     * bound).
     */
    public static final List<String> RELOADABLE = List.of("conntrack-drain-seconds");

    /**
     * These settings with the reloadable ones ({@link #RELOADABLE}) taken from others: what a SIGHUP applies.
     *
     * @param reloaded the settings just read.
     * @return the running settings after the reload.
     */
    public EgressdConfig withReloadable(final EgressdConfig reloaded)
    {
        return new EgressdConfig(region, uplink, guestInterfaces, apiSocket, apiGroup, metricsListen, stateDir, table,
            destinationCap, blockCount, blockSize, reloaded.conntrackDrainSeconds(), logFormat, ledger,
            pairAddressDevice);
    }

    /** {@code pair-address-device}: uplink or lo; empty takes the ledger's default (lo for etcd). */
    private static AddressDevice pairAddressDevice(final Map<String, String> values, final LedgerSettings ledger,
        final String uplink) throws BadSettingException
    {
        final String text = values.get("pair-address-device");
        if (text == null || text.isEmpty())
        {
            // The default lo would be the uplink itself: nothing to choose, the addresses stay where they are.
            return ledger.etcd() && !UPLINK_IS_LO.equals(uplink) ? AddressDevice.LO : AddressDevice.UPLINK;
        }
        final AddressDevice device;
        try
        {
            device = AddressDevice.parse(text);
        }
        catch (final IllegalArgumentException e)
        {
            throw new BadSettingException("pair-address-device", text,
                "must be uplink or lo (empty: lo with ledger=etcd, uplink with ledger=local)");
        }
        if (device == AddressDevice.LO && UPLINK_IS_LO.equals(uplink))
        {
            throw new BadSettingException("pair-address-device", text,
                "lo is the uplink itself (uplink=lo): use uplink");
        }
        return device;
    }

    /** The loopback interface's name. */
    private static final String UPLINK_IS_LO = "lo";

    static final Pattern HOST_ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9_.-]{0,62}");
    static final Pattern PREFIX = Pattern.compile("(/[A-Za-z0-9_.-]+)+");
    static final Pattern ENDPOINT = Pattern.compile("https?://[A-Za-z0-9.\\-\\[\\]:]+:[0-9]{1,5}/?");

    private static LedgerSettings ledger(final Map<String, String> values) throws BadSettingException
    {
        final String kind = required(values, "ledger");
        if (!"local".equals(kind) && !"etcd".equals(kind))
        {
            throw new BadSettingException("ledger", kind, "must be local (this host's state file) or etcd (region mode)");
        }
        final boolean etcd = "etcd".equals(kind);
        final List<String> endpoints = commaList(values, "etcd-endpoints", e -> ENDPOINT.matcher(e).matches(),
            "each endpoint must be a URL like http://192.0.2.10:2379 (comma-separated)");
        if (etcd && endpoints.isEmpty())
        {
            throw new BadSettingException("etcd-endpoints", values.get("etcd-endpoints"),
                "missing: ledger=etcd needs at least one endpoint, e.g. http://192.0.2.10:2379");
        }
        final String prefix = matching(values, "etcd-prefix", PREFIX, "must be a key prefix like /egressd");
        final Path ca = optionalPath(values, "etcd-ca-file");
        final Path cert = optionalPath(values, "etcd-cert-file");
        final Path key = optionalPath(values, "etcd-key-file");
        if ((cert == null) != (key == null))
        {
            throw new BadSettingException(cert == null ? "etcd-cert-file" : "etcd-key-file", null,
                "etcd-cert-file and etcd-key-file go together: give both or neither");
        }
        String hostId = values.get("host-id");
        if (hostId == null || hostId.isEmpty())
        {
            hostId = localHostName();
        }
        if (!HOST_ID.matcher(hostId).matches())
        {
            throw new BadSettingException("host-id", hostId,
                "must be 1..63 of letters, digits, '_', '.', '-' (default: the host name)");
        }
        final int deadline = integer(values, "etcd-deadline-ms", 100, 60000);
        final int quarantine = integer(values, "region-quarantine-seconds", 0, 86400);
        final List<String> addresses = commaList(values, "region-host-addresses",
            a -> a.matches("[0-9.]+|[0-9A-Fa-f:.]+") && isAddress(a),
            "each must be an IPv4 or IPv6 address literal (comma-separated)");
        final int routerConfirm = integer(values, "router-confirm-ms", 0, 60000);
        return new LedgerSettings(etcd, endpoints, prefix, ca, cert, key, hostId, deadline, quarantine, addresses,
            routerConfirm);
    }

    /** A comma-separated setting: its non-empty items, each checked; the first bad one is named. */
    static List<String> commaList(final Map<String, String> values, final String key,
        final java.util.function.Predicate<String> ok, final String each) throws BadSettingException
    {
        final String text = values.get(key) == null ? "" : values.get(key);
        final List<String> items = new java.util.ArrayList<>();
        for (final String raw : text.split(","))
        {
            final String item = raw.trim();
            if (item.isEmpty())
            {
                continue;
            }
            if (!ok.test(item))
            {
                throw new BadSettingException(key, text, each + ", got " + item);
            }
            items.add(item);
        }
        return items;
    }

    private static boolean isAddress(final String text)
    {
        try
        {
            java.net.InetAddress.getByName(text); // a literal only (checked above): no name lookup happens
            return true;
        }
        catch (final java.net.UnknownHostException e)
        {
            return false;
        }
    }

    static Path optionalPath(final Map<String, String> values, final String key) throws BadSettingException
    {
        final String value = values.get(key);
        return value == null || value.isEmpty() ? null : absolutePath(values, key);
    }

    static String localHostName()
    {
        try
        {
            final String name = Files.readString(Path.of("/proc/sys/kernel/hostname"), StandardCharsets.UTF_8).trim();
            final int dot = name.indexOf('.');
            return dot > 0 ? name.substring(0, dot) : name;
        }
        catch (final IOException e)
        {
            return "localhost";
        }
    }

    static String required(final Map<String, String> values, final String key) throws BadSettingException
    {
        final String value = values.get(key);
        if (value == null || value.isEmpty())
        {
            throw new BadSettingException(key, null, "missing: set " + key + "= in the config file or --" + key);
        }
        return value;
    }

    static String matching(final Map<String, String> values, final String key, final Pattern pattern,
        final String problem) throws BadSettingException
    {
        final String value = required(values, key);
        if (!pattern.matcher(value).matches())
        {
            throw new BadSettingException(key, value, problem);
        }
        return value;
    }

    static Path absolutePath(final Map<String, String> values, final String key) throws BadSettingException
    {
        final String value = required(values, key);
        final Path path;
        try
        {
            path = Path.of(value);
        }
        catch (final java.nio.file.InvalidPathException e)
        {
            throw new BadSettingException(key, value, "not a path: " + e.getReason());
        }
        if (!path.isAbsolute())
        {
            throw new BadSettingException(key, value, "must be an absolute path");
        }
        return path.normalize();
    }

    static int integer(final Map<String, String> values, final String key, final int min, final int max)
        throws BadSettingException
    {
        final String value = required(values, key);
        final int n;
        try
        {
            n = Integer.parseInt(value);
        }
        catch (final NumberFormatException e)
        {
            throw new BadSettingException(key, value, "must be a whole number " + min + ".." + max);
        }
        if (n < min || n > max)
        {
            throw new BadSettingException(key, value, "must be " + min + ".." + max);
        }
        return n;
    }

    static InetSocketAddress listen(final String value) throws BadSettingException
    {
        final String key = "metrics-listen";
        if (value == null || value.isEmpty())
        {
            throw new BadSettingException(key, null, "missing: give host:port, or off");
        }
        if ("off".equals(value))
        {
            return null;
        }
        final int colon = value.lastIndexOf(':');
        if (colon <= 0)
        {
            throw new BadSettingException(key, value, "must be host:port (e.g. 127.0.0.1:9464, [::1]:9464) or off");
        }
        String host = value.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]"))
        {
            host = host.substring(1, host.length() - 1);
        }
        else if (host.contains(":"))
        {
            throw new BadSettingException(key, value, "an IPv6 host must be in brackets, e.g. [::1]:9464");
        }
        final int port;
        try
        {
            port = Integer.parseInt(value.substring(colon + 1));
        }
        catch (final NumberFormatException e)
        {
            throw new BadSettingException(key, value, "the port must be a number 1..65535");
        }
        if (port < 1 || port > 65535)
        {
            throw new BadSettingException(key, value, "the port must be 1..65535");
        }
        if (!host.matches("[0-9.]+|[0-9A-Fa-f:.]+"))
        {
            throw new BadSettingException(key, value, "the host must be an IP address literal, not a name");
        }
        final InetSocketAddress address = new InetSocketAddress(host, port);
        if (address.isUnresolved())
        {
            throw new BadSettingException(key, value, "the host is not an IP address");
        }
        return address;
    }
}
