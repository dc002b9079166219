package dev.egressd.agent.api;

import dev.egressd.agent.natives.Nss;
import dev.egressd.agent.natives.NssException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.util.Arrays;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.LongSupplier;

/**
 * Who may use the API socket: uid 0, and members of one optional group ({@code api-group}).
 *
 * <p>Membership is asked of the C library (NSS: getgrnam_r, getpwuid_r, getgrouplist), so a group or member from
 * LDAP or SSSD counts as one in /etc/group does, and a member added while egressd runs is let in without a restart.
 * Each uid's answer is kept for {@link #TTL_NANOS} (10 s): egressctl opens one connection per request, and NSS
 * behind a directory can be slow; so a member added or removed is seen within 10 s. A failed lookup refuses the
 * peer and is not kept.
 */
public final class PeerPolicy
{
    /** How long one uid's answer is kept. */
    public static final long TTL_NANOS = 10_000_000_000L;

    /** Root only. */
    public static final PeerPolicy ROOT_ONLY = new PeerPolicy(-1, Set.of());

    private static final Logger LOG = LoggerFactory.getLogger(PeerPolicy.class);

    /** How membership is looked up: NSS, or a test's. */
    public interface Directory
    {
        /**
         * A group's gid.
         *
         * @param group the name.
         * @return the gid, or empty if there is no such group.
         * @throws IOException if the lookup failed.
         */
        OptionalInt groupId(String group) throws IOException;

        /**
         * Every gid a user is in, its primary one included.
         *
         * @param uid the uid.
         * @return the gids; empty if no user has the uid.
         * @throws IOException if the lookup failed.
         */
        int[] groupsOf(int uid) throws IOException;
    }

    /** The C library's NSS. */
    public static final Directory NSS = new Directory()
    {
        @Override
        public OptionalInt groupId(final String group) throws NssException
        {
            return Nss.groupId(group);
        }

        @Override
        public int[] groupsOf(final int uid) throws NssException
        {
            final Optional<Nss.User> user = Nss.user(uid);
            return user.isPresent() ? Nss.groups(user.get()) : new int[0];
        }
    };

    private record Answer(boolean allowed, long until)
    {
    }

    private final int fixedGid;
    private final Set<Integer> fixedMembers;
    private final String group;
    private final Directory directory;
    private final LongSupplier nanoTime;
    private final Map<Long, Answer> answers = new ConcurrentHashMap<>();

    /**
     * A fixed policy (tests): the gid and the member uids.
     *
     * @param gid     the group's gid, or -1 for root only.
     * @param members the uids in the group besides those whose primary gid it is.
     */
    public PeerPolicy(final int gid, final Set<Integer> members)
    {
        this.fixedGid = gid;
        this.fixedMembers = Set.copyOf(members);
        this.group = null;
        this.directory = null;
        this.nanoTime = System::nanoTime;
    }

    private PeerPolicy(final String group, final Directory directory, final LongSupplier nanoTime)
    {
        this.fixedGid = -1;
        this.fixedMembers = Set.of();
        this.group = group;
        this.directory = directory;
        this.nanoTime = nanoTime;
    }

    /**
     * The policy of {@code api-group}, looked up through NSS as peers connect.
     *
     * @param group the group name, or null for root only.
     * @return the policy.
     * @throws IOException if there is no such group (a typo is an error at start, not a silent root-only), or the
     *                     lookup failed.
     */
    public static PeerPolicy resolve(final String group) throws IOException
    {
        return resolve(group, NSS, System::nanoTime);
    }

    /**
     * The policy of a group looked up in a directory.
     *
     * @param group     the group name, or null for root only.
     * @param directory where membership is looked up.
     * @param nanoTime  the clock of the answers' lifetime.
     * @return the policy.
     * @throws IOException if there is no such group, or the lookup failed.
     */
    public static PeerPolicy resolve(final String group, final Directory directory, final LongSupplier nanoTime)
        throws IOException
    {
        if (group == null)
        {
            return ROOT_ONLY;
        }
        if (directory.groupId(group).isEmpty())
        {
            throw new IOException("api-group " + group + " does not exist (looked up through NSS: getent group "
                + group + ")");
        }
        return new PeerPolicy(group, directory, nanoTime);
    }

    /**
     * Whether a peer may use the API.
     *
     * @param uid the peer's uid.
     * @param gid the peer's primary gid.
     * @return true if allowed.
     */
    public boolean allows(final int uid, final int gid)
    {
        if (uid == 0)
        {
            return true;
        }
        if (directory == null)
        {
            return fixedGid >= 0 && (gid == fixedGid || fixedMembers.contains(uid));
        }
        final long key = ((long)uid << 32) | (gid & 0xffffffffL);
        final long now = nanoTime.getAsLong();
        final Answer kept = answers.get(key);
        if (kept != null && now - kept.until() < 0)
        {
            return kept.allowed();
        }
        final boolean allowed;
        try
        {
            allowed = lookUp(uid, gid);
        }
        catch (final IOException | RuntimeException e)
        {
            LOG.warn("API: cannot tell whether uid {} is in api-group {}, refused: {}", Integer.toUnsignedString(uid),
                group, e.getMessage());
            answers.remove(key);
            return false;
        }
        if (answers.size() > 4096)
        {
            answers.clear(); // many distinct peers: a bound, not an LRU
        }
        answers.put(key, new Answer(allowed, now + TTL_NANOS));
        return allowed;
    }

    private boolean lookUp(final int uid, final int gid) throws IOException
    {
        final OptionalInt groupGid = directory.groupId(group);
        if (groupGid.isEmpty())
        {
            return false;
        }
        final int g = groupGid.getAsInt();
        return gid == g || Arrays.stream(directory.groupsOf(uid)).anyMatch(member -> member == g);
    }
}
