package dev.egressd.agent.natives;

import org.junit.jupiter.api.Test;

import java.util.Optional;
import java.util.OptionalInt;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Users and groups through the real C library's NSS (every Linux host has root and its group). */
class NssTest
{
    @Test
    void theRootGroupAndUser() throws Exception
    {
        assertThat(Nss.groupId("root")).isEqualTo(OptionalInt.of(0));
        final Optional<Nss.User> root = Nss.user(0);
        assertThat(root).contains(new Nss.User("root", 0));
        assertThat(Nss.groups(root.get())).contains(0);
    }

    @Test
    void noSuchGroupOrUserIsEmptyNotAnError() throws Exception
    {
        assertThat(Nss.groupId("egressd-no-such-group-4711")).isEmpty();
        assertThat(Nss.user(2_000_000_123)).isEmpty();
    }

    @Test
    void aUserNoGroupListsHasItsPrimaryGroupOnly()
    {
        assertThat(Nss.groups(new Nss.User("egressd-no-such-user-4711", 4711))).containsExactly(4711);
    }

    @Test
    void anErrorNumberBecomesATypedExceptionAtTheBoundary() throws Exception
    {
        Nss.check("getgrnam_r(g)", 0);
        Nss.check("getgrnam_r(g)", LibC.ENOENT); // "not found" as some libcs say it
        assertThatThrownBy(() -> Nss.check("getgrnam_r(egressd-api)", 5))
            .isInstanceOfSatisfying(NssException.class, e -> assertThat(e.errno()).isEqualTo(5))
            .hasMessage("getgrnam_r(egressd-api) failed: Input/output error (errno 5)");
        assertThatThrownBy(() -> Nss.check("getpwuid_r(1000)", LibC.ERANGE)).isInstanceOf(NssException.class)
            .hasMessageContaining("(errno 34)");
    }
}
