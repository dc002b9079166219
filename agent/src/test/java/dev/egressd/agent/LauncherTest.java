package dev.egressd.agent;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * scripts/egressd (the package's /usr/bin/egressd) caps the heap and picks the serial collector unless the operator's
 * EGRESSD_JAVA_OPTS names its own, and the package's /etc/default/egressd names the same: run with a stand-in java
 * that prints its arguments.
 */
class LauncherTest
{
    private static final Path PROJECT = Path.of(System.getenv().getOrDefault("EGRESSD_PROJECT_DIR", ".."));
    /** What the launcher adds when the operator's options name none of it. */
    private static final String DEFAULTS =
        "-Xmx128m -Xms32m -XX:+ExitOnOutOfMemoryError -XX:+UseSerialGC -XX:TrimNativeHeapInterval=5000 "
            + "-XX:TieredStopAtLevel=1";

    @TempDir
    Path dir;

    private String launch(final String javaOpts) throws IOException, InterruptedException
    {
        return launch(javaOpts, Map.of(), "--version");
    }

    private String launch(final String javaOpts, final Map<String, String> more, final String... args)
        throws IOException, InterruptedException
    {
        final Path bin = Files.createDirectories(dir.resolve("jdk/bin"));
        final Path java = bin.resolve("java");
        if (!Files.exists(java))
        {
            Files.writeString(java, "#!/bin/sh\necho \"$@\"\n", StandardCharsets.UTF_8);
        }
        Files.setPosixFilePermissions(java, PosixFilePermissions.fromString("rwxr-xr-x"));
        final Path jar = dir.resolve("egressd.jar");
        if (!Files.exists(jar))
        {
            Files.writeString(jar, "not a jar");
        }
        final java.util.List<String> cmd = new java.util.ArrayList<>(List.of(PROJECT.resolve("scripts/egressd").toString()));
        cmd.addAll(List.of(args));
        final ProcessBuilder pb = new ProcessBuilder(cmd);
        final Map<String, String> env = pb.environment();
        env.remove("EGRESSD_CDS");
        env.remove("MALLOC_ARENA_MAX");
        env.putAll(more);
        env.put("JAVA_HOME", dir.resolve("jdk").toString());
        env.put("EGRESSD_JAR", jar.toString());
        if (javaOpts == null)
        {
            env.remove("EGRESSD_JAVA_OPTS");
        }
        else
        {
            env.put("EGRESSD_JAVA_OPTS", javaOpts);
        }
        pb.redirectErrorStream(true);
        final Process p = pb.start();
        final String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertThat(p.waitFor(10, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as(out).isZero();
        return out;
    }

    @Test
    void withoutOptionsTheHeapIsCappedWithTheSerialCollector() throws Exception
    {
        assertThat(launch(null)).isEqualTo(DEFAULTS + " -jar "
            + dir.resolve("egressd.jar") + " --version");
        assertThat(launch("-Dlogback.configurationFile=/x.xml")).startsWith(
            DEFAULTS + " -Dlogback.configurationFile=/x.xml -jar ");
    }

    @Test
    void theOperatorsCapAndCollectorWin() throws Exception
    {
        assertThat(launch("-Xmx512m"))
            .startsWith("-XX:+ExitOnOutOfMemoryError -XX:+UseSerialGC -XX:TrimNativeHeapInterval=5000 "
                + "-XX:TieredStopAtLevel=1 -Xmx512m -jar ");
        assertThat(launch("-XX:MaxRAMPercentage=10 -XX:+UseG1GC"))
            .startsWith("-XX:+ExitOnOutOfMemoryError -XX:TrimNativeHeapInterval=5000 -XX:TieredStopAtLevel=1 "
                + "-XX:MaxRAMPercentage=10 -XX:+UseG1GC -jar ");
        assertThat(launch("-XX:+UseZGC"))
            .startsWith("-Xmx128m -Xms32m -XX:+ExitOnOutOfMemoryError -XX:TrimNativeHeapInterval=5000 "
                + "-XX:TieredStopAtLevel=1 -XX:+UseZGC -jar ");
        // an initial size of the operator's own stays, and none is added to the operator's cap (it could exceed it)
        assertThat(launch("-Xms64m"))
            .startsWith("-Xmx128m -XX:+ExitOnOutOfMemoryError -XX:+UseSerialGC -XX:TrimNativeHeapInterval=5000 "
                + "-XX:TieredStopAtLevel=1 -Xms64m -jar ");
        // the package's own options: nothing added twice
        final String packaged = "-Xmx128m -Xms32m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError "
            + "-XX:TrimNativeHeapInterval=5000 -XX:TieredStopAtLevel=1";
        assertThat(launch(packaged)).startsWith(packaged + " -jar ");
        // the operator's own trim interval (0: never) wins
        assertThat(launch("-XX:TrimNativeHeapInterval=0")).startsWith("-Xmx128m -Xms32m -XX:+ExitOnOutOfMemoryError "
            + "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:TrimNativeHeapInterval=0 -jar ");
        // the operator's compiler tiers win: all of them, or C2 back
        assertThat(launch("-XX:TieredStopAtLevel=4")).startsWith("-Xmx128m -Xms32m -XX:+ExitOnOutOfMemoryError "
            + "-XX:+UseSerialGC -XX:TrimNativeHeapInterval=5000 -XX:TieredStopAtLevel=4 -jar ");
        assertThat(launch("-XX:-TieredCompilation")).startsWith("-Xmx128m -Xms32m -XX:+ExitOnOutOfMemoryError "
            + "-XX:+UseSerialGC -XX:TrimNativeHeapInterval=5000 -XX:-TieredCompilation -jar ");
    }

    @Test
    void theFirstRunWritesAClassDataArchiveAtItsExitAndTheNextRunMapsIt() throws Exception
    {
        final Path jsa = dir.resolve("egressd-daemon.jsa");
        final String cds = " -Xlog:cds=off -Xlog:cds+dynamic=off -jar ";
        assertThat(launch(null, Map.of(), "--config", "x")).isEqualTo(DEFAULTS
            + " -XX:ArchiveClassesAtExit=" + jsa + ".new -Degressd.cds.served=" + jsa + ".served"
            + cds + dir.resolve("egressd.jar") + " --config x");
        // the run wrote the archive at its exit, but never served: not taken up
        Files.writeString(dir.resolve("egressd-daemon.jsa.new"), "archive");
        assertThat(launch(null, Map.of(), "--config", "x")).contains("-XX:ArchiveClassesAtExit=" + jsa + ".new ");
        assertThat(jsa).doesNotExist();
        // it served: taken up (the stand-in java maps anything), and mapped from then on
        Thread.sleep(1100); // newer than the jar: change times have a resolution of a second here
        Files.writeString(dir.resolve("egressd-daemon.jsa.new"), "archive");
        Files.writeString(dir.resolve("egressd-daemon.jsa.served"), "");
        assertThat(launch(null, Map.of(), "--config", "x")).isEqualTo(DEFAULTS
            + " -XX:SharedArchiveFile=" + jsa + cds + dir.resolve("egressd.jar") + " --config x");
        assertThat(jsa).hasContent("archive");
        assertThat(dir.resolve("egressd-daemon.jsa.new")).doesNotExist();
        assertThat(dir.resolve("egressd-daemon.jsa.served")).doesNotExist();
        assertThat(launch(null)).as("--version maps it too").contains("-XX:SharedArchiveFile=" + jsa + " ");
        // off when asked, or when the operator's options name their own sharing
        assertThat(launch(null, Map.of("EGRESSD_CDS", "0"), "--config", "x")).doesNotContain("SharedArchive")
            .doesNotContain("ArchiveClassesAtExit");
        assertThat(launch("-Xshare:off", Map.of(), "--config", "x")).doesNotContain("SharedArchive")
            .doesNotContain("ArchiveClassesAtExit");
        // a new jar (its change time after the archive's) makes it stale: dropped and written again
        Thread.sleep(1100);
        Files.writeString(dir.resolve("egressd.jar"), "another jar");
        assertThat(launch(null, Map.of(), "--config", "x")).contains("-XX:ArchiveClassesAtExit=" + jsa + ".new ")
            .doesNotContain("SharedArchiveFile");
        assertThat(jsa).doesNotExist();
        // --version, --help and the teardown never write one
        assertThat(launch(null)).doesNotContain("Archive");
        assertThat(launch(null, Map.of(), "--teardown", "--yes")).doesNotContain("Archive");
    }

    @Test
    void glibcGetsTwoMallocArenasUnlessTheEnvironmentSaysOtherwise() throws Exception
    {
        Files.createDirectories(dir.resolve("jdk/bin"));
        Files.writeString(dir.resolve("jdk/bin/java"), "#!/bin/sh\necho \"arenas=$MALLOC_ARENA_MAX\"\n",
            StandardCharsets.UTF_8);
        assertThat(launch(null)).isEqualTo("arenas=2");
        assertThat(launch(null, Map.of("MALLOC_ARENA_MAX", "8"), "--version")).isEqualTo("arenas=8");
    }

    @Test
    void anArchiveTheJvmCannotMapIsNotTakenUp() throws Exception
    {
        final Path bin = Files.createDirectories(dir.resolve("jdk/bin"));
        launch(null);
        // a java that refuses -Xshare:on (an archive cut short) and prints its arguments otherwise
        Files.writeString(bin.resolve("java"), "#!/bin/sh\ncase \"$*\" in *-Xshare:on*) exit 1;; esac\necho \"$@\"\n",
            StandardCharsets.UTF_8);
        Files.writeString(dir.resolve("egressd-daemon.jsa.new"), "cut short");
        Files.writeString(dir.resolve("egressd-daemon.jsa.served"), "");
        assertThat(launch(null, Map.of(), "--config", "x").replace("\n", " "))
            .contains("-XX:ArchiveClassesAtExit=").doesNotContain("SharedArchiveFile");
        assertThat(dir.resolve("egressd-daemon.jsa")).doesNotExist();
        assertThat(dir.resolve("egressd-daemon.jsa.new")).doesNotExist();
    }

    @Test
    void thePackagesDefaultFileNamesTheSameCapAndCollector() throws Exception
    {
        final String defaults = Files.readString(PROJECT.resolve("scripts/debian/default"), StandardCharsets.UTF_8);
        assertThat(defaults).containsPattern(
            "(?m)^EGRESSD_JAVA_OPTS=\"-Xmx128m -Xms32m -XX:\\+UseSerialGC -XX:\\+ExitOnOutOfMemoryError "
                + "-XX:TrimNativeHeapInterval=5000 -XX:TieredStopAtLevel=1\"$")
            .containsPattern("(?m)^MALLOC_ARENA_MAX=2$");
    }
}
