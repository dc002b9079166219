package dev.egressd.agent.cli;

import dev.egressd.agent.kernel.LoopbackArp;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.net.InetAddress;
import java.net.NetworkInterface;
import java.net.SocketException;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * egressctl: the operator's view of this host's egressd, through its API socket (docs/cli.md).
 *
 * <p>Exit codes ({@link ExitCodes}): 0 ok, 1 the daemon answered an error or a check found a problem, 2 usage,
 * 3 daemon unreachable, 4 permission denied.
 */
@Command(name = "egressctl", mixinStandardHelpOptions = true, versionProvider = Egressctl.Version.class,
    sortOptions = false, usageHelpAutoWidth = true,
    description = "Shows and steers this host's egressd through its API socket: which address each machine "
        + "leaves from and why, pairs and slots, per-destination use of the connection cap, and this host's "
        + "egress health.",
    subcommands = {
        StatusCommand.class, MachinesCommand.class, MachineCommand.class, PairsCommand.class,
        AppsCommand.class, AppCommand.class, ConnsCommand.class, CheckCommand.class,
        DrainCommand.class, UndrainCommand.class, RegionCommand.class, VersionCommand.class,
        CompletionCommand.class, CommandLine.HelpCommand.class},
    exitCodeListHeading = "%nExit codes:%n",
    exitCodeList = {
        "0:ok; for check, no problem found",
        "1:the daemon answered an error (404, 409, 5xx, ...), or check/status found a problem",
        "2:usage: unknown command or option, bad argument",
        "3:the daemon is unreachable: no socket, connection refused, no answer in time",
        "4:permission denied: the socket refused us (EACCES) or the daemon answered 403"},
    footerHeading = "%nEnvironment:%n",
    footer = {"  EGRESSD_SOCKET       the API socket when --socket is not given",
        "  EGRESSCTL_JAVA_OPTS  JVM options for /usr/bin/egressctl and scripts/egressctl"})
public final class Egressctl implements Callable<Integer>
{
    /** The default API socket. */
    public static final String DEFAULT_SOCKET = "/run/egressd/api.sock";

    @Spec
    CommandSpec spec;

    @Option(names = "--socket", paramLabel = "PATH", scope = CommandLine.ScopeType.INHERIT,
        defaultValue = "${env:EGRESSD_SOCKET:-" + DEFAULT_SOCKET + "}",
        description = "the egressd API socket (default: $EGRESSD_SOCKET, else " + DEFAULT_SOCKET + ")")
    Path socket;

    @Option(names = "--timeout", paramLabel = "SECONDS", scope = CommandLine.ScopeType.INHERIT, defaultValue = "30",
        description = "how long to wait for each answer; a change answers only once the kernel holds it "
            + "(default ${DEFAULT-VALUE})")
    double timeoutSeconds;

    /** The addresses of this host's interfaces, by address; replaced in tests. */
    private final LocalAddresses localAddresses;
    /** This namespace's sysctls, for the ARP check when the daemon cannot read them. */
    private final LoopbackArp.Sysctls sysctls;

    /** The local interface addresses, for {@code check}. */
    @FunctionalInterface
    public interface LocalAddresses
    {
        /**
         * Every address on an interface of this network namespace.
         *
         * @return address (as {@link InetAddress#getHostAddress()}, without a zone) to interface name.
         * @throws SocketException if the interfaces cannot be listed.
         */
        Map<String, String> list() throws SocketException;
    }

    /** Uses this host's interfaces. */
    public Egressctl()
    {
        this(Egressctl::interfaceAddresses);
    }

    /**
     * Uses the given interface addresses (tests).
     *
     * @param localAddresses the local addresses.
     */
    public Egressctl(final LocalAddresses localAddresses)
    {
        this(localAddresses, LoopbackArp.PROC);
    }

    /**
     * Uses the given interface addresses and sysctls (tests).
     *
     * @param localAddresses the local addresses.
     * @param sysctls        the sysctls {@code check} reads when the daemon cannot.
     */
    Egressctl(final LocalAddresses localAddresses, final LoopbackArp.Sysctls sysctls)
    {
        this.localAddresses = localAddresses;
        this.sysctls = sysctls;
    }

    /** The picocli version provider. */
    static final class Version implements CommandLine.IVersionProvider
    {
        @Override
        public String[] getVersion()
        {
            return new String[] {dev.egressd.agent.version.Version.line("egressctl")};
        }
    }

    @Override
    public Integer call()
    {
        spec.commandLine().usage(spec.commandLine().getErr());
        return ExitCodes.USAGE;
    }

    /**
     * The command line with egressctl's exception handling: a {@link CtlException} prints one line on stderr and
     * exits with its code; anything else unexpected exits 1.
     *
     * @param egressctl the top command.
     * @return the command line, ready to {@code execute}.
     */
    public static CommandLine commandLine(final Egressctl egressctl)
    {
        final CommandLine cmd = new CommandLine(egressctl);
        // picocli's own messages name the Java type ("'x' is not a double"); say what the operator must type
        cmd.registerConverter(Double.TYPE, Egressctl::number);
        cmd.registerConverter(Integer.TYPE, Egressctl::integer);
        cmd.setExecutionExceptionHandler((e, commandLine, parseResult) ->
        {
            if (e instanceof CtlException ctl)
            {
                commandLine.getErr().println("egressctl: " + ctl.getMessage());
                commandLine.getErr().flush();
                return ctl.exitCode;
            }
            commandLine.getErr().println("egressctl: " + e);
            commandLine.getErr().flush();
            return ExitCodes.ERROR;
        });
        return cmd;
    }

    private static double number(final String text)
    {
        try
        {
            final double value = Double.parseDouble(text);
            if (Double.isFinite(value))
            {
                return value;
            }
        }
        catch (final NumberFormatException e)
        {
            // below
        }
        throw new CommandLine.TypeConversionException("'" + text + "' is not a number");
    }

    private static int integer(final String text)
    {
        try
        {
            return Integer.parseInt(text);
        }
        catch (final NumberFormatException e)
        {
            throw new CommandLine.TypeConversionException("'" + text + "' is not a whole number");
        }
    }

    /**
     * Runs egressctl.
     *
     * @param args the arguments.
     */
    public static void main(final String[] args)
    {
        final int code;
        try
        {
            code = commandLine(new Egressctl()).execute(args);
        }
        finally
        {
            System.out.flush();
        }
        System.exit(code);
    }

    /**
     * A client of the socket named by {@code --socket}.
     *
     * @return a new client; close it.
     */
    DaemonClient client()
    {
        return new DaemonClient(socket, Math.max(1, Math.round(timeoutSeconds * 1000)));
    }

    LocalAddresses localAddresses()
    {
        return localAddresses;
    }

    LoopbackArp.Sysctls sysctls()
    {
        return sysctls;
    }

    private static Map<String, String> interfaceAddresses() throws SocketException
    {
        final Map<String, String> addresses = new LinkedHashMap<>();
        for (final NetworkInterface nic : Collections.list(NetworkInterface.getNetworkInterfaces()))
        {
            for (final InetAddress address : Collections.list(nic.getInetAddresses()))
            {
                String text = address.getHostAddress();
                final int zone = text.indexOf('%');
                if (zone >= 0)
                {
                    text = text.substring(0, zone);
                }
                addresses.putIfAbsent(Addresses.canonical(text), nic.getName());
            }
        }
        return addresses;
    }
}
