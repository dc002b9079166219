package dev.egressd.agent;

import dev.egressd.agent.config.BadSettingException;
import dev.egressd.agent.config.EgressdConfig;
import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.MemoryKernel;
import dev.egressd.agent.kernel.NftKernel;
import dev.egressd.agent.kernel.KernelChecks;
import dev.egressd.agent.state.StateStore;
import dev.egressd.agent.version.Version;
import dev.egressd.agent.kernel.nft.DataplaneConfig;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Callable;

/**
 * The egressd daemon's entry point. Exit codes: 0 stopped, 1 start-up failed, 2 bad setting or usage. The router
 * role is the subcommand {@code egressd router} ({@link RouterCommand}).
 */
@Command(name = "egressd", mixinStandardHelpOptions = true, versionProvider = Egressd.VersionProvider.class,
    subcommands = RouterCommand.class,
    description = "Static egress IPs for the machines of this host. Every setting can be given in the config "
        + "file (docs/config.md) or as a flag, which wins.")
public final class Egressd implements Callable<Integer>
{
    @Option(names = "--config", paramLabel = "FILE", description = "config file (default /etc/egressd/egressd.conf)")
    Path config;

    @Option(names = "--region", description = "this host's region, e.g. ord") String region;
    @Option(names = "--uplink", description = "uplink interface carrying the egress addresses") String uplink;
    @Option(names = "--guest-interfaces", description = "guest interface pattern (default tap-*)") String guests;
    @Option(names = "--api-socket", description = "API unix socket (default /run/egressd/api.sock)") String socket;
    @Option(names = "--api-group", description = "group allowed on the API besides root") String group;
    @Option(names = "--metrics-listen", description = "host:port for /metrics, or off (default 127.0.0.1:9464)")
    String metrics;
    @Option(names = "--state-dir", description = "state directory (default /var/lib/egressd)") String stateDir;
    @Option(names = "--table", description = "nftables table (default egressd)") String table;
    @Option(names = "--destination-cap", description = "connections per machine per destination (default 1024)")
    String cap;
    @Option(names = "--block-count", description = "slots per egress pair (default 64)") String blockCount;
    @Option(names = "--block-size", description = "ports per slot (default 1024)") String blockSize;
    @Option(names = "--conntrack-drain-seconds", description = "how long a released address stays (default 350)")
    String drain;
    @Option(names = "--log-format", description = "log lines: text or json (every logger; default text)") String logFormat;
    @Option(names = "--ledger", description = "who owns the slots: local (default) or etcd (region mode)") String ledger;
    @Option(names = "--etcd-endpoints", description = "etcd client URLs, comma-separated (ledger etcd)") String endpoints;
    @Option(names = "--etcd-prefix", description = "etcd key prefix (default /egressd)") String prefix;
    @Option(names = "--etcd-ca-file", description = "CA of etcd's server certificate (TLS)") String caFile;
    @Option(names = "--etcd-cert-file", description = "client certificate for etcd (TLS)") String certFile;
    @Option(names = "--etcd-key-file", description = "client key for etcd, PKCS#8 PEM (TLS)") String keyFile;
    @Option(names = "--host-id", description = "this host's id in the region (default the host name)") String hostId;
    @Option(names = "--etcd-deadline-ms", description = "how long one etcd request may take (default 2000)")
    String deadline;
    @Option(names = "--region-quarantine-seconds", description = "how long a deleted host's blocks wait (default 120)")
    String quarantine;
    @Option(names = "--region-host-addresses", description = "addresses the region's routers reach this host by")
    String hostAddresses;
    @Option(names = "--pair-address-device", description = "where app pair addresses go: uplink or lo (default: lo "
        + "with ledger etcd, else uplink)") String pairDevice;
    @Option(names = "--router-confirm-ms", description = "how long a placement's answer waits for the region's "
        + "routers to steer by it (default 3000; 0: no wait)")
    String routerConfirm;
    @Option(names = "--dry-run", description = "program nothing: an in-memory kernel, to try the API unprivileged")
    boolean dryRun;
    @Option(names = "--teardown", description = "remove egressd's table and the egress addresses it put on the uplink,"
        + " then exit (every static machine loses its egress: needs --yes; refused while egressd runs)")
    boolean teardown;
    @Option(names = "--yes", description = "confirm --teardown") boolean yes;

    /** The picocli version provider: version and the commit built from. */
    static final class VersionProvider implements CommandLine.IVersionProvider
    {
        @Override
        public String[] getVersion()
        {
            return new String[] {Version.line("egressd")};
        }
    }

    /**
     * The settings given as flags, by config key.
     *
     * @return key to value, only those given.
     */
    Map<String, String> flags()
    {
        final Map<String, String> flags = new LinkedHashMap<>();
        put(flags, "region", region);
        put(flags, "uplink", uplink);
        put(flags, "guest-interfaces", guests);
        put(flags, "api-socket", socket);
        put(flags, "api-group", group);
        put(flags, "metrics-listen", metrics);
        put(flags, "state-dir", stateDir);
        put(flags, "table", table);
        put(flags, "destination-cap", cap);
        put(flags, "block-count", blockCount);
        put(flags, "block-size", blockSize);
        put(flags, "conntrack-drain-seconds", drain);
        put(flags, "log-format", logFormat);
        put(flags, "ledger", ledger);
        put(flags, "etcd-endpoints", endpoints);
        put(flags, "etcd-prefix", prefix);
        put(flags, "etcd-ca-file", caFile);
        put(flags, "etcd-cert-file", certFile);
        put(flags, "etcd-key-file", keyFile);
        put(flags, "host-id", hostId);
        put(flags, "etcd-deadline-ms", deadline);
        put(flags, "region-quarantine-seconds", quarantine);
        put(flags, "region-host-addresses", hostAddresses);
        put(flags, "pair-address-device", pairDevice);
        put(flags, "router-confirm-ms", routerConfirm);
        return flags;
    }

    /** Adds a flag's value under its config key, if the flag was given. */
    static void put(final Map<String, String> map, final String key, final String value)
    {
        if (value != null)
        {
            map.put(key, value);
        }
    }

    @Override
    public Integer call() throws Exception
    {
        StartupPhases.mark("cli");
        final EgressdConfig settings;
        try
        {
            settings = EgressdConfig.load(config, flags());
        }
        catch (final BadSettingException e)
        {
            System.err.println(Logging.errorPrefix() + "egressd: " + e.getMessage());
            return 2;
        }
        StartupPhases.mark("config");
        Logging.apply(Logging.layout(settings.logFormat()));
        StartupPhases.mark("logging");
        if (teardown)
        {
            return teardown(settings);
        }
        // the state directory is locked and read meanwhile (docs/operations.md, "Start-up")
        final Daemon.StateLoad state = Daemon.loadState(settings.stateDir());
        final Kernel kernel;
        if (dryRun)
        {
            kernel = new MemoryKernel();
        }
        else
        {
            final DataplaneConfig dataplane = new DataplaneConfig(settings.table(), settings.uplink(),
                settings.guestInterfaces(), settings.destinationCap());
            final Optional<String> problem = KernelChecks.check(dataplane);
            if (problem.isPresent())
            {
                state.abandon();
                System.err.println(Logging.errorPrefix() + "egressd: " + problem.get());
                return 1;
            }
            KernelChecks.ipv6SourceWarning(dataplane.uplink()).ifPresent(
                w -> org.slf4j.LoggerFactory.getLogger(Egressd.class).warn(w));
            settings.addressWarnings().forEach(w -> org.slf4j.LoggerFactory.getLogger(Egressd.class).warn(w));
            kernel = new NftKernel(dataplane, settings.pairAddressDevice());
        }
        StartupPhases.mark("checks");
        final Daemon daemon = new Daemon(settings, config, flags(), kernel, Version.version()).stateLoad(state);
        try
        {
            daemon.start();
        }
        catch (final BadSettingException e)
        {
            System.err.println(Logging.errorPrefix() + "egressd: " + e.getMessage());
            daemon.stop();
            return 2;
        }
        catch (final Exception e)
        {
            System.err.println(Logging.errorPrefix() + "egressd: start-up failed: " + e.getMessage());
            org.slf4j.LoggerFactory.getLogger(Egressd.class).error("start-up failed", e);
            daemon.stop();
            return 1;
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() ->
        {
            daemon.stop(true);
            exitAfterStop();
        }, "egressd-stop"));
        Signals.onHangUp(daemon::reload);
        daemon.awaitStop();
        return 0;
    }

    /**
     * Ends the process after a SIGTERM's stop, once everything the daemon holds is on disk and its lock released.
     * The JVM's own exit would wait up to 0.3 s more for every thread still blocked in a native call (HotSpot lets
     * threads in native code quiesce before it exits: the conntrack monitor's poll, the host-address watchers'
     * receives), for nothing: those threads only read the kernel, whose sockets close with the process. So the
     * process ends here with the status the JVM gives a SIGTERM (128 + 15, the unit's {@code SuccessExitStatus=}).
     * Not when the launcher asked this JVM for a class-data archive at its exit ({@code egressd.cds.served}): that
     * one exits as the JVM does, and writes the archive.
     */
    static void exitAfterStop()
    {
        if (System.getProperty("egressd.cds.served") != null || !dev.egressd.agent.natives.Natives.isAvailable())
        {
            return;
        }
        System.out.flush();
        System.err.flush();
        dev.egressd.agent.natives.Natives.libc()._exit(SIGTERM_STATUS);
    }

    /** The exit status of a JVM that a SIGTERM ended: 128 + 15. */
    static final int SIGTERM_STATUS = 143;

    /**
     * The explicit teardown: stopping the daemon leaves the kernel state in place on purpose (machines keep their
     * egress across restarts), so this is the only way egressd's table and uplink addresses go. The state file is
     * kept: a later start puts everything back.
     */
    private int teardown(final EgressdConfig settings) throws IOException
    {
        if (!yes)
        {
            System.err.println(Logging.errorPrefix()
                + "egressd: --teardown removes the egress of every static machine on this host;"
                + " add --yes to confirm");
            return 2;
        }
        final DataplaneConfig dataplane = new DataplaneConfig(settings.table(), settings.uplink(),
            settings.guestInterfaces(), settings.destinationCap());
        final Optional<String> problem = KernelChecks.check(dataplane);
        if (problem.isPresent())
        {
            System.err.println(Logging.errorPrefix() + "egressd: " + problem.get());
            return 1;
        }
        final StateStore store = new StateStore(settings.stateDir());
        try
        {
            // A running egressd holds this lock and would put everything back within a second.
            store.lock();
        }
        catch (final IOException e)
        {
            System.err.println(Logging.errorPrefix() + "egressd: cannot tear down: " + e.getMessage()
                + " (stop egressd first)");
            return 1;
        }
        try (NftKernel kernel = NftKernel.open(dataplane))
        {
            kernel.teardown();
            System.out.println("egressd: removed table inet " + settings.table() + " and egressd's addresses on "
                + settings.uplink() + " and lo; the state in " + settings.stateDir() + " is kept (a start re-applies it)");
            return 0;
        }
        finally
        {
            store.unlock();
        }
    }

    /**
     * The daemon's own command line, read without picocli: only flags that take one value ({@code --name value} or
     * {@code --name=value}, each at most once) and {@code --dry-run}, which is all a service's start uses. Picocli
     * costs a start about 0.2 s of CPU (its 170 classes are compiled for Java 5, which the class-data archive cannot
     * hold, so they are loaded and verified at every start, and it reflects over this class's annotations:
     * docs/operations.md, "Start-up"); the result here is the one picocli gives for the same arguments
     * ({@code EgressdTest}). Anything else (help, version, the router role, {@code --teardown}, an unknown,
     * repeated or valueless flag, an {@code @file}) is left to picocli, with its messages and exit codes.
     *
     * @param args the command line.
     * @return the command with its fields set, or null when picocli is to read the command line.
     */
    static Egressd parseDaemonFlags(final String[] args)
    {
        final Egressd command = new Egressd();
        final java.util.Set<String> seen = new java.util.HashSet<>();
        for (int i = 0; i < args.length; i++)
        {
            final String arg = args[i];
            if (!arg.startsWith("--"))
            {
                return null;
            }
            if ("--dry-run".equals(arg))
            {
                if (!seen.add(arg))
                {
                    return null;
                }
                command.dryRun = true;
                continue;
            }
            final int eq = arg.indexOf('=');
            final String name = eq < 0 ? arg : arg.substring(0, eq);
            final String value;
            if (eq >= 0)
            {
                value = arg.substring(eq + 1);
            }
            else if (i + 1 < args.length && !args[i + 1].startsWith("-") && !args[i + 1].startsWith("@"))
            {
                value = args[++i];
            }
            else
            {
                return null;
            }
            if (value.isEmpty() || !seen.add(name) || !command.set(name, value))
            {
                return null;
            }
        }
        return command;
    }

    /** Sets the field of a flag that takes one value; false for any other flag (picocli reads those). */
    private boolean set(final String name, final String value)
    {
        switch (name)
        {
            case "--config" ->
            {
                try
                {
                    config = Path.of(value);
                }
                catch (final java.nio.file.InvalidPathException e)
                {
                    return false;
                }
            }
            case "--region" -> region = value;
            case "--uplink" -> uplink = value;
            case "--guest-interfaces" -> guests = value;
            case "--api-socket" -> socket = value;
            case "--api-group" -> group = value;
            case "--metrics-listen" -> metrics = value;
            case "--state-dir" -> stateDir = value;
            case "--table" -> table = value;
            case "--destination-cap" -> cap = value;
            case "--block-count" -> blockCount = value;
            case "--block-size" -> blockSize = value;
            case "--conntrack-drain-seconds" -> drain = value;
            case "--log-format" -> logFormat = value;
            case "--ledger" -> ledger = value;
            case "--etcd-endpoints" -> endpoints = value;
            case "--etcd-prefix" -> prefix = value;
            case "--etcd-ca-file" -> caFile = value;
            case "--etcd-cert-file" -> certFile = value;
            case "--etcd-key-file" -> keyFile = value;
            case "--host-id" -> hostId = value;
            case "--etcd-deadline-ms" -> deadline = value;
            case "--region-quarantine-seconds" -> quarantine = value;
            case "--region-host-addresses" -> hostAddresses = value;
            case "--pair-address-device" -> pairDevice = value;
            case "--router-confirm-ms" -> routerConfirm = value;
            default ->
            {
                return false;
            }
        }
        return true;
    }

    /**
     * Runs the command read by {@link #parseDaemonFlags} as picocli's {@code execute} would: an exception out of
     * {@link #call()} is printed with its stack trace and exits with 1.
     *
     * @return the exit code.
     */
    int run()
    {
        try
        {
            return call();
        }
        catch (final Exception e)
        {
            e.printStackTrace();
            return 1;
        }
    }

    /**
     * Binds libc and libnftables through JNR on a thread of its own, begun first thing in {@link #main}: the binding
     * (jnr-ffi's runtime, its classes and the stubs it generates for each interface, about 0.3 s of CPU) then
     * overlaps the config's read, logback's start and the state's load instead of opening the kernel checks
     * (docs/operations.md, "Start-up"). Nothing waits for this thread by name: each library is bound in its
     * holder class's initialiser, which the JVM runs once, so a check that reaches it meanwhile waits for this
     * thread's binding and sees its outcome, a failure included, exactly as if it had bound the library itself.
     *
     * @return the thread, started.
     */
    static Thread bindNativesAhead()
    {
        final Thread thread = new Thread(() ->
        {
            dev.egressd.agent.natives.Natives.isAvailable();
            dev.egressd.agent.kernel.nft.NftNatives.isAvailable();
        }, "egressd-natives");
        thread.setDaemon(true);
        thread.start();
        return thread;
    }

    /**
     * Starts the daemon.
     *
     * @param args command-line arguments.
     */
    public static void main(final String[] args)
    {
        StartupPhases.mark(StartupPhases.MAIN);
        if (args.length > 0 && "version".equals(args[0]))
        {
            System.out.println(Version.line("egressd"));
            return;
        }
        final Egressd daemon = parseDaemonFlags(args);
        if (daemon != null)
        {
            if (!daemon.dryRun)
            {
                bindNativesAhead();
            }
            System.exit(daemon.run());
        }
        final CommandLine cli = new CommandLine(new Egressd());
        cli.setParameterExceptionHandler((ex, a) ->
        {
            System.err.println(Logging.errorPrefix() + "egressd: " + ex.getMessage());
            return 2;
        });
        System.exit(cli.execute(args));
    }
}
