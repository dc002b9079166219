package dev.egressd.agent.natives;

import jnr.ffi.Pointer;
import jnr.ffi.annotations.IgnoreError;
import jnr.ffi.annotations.In;
import jnr.ffi.annotations.Out;
import jnr.ffi.byref.IntByReference;
import jnr.ffi.byref.PointerByReference;

/**
 * The libc calls egressd makes, C names kept (socket(2), bind(2), sendto(2), recvfrom(2), setns(2), ...).
 * Loaded once by {@link Natives#libc()}; errno is read with {@code Natives.errno()} right after a call.
 */
public interface LibC
{
    /** {@code <sys/socket.h>} AF_NETLINK. */
    int AF_NETLINK = 16;
    /** {@code <sys/socket.h>} AF_INET. */
    int AF_INET = 2;
    /** {@code <sys/socket.h>} AF_INET6. */
    int AF_INET6 = 10;
    /** {@code <sys/socket.h>} SOCK_RAW. */
    int SOCK_RAW = 3;
    /** {@code <sys/socket.h>} SOCK_CLOEXEC. */
    int SOCK_CLOEXEC = 02000000;
    /** {@code <sys/socket.h>} SOL_SOCKET. */
    int SOL_SOCKET = 1;
    /** {@code <asm-generic/socket.h>} SO_SNDBUF. */
    int SO_SNDBUF = 7;
    /** {@code <asm-generic/socket.h>} SO_SNDBUFFORCE: beyond wmem_max, needs CAP_NET_ADMIN. */
    int SO_SNDBUFFORCE = 32;
    /** {@code <asm-generic/socket.h>} SO_RCVBUF. */
    int SO_RCVBUF = 8;
    /** {@code <asm-generic/socket.h>} SO_RCVBUFFORCE: beyond rmem_max, needs CAP_NET_ADMIN. */
    int SO_RCVBUFFORCE = 33;
    /** {@code <asm-generic/socket.h>} SO_RCVTIMEO (struct timeval). */
    int SO_RCVTIMEO = 20;
    /** {@code <linux/netlink.h>} SOL_NETLINK. */
    int SOL_NETLINK = 270;
    /** {@code <linux/netlink.h>} NETLINK_ADD_MEMBERSHIP. */
    int NETLINK_ADD_MEMBERSHIP = 1;
    /** {@code <linux/netlink.h>} NETLINK_ROUTE. */
    int NETLINK_ROUTE = 0;
    /** {@code <linux/netlink.h>} NETLINK_NETFILTER. */
    int NETLINK_NETFILTER = 12;
    /** {@code <sched.h>} CLONE_NEWNET. */
    int CLONE_NEWNET = 0x40000000;
    /** {@code <fcntl.h>} O_RDONLY. */
    int O_RDONLY = 0;
    /** {@code <fcntl.h>} O_CLOEXEC. */
    int O_CLOEXEC = 02000000;
    /** {@code <sys/socket.h>} MSG_DONTWAIT. */
    int MSG_DONTWAIT = 0x40;

    /** {@code <errno.h>} EINTR. */
    int EINTR = 4;
    /** {@code <errno.h>} EAGAIN. */
    int EAGAIN = 11;
    /** {@code <errno.h>} ENOENT. */
    int ENOENT = 2;
    /** {@code <errno.h>} EEXIST. */
    int EEXIST = 17;
    /** {@code <errno.h>} EPERM. */
    int EPERM = 1;
    /** {@code <errno.h>} ENOBUFS. */
    int ENOBUFS = 105;
    /** {@code <errno.h>} EADDRNOTAVAIL. */
    int EADDRNOTAVAIL = 99;

    int socket(int domain, int type, int protocol);

    int bind(int sockfd, @In Pointer addr, int addrlen);

    long sendto(int sockfd, @In Pointer buf, long len, int flags, @In Pointer destAddr, int addrlen);

    long recvfrom(int sockfd, @Out Pointer buf, long len, int flags, @Out Pointer srcAddr, @Out IntByReference addrlen);

    int setsockopt(int sockfd, int level, int optname, @In Pointer optval, int optlen);

    int getsockname(int sockfd, @Out Pointer addr, @In @Out IntByReference addrlen);

    int close(int fd);

    int open(String pathname, int flags);

    int setns(int fd, int nstype);

    @IgnoreError
    String strerror(int errnum);

    @IgnoreError
    int getpid();

    @IgnoreError
    int geteuid();

    /**
     * {@code <unistd.h>} _exit: ends the process at once, without the JVM's exit sequence (the daemon's stop, once
     * everything it holds is on disk: see {@code Daemon.stop}).
     *
     * @param status the exit status.
     */
    @IgnoreError
    void _exit(int status);

    /** {@code <time.h>} CLOCK_BOOTTIME: the time since boot, suspend included. */
    int CLOCK_BOOTTIME = 7;

    /**
     * {@code <time.h>} clock_gettime.
     *
     * @param clockId the clock, e.g. {@link #CLOCK_BOOTTIME}.
     * @param timespec out: {@code struct timespec} as two longs (seconds, nanoseconds; x86-64 and arm64).
     * @return 0, or -1 with errno set.
     */
    int clock_gettime(int clockId, @Out long[] timespec);

    /** {@code <sys/syscall.h>} gettid is not in glibc 2.36's headers for every arch: use syscall(SYS_gettid). */
    @IgnoreError
    long syscall(long number);

    // ---- appended for netlink (dev.egressd.agent.netlink) ----------------------------------------

    /** {@code <sys/socket.h>} MSG_TRUNC: in msghdr.msg_flags, the datagram was longer than the buffer. */
    int MSG_TRUNC = 0x20;
    /** {@code <errno.h>} ESRCH. */
    int ESRCH = 3;
    /** {@code <errno.h>} ENODEV. */
    int ENODEV = 19;
    /** {@code <errno.h>} EINVAL. */
    int EINVAL = 22;
    /** {@code <errno.h>} ETIMEDOUT. */
    int ETIMEDOUT = 110;
    /** {@code <errno.h>} EBADF. */
    int EBADF = 9;

    /**
     * recvmsg(2): used instead of recvfrom so the sender address and MSG_TRUNC come back through
     * preallocated memory (a struct msghdr the caller keeps), with no per-call allocation.
     *
     * @param sockfd the socket.
     * @param msg    a struct msghdr in native memory.
     * @param flags  MSG_* flags.
     * @return bytes received, or -1 with errno.
     */
    long recvmsg(int sockfd, @In @Out Pointer msg, int flags);

    /**
     * getsockopt(2).
     *
     * @param sockfd  the socket.
     * @param level   e.g. SOL_SOCKET.
     * @param optname e.g. SO_RCVBUF.
     * @param optval  where the value goes.
     * @param optlen  in: room; out: the value's size.
     * @return 0, or -1 with errno.
     */
    int getsockopt(int sockfd, int level, int optname, @Out Pointer optval, @In @Out IntByReference optlen);

    // ---- appended for group membership through NSS (Nss) -----------------------------------------

    /** {@code <errno.h>} ERANGE: the buffer given to a {@code *_r} lookup is too small. */
    int ERANGE = 34;

    /**
     * getgrnam_r(3): a group by name, through NSS (files, sss, ldap: whatever nsswitch.conf says).
     *
     * @param name   the group name.
     * @param grp    a struct group to fill.
     * @param buf    room for the strings it points to.
     * @param buflen the room's size.
     * @param result set to {@code grp} when found, to NULL when not.
     * @return 0, or an error number (ERANGE: a larger buffer is needed).
     */
    int getgrnam_r(String name, @Out Pointer grp, @Out Pointer buf, long buflen, @Out PointerByReference result);

    /**
     * getpwuid_r(3): a user by uid, through NSS.
     *
     * @param uid    the uid.
     * @param pwd    a struct passwd to fill.
     * @param buf    room for the strings it points to.
     * @param buflen the room's size.
     * @param result set to {@code pwd} when found, to NULL when not.
     * @return 0, or an error number.
     */
    int getpwuid_r(int uid, @Out Pointer pwd, @Out Pointer buf, long buflen, @Out PointerByReference result);

    /**
     * getgrouplist(3): every group a user is in, through NSS, its primary group included.
     *
     * @param user    the user name.
     * @param group   the user's primary gid (included in the list).
     * @param groups  room for {@code ngroups} gids.
     * @param ngroups in: the room; out: how many groups the user has.
     * @return the number of groups, or -1 when there was not room for them all ({@code ngroups} says how many).
     */
    @IgnoreError
    int getgrouplist(String user, int group, @Out Pointer groups, @In @Out IntByReference ngroups);

    // ---- appended for the conntrack event socket (dev.egressd.agent.conntrack.ctnetlink) -----------

    /** {@code <asm-generic/socket.h>} SO_ATTACH_FILTER: a classic BPF program (struct sock_fprog) on a socket. */
    int SO_ATTACH_FILTER = 26;
    /** {@code <bits/socket.h>} MSG_WAITFORONE (recvmmsg): wait for the first datagram only, then take what is queued. */
    int MSG_WAITFORONE = 0x10000;

    /**
     * recvmmsg(2): several datagrams in one call, each into its own struct msghdr of a struct mmsghdr array.
     *
     * @param sockfd  the socket.
     * @param msgvec  struct mmsghdr[vlen] in native memory.
     * @param vlen    how many.
     * @param flags   MSG_* flags, e.g. {@link #MSG_WAITFORONE}.
     * @param timeout a struct timespec, or null (SO_RCVTIMEO still bounds the wait for the first datagram).
     * @return datagrams received, or -1 with errno.
     */
    int recvmmsg(int sockfd, @In @Out Pointer msgvec, int vlen, int flags, @In Pointer timeout);
}
