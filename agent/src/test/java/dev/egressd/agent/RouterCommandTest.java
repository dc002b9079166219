package dev.egressd.agent;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** {@code egressd router}: a subcommand of the daemon's command line; a bad setting exits 2 and changes nothing. */
class RouterCommandTest
{
    private static int run(final ByteArrayOutputStream err, final String... args)
    {
        final PrintStream saved = System.err;
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        try
        {
            return new CommandLine(new Egressd()).execute(args);
        }
        finally
        {
            System.setErr(saved);
        }
    }

    @Test
    void aBadSettingExitsTwoNamingIt()
    {
        final ByteArrayOutputStream err = new ByteArrayOutputStream();
        assertThat(run(err, "router", "--config", "/dev/null", "--region", "ord", "--etcd-endpoints",
            "http://192.0.2.10:2379", "--router-table-base", "100")).isEqualTo(2);
        assertThat(err.toString(StandardCharsets.UTF_8)).contains("egressd router: bad setting router-table-base=100");
    }

    @Test
    void theRouterIsASubcommandWithItsOwnOptions()
    {
        final CommandLine cli = new CommandLine(new Egressd());
        assertThat(cli.getSubcommands()).containsKey("router");
        assertThat(cli.getSubcommands().get("router").getCommandSpec().optionsMap()).containsKeys("--region",
            "--etcd-endpoints", "--router-id", "--router-table", "--router-table-base", "--block-size",
            "--metrics-listen", "--config");
        assertThat(cli.getCommandSpec().optionsMap()).as("the host's options are unchanged").containsKeys("--uplink",
            "--ledger").doesNotContainKey("--router-id");
    }
}
