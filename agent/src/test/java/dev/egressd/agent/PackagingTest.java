package dev.egressd.agent;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.config.EgressdConfig;
import dev.egressd.agent.config.RouterConfig;
import dev.egressd.agent.version.Version;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;
import picocli.CommandLine.Model.OptionSpec;

/**
 * The Debian package's hand-written files (scripts/debian, docs/man, the unit) against the code they describe:
 * a key or flag added to egressd fails here until the conffile and the man pages tell of it. scripts/package-test
 * checks the built package itself.
 */
class PackagingTest
{
    private static final Path PROJECT = Path.of(System.getenv().getOrDefault("EGRESSD_PROJECT_DIR", ".."));

    @TempDir
    Path dir;

    private static String read(final String file) throws Exception
    {
        return Files.readString(PROJECT.resolve(file), StandardCharsets.UTF_8);
    }

    /** How troff source spells a name: every '-' as "\-". */
    private static String troff(final String name)
    {
        return name.replace("-", "\\-");
    }

    @Test
    void theConffileShowsEveryKeyCommentedOutWithItsDefault() throws Exception
    {
        final String conf = read("scripts/debian/egressd.conf");
        final List<String> settings = conf.lines().filter(l -> !l.isBlank() && !l.startsWith("#")).toList();
        assertThat(settings).as("nothing is set: every key is commented out").isEmpty();
        for (final Map.Entry<String, String> key : EgressdConfig.DEFAULTS.entrySet())
        {
            final Matcher line = Pattern.compile("^#" + Pattern.quote(key.getKey()) + " = ?(.*)$", Pattern.MULTILINE)
                .matcher(conf);
            assertThat(line.find()).as("#%s = ... in scripts/debian/egressd.conf", key.getKey()).isTrue();
            if (key.getValue() != null)
            {
                assertThat(line.group(1)).as("the default of %s", key.getKey()).isEqualTo(key.getValue());
            }
        }
        // As installed (all commented out), the file means the defaults.
        final Map<String, String> required = Map.of("region", "ord", "uplink", "eth0");
        final Path empty = Files.writeString(dir.resolve("empty.conf"), "");
        assertThat(EgressdConfig.load(PROJECT.resolve("scripts/debian/egressd.conf"), required))
            .isEqualTo(EgressdConfig.load(empty, required));
    }

    @Test
    void theManPagesDescribeEveryKeyAndEveryOption() throws Exception
    {
        final String conf5 = read("docs/man/egressd.conf.5");
        for (final String key : EgressdConfig.DEFAULTS.keySet())
        {
            assertThat(conf5).as("egressd.conf(5) describes %s", key).contains("\\fB" + troff(key) + "\\fR (");
        }
        final String egressd8 = read("docs/man/egressd.8");
        for (final OptionSpec option : new CommandLine(new Egressd()).getCommandSpec().options())
        {
            for (final String name : option.names())
            {
                assertThat(egressd8).as("egressd(8) describes %s", name).contains("\\fB" + troff(name) + "\\fR");
            }
        }
    }

    @Test
    void theUnitRunsTheInstalledLauncherWithTheDefaultsFileAndTheApiGroup() throws Exception
    {
        final String unit = read("scripts/systemd/egressd.service");
        assertThat(unit).contains("\nExecStart=/usr/bin/egressd --config /etc/egressd/egressd.conf\n")
            .contains("\nEnvironmentFile=-/etc/default/egressd\n")
            .contains("\nSupplementaryGroups=egressd-api\n")
            .doesNotContain("/opt/egressd");
        assertThat(read("scripts/debian/default")).containsPattern("(?m)^EGRESSD_JAVA_OPTS=\"[^\"]*-Xmx\\d+m");
        assertThat(read("scripts/debian/conffiles").lines().toList())
            .containsExactlyInAnyOrder("/etc/egressd/egressd.conf", "/etc/egressd/router.conf", "/etc/default/egressd");
    }

    @Test
    void theRouterUnitAndConffileMatchTheRouterCommand() throws Exception
    {
        final String unit = read("scripts/systemd/egressd-router.service");
        assertThat(unit).contains("\nExecStart=/usr/bin/egressd router --config /etc/egressd/router.conf\n")
            .contains("\nCapabilityBoundingSet=CAP_NET_ADMIN\n")
            .as("fwmark_reflect is written at start: /proc/sys must be visible and writable")
            .contains("\nProtectKernelTunables=no\n").doesNotContain("ProcSubset=pid").doesNotContain("IPAddressDeny");
        assertThat(read("scripts/package")).contains("scripts/systemd/egressd-router.service")
            .contains("scripts/debian/router.conf");
        final String conf = read("scripts/debian/router.conf");
        assertThat(conf.lines().filter(l -> !l.isBlank() && !l.startsWith("#")).toList())
            .as("nothing is set: every key is commented out").isEmpty();
        for (final Map.Entry<String, String> key : RouterConfig.DEFAULTS.entrySet())
        {
            final Matcher line = Pattern.compile("^#" + Pattern.quote(key.getKey()) + " = ?(.*)$", Pattern.MULTILINE)
                .matcher(conf);
            assertThat(line.find()).as("#%s = ... in scripts/debian/router.conf", key.getKey()).isTrue();
            if (key.getValue() != null)
            {
                assertThat(line.group(1)).as("the default of %s", key.getKey()).isEqualTo(key.getValue());
            }
        }
        final Map<String, String> required = Map.of("region", "ord", "etcd-endpoints", "http://192.0.2.10:2379");
        final Path empty = Files.writeString(dir.resolve("empty.conf"), "");
        assertThat(RouterConfig.load(PROJECT.resolve("scripts/debian/router.conf"), required))
            .isEqualTo(RouterConfig.load(empty, required));
        final String egressd8 = read("docs/man/egressd.8");
        for (final OptionSpec option : new CommandLine(new RouterCommand()).getCommandSpec().options())
        {
            for (final String name : option.names())
            {
                assertThat(egressd8).as("egressd(8) describes router %s", name).contains("\\fB" + troff(name) + "\\fR");
            }
        }
    }

    @Test
    void versionPrintsTheVersionAndTheCommit()
    {
        final PrintStream out = System.out;
        final ByteArrayOutputStream captured = new ByteArrayOutputStream();
        System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
        final int code;
        try
        {
            code = new CommandLine(new Egressd()).execute("--version");
        }
        finally
        {
            System.setOut(out);
        }
        assertThat(code).isZero();
        assertThat(captured.toString(StandardCharsets.UTF_8).strip()).isEqualTo(Version.line("egressd"))
            .matches("egressd \\S+ \\(revision ([0-9a-f]{40}(-dirty)?|unknown)\\)");
        assertThat(Version.version()).isNotEqualTo(Version.UNKNOWN).doesNotContain("${");
    }
}
