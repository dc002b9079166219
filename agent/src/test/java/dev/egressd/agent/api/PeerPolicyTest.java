package dev.egressd.agent.api;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.HashMap;
import java.util.Map;
import java.util.OptionalInt;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** api-group membership as the directory (NSS) says, kept per uid for {@link PeerPolicy#TTL_NANOS}. */
class PeerPolicyTest
{
    /** A directory: group egressd-api is gid 990; uid to its gids. */
    private static final class FakeDirectory implements PeerPolicy.Directory
    {
        final Map<Integer, int[]> groups = new HashMap<>();
        final AtomicInteger lookups = new AtomicInteger();
        IOException failing;
        boolean groupExists = true;

        @Override
        public OptionalInt groupId(final String group) throws IOException
        {
            if (failing != null)
            {
                throw failing;
            }
            return groupExists && "egressd-api".equals(group) ? OptionalInt.of(990) : OptionalInt.empty();
        }

        @Override
        public int[] groupsOf(final int uid) throws IOException
        {
            lookups.incrementAndGet();
            if (failing != null)
            {
                throw failing;
            }
            return groups.getOrDefault(uid, new int[0]);
        }
    }

    private final FakeDirectory directory = new FakeDirectory();
    private final AtomicLong clock = new AtomicLong(1_000);

    private PeerPolicy policy() throws IOException
    {
        return PeerPolicy.resolve("egressd-api", directory, clock::get);
    }

    @Test
    void rootAlwaysAndMembersByPrimaryOrSupplementaryGroup() throws Exception
    {
        directory.groups.put(1001, new int[] {1001, 990});
        final PeerPolicy policy = policy();
        assertThat(policy.allows(0, 0)).isTrue();
        assertThat(policy.allows(1001, 1001)).isTrue();
        assertThat(policy.allows(1002, 990)).as("primary gid of the connection").isTrue();
        assertThat(policy.allows(1003, 1003)).isFalse();
        assertThat(PeerPolicy.resolve(null, directory, clock::get).allows(1001, 1001)).isFalse();
    }

    @Test
    void aMemberAddedWhileRunningIsLetInWithinTheTtlWithoutARestart() throws Exception
    {
        final PeerPolicy policy = policy();
        assertThat(policy.allows(1001, 1001)).isFalse();
        directory.groups.put(1001, new int[] {1001, 990});
        assertThat(policy.allows(1001, 1001)).as("the answer is kept").isFalse();
        assertThat(directory.lookups.get()).isEqualTo(1);
        clock.addAndGet(PeerPolicy.TTL_NANOS);
        assertThat(policy.allows(1001, 1001)).isTrue();
        directory.groups.put(1001, new int[] {1001});
        clock.addAndGet(PeerPolicy.TTL_NANOS);
        assertThat(policy.allows(1001, 1001)).as("removed: out after the TTL").isFalse();
    }

    @Test
    void aFailedLookupRefusesAndIsNotKept() throws Exception
    {
        directory.groups.put(1001, new int[] {990});
        final PeerPolicy policy = policy();
        directory.failing = new IOException("getgrnam_r(egressd-api) failed: Input/output error (errno 5)");
        assertThat(policy.allows(1001, 1001)).isFalse();
        directory.failing = null;
        assertThat(policy.allows(1001, 1001)).as("asked again at once").isTrue();
    }

    @Test
    void aGroupThatDoesNotExistIsAnErrorAtStartAndRefusesLater() throws Exception
    {
        directory.groupExists = false;
        assertThatThrownBy(() -> PeerPolicy.resolve("egressd-api", directory, clock::get))
            .isInstanceOf(IOException.class).hasMessageContaining("api-group egressd-api does not exist");
        directory.groupExists = true;
        final PeerPolicy policy = policy();
        directory.groups.put(1001, new int[] {990});
        directory.groupExists = false;
        assertThat(policy.allows(1001, 1001)).isFalse();
    }

    @Test
    void theRealNssKnowsTheRootGroup() throws Exception
    {
        final PeerPolicy root = PeerPolicy.resolve("root");
        assertThat(root.allows(0, 0)).isTrue();
        // a uid no user has, whose connection's gid is 0: in the group by its primary gid
        assertThat(root.allows(2_000_000_123, 0)).isTrue();
        assertThat(root.allows(2_000_000_123, 2_000_000_123)).isFalse();
        assertThatThrownBy(() -> PeerPolicy.resolve("egressd-no-such-group-4711")).isInstanceOf(IOException.class);
    }
}
