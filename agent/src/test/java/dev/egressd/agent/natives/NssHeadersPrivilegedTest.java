package dev.egressd.agent.natives;

import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** The struct layouts and errno values {@link Nss} and {@link LibC} hard-code, against this host's C headers. */
@Privileged
class NssHeadersPrivilegedTest
{
    @TempDir
    Path dir;

    @Test
    void constantsMatchTheHeaders() throws Exception
    {
        final Path cc = Requirements.tool("cc", "Debian package gcc");
        final Path source = dir.resolve("nss.c");
        Files.writeString(source, """
            #include <errno.h>
            #include <grp.h>
            #include <pwd.h>
            #include <stddef.h>
            #include <stdio.h>
            int main(void)
            {
                printf("%zu %zu %zu %zu %zu %d %d %d %d %d\\n", sizeof(struct group), offsetof(struct group, gr_gid),
                    sizeof(struct passwd), offsetof(struct passwd, pw_name), offsetof(struct passwd, pw_gid),
                    ERANGE, ENOENT, ESRCH, EBADF, EPERM);
                return 0;
            }
            """);
        final Path binary = dir.resolve("nss");
        final Process compile = new ProcessBuilder(cc.toString(), "-o", binary.toString(), source.toString())
            .redirectErrorStream(true).start();
        final String compiled = new String(compile.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(compile.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(compile.exitValue()).as(compiled).isZero();
        final Process run = new ProcessBuilder(binary.toString()).start();
        final String out = new String(run.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        assertThat(run.waitFor(10, TimeUnit.SECONDS)).isTrue();
        assertThat(out).isEqualTo(Nss.SIZEOF_GROUP + " " + Nss.GR_GID + " " + Nss.SIZEOF_PASSWD + " " + Nss.PW_NAME
            + " " + Nss.PW_GID + " " + LibC.ERANGE + " " + LibC.ENOENT + " " + LibC.ESRCH + " " + LibC.EBADF + " "
            + LibC.EPERM);
    }
}
