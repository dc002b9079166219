package dev.egressd.agent.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.testing.JarProcess;
import dev.egressd.agent.testing.Privileged;

import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The native libraries are bound on a thread of their own from the first line of {@code main} (docs/operations.md,
 * "Start-up"); a library that cannot be bound still ends the start as it did when the kernel checks bound it: one
 * line, exit status 1, nothing written, the state directory's lock released. The real jar, with libnftables made
 * unloadable by an empty file mounted over it in a mount namespace of the test's own (and a network namespace of its
 * own: nothing on this host is seen or touched).
 */
@Privileged
class NativesStartIT
{
    @TempDir
    Path dir;

    @Test
    @Timeout(120)
    void aLibraryThatCannotBeBoundStillFailsTheStartWithOneLineAndReleasesTheState() throws Exception
    {
        final Path state = dir.resolve("state");
        final Path out = dir.resolve("out.log");
        final String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        // unshare's mount namespace is private: the mount is gone with the process and never seen outside it
        final String script = "mount --bind /dev/null \"$(readlink -f /usr/lib/x86_64-linux-gnu/libnftables.so.1)\""
            + " && exec \"$0\" -XX:TieredStopAtLevel=1 -jar \"$1\" --region ord --uplink lo --state-dir \"$2\""
            + " --api-socket \"$3\" --metrics-listen off";
        final Process p = new ProcessBuilder(List.of("unshare", "--mount", "--net", "sh", "-c", script, java,
            JarProcess.jar().toString(), state.toString(), dir.resolve("api.sock").toString()))
            .redirectErrorStream(true).redirectOutput(out.toFile()).start();
        assertThat(p.waitFor(100, TimeUnit.SECONDS)).as("the start ended").isTrue();
        final String output = Files.readString(out, StandardCharsets.UTF_8);
        assertThat(p.exitValue()).as(output).isEqualTo(1);
        assertThat(output.lines().filter(l -> l.startsWith("egressd: ")).toList()).as(output)
            .singleElement().asString().startsWith("egressd: libnftables.so.1 could not be bound (");
        assertThat(output).as("no start-up past the checks").doesNotContain("serving").doesNotContain("Exception in");
        // nothing written but the lock file, and the lock released: the next start can take it
        try (var files = Files.list(state))
        {
            assertThat(files.map(f -> f.getFileName().toString()).toList()).containsExactly("lock");
        }
        try (FileChannel lock = FileChannel.open(state.resolve("lock"), StandardOpenOption.WRITE);
            FileLock held = lock.tryLock())
        {
            assertThat(held).as("the state directory's lock is free").isNotNull();
        }
    }
}
