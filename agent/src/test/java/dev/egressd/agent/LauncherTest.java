package dev.egressd.agent;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
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

    @TempDir
    Path dir;

    private String launch(final String javaOpts) throws IOException, InterruptedException
    {
        final Path bin = Files.createDirectories(dir.resolve("jdk/bin"));
        final Path java = bin.resolve("java");
        Files.writeString(java, "#!/bin/sh\necho \"$@\"\n", StandardCharsets.UTF_8);
        Files.setPosixFilePermissions(java, PosixFilePermissions.fromString("rwxr-xr-x"));
        final Path jar = Files.writeString(dir.resolve("egressd.jar"), "not a jar");
        final ProcessBuilder pb = new ProcessBuilder(PROJECT.resolve("scripts/egressd").toString(), "--version");
        final Map<String, String> env = pb.environment();
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
        assertThat(launch(null)).isEqualTo("-Xmx128m -XX:+ExitOnOutOfMemoryError -XX:+UseSerialGC -jar "
            + dir.resolve("egressd.jar") + " --version");
        assertThat(launch("-Dlogback.configurationFile=/x.xml")).startsWith(
            "-Xmx128m -XX:+ExitOnOutOfMemoryError -XX:+UseSerialGC -Dlogback.configurationFile=/x.xml -jar ");
    }

    @Test
    void theOperatorsCapAndCollectorWin() throws Exception
    {
        assertThat(launch("-Xmx512m")).startsWith("-XX:+ExitOnOutOfMemoryError -XX:+UseSerialGC -Xmx512m -jar ");
        assertThat(launch("-XX:MaxRAMPercentage=10 -XX:+UseG1GC"))
            .startsWith("-XX:+ExitOnOutOfMemoryError -XX:MaxRAMPercentage=10 -XX:+UseG1GC -jar ");
        assertThat(launch("-XX:+UseZGC")).startsWith("-Xmx128m -XX:+ExitOnOutOfMemoryError -XX:+UseZGC -jar ");
        // the package's own options: nothing added twice
        assertThat(launch("-Xmx128m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError"))
            .startsWith("-Xmx128m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -jar ");
    }

    @Test
    void thePackagesDefaultFileNamesTheSameCapAndCollector() throws Exception
    {
        final String defaults = Files.readString(PROJECT.resolve("scripts/debian/default"), StandardCharsets.UTF_8);
        assertThat(defaults).containsPattern(
            "(?m)^EGRESSD_JAVA_OPTS=\"-Xmx128m -XX:\\+UseSerialGC -XX:\\+ExitOnOutOfMemoryError\"$");
    }
}
