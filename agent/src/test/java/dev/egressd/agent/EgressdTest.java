package dev.egressd.agent;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

class EgressdTest
{
    @TempDir
    Path dir;

    @Test
    void aBadFlagStopsStartUpWithOneLineAndExitCode2() throws Exception
    {
        final Path conf = dir.resolve("egressd.conf");
        Files.writeString(conf, "region=ord\nuplink=eth0\n");
        final PrintStream err = System.err;
        final ByteArrayOutputStream captured = new ByteArrayOutputStream();
        System.setErr(new PrintStream(captured, true, StandardCharsets.UTF_8));
        final int code;
        try
        {
            code = new CommandLine(new Egressd()).execute("--config", conf.toString(), "--destination-cap", "0");
        }
        finally
        {
            System.setErr(err);
        }
        assertThat(code).isEqualTo(2);
        assertThat(captured.toString(StandardCharsets.UTF_8))
            .isEqualTo("egressd: bad setting destination-cap=0: must be 1..65535" + System.lineSeparator());
    }

    @Test
    void flagsAreCollectedByConfigKey()
    {
        final Egressd egressd = new Egressd();
        new CommandLine(egressd).parseArgs("--region", "ams", "--block-size", "16", "--api-group", "ops");
        assertThat(egressd.flags()).containsExactly(
            java.util.Map.entry("region", "ams"), java.util.Map.entry("api-group", "ops"),
            java.util.Map.entry("block-size", "16"));
    }
}
