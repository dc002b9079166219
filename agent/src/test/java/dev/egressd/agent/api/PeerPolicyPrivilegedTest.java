package dev.egressd.agent.api;

import dev.egressd.agent.natives.Nss;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static org.assertj.core.api.Assertions.assertThat;

/** A group and a user made for the test: a member added while the policy is in use is let in, through NSS. */
@Privileged
class PeerPolicyPrivilegedTest
{
    private static final String GROUP = "egressd-test-api";
    private static final String USER = "egressd-test-op";

    @AfterEach
    void tearDown() throws Exception
    {
        run(false, "userdel", USER);
        run(false, "groupdel", GROUP);
    }

    @Test
    void aMemberAddedAfterStartIsLetInWithoutARestart() throws Exception
    {
        Requirements.root();
        Requirements.tool("groupadd", "Debian package passwd");
        tearDown();
        run(true, "groupadd", GROUP);
        run(true, "useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER);
        final Nss.User user = Nss.user(uid()).orElseThrow();
        assertThat(user.name()).isEqualTo(USER);
        final AtomicLong clock = new AtomicLong();
        final PeerPolicy policy = PeerPolicy.resolve(GROUP, PeerPolicy.NSS, clock::get);
        assertThat(policy.allows(uid(), user.gid())).isFalse();
        run(true, "gpasswd", "-a", USER, GROUP);
        clock.addAndGet(PeerPolicy.TTL_NANOS);
        assertThat(policy.allows(uid(), user.gid())).isTrue();
        run(true, "gpasswd", "-d", USER, GROUP);
        clock.addAndGet(PeerPolicy.TTL_NANOS);
        assertThat(policy.allows(uid(), user.gid())).isFalse();
    }

    private static int uid() throws Exception
    {
        return Integer.parseInt(run(true, "id", "-u", USER).strip());
    }

    private static String run(final boolean check, final String... cmd) throws IOException, InterruptedException
    {
        final Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        final String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
        if (check)
        {
            assertThat(p.exitValue()).as(String.join(" ", cmd) + ": " + out).isZero();
        }
        return out;
    }
}
