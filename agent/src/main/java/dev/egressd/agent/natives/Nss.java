package dev.egressd.agent.natives;

import jnr.ffi.Pointer;
import jnr.ffi.byref.IntByReference;
import jnr.ffi.byref.PointerByReference;

import java.util.Arrays;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * Users and groups through the C library's NSS (getgrnam_r(3), getpwuid_r(3), getgrouplist(3)), so that groups from
 * LDAP or SSSD count as /etc/group does, and a change is seen at the next lookup. Each call allocates its own buffers:
 * thread-safe. Errors come back as {@link NssException}; "no such user or group" is an empty answer.
 */
public final class Nss
{
    /** {@code <grp.h>} sizeof(struct group) on LP64 Linux: gr_name, gr_passwd, gr_gid (padded), gr_mem. */
    public static final int SIZEOF_GROUP = 32;
    /** {@code <grp.h>} offsetof(struct group, gr_gid). */
    public static final int GR_GID = 16;
    /** {@code <pwd.h>} sizeof(struct passwd) on LP64 Linux. */
    public static final int SIZEOF_PASSWD = 48;
    /** {@code <pwd.h>} offsetof(struct passwd, pw_name). */
    public static final int PW_NAME = 0;
    /** {@code <pwd.h>} offsetof(struct passwd, pw_gid). */
    public static final int PW_GID = 20;

    /** The first buffer for a lookup's strings; doubled on ERANGE up to {@link #MAX_BUFFER}. */
    static final int FIRST_BUFFER = 4096;
    /** The largest buffer tried (a group with very many members lists them all). */
    static final int MAX_BUFFER = 16 * 1024 * 1024;

    /** More groups than Linux lets a process have (NGROUPS_MAX, 65536) several times over. */
    static final int MAX_GROUPS = 1 << 20;

    /**
     * A user as NSS knows it.
     *
     * @param name its name.
     * @param gid  its primary gid.
     */
    public record User(String name, int gid)
    {
    }

    private Nss()
    {
    }

    /**
     * A group's gid, by name.
     *
     * @param group the group name.
     * @return the gid, or empty when there is no such group.
     * @throws NssException if the lookup failed.
     */
    public static OptionalInt groupId(final String group) throws NssException
    {
        final LibC libc = Natives.libc();
        final jnr.ffi.Runtime runtime = Natives.runtime();
        final Pointer grp = runtime.getMemoryManager().allocateDirect(SIZEOF_GROUP, true);
        for (int size = FIRST_BUFFER; ; size *= 2)
        {
            final Pointer buf = runtime.getMemoryManager().allocateDirect(size, false);
            final PointerByReference result = new PointerByReference();
            final int rc = libc.getgrnam_r(group, grp, buf, size, result);
            if (rc == LibC.ERANGE && size < MAX_BUFFER)
            {
                continue;
            }
            check("getgrnam_r(" + group + ")", rc);
            return result.getValue() == null ? OptionalInt.empty() : OptionalInt.of(grp.getInt(GR_GID));
        }
    }

    /**
     * A user, by uid.
     *
     * @param uid the uid.
     * @return the user, or empty when NSS knows no user with it.
     * @throws NssException if the lookup failed.
     */
    public static Optional<User> user(final int uid) throws NssException
    {
        final LibC libc = Natives.libc();
        final jnr.ffi.Runtime runtime = Natives.runtime();
        final Pointer pwd = runtime.getMemoryManager().allocateDirect(SIZEOF_PASSWD, true);
        for (int size = FIRST_BUFFER; ; size *= 2)
        {
            final Pointer buf = runtime.getMemoryManager().allocateDirect(size, false);
            final PointerByReference result = new PointerByReference();
            final int rc = libc.getpwuid_r(uid, pwd, buf, size, result);
            if (rc == LibC.ERANGE && size < MAX_BUFFER)
            {
                continue;
            }
            check("getpwuid_r(" + Integer.toUnsignedString(uid) + ")", rc);
            if (result.getValue() == null)
            {
                return Optional.empty();
            }
            return Optional.of(new User(pwd.getPointer(PW_NAME).getString(0), pwd.getInt(PW_GID)));
        }
    }

    /**
     * Every group a user is in: its primary group and every group listing it, from every NSS source.
     *
     * @param user the user.
     * @return the gids, sorted.
     */
    public static int[] groups(final User user)
    {
        final LibC libc = Natives.libc();
        final jnr.ffi.Runtime runtime = Natives.runtime();
        int room = 64;
        while (true)
        {
            final Pointer groups = runtime.getMemoryManager().allocateDirect(room * 4, true);
            final IntByReference n = new IntByReference(room);
            final int count = libc.getgrouplist(user.name(), user.gid(), groups, n);
            if (count >= 0)
            {
                final int[] gids = new int[count];
                groups.get(0, gids, 0, count);
                Arrays.sort(gids);
                return gids;
            }
            // not room for them all: n now says how many there are
            room = Math.max(room * 2, n.getValue());
            if (room > MAX_GROUPS)
            {
                throw new IllegalStateException("getgrouplist(" + user.name() + ") asks room for " + room
                    + " groups");
            }
        }
    }

    /**
     * Turns a {@code *_r} lookup's return value into an exception at the boundary.
     *
     * @param call what was called.
     * @param rc   its return value: 0, or an error number.
     * @throws NssException unless {@code rc} is 0, or one of the values POSIX allows for "not found"
     *                      (ENOENT, ESRCH, EBADF, EPERM: glibc returns 0 with a NULL result, other libcs these).
     */
    static void check(final String call, final int rc) throws NssException
    {
        if (rc == 0 || rc == LibC.ENOENT || rc == LibC.ESRCH || rc == LibC.EBADF || rc == LibC.EPERM)
        {
            return;
        }
        throw new NssException(call, rc);
    }
}
