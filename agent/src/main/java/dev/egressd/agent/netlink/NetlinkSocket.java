package dev.egressd.agent.netlink;

import static dev.egressd.agent.netlink.NetlinkConstants.NLMSG_DONE;
import static dev.egressd.agent.netlink.NetlinkConstants.NLMSG_ERROR;
import static dev.egressd.agent.netlink.NetlinkConstants.NLMSG_HDRLEN;
import static dev.egressd.agent.netlink.NetlinkConstants.NLMSG_NOOP;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_ACK;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_DUMP_INTR;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_REQUEST;
import static dev.egressd.agent.netlink.NetlinkConstants.align;

import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.natives.NativeException;
import dev.egressd.agent.natives.Natives;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ClosedChannelException;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.byref.IntByReference;

/**
 * A netlink socket (socket(AF_NETLINK, SOCK_RAW, protocol)) with a request/ack loop and a receive loop
 * for multicast events.
 *
 * <p>Implementation notes.
 * <ul>
 * <li>Messages are built in and read from two direct buffers allocated once per socket; receiving goes
 *     through recvmsg(2) with a struct msghdr kept in a third direct buffer, so the receive path
 *     allocates nothing and still learns the sender (only the kernel, port id 0, is believed) and
 *     MSG_TRUNC.</li>
 * <li>A request carries NLM_F_REQUEST|NLM_F_ACK and a fresh sequence number; {@link #execute} reads
 *     until the ack (NLMSG_ERROR with error 0), an error, or NLMSG_DONE for dumps, skipping anything
 *     with another sequence number (a late reply to an earlier, abandoned request).</li>
 * <li>NETLINK_CAP_ACK keeps acks small and NETLINK_EXT_ACK asks the kernel for an error text; both are
 *     best effort (older kernels lack them).</li>
 * <li>EINTR is retried around every blocking call, as jnr-enxio does.</li>
 * </ul>
 *
 * <p>Not thread-safe, and it must be created and used on a thread in the intended network
 * namespace: the socket belongs to the namespace of the thread that created it.
 */
public final class NetlinkSocket implements AutoCloseable
{
    /** {@link #receive} result when the kernel dropped messages for this socket (ENOBUFS). */
    public static final int OVERRUN = -1;
    /** {@link #receiveFailed}'s answer for a receive interrupted by a signal: try it again. */
    private static final int INTERRUPTED = -2;

    /** Default receive buffer: big enough for the largest dump skb the kernel builds (32 KiB). */
    private static final int RECEIVE_BUFFER = 64 * 1024;
    private static final int SEND_BUFFER = 8 * 1024;

    // struct msghdr and struct iovec on LP64 (x86_64, aarch64), <sys/socket.h> and <bits/uio.h>.
    private static final int MSG_NAME = 0;
    private static final int MSG_NAMELEN = 8;
    private static final int MSG_IOV = 16;
    private static final int MSG_IOVLEN = 24;
    private static final int MSG_FLAGS = 48;
    private static final int IOV = 64;
    private static final int SOCKADDR = 80;
    private static final int META_SIZE = 96;

    /** Handles one received message; the bytes are valid only during the call. */
    @FunctionalInterface
    public interface MessageHandler
    {
        /**
         * One message.
         *
         * @param buffer the receive buffer (native order); do not keep it.
         * @param offset the message's offset (its nlmsghdr).
         * @param length nlmsg_len.
         * @throws IOException to stop and propagate.
         */
        void onMessage(ByteBuffer buffer, int offset, int length) throws IOException;
    }

    private final LibC libc;
    private final int protocol;
    private ByteBuffer sendBuffer;
    private Pointer sendPointer;
    private NetlinkWriter writer;
    private final ByteBuffer receiveBuffer;
    private final ByteBuffer meta;
    private final Pointer metaPointer;
    private int fd;
    private int seq;
    private int portId;

    private NetlinkSocket(final LibC libc, final int fd, final int protocol)
    {
        this.libc = libc;
        this.fd = fd;
        this.protocol = protocol;
        final Runtime runtime = Runtime.getRuntime(libc);
        if (runtime.addressSize() != 8)
        {
            throw new IllegalStateException("struct msghdr layout here is LP64 only");
        }
        sendBuffer = ByteBuffer.allocateDirect(SEND_BUFFER).order(ByteOrder.nativeOrder());
        sendPointer = Pointer.wrap(runtime, sendBuffer);
        writer = new NetlinkWriter(sendBuffer);
        receiveBuffer = ByteBuffer.allocateDirect(RECEIVE_BUFFER).order(ByteOrder.nativeOrder());
        final Pointer receivePointer = Pointer.wrap(runtime, receiveBuffer);
        meta = ByteBuffer.allocateDirect(META_SIZE).order(ByteOrder.nativeOrder());
        metaPointer = Pointer.wrap(runtime, meta);
        final long base = metaPointer.address();
        meta.putLong(MSG_NAME, base + SOCKADDR);
        meta.putLong(MSG_IOV, base + IOV);
        meta.putLong(MSG_IOVLEN, 1);
        meta.putLong(IOV, receivePointer.address());
        meta.putLong(IOV + 8, RECEIVE_BUFFER);
        // Wall-clock start, so a restarted daemon does not reuse the previous run's numbers.
        seq = (int)(System.currentTimeMillis() / 1000) & 0x3FFFFFFF;
    }

    /**
     * Opens a netlink socket in the calling thread's network namespace.
     *
     * @param protocol e.g. {@link LibC#NETLINK_ROUTE} or {@link LibC#NETLINK_NETFILTER}.
     * @return the socket, not yet bound.
     * @throws NativeException if socket(2) fails.
     */
    public static NetlinkSocket open(final int protocol) throws NativeException
    {
        final LibC libc = Natives.libc();
        final int fd = libc.socket(LibC.AF_NETLINK, LibC.SOCK_RAW | LibC.SOCK_CLOEXEC, protocol);
        if (fd < 0)
        {
            throw new NativeException("socket(AF_NETLINK, " + protocol + ")", Natives.errno());
        }
        final NetlinkSocket socket = new NetlinkSocket(libc, fd, protocol);
        // Best effort: without them acks echo the whole request and errors carry no text.
        socket.setIntOption(LibC.SOL_NETLINK, NetlinkConstants.NETLINK_CAP_ACK, 1);
        socket.setIntOption(LibC.SOL_NETLINK, NetlinkConstants.NETLINK_EXT_ACK, 1);
        return socket;
    }

    /**
     * Binds, letting the kernel choose the port id, and joins the groups in a bitmask
     * (bit {@code g - 1} for group {@code g}, groups 1..32).
     *
     * @param groups nl_groups; 0 for a request-only socket.
     * @return this.
     * @throws NativeException if bind(2) or getsockname(2) fails.
     */
    public NetlinkSocket bind(final int groups) throws NativeException
    {
        ensureOpen();
        final ByteBuffer addr = ByteBuffer.allocateDirect(NetlinkConstants.SOCKADDR_NL_SIZE).order(ByteOrder.nativeOrder());
        addr.putShort(0, (short)LibC.AF_NETLINK);
        addr.putInt(4, 0);
        addr.putInt(8, groups);
        final Pointer p = Pointer.wrap(Runtime.getRuntime(libc), addr);
        if (libc.bind(fd, p, NetlinkConstants.SOCKADDR_NL_SIZE) != 0)
        {
            throw new NativeException("bind(AF_NETLINK, groups=0x" + Integer.toHexString(groups) + ")", Natives.errno());
        }
        final IntByReference len = new IntByReference(NetlinkConstants.SOCKADDR_NL_SIZE);
        if (libc.getsockname(fd, p, len) != 0)
        {
            throw new NativeException("getsockname(AF_NETLINK)", Natives.errno());
        }
        portId = addr.getInt(4);
        return this;
    }

    /**
     * Joins one multicast group (any number, unlike the 32-bit mask of {@link #bind(int)}).
     *
     * @param group the group, e.g. {@link NetlinkConstants#NFNLGRP_CONNTRACK_NEW}.
     * @throws NativeException if setsockopt fails (EPERM without CAP_NET_ADMIN for netfilter groups).
     */
    public void joinGroup(final int group) throws NativeException
    {
        if (!setIntOption(LibC.SOL_NETLINK, NetlinkConstants.NETLINK_ADD_MEMBERSHIP, group))
        {
            throw new NativeException("setsockopt(NETLINK_ADD_MEMBERSHIP, " + group + ")", Natives.errno());
        }
    }

    /**
     * Sets the kernel receive buffer: SO_RCVBUFFORCE (beyond net.core.rmem_max, needs CAP_NET_ADMIN),
     * falling back to SO_RCVBUF (capped at rmem_max). A big buffer is what keeps conntrack event
     * bursts from overrunning the socket.
     *
     * @param bytes the requested size; the kernel doubles it for bookkeeping.
     * @throws NativeException if both options fail.
     */
    public void receiveBufferSize(final int bytes) throws NativeException
    {
        if (!setIntOption(LibC.SOL_SOCKET, LibC.SO_RCVBUFFORCE, bytes)
            && !setIntOption(LibC.SOL_SOCKET, LibC.SO_RCVBUF, bytes))
        {
            throw new NativeException("setsockopt(SO_RCVBUF, " + bytes + ")", Natives.errno());
        }
    }

    /**
     * The kernel receive buffer size as SO_RCVBUF reports it (twice what was set).
     *
     * @return bytes.
     * @throws NativeException if getsockopt fails.
     */
    public int receiveBufferSize() throws NativeException
    {
        ensureOpen();
        final ByteBuffer value = ByteBuffer.allocateDirect(4).order(ByteOrder.nativeOrder());
        final IntByReference len = new IntByReference(4);
        if (libc.getsockopt(fd, LibC.SOL_SOCKET, LibC.SO_RCVBUF, Pointer.wrap(Runtime.getRuntime(libc), value), len) != 0)
        {
            throw new NativeException("getsockopt(SO_RCVBUF)", Natives.errno());
        }
        return value.getInt(0);
    }

    /**
     * Makes receives give up after a while, so an event loop can check for shutdown.
     *
     * @param millis the timeout; 0 blocks for ever.
     * @throws NativeException if setsockopt fails.
     */
    public void receiveTimeout(final long millis) throws NativeException
    {
        ensureOpen();
        final ByteBuffer tv = ByteBuffer.allocateDirect(16).order(ByteOrder.nativeOrder());
        tv.putLong(0, millis / 1000);                // tv_sec
        tv.putLong(8, (millis % 1000) * 1000);       // tv_usec
        if (libc.setsockopt(fd, LibC.SOL_SOCKET, LibC.SO_RCVTIMEO, Pointer.wrap(Runtime.getRuntime(libc), tv), 16) != 0)
        {
            throw new NativeException("setsockopt(SO_RCVTIMEO)", Natives.errno());
        }
    }

    /**
     * Starts a request with NLM_F_REQUEST|NLM_F_ACK, the given flags and the next sequence number;
     * fill in the body and send it with {@link #execute}.
     *
     * @param type  nlmsg_type.
     * @param flags further nlmsg_flags, e.g. NLM_F_CREATE|NLM_F_REPLACE or NLM_F_DUMP.
     * @return the writer, positioned after the nlmsghdr.
     */
    public NetlinkWriter request(final int type, final int flags)
    {
        if (++seq == 0)
        {
            seq = 1; // 0 is what multicast events carry
        }
        return writer.begin(type, NLM_F_REQUEST | NLM_F_ACK | flags, seq);
    }

    /**
     * Sends the request built since {@link #request} and reads the replies: each data message goes to
     * the handler, then the ack (or NLMSG_DONE for a dump) ends the call.
     *
     * @param operation names the request in errors, e.g. {@code RTM_NEWADDR 203.0.113.10/32 dev up0}.
     * @param handler   receives the reply messages; may be null when none are expected.
     * @throws NetlinkException with the kernel's errno if it refused the request, or with EINTR if a
     *                          dump was interrupted by a concurrent change (NLM_F_DUMP_INTR): retry.
     * @throws IOException      if the socket fails.
     */
    public void execute(final String operation, final MessageHandler handler) throws IOException
    {
        final int length = writer.finish();
        final int mySeq = seq;
        send(operation, length);
        boolean interrupted = false;
        while (true)
        {
            final int n = receiveDatagram();
            if (n == 0)
            {
                throw new NetlinkException(operation + ": no reply from the kernel", LibC.ETIMEDOUT, (Throwable)null);
            }
            if (n == OVERRUN)
            {
                throw new NetlinkException(operation, LibC.ENOBUFS, (String)null);
            }
            final ByteBuffer b = receiveBuffer;
            for (int off = 0; off + NLMSG_HDRLEN <= n; )
            {
                final int len = NetlinkMessages.length(b, off);
                if (len < NLMSG_HDRLEN || off + len > n)
                {
                    break;
                }
                if (NetlinkMessages.seq(b, off) == mySeq)
                {
                    final int type = NetlinkMessages.type(b, off);
                    interrupted |= (NetlinkMessages.flags(b, off) & NLM_F_DUMP_INTR) != 0;
                    if (type == NLMSG_ERROR)
                    {
                        final int error = b.getInt(off + NLMSG_HDRLEN);
                        if (error != 0)
                        {
                            throw new NetlinkException(operation, -error, extackMessage(b, off, len));
                        }
                        return;
                    }
                    if (type == NLMSG_DONE)
                    {
                        final int error = len >= NLMSG_HDRLEN + 4 ? b.getInt(off + NLMSG_HDRLEN) : 0;
                        if (error < 0)
                        {
                            throw new NetlinkException(operation, -error, extackMessage(b, off, len));
                        }
                        if (interrupted)
                        {
                            throw new NetlinkException(operation + ": dump interrupted by a concurrent change",
                                LibC.EINTR, (Throwable)null);
                        }
                        return;
                    }
                    if (type != NLMSG_NOOP && handler != null)
                    {
                        handler.onMessage(b, off, len);
                    }
                }
                off += align(len);
            }
        }
    }

    /** Handles the replies to a batch ({@link #executeBatch}). */
    @FunctionalInterface
    public interface BatchReplyHandler
    {
        /**
         * One message of the batch was refused.
         *
         * @param seq           the refused message's nlmsg_seq.
         * @param errno         the positive errno.
         * @param kernelMessage the extended-ack text, or null.
         */
        void onError(int seq, int errno, String kernelMessage);
    }

    /**
     * Starts a batch of messages sent as one datagram (an nfnetlink batch: the kernel applies it as one
     * transaction). Add each message with {@link #appendMessage} and end it with
     * {@link NetlinkWriter#finish()}; then {@link #executeBatch}.
     *
     * @return the writer, empty.
     */
    public NetlinkWriter beginBatch()
    {
        return writer.clear();
    }

    /**
     * Appends a message to the batch with NLM_F_REQUEST, the given flags and the next sequence number.
     *
     * @param type  nlmsg_type.
     * @param flags further nlmsg_flags (NLM_F_ACK where a reply is wanted even on success).
     * @return the message's sequence number.
     */
    public int appendMessage(final int type, final int flags)
    {
        if (++seq == 0)
        {
            seq = 1;
        }
        writer.append(type, NLM_F_REQUEST | flags, seq);
        return seq;
    }

    /**
     * Makes room for a batch of at least {@code bytes}: a bigger send buffer here, and the socket's
     * SO_SNDBUF raised to match (SO_SNDBUFFORCE beyond wmem_max), because the kernel refuses a datagram
     * larger than the socket's send buffer (EMSGSIZE) and an nfnetlink batch must be one datagram.
     * Whatever the batch writer held is lost: encode again.
     *
     * @param bytes the size needed.
     * @return the (new) writer, empty.
     * @throws NativeException if neither send buffer option can be set.
     */
    public NetlinkWriter ensureSendCapacity(final int bytes) throws NativeException
    {
        ensureOpen();
        if (sendBuffer.capacity() < bytes)
        {
            final int size = Integer.highestOneBit(bytes - 1) << 1;
            sendBuffer = ByteBuffer.allocateDirect(size).order(ByteOrder.nativeOrder());
            sendPointer = Pointer.wrap(Runtime.getRuntime(libc), sendBuffer);
            writer = new NetlinkWriter(sendBuffer);
            if (!setIntOption(LibC.SOL_SOCKET, LibC.SO_SNDBUFFORCE, size)
                && !setIntOption(LibC.SOL_SOCKET, LibC.SO_SNDBUF, size))
            {
                throw new NativeException("setsockopt(SO_SNDBUF, " + size + ")", Natives.errno());
            }
        }
        return writer.clear();
    }

    /**
     * The capacity of the send buffer, for a caller sizing its batches.
     *
     * @return bytes.
     */
    public int sendCapacity()
    {
        return sendBuffer.capacity();
    }

    /**
     * Sends the batch built since {@link #beginBatch} and reads the replies up to the one for
     * {@code lastSeq}, which must be the last message that carries NLM_F_ACK (the kernel sends an error
     * for every refused message whether or not it asked for an ack, and sends the replies in message
     * order, so the reply to that message comes last). An error for {@code firstSeq} (the batch's
     * first message) also ends it: the kernel refused the batch as a whole.
     *
     * @param operation names the batch in errors.
     * @param firstSeq  the first message's sequence number.
     * @param lastSeq   the sequence number of the last message with NLM_F_ACK.
     * @param handler   told of each refused message.
     * @throws NetlinkException with ENOBUFS if replies were lost (the receive buffer overflowed: the
     *                          kernel sent more than the one ack, so some message was refused), or
     *                          ETIMEDOUT if the kernel did not answer.
     * @throws IOException      if the socket fails.
     */
    public void executeBatch(final String operation, final int firstSeq, final int lastSeq,
                             final BatchReplyHandler handler) throws IOException
    {
        final int length = writer.buffer().limit();
        send(operation, length);
        final int span = lastSeq - firstSeq;
        while (true)
        {
            final int n = receiveDatagram();
            if (n == 0)
            {
                throw new NetlinkException(operation + ": no reply from the kernel", LibC.ETIMEDOUT, (Throwable)null);
            }
            if (n == OVERRUN)
            {
                throw new NetlinkException(operation + ": replies lost", LibC.ENOBUFS, (Throwable)null);
            }
            final ByteBuffer b = receiveBuffer;
            for (int off = 0; off + NLMSG_HDRLEN <= n; )
            {
                final int len = NetlinkMessages.length(b, off);
                if (len < NLMSG_HDRLEN || off + len > n)
                {
                    break;
                }
                final int s = NetlinkMessages.seq(b, off);
                if (Integer.compareUnsigned(s - firstSeq, span) <= 0 && NetlinkMessages.type(b, off) == NLMSG_ERROR)
                {
                    final int error = b.getInt(off + NLMSG_HDRLEN);
                    if (error != 0)
                    {
                        handler.onError(s, -error, extackMessage(b, off, len));
                    }
                    if (s == lastSeq || s == firstSeq && error != 0)
                    {
                        return;
                    }
                }
                off += align(len);
            }
        }
    }

    /**
     * Receives one datagram (blocking, up to the receive timeout) and hands each message in it to the
     * handler: the event path, allocation-free.
     *
     * @param handler receives each message.
     * @return how many messages, 0 on timeout, {@link #OVERRUN} if the kernel dropped messages.
     * @throws IOException if the socket fails or the handler throws.
     */
    public int receive(final MessageHandler handler) throws IOException
    {
        final int n = receiveDatagram();
        if (n <= 0)
        {
            return n;
        }
        return dispatch(receiveBuffer, 0, n, handler);
    }

    /**
     * Hands each whole message of one datagram (bytes {@code start} to {@code end} of the buffer) to the handler,
     * skipping NOOP and DONE; a truncated message ends the walk.
     *
     * @return how many messages the handler got.
     */
    private static int dispatch(final ByteBuffer b, final int start, final int end, final MessageHandler handler)
        throws IOException
    {
        int count = 0;
        for (int off = start; off + NLMSG_HDRLEN <= end; )
        {
            final int len = NetlinkMessages.length(b, off);
            if (len < NLMSG_HDRLEN || off + len > end)
            {
                break;
            }
            final int type = NetlinkMessages.type(b, off);
            if (type != NLMSG_NOOP && type != NLMSG_DONE)
            {
                handler.onMessage(b, off, len);
                count++;
            }
            off += align(len);
        }
        return count;
    }

    /**
     * The port id the kernel gave this socket at {@link #bind}.
     *
     * @return nl_pid, 0 before bind.
     */
    public int portId()
    {
        return portId;
    }

    /**
     * The netlink protocol.
     *
     * @return e.g. NETLINK_ROUTE.
     */
    public int protocol()
    {
        return protocol;
    }

    @Override
    public void close()
    {
        if (fd >= 0)
        {
            // No EINTR retry for close(2): on Linux the descriptor is gone even when it reports EINTR.
            libc.close(fd);
            fd = -1;
        }
    }

    private void send(final String operation, final int length) throws IOException
    {
        ensureOpen();
        long rc;
        do
        {
            rc = libc.sendto(fd, sendPointer, length, 0, null, 0);
        }
        while (rc < 0 && Natives.errno() == LibC.EINTR);
        if (rc < 0)
        {
            throw new NativeException("sendto(" + operation + ")", Natives.errno());
        }
    }

    /**
     * What a failed receive's errno means to both receives: {@link #INTERRUPTED} (EINTR), 0 (EAGAIN: the timeout,
     * nothing queued), {@link #OVERRUN} (ENOBUFS: the kernel dropped messages); anything else is thrown.
     */
    private static int receiveFailed(final String call) throws NativeException
    {
        final int errno = Natives.errno();
        if (errno == LibC.EINTR)
        {
            return INTERRUPTED;
        }
        if (errno == LibC.EAGAIN)
        {
            return 0;
        }
        if (errno == LibC.ENOBUFS)
        {
            return OVERRUN;
        }
        throw new NativeException(call, errno);
    }

    /** One datagram from the kernel into receiveBuffer: its length, 0 on timeout, OVERRUN on ENOBUFS. */
    private int receiveDatagram() throws IOException
    {
        ensureOpen();
        final ByteBuffer m = meta;
        while (true)
        {
            m.putInt(MSG_NAMELEN, NetlinkConstants.SOCKADDR_NL_SIZE);
            m.putInt(MSG_FLAGS, 0);
            final long rc = libc.recvmsg(fd, metaPointer, 0);
            if (rc < 0)
            {
                final int failed = receiveFailed("recvmsg(AF_NETLINK)");
                if (failed == INTERRUPTED)
                {
                    continue;
                }
                return failed;
            }
            if ((m.getInt(MSG_FLAGS) & LibC.MSG_TRUNC) != 0)
            {
                throw new NativeException("recvmsg(AF_NETLINK): datagram larger than " + RECEIVE_BUFFER + " bytes",
                    LibC.ENOBUFS);
            }
            if (m.getInt(SOCKADDR + 4) != 0)
            {
                continue; // not from the kernel: another process unicasting to our port id; ignore it
            }
            return (int)rc;
        }
    }

    private boolean setIntOption(final int level, final int name, final int value) throws NativeException
    {
        ensureOpen();
        final ByteBuffer v = ByteBuffer.allocateDirect(4).order(ByteOrder.nativeOrder());
        v.putInt(0, value);
        return libc.setsockopt(fd, level, name, Pointer.wrap(Runtime.getRuntime(libc), v), 4) == 0;
    }

    private void ensureOpen() throws NativeException
    {
        if (fd < 0)
        {
            final NativeException e = new NativeException("netlink socket", LibC.EBADF);
            e.initCause(new ClosedChannelException());
            throw e;
        }
    }

    // ---- socket filter and batched reads (the conntrack event socket) ------------------------------

    /** struct mmsghdr on LP64: a struct msghdr (56 bytes), then unsigned int msg_len, padded to 64. */
    private static final int MMSG_SIZE = 64;
    private static final int MMSG_LEN = 56;
    /** Per datagram of a batch: its sockaddr_nl and its iovec, after the mmsghdr array. */
    private static final int BATCH_SLOT_META = 32;

    private ByteBuffer batchBuffer;
    private ByteBuffer batchMeta;
    private Pointer batchMetaPointer;
    private int batchSlots;
    private int batchSlotSize;

    /**
     * Attaches a classic BPF socket filter (SO_ATTACH_FILTER), replacing any attached before; datagrams it drops are
     * never queued on the socket. The kernel copies the program: the buffer may be dropped afterwards.
     *
     * @param program      {@code struct sock_filter[instructions]} in native memory (a direct buffer).
     * @param instructions how many.
     * @throws NativeException if the kernel refuses the program (EINVAL: a malformed program).
     */
    public void attachFilter(final ByteBuffer program, final int instructions) throws NativeException
    {
        ensureOpen();
        final Runtime runtime = Runtime.getRuntime(libc);
        // struct sock_fprog: unsigned short len; (padding) struct sock_filter *filter;
        final ByteBuffer fprog = ByteBuffer.allocateDirect(16).order(ByteOrder.nativeOrder());
        fprog.putShort(0, (short)instructions);
        fprog.putLong(8, Pointer.wrap(runtime, program).address());
        if (libc.setsockopt(fd, LibC.SOL_SOCKET, LibC.SO_ATTACH_FILTER, Pointer.wrap(runtime, fprog), 16) != 0)
        {
            throw new NativeException("setsockopt(SO_ATTACH_FILTER, " + instructions + " instructions)", Natives.errno());
        }
    }

    /**
     * Reads up to {@code slots} datagrams in one recvmmsg call (waiting up to the receive timeout for the first,
     * then taking what is queued) and hands each message to the handler; for sockets that receive many small
     * datagrams, such as multicast events, where one recvmsg returns one datagram. The buffers are allocated on
     * the first call and reused.
     *
     * @param handler  receives each message.
     * @param slots    the most datagrams per call.
     * @param slotSize the largest datagram expected; a longer one is an error (as in {@link #receive}).
     * @return messages handled; 0 on timeout; {@link #OVERRUN} on ENOBUFS (the kernel dropped datagrams).
     * @throws IOException if the socket fails, or a datagram was longer than {@code slotSize}.
     */
    public int receiveBatch(final MessageHandler handler, final int slots, final int slotSize) throws IOException
    {
        ensureOpen();
        if (batchBuffer == null || batchSlots != slots || batchSlotSize != slotSize)
        {
            allocateBatch(slots, slotSize);
        }
        final ByteBuffer m = batchMeta;
        final int metaStart = slots * MMSG_SIZE;
        for (int i = 0; i < slots; i++)
        {
            m.putInt(i * MMSG_SIZE + MSG_NAMELEN, NetlinkConstants.SOCKADDR_NL_SIZE);
            m.putInt(i * MMSG_SIZE + MSG_FLAGS, 0);
            m.putInt(i * MMSG_SIZE + MMSG_LEN, 0);
        }
        int got;
        while (true)
        {
            got = libc.recvmmsg(fd, batchMetaPointer, slots, LibC.MSG_WAITFORONE, null);
            if (got >= 0)
            {
                break;
            }
            final int failed = receiveFailed("recvmmsg(AF_NETLINK)");
            if (failed != INTERRUPTED)
            {
                return failed;
            }
        }
        final ByteBuffer b = batchBuffer;
        int count = 0;
        for (int i = 0; i < got; i++)
        {
            if ((m.getInt(i * MMSG_SIZE + MSG_FLAGS) & LibC.MSG_TRUNC) != 0)
            {
                throw new NativeException("recvmmsg(AF_NETLINK): datagram larger than " + slotSize + " bytes",
                    LibC.ENOBUFS);
            }
            if (m.getInt(metaStart + i * BATCH_SLOT_META + 4) != 0)
            {
                continue; // not from the kernel (see receiveDatagram)
            }
            final int start = i * slotSize;
            count += dispatch(b, start, start + m.getInt(i * MMSG_SIZE + MMSG_LEN), handler);
        }
        return count;
    }

    private void allocateBatch(final int slots, final int slotSize)
    {
        if (slots < 1 || slotSize < NLMSG_HDRLEN || slotSize % 8 != 0)
        {
            throw new IllegalArgumentException("batch of " + slots + " x " + slotSize + " bytes");
        }
        final Runtime runtime = Runtime.getRuntime(libc);
        batchBuffer = ByteBuffer.allocateDirect(slots * slotSize).order(ByteOrder.nativeOrder());
        batchMeta = ByteBuffer.allocateDirect(slots * (MMSG_SIZE + BATCH_SLOT_META)).order(ByteOrder.nativeOrder());
        batchMetaPointer = Pointer.wrap(runtime, batchMeta);
        final long buffer = Pointer.wrap(runtime, batchBuffer).address();
        final long base = batchMetaPointer.address();
        final int metaStart = slots * MMSG_SIZE;
        for (int i = 0; i < slots; i++)
        {
            final long slotMeta = base + metaStart + (long)i * BATCH_SLOT_META; // sockaddr_nl (12, padded 16), iovec (16)
            batchMeta.putLong(i * MMSG_SIZE + MSG_NAME, slotMeta);
            batchMeta.putLong(i * MMSG_SIZE + MSG_IOV, slotMeta + 16);
            batchMeta.putLong(i * MMSG_SIZE + MSG_IOVLEN, 1);
            batchMeta.putLong(metaStart + i * BATCH_SLOT_META + 16, buffer + (long)i * slotSize);
            batchMeta.putLong(metaStart + i * BATCH_SLOT_META + 24, slotSize);
        }
        batchSlots = slots;
        batchSlotSize = slotSize;
    }

    /** The NLMSGERR_ATTR_MSG text of an error message, or null; error path only, so it may allocate. */
    static String extackMessage(final ByteBuffer b, final int off, final int len)
    {
        final int flags = NetlinkMessages.flags(b, off);
        if ((flags & NetlinkConstants.NLM_F_ACK_TLVS) == 0)
        {
            return null;
        }
        // struct nlmsgerr: int error; struct nlmsghdr msg; then the request's payload unless capped.
        final int errStart = off + NLMSG_HDRLEN;
        int tlvs = errStart + 4 + NLMSG_HDRLEN;
        if ((flags & NetlinkConstants.NLM_F_CAPPED) == 0)
        {
            tlvs = errStart + 4 + align(NetlinkMessages.length(b, errStart + 4));
        }
        final int end = off + len;
        for (int a = NetlinkMessages.firstAttr(b, tlvs, end); a >= 0; a = NetlinkMessages.nextAttr(b, a, end))
        {
            if (NetlinkMessages.attrType(b, a) == NetlinkConstants.NLMSGERR_ATTR_MSG)
            {
                return NetlinkMessages.attrString(b, a);
            }
        }
        return null;
    }
}
