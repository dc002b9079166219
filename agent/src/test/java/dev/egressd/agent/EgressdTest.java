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
    void theNativesAreBoundOnADaemonThreadOfTheirOwnAndTheChecksSeeItsOutcome() throws Exception
    {
        final Thread binding = Egressd.bindNativesAhead();
        assertThat(binding.getName()).isEqualTo("egressd-natives");
        assertThat(binding.isDaemon()).as("never holds the JVM's exit").isTrue();
        // a check that comes meanwhile waits in the holder's initialiser and gets the same outcome
        final boolean seenMeanwhile = dev.egressd.agent.kernel.nft.NftNatives.isAvailable();
        binding.join(60_000);
        assertThat(binding.isAlive()).isFalse();
        assertThat(dev.egressd.agent.natives.Natives.isAvailable()).isTrue();
        assertThat(dev.egressd.agent.kernel.nft.NftNatives.isAvailable()).isEqualTo(seenMeanwhile)
            .isEqualTo(dev.egressd.agent.kernel.nft.NftNatives.unavailabilityCause() == null);
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

    @Test
    void theDaemonsOwnFlagsAreReadWithoutPicocliExactlyAsPicocliReadsThem()
    {
        // every option of the command that takes one value, in both spellings, each alone and all together
        final java.util.List<String> all = new java.util.ArrayList<>();
        int n = 0;
        for (final CommandLine.Model.OptionSpec option : new CommandLine(new Egressd()).getCommandSpec().options())
        {
            final String name = option.longestName();
            if (option.arity().max() != 1 || option.type() == boolean.class)
            {
                continue;
            }
            final String value = "--config".equals(name) ? "/etc/egressd/x.conf" : "v" + n++;
            assertSameAsPicocli(name, value);
            assertSameAsPicocli(name + "=" + value);
            all.add(name);
            all.add(value);
        }
        assertThat(all).as("the value flags this reads").hasSize(2 * 26);
        all.add("--dry-run");
        assertSameAsPicocli(all.toArray(String[]::new));
        assertSameAsPicocli("--region", "ord", "--uplink=eth0", "--dry-run", "--state-dir", "/var/lib/x");
        assertSameAsPicocli("--router-confirm-ms", "0", "--region=a=b");
        assertSameAsPicocli();
    }

    @Test
    void anythingButTheDaemonsOwnFlagsIsLeftToPicocli()
    {
        for (final String[] args : new String[][] {
            {"--help"}, {"-h"}, {"--version"}, {"-V"}, {"router", "--region", "ord"}, {"--teardown", "--yes"},
            {"--region", "ord", "--region", "ams"}, {"--dry-run", "--dry-run"}, {"--region"},
            {"--region", "--uplink", "eth0"}, {"--region="}, {"--regoin", "ord"}, {"--region", "@args"},
            {"ord"}, {"--", "--region", "ord"}, {"--dry-run=true"}, {"--region", "-x"}})
        {
            assertThat(Egressd.parseDaemonFlags(args)).as(String.join(" ", args)).isNull();
        }
    }

    /** The fields parseDaemonFlags sets equal those picocli sets for the same arguments. */
    private static void assertSameAsPicocli(final String... args)
    {
        final Egressd fast = Egressd.parseDaemonFlags(args);
        assertThat(fast).as(String.join(" ", args)).isNotNull();
        final Egressd picocli = new Egressd();
        new CommandLine(picocli).parseArgs(args);
        assertThat(fast.flags()).as(String.join(" ", args)).isEqualTo(picocli.flags());
        assertThat(fast.config).isEqualTo(picocli.config);
        assertThat(fast.dryRun).isEqualTo(picocli.dryRun);
        assertThat(fast.teardown).isFalse();
        assertThat(fast.yes).isFalse();
    }

    @Test
    void aLayoutThatWouldMovePlacedMachinesIsRefusedAtStartAndChangesNothing() throws Exception
    {
        final Path state = Files.createDirectories(dir.resolve("state"));
        final dev.egressd.agent.state.DesiredState placed = new dev.egressd.agent.state.DesiredState(
            dev.egressd.agent.state.DesiredState.VERSION, new dev.egressd.agent.state.DesiredState.Host("ord", 4, 1024, 1024),
            java.util.List.of(new dev.egressd.agent.state.DesiredState.App("shop", true,
                java.util.List.of(new dev.egressd.agent.state.DesiredState.Pair("203.0.113.10", "2001:db8::10", false)),
                java.util.List.of())),
            java.util.List.of(new dev.egressd.agent.state.DesiredState.MachineEntry("m1", "shop", "tap-m1", "10.77.0.2",
                null, null, new dev.egressd.agent.state.DesiredState.Slot("203.0.113.10", 3), null)),
            java.util.List.of());
        new dev.egressd.agent.state.StateStore(state).write(placed);
        final java.util.Map<String, Long> before = sizes(state);
        for (final String[] bad : new String[][] {
            {"--block-count", "2", "bad setting block-count=2: the state places a machine on block 3; 2 blocks would move it"},
            {"--block-size", "512", "bad setting block-size=512: the state places 1 machines on blocks of 1024 ports"},
            {"--region", "ams", "bad setting region=ams: the state holds 1 pairs and 1 placed machines of region ord"}})
        {
            final PrintStream err = System.err;
            final ByteArrayOutputStream captured = new ByteArrayOutputStream();
            System.setErr(new PrintStream(captured, true, StandardCharsets.UTF_8));
            final int code;
            try
            {
                final java.util.List<String> args = new java.util.ArrayList<>(java.util.List.of("--dry-run", "--uplink",
                    "eth0", "--state-dir", state.toString(), "--api-socket", dir.resolve("api.sock").toString(),
                    "--metrics-listen", "off", bad[0], bad[1]));
                if (!"--region".equals(bad[0]))
                {
                    args.addAll(java.util.List.of("--region", "ord"));
                }
                if (!"--block-count".equals(bad[0]))
                {
                    args.addAll(java.util.List.of("--block-count", "4"));
                }
                code = new CommandLine(new Egressd()).execute(args.toArray(String[]::new));
            }
            finally
            {
                System.setErr(err);
            }
            assertThat(code).as(bad[0]).isEqualTo(2);
            assertThat(captured.toString(StandardCharsets.UTF_8)).as(bad[0]).startsWith("egressd: " + bad[2]);
        }
        final java.util.Map<String, Long> after = sizes(state);
        after.remove(dev.egressd.agent.state.StateStore.LOCK); // the start took the lock, as every start does
        before.remove(dev.egressd.agent.state.StateStore.LOCK);
        assertThat(after).as("the state directory is as it was").isEqualTo(before);
        // more blocks of the same size move nobody: that start goes ahead (checked without starting a daemon)
        assertThat(dev.egressd.agent.state.StateMapper.layoutProblem(placed,
            new dev.egressd.core.model.HostSettings("ord", new dev.egressd.core.model.BlockLayout(8, 1024), 1024)))
            .isNull();
    }

    /** Each file of a directory with its size. */
    private static java.util.Map<String, Long> sizes(final Path dir) throws java.io.IOException
    {
        final java.util.Map<String, Long> sizes = new java.util.TreeMap<>();
        try (java.util.stream.Stream<Path> files = Files.list(dir))
        {
            for (final Path f : (Iterable<Path>)files::iterator)
            {
                sizes.put(f.getFileName().toString(), Files.size(f));
            }
        }
        return sizes;
    }
}
