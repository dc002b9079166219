package dev.egressd.agent.api;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Who may use the API socket: uid 0, and members of one optional group (by primary gid or by listing in
 * {@code /etc/group}).
 *
 * @param gid     the group's gid, or -1 for root only.
 * @param members the uids listed as the group's members.
 */
public record PeerPolicy(int gid, Set<Integer> members)
{
    /** Root only. */
    public static final PeerPolicy ROOT_ONLY = new PeerPolicy(-1, Set.of());

    /**
     * Whether a peer may use the API.
     *
     * @param uid the peer's uid.
     * @param gid the peer's primary gid.
     * @return true if allowed.
     */
    public boolean allows(final int uid, final int gid)
    {
        return uid == 0 || (this.gid >= 0 && (gid == this.gid || members.contains(uid)));
    }

    /**
     * Resolves a group through {@code /etc/group} and {@code /etc/passwd}.
     *
     * @param group the group name, or null for root only.
     * @param etc   the directory holding group and passwd (normally {@code /etc}).
     * @return the policy.
     * @throws IOException if the files cannot be read or the group does not exist.
     */
    public static PeerPolicy resolve(final String group, final Path etc) throws IOException
    {
        if (group == null)
        {
            return ROOT_ONLY;
        }
        int gid = -1;
        final Set<String> names = new HashSet<>();
        for (final String line : Files.readAllLines(etc.resolve("group")))
        {
            final String[] f = line.split(":", -1);
            if (f.length >= 4 && f[0].equals(group))
            {
                gid = Integer.parseInt(f[2]);
                for (final String name : f[3].split(","))
                {
                    if (!name.isBlank())
                    {
                        names.add(name.trim());
                    }
                }
            }
        }
        if (gid < 0)
        {
            throw new IOException("group " + group + " not found in " + etc.resolve("group"));
        }
        final Set<Integer> uids = new HashSet<>();
        final List<String> passwd = Files.readAllLines(etc.resolve("passwd"));
        for (final String line : passwd)
        {
            final String[] f = line.split(":", -1);
            if (f.length >= 4 && names.contains(f[0]))
            {
                uids.add(Integer.parseInt(f[2]));
            }
        }
        return new PeerPolicy(gid, Set.copyOf(uids));
    }
}
