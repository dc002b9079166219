package dev.egressd.agent.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.testing.ClientResult;
import dev.egressd.agent.testing.Lab;
import dev.egressd.agent.testing.Privileged;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;

/** The lab itself, before egressd touches it: the premises every dataplane test relies on. */
@Privileged
class LabE2ETest
{
    @Test
    void withoutNatGuestsReachNothingButTheHostReachesTheDestination() throws Exception
    {
        final String prefix;
        try (Lab lab = Lab.create(1))
        {
            prefix = lab.prefix();
            // dst routes back only to the static ranges: an un-NATed guest gets no reply
            assertThat(lab.guest(1).client("tcp", "198.51.100.10", 80, 1, 0, "--timeout", "0.5"))
                .extracting(ClientResult::error).containsExactly("ETIMEDOUT");
            assertThat(lab.guest(1).ping("2001:db8:100::10")).isFalse();
            // the guest reaches its gateway, and the host reaches the destination
            assertThat(lab.guest(1).ping("169.254.1.1")).isTrue();
            assertThat(lab.exec("host", "ping", "-c", "1", "-W", "1", "198.51.100.11").ok()).isTrue();
            assertThat(lab.exec("host", "ping", "-6", "-c", "1", "-W", "1", "2001:db8:100::11").ok()).isTrue();
            // the echo server logs what it sees
            assertThat(lab.destination().log()).isEmpty();
            assertThat(lab.exec("host", "python3", "-c",
                "import socket; s=socket.create_connection(('198.51.100.10', 81)); print(s.recv(64))").output())
                .contains("192.0.2.1");
            assertThat(lab.destination().log()).singleElement()
                .satisfies(seen -> assertThat(seen.ip()).isEqualTo("192.0.2.1"))
                .satisfies(seen -> assertThat(seen.localPort()).isEqualTo(81));
            // no conntrack hooks are registered in the host until a ruleset needs them
            assertThat(lab.exec("host", "conntrack", "-L").ok()).isTrue();
            assertThat(Files.exists(Path.of("/run/netns", lab.ns("host")))).isTrue();
        }
        assertThat(List.of("host", "dst", "g1"))
            .allSatisfy(ns -> assertThat(Path.of("/run/netns", prefix + "-" + ns)).doesNotExist());
    }
}
