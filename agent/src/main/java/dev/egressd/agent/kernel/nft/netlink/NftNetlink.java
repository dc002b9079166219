package dev.egressd.agent.kernel.nft.netlink;

import static dev.egressd.agent.kernel.nft.netlink.NfTables.*;
import static dev.egressd.agent.netlink.NetlinkConstants.NFGENMSG_SIZE;
import static dev.egressd.agent.netlink.NetlinkConstants.NFNETLINK_V0;
import static dev.egressd.agent.netlink.NetlinkConstants.NLMSG_HDRLEN;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_ACK;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_CREATE;
import static dev.egressd.agent.netlink.NetlinkConstants.NLM_F_DUMP;

import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.natives.NativeException;
import dev.egressd.agent.netlink.NetlinkException;
import dev.egressd.agent.netlink.NetlinkMessages;
import dev.egressd.agent.netlink.NetlinkSocket;
import dev.egressd.agent.netlink.NetlinkWriter;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.BufferOverflowException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A client of nf_tables over netlink (NETLINK_NETFILTER, subsystem NFNL_SUBSYS_NFTABLES), bound to one
 * table, encoding with the project's netlink codec: element changes and rules as one batch (one kernel
 * transaction), dumps of one set's elements and of the table's counters, and the ruleset's generation id.
 *
 * <p>Why netlink rather than libnftables for these: libnftables 1.0.6 loads its cache of the table before
 * each command, O(table); a batch of element messages costs the kernel only the elements it names, and a
 * dump reads one set. And nft 1.0.6 cannot build the IPv6 address-and-port-range map's nat rule (wrong
 * registers, docs/design.md, pitfall 1), which is built here as the kernel wants it ({@link NftRules}).
 *
 * <p>Batches: NFNL_MSG_BATCH_BEGIN, one message per change, NFNL_MSG_BATCH_END, in one datagram. The
 * kernel reports an error for every refused message (with its sequence number, so the error names the
 * change) and aborts the whole batch; only the last change asks for an ack on success (NLM_F_ACK), because
 * each ack is a socket buffer of its own (about 1 KiB of receive buffer) and a batch of thousands of acks
 * would overflow the socket. The send buffer grows to the largest batch (the socket's SO_SNDBUF with it).
 *
 * <p>Not thread-safe; open it on a thread in the intended network namespace (the socket belongs to the
 * namespace of the thread that opens it), like {@link NetlinkSocket}.
 */
public final class NftNetlink implements NfTablesClient, AutoCloseable
{
    /** Receive buffer asked for: dumps of a big set come in 32 KiB skbs, and errors of a big refused batch. */
    private static final int RECEIVE_BUFFER = 4 * 1024 * 1024;
    private static final long REPLY_TIMEOUT_MILLIS = 10_000;
    private static final int DUMP_RETRIES = 5;

    private final NetlinkSocket socket;
    private final int family;
    private final String table;
    private final String tableName;
    private final GenerationReader generationReader = new GenerationReader();

    private NftNetlink(final NetlinkSocket socket, final int family, final String table)
    {
        this.socket = socket;
        this.family = family;
        this.table = table;
        this.tableName = familyName(family) + " " + table;
    }

    /**
     * Opens a NETLINK_NETFILTER socket in the calling thread's network namespace.
     *
     * @param family the table's family, e.g. {@link NfTables#NFPROTO_INET}.
     * @param table  the table's name.
     * @return the client.
     * @throws NativeException if the socket cannot be opened or bound.
     */
    public static NftNetlink open(final int family, final String table) throws NativeException
    {
        checkName("table", table);
        final NetlinkSocket socket = NetlinkSocket.open(LibC.NETLINK_NETFILTER);
        try
        {
            socket.bind(0);
            socket.receiveTimeout(REPLY_TIMEOUT_MILLIS);
            socket.receiveBufferSize(RECEIVE_BUFFER);
        }
        catch (final NativeException | RuntimeException e)
        {
            socket.close();
            throw e;
        }
        return new NftNetlink(socket, family, table);
    }

    /**
     * The table, as nft names it.
     *
     * @return e.g. {@code inet egressd}.
     */
    public String table()
    {
        return tableName;
    }

    /**
     * The ruleset's generation id (NFT_MSG_GETGEN): the kernel adds one for every committed nf_tables
     * transaction in this namespace, by anyone, so an unchanged id means an unchanged ruleset.
     *
     * @return the id.
     * @throws IOException if the request fails.
     */
    @Override
    public int generation() throws IOException
    {
        socket.request(NfTables.type(NFT_MSG_GETGEN), 0).u8(NFPROTO_UNSPEC).u8(NFNETLINK_V0).u16BE(0);
        generationReader.id = -1;
        generationReader.seen = false;
        socket.execute("NFT_MSG_GETGEN", generationReader);
        if (!generationReader.seen)
        {
            throw new NetlinkException("NFT_MSG_GETGEN: no NFTA_GEN_ID in the reply", LibC.EINVAL, (Throwable)null);
        }
        return generationReader.id;
    }

    /**
     * Applies changes as ONE batch: the kernel commits all or none. Nothing is sent for an empty list.
     *
     * @param ops the changes, in order.
     * @throws NftRefusedException if the kernel refused any change (nothing changed); it names the first.
     * @throws IOException         if the socket fails.
     */
    @Override
    public void commit(final List<? extends NftOp> ops) throws IOException
    {
        if (ops.isEmpty())
        {
            return;
        }
        int[] seqs;
        while (true)
        {
            try
            {
                seqs = encodeBatch(ops);
                break;
            }
            catch (final BufferOverflowException e)
            {
                socket.ensureSendCapacity(socket.sendCapacity() * 2);
            }
        }
        final int first = seqs[0];
        final int last = seqs[ops.size()];
        final BatchErrors errors = new BatchErrors();
        try
        {
            socket.executeBatch("nf_tables batch on " + tableName, first, last, errors);
        }
        catch (final NetlinkException e)
        {
            if (e.errno() == LibC.ENOBUFS)
            {
                // Only errors overflow the socket (success sends the one ack): the batch was refused.
                throw new NftRefusedException(tableName, errors.firstIndex(first), errors.firstIndex(first) >= 0
                    ? ops.get(errors.firstIndex(first)).describe() : "a batch of " + ops.size() + " changes",
                    errors.count > 0 ? errors.errno : LibC.ENOBUFS, errors.message, Math.max(errors.count, 2));
            }
            throw e;
        }
        if (errors.count > 0)
        {
            final int index = errors.firstIndex(first);
            throw new NftRefusedException(tableName, index,
                index >= 0 ? ops.get(index).describe() : "a batch of " + ops.size() + " changes", errors.errno,
                errors.message, errors.count);
        }
    }

    /** Encodes the batch into the socket's send buffer; returns the sequence numbers, begin first. */
    private int[] encodeBatch(final List<? extends NftOp> ops)
    {
        final int[] seqs = new int[ops.size() + 1];
        final NetlinkWriter w = socket.beginBatch();
        seqs[0] = socket.appendMessage(NFNL_MSG_BATCH_BEGIN, 0);
        w.u8(NFPROTO_UNSPEC).u8(NFNETLINK_V0).u16BE(NFNL_SUBSYS_NFTABLES);
        w.finish();
        for (int i = 0; i < ops.size(); i++)
        {
            final NftOp op = ops.get(i);
            final int ack = i == ops.size() - 1 ? NLM_F_ACK : 0;
            seqs[i + 1] = socket.appendMessage(NfTables.type(messageType(op)), flags(op) | ack);
            encodeOp(w, family, table, op);
            w.finish();
        }
        socket.appendMessage(NFNL_MSG_BATCH_END, 0);
        w.u8(NFPROTO_UNSPEC).u8(NFNETLINK_V0).u16BE(NFNL_SUBSYS_NFTABLES);
        w.finish();
        return seqs;
    }

    static int messageType(final NftOp op)
    {
        if (op instanceof NftOp.AddElement)
        {
            return NFT_MSG_NEWSETELEM;
        }
        return op instanceof NftOp.DeleteElement ? NFT_MSG_DELSETELEM : NFT_MSG_NEWRULE;
    }

    static int flags(final NftOp op)
    {
        if (op instanceof NftOp.AddElement)
        {
            return NLM_F_CREATE;
        }
        return op instanceof NftOp.DeleteElement ? 0 : NLM_F_CREATE | NLM_F_APPEND;
    }

    /**
     * The body of one change's message (after its nlmsghdr): nfgenmsg and attributes, as nf_tables.h
     * lays them out.
     */
    static void encodeOp(final NetlinkWriter w, final int family, final String table, final NftOp op)
    {
        w.u8(family).u8(NFNETLINK_V0).u16BE(0);
        if (op instanceof NftOp.AddElement a)
        {
            encodeElement(w, table, a.set(), a.key(), a.keyEnd(), a.data());
        }
        else if (op instanceof NftOp.DeleteElement d)
        {
            encodeElement(w, table, d.set(), d.key(), d.keyEnd(), null);
        }
        else if (op instanceof NftOp.AddRule r)
        {
            w.attrString(NFTA_RULE_TABLE, table);
            w.attrString(NFTA_RULE_CHAIN, r.chain());
            final int exprs = w.beginNested(NFTA_RULE_EXPRESSIONS);
            for (final NftExpr e : r.exprs())
            {
                e.encode(w);
            }
            w.endNested(exprs);
            if (r.comment() != null)
            {
                final byte[] udata = commentUserdata(r.comment());
                w.attrBytes(NFTA_RULE_USERDATA, udata, 0, udata.length);
            }
        }
    }

    private static void encodeElement(final NetlinkWriter w, final String table, final String set, final byte[] key,
                                      final byte[] keyEnd, final byte[] data)
    {
        w.attrString(NFTA_SET_ELEM_LIST_TABLE, table);
        w.attrString(NFTA_SET_ELEM_LIST_SET, set);
        final int elements = w.beginNested(NFTA_SET_ELEM_LIST_ELEMENTS);
        final int elem = w.beginNested(NFTA_LIST_ELEM);
        final int k = w.beginNested(NFTA_SET_ELEM_KEY);
        w.attrBytes(NFTA_DATA_VALUE, key, 0, key.length);
        w.endNested(k);
        if (keyEnd != null)
        {
            final int ke = w.beginNested(NFTA_SET_ELEM_KEY_END);
            w.attrBytes(NFTA_DATA_VALUE, keyEnd, 0, keyEnd.length);
            w.endNested(ke);
        }
        if (data != null)
        {
            final int d = w.beginNested(NFTA_SET_ELEM_DATA);
            w.attrBytes(NFTA_DATA_VALUE, data, 0, data.length);
            w.endNested(d);
        }
        w.endNested(elem);
        w.endNested(elements);
    }

    /** A comment as libnftnl stores it in a rule's user data: one TLV, type, length, the text and its NUL. */
    static byte[] commentUserdata(final String comment)
    {
        final byte[] text = comment.getBytes(StandardCharsets.US_ASCII);
        final byte[] udata = new byte[2 + text.length + 1];
        udata[0] = (byte)NFTNL_UDATA_RULE_COMMENT;
        udata[1] = (byte)(text.length + 1);
        System.arraycopy(text, 0, udata, 2, text.length);
        return udata;
    }

    /** Receives the elements of a dump, in place; the bytes are valid only during the call. */
    @FunctionalInterface
    public interface ElementSink
    {
        /**
         * One element.
         *
         * @param b       the receive buffer.
         * @param keyOff  where the key starts.
         * @param keyLen  its length.
         * @param endOff  where an interval's last key (NFTA_SET_ELEM_KEY_END) starts, or -1 for none.
         * @param endLen  its length, 0 for none.
         * @param dataOff where the data starts, or -1 for a set's element.
         * @param dataLen its length, 0 for a set's.
         * @throws IOException to stop the dump.
         */
        void element(ByteBuffer b, int keyOff, int keyLen, int endOff, int endLen, int dataOff, int dataLen)
            throws IOException;
    }

    /**
     * Dumps one set's or map's elements (NFT_MSG_GETSETELEM), streaming them to a sink.
     *
     * @param set  the set or map.
     * @param sink receives each element.
     * @throws NetlinkException with ENOENT if the table or set is missing, EINTR if the set changed during
     *                          the dump (the sink saw a partial dump: start again).
     * @throws IOException      if the socket fails.
     */
    public void elements(final String set, final ElementSink sink) throws IOException
    {
        checkName("set", set);
        final NetlinkWriter w = socket.request(NfTables.type(NFT_MSG_GETSETELEM), NLM_F_DUMP);
        w.u8(family).u8(NFNETLINK_V0).u16BE(0);
        w.attrString(NFTA_SET_ELEM_LIST_TABLE, table);
        w.attrString(NFTA_SET_ELEM_LIST_SET, set);
        socket.execute("NFT_MSG_GETSETELEM " + tableName + " " + set, (b, off, len) -> parseElements(b, off, len, sink));
    }

    /**
     * One element of a dump, as bytes.
     *
     * @param key    the key (an interval's first key).
     * @param data   the data of a map's element, or null.
     * @param keyEnd an interval's last key (concatenated interval sets), or null.
     */
    public record Element(byte[] key, byte[] data, byte[] keyEnd)
    {
        /**
         * An element that is not an interval.
         *
         * @param key  the key.
         * @param data the data, or null.
         */
        public Element(final byte[] key, final byte[] data)
        {
            this(key, data, null);
        }
    }

    /**
     * Dumps one set's or map's elements into a list, starting again when a concurrent change interrupted
     * the dump.
     *
     * @param set the set or map.
     * @return the elements, in the kernel's order.
     * @throws NetlinkException with ENOENT if the table or set is missing.
     * @throws IOException      if the socket fails or the set kept changing.
     */
    @Override
    public List<Element> elements(final String set) throws IOException
    {
        final List<Element> out = new ArrayList<>();
        for (int attempt = 1; ; attempt++)
        {
            out.clear();
            try
            {
                elements(set, (b, keyOff, keyLen, endOff, endLen, dataOff, dataLen) ->
                {
                    final byte[] key = new byte[keyLen];
                    b.get(keyOff, key);
                    byte[] keyEnd = null;
                    if (endOff >= 0)
                    {
                        keyEnd = new byte[endLen];
                        b.get(endOff, keyEnd);
                    }
                    byte[] data = null;
                    if (dataOff >= 0)
                    {
                        data = new byte[dataLen];
                        b.get(dataOff, data);
                    }
                    out.add(new Element(key, data, keyEnd));
                });
                return out;
            }
            catch (final NetlinkException e)
            {
                if (e.errno() != LibC.EINTR || attempt == DUMP_RETRIES)
                {
                    throw e;
                }
            }
        }
    }

    static void parseElements(final ByteBuffer b, final int off, final int len, final ElementSink sink) throws IOException
    {
        final int end = off + len;
        for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            if (NetlinkMessages.attrType(b, a) != NFTA_SET_ELEM_LIST_ELEMENTS)
            {
                continue;
            }
            final int listEnd = NetlinkMessages.attrEnd(b, a);
            for (int e = NetlinkMessages.firstAttr(b, NetlinkMessages.payload(a), listEnd); e >= 0;
                 e = NetlinkMessages.nextAttr(b, e, listEnd))
            {
                int keyOff = -1;
                int keyLen = 0;
                int endOff = -1;
                int endLen = 0;
                int dataOff = -1;
                int dataLen = 0;
                final int elemEnd = NetlinkMessages.attrEnd(b, e);
                for (int f = NetlinkMessages.firstAttr(b, NetlinkMessages.payload(e), elemEnd); f >= 0;
                     f = NetlinkMessages.nextAttr(b, f, elemEnd))
                {
                    final int type = NetlinkMessages.attrType(b, f);
                    if (type == NFTA_SET_ELEM_KEY || type == NFTA_SET_ELEM_KEY_END || type == NFTA_SET_ELEM_DATA)
                    {
                        final int v = valueAttr(b, f);
                        if (v >= 0)
                        {
                            if (type == NFTA_SET_ELEM_KEY)
                            {
                                keyOff = NetlinkMessages.payload(v);
                                keyLen = NetlinkMessages.attrLength(b, v) - 4;
                            }
                            else if (type == NFTA_SET_ELEM_KEY_END)
                            {
                                endOff = NetlinkMessages.payload(v);
                                endLen = NetlinkMessages.attrLength(b, v) - 4;
                            }
                            else
                            {
                                dataOff = NetlinkMessages.payload(v);
                                dataLen = NetlinkMessages.attrLength(b, v) - 4;
                            }
                        }
                    }
                }
                if (keyOff >= 0)
                {
                    sink.element(b, keyOff, keyLen, endOff, endLen, dataOff, dataLen);
                }
            }
        }
    }

    /** The NFTA_DATA_VALUE inside a nested data attribute, or -1. */
    private static int valueAttr(final ByteBuffer b, final int nest)
    {
        final int end = NetlinkMessages.attrEnd(b, nest);
        for (int v = NetlinkMessages.firstAttr(b, NetlinkMessages.payload(nest), end); v >= 0;
             v = NetlinkMessages.nextAttr(b, v, end))
        {
            if (NetlinkMessages.attrType(b, v) == NFTA_DATA_VALUE)
            {
                return v;
            }
        }
        return -1;
    }

    /**
     * A chain as a value, for noticing a hand change: its type, hook, priority and policy (NFT_MSG_GETCHAIN) and
     * each rule's expressions in order (NFT_MSG_GETRULE dump of that chain), with every {@code counter}
     * expression's figures left out so traffic is not a change. Rule handles and user data are left out too.
     * Costs the chain's rules only, whatever the size of the table's sets.
     *
     * @param chain the chain.
     * @return the bytes to compare with an earlier fingerprint of the same chain.
     * @throws NetlinkException with ENOENT if the table or chain is missing.
     * @throws IOException      if the socket fails or the chain kept changing.
     */
    @Override
    public byte[] chainFingerprint(final String chain) throws IOException
    {
        checkName("chain", chain);
        for (int attempt = 1; ; attempt++)
        {
            final ByteArrayOutputStream out = new ByteArrayOutputStream(1024);
            NetlinkWriter w = socket.request(NfTables.type(NFT_MSG_GETCHAIN), 0);
            w.u8(family).u8(NFNETLINK_V0).u16BE(0);
            w.attrString(NFTA_CHAIN_TABLE, table);
            w.attrString(NFTA_CHAIN_NAME, chain);
            socket.execute("NFT_MSG_GETCHAIN " + tableName + " " + chain, (b, off, len) ->
                appendChain(b, off, len, out));
            w = socket.request(NfTables.type(NFT_MSG_GETRULE), NLM_F_DUMP);
            w.u8(family).u8(NFNETLINK_V0).u16BE(0);
            w.attrString(NFTA_RULE_TABLE, table);
            w.attrString(NFTA_RULE_CHAIN, chain);
            try
            {
                socket.execute("NFT_MSG_GETRULE " + tableName + " " + chain, (b, off, len) ->
                    appendRule(b, off, len, out));
                return out.toByteArray();
            }
            catch (final NetlinkException e)
            {
                if (e.errno() != LibC.EINTR || attempt == DUMP_RETRIES)
                {
                    throw e;
                }
            }
        }
    }

    /** A GETCHAIN reply's type, hook (number and priority) and policy attributes, as they are. */
    static void appendChain(final ByteBuffer b, final int off, final int len, final ByteArrayOutputStream out)
    {
        if (NetlinkMessages.type(b, off) != NfTables.type(NFT_MSG_NEWCHAIN))
        {
            return;
        }
        final int end = off + len;
        for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            final int type = NetlinkMessages.attrType(b, a);
            if (type == NFTA_CHAIN_HOOK || type == NFTA_CHAIN_POLICY || type == NFTA_CHAIN_TYPE)
            {
                appendBytes(b, a, NetlinkMessages.attrEnd(b, a), out);
            }
        }
    }

    /** A GETRULE reply's expressions, each as it is but a counter's, which is its name only. */
    static void appendRule(final ByteBuffer b, final int off, final int len, final ByteArrayOutputStream out)
    {
        if (NetlinkMessages.type(b, off) != NfTables.type(NFT_MSG_NEWRULE))
        {
            return;
        }
        final int end = off + len;
        out.write('R'); // a rule's start: the same expressions split differently over rules are another chain
        for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            if (NetlinkMessages.attrType(b, a) != NFTA_RULE_EXPRESSIONS)
            {
                continue;
            }
            final int listEnd = NetlinkMessages.attrEnd(b, a);
            for (int e = NetlinkMessages.firstAttr(b, NetlinkMessages.payload(a), listEnd); e >= 0;
                 e = NetlinkMessages.nextAttr(b, e, listEnd))
            {
                final int exprEnd = NetlinkMessages.attrEnd(b, e);
                boolean counter = false;
                for (int f = NetlinkMessages.firstAttr(b, NetlinkMessages.payload(e), exprEnd); f >= 0;
                     f = NetlinkMessages.nextAttr(b, f, exprEnd))
                {
                    if (NetlinkMessages.attrType(b, f) == NFTA_EXPR_NAME
                        && "counter".equals(NetlinkMessages.attrString(b, f)))
                    {
                        counter = true;
                    }
                }
                if (counter)
                {
                    out.writeBytes("counter".getBytes(StandardCharsets.US_ASCII));
                }
                else
                {
                    appendBytes(b, e, exprEnd, out);
                }
            }
        }
    }

    private static void appendBytes(final ByteBuffer b, final int from, final int to, final ByteArrayOutputStream out)
    {
        for (int i = from; i < to; i++)
        {
            out.write(b.get(i));
        }
    }

    /**
     * The names of the table's named sets and maps (NFT_MSG_GETSET dump of the table; anonymous sets left out).
     * One small dump, whatever the sets hold: unlike libnftables' {@code list sets}, which fills its cache of the
     * ruleset first and starts that again whenever the generation moved meanwhile, so under a steady stream of
     * commits it can go on for seconds.
     *
     * @return the names.
     * @throws NetlinkException with ENOENT if the table is missing.
     * @throws IOException      if the socket fails or the sets kept changing.
     */
    @Override
    public java.util.Set<String> setNames() throws IOException
    {
        final java.util.Set<String> out = new java.util.TreeSet<>();
        for (int attempt = 1; ; attempt++)
        {
            out.clear();
            final NetlinkWriter w = socket.request(NfTables.type(NfTables.NFT_MSG_GETSET), NLM_F_DUMP);
            w.u8(family).u8(NFNETLINK_V0).u16BE(0);
            w.attrString(NfTables.NFTA_SET_TABLE, table);
            try
            {
                socket.execute("NFT_MSG_GETSET " + tableName, (b, off, len) -> setName(b, off, len, table, out));
                return out;
            }
            catch (final NetlinkException e)
            {
                if (e.errno() != LibC.EINTR || attempt == DUMP_RETRIES)
                {
                    throw e;
                }
            }
        }
    }

    /** A GETSET reply's name, if it is a named set of {@code table}. */
    static void setName(final ByteBuffer b, final int off, final int len, final String table,
        final java.util.Set<String> out)
    {
        if (NetlinkMessages.type(b, off) != NfTables.type(NfTables.NFT_MSG_NEWSET))
        {
            return;
        }
        final int end = off + len;
        String name = null;
        String of = null;
        int flags = 0;
        for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            switch (NetlinkMessages.attrType(b, a))
            {
                case NfTables.NFTA_SET_TABLE -> of = NetlinkMessages.attrString(b, a);
                case NfTables.NFTA_SET_NAME -> name = NetlinkMessages.attrString(b, a);
                case NfTables.NFTA_SET_FLAGS -> flags = u32BE(b, NetlinkMessages.payload(a));
                default ->
                {
                }
            }
        }
        if (name != null && table.equals(of) && (flags & NfTables.NFT_SET_ANONYMOUS) == 0)
        {
            out.add(name);
        }
    }

    /** A big-endian u32 attribute's value (nf_tables' byte order), whatever the buffer's order. */
    private static int u32BE(final ByteBuffer b, final int at)
    {
        return (b.get(at) & 0xff) << 24 | (b.get(at + 1) & 0xff) << 16 | (b.get(at + 2) & 0xff) << 8
            | b.get(at + 3) & 0xff;
    }

    /**
     * One chain of a {@link TableDump}.
     *
     * @param name     its name.
     * @param handle   its handle, -1 if not dumped.
     * @param type     {@code filter}, {@code nat}, {@code route} for a base chain, else null.
     * @param hook     the netfilter hook number ({@link NfTables#NF_INET_FORWARD}...) of a base chain, else -1.
     * @param priority the hook priority of a base chain, else 0.
     * @param policy   a base chain's policy ({@link NfTables#NF_ACCEPT} or {@link NfTables#NF_DROP}), else -1.
     * @param flags    its flags ({@link NfTables#NFT_CHAIN_BINDING}...).
     */
    public record ChainInfo(String name, long handle, String type, int hook, int priority, int policy, int flags)
    {
        /**
         * Whether it is a base chain (hooked).
         *
         * @return true if it has a hook.
         */
        public boolean base()
        {
            return hook >= 0;
        }
    }

    /**
     * One rule of a {@link TableDump}.
     *
     * @param chain       its chain.
     * @param comment     its comment (libnftnl's user data), or null.
     * @param expressions its expressions as the kernel dumps them, every {@code counter}'s figures left out (so
     *                    traffic is not a change): equal bytes for the same rule, whoever lists it.
     */
    public record RuleInfo(String chain, String comment, byte[] expressions)
    {
    }

    /**
     * One named set or map of a {@link TableDump}, without its elements.
     *
     * @param name     its name.
     * @param handle   its handle, -1 if not dumped.
     * @param flags    its flags ({@link NfTables#NFT_SET_MAP}...).
     * @param keyLen   its key's length in bytes.
     * @param dataType a map's data type as nft declared it (nft's type id), 0 for a set.
     * @param dataLen  a map's data length in bytes, 0 for a set.
     */
    public record SetInfo(String name, long handle, int flags, int keyLen, int dataType, int dataLen)
    {
        /**
         * Whether it is a map (a data or verdict map, or an object map).
         *
         * @return true if so.
         */
        public boolean map()
        {
            return (flags & (NfTables.NFT_SET_MAP | NfTables.NFT_SET_OBJECT)) != 0;
        }
    }

    /**
     * One named stateful object or flowtable of a {@link TableDump}.
     *
     * @param kind   as nft names the kind: {@code counter}, {@code quota}, {@code ct helper}, {@code limit},
     *               {@code ct timeout}, {@code secmark}, {@code ct expectation}, {@code synproxy}, {@code flowtable}.
     * @param name   its name.
     * @param handle its handle, -1 if not dumped.
     */
    public record ObjectInfo(String kind, String name, long handle)
    {
    }

    /**
     * A table without its elements: its chains, rules, named sets and maps, named objects and flowtables, each in
     * the kernel's order. Costs the rules and declarations only, whatever the sets hold.
     *
     * @param chains  the chains, anonymous (binding) ones included.
     * @param rules   the rules of every chain, chain by chain.
     * @param sets    the named sets and maps (anonymous ones left out).
     * @param objects the named objects nft can name and delete, then the flowtables.
     */
    public record TableDump(List<ChainInfo> chains, List<RuleInfo> rules, List<SetInfo> sets, List<ObjectInfo> objects)
    {
        /**
         * A chain by name.
         *
         * @param name the name.
         * @return the chain, or null.
         */
        public ChainInfo chain(final String name)
        {
            for (final ChainInfo c : chains)
            {
                if (c.name().equals(name))
                {
                    return c;
                }
            }
            return null;
        }

        /**
         * The rules of one chain, in order.
         *
         * @param chain the chain.
         * @return its rules.
         */
        public List<RuleInfo> rules(final String chain)
        {
            final List<RuleInfo> out = new ArrayList<>();
            for (final RuleInfo r : rules)
            {
                if (r.chain().equals(chain))
                {
                    out.add(r);
                }
            }
            return out;
        }

        /**
         * A set or map by name.
         *
         * @param name the name.
         * @return it, or null.
         */
        public SetInfo set(final String name)
        {
            for (final SetInfo s : sets)
            {
                if (s.name().equals(name))
                {
                    return s;
                }
            }
            return null;
        }
    }

    /**
     * The table without its elements (see {@link TableDump}): one NFT_MSG_GETCHAIN, GETRULE, GETSET, GETOBJ and
     * GETFLOWTABLE dump each, of this table only. Each dump is started again when a concurrent change interrupted it;
     * the dumps are not one snapshot (a change between two is seen by the next read).
     *
     * @return the dump.
     * @throws NetlinkException with ENOENT if the table is missing.
     * @throws IOException      if the socket fails or the table kept changing.
     */
    @Override
    public TableDump dumpTable() throws IOException
    {
        final List<ChainInfo> chains = new ArrayList<>();
        dump("NFT_MSG_GETCHAIN " + tableName, chains, NFT_MSG_GETCHAIN, NFTA_CHAIN_TABLE, -1,
            (b, off, len) -> parseChain(b, off, len, table, chains));
        final List<RuleInfo> rules = new ArrayList<>();
        dump("NFT_MSG_GETRULE " + tableName, rules, NFT_MSG_GETRULE, NFTA_RULE_TABLE, -1,
            (b, off, len) -> parseRule(b, off, len, table, rules));
        final List<SetInfo> sets = new ArrayList<>();
        dump("NFT_MSG_GETSET " + tableName, sets, NFT_MSG_GETSET, NFTA_SET_TABLE, -1,
            (b, off, len) -> parseSet(b, off, len, table, sets));
        final List<ObjectInfo> objects = new ArrayList<>();
        dump("NFT_MSG_GETOBJ " + tableName, objects, NFT_MSG_GETOBJ, NFTA_OBJ_TABLE, NFT_OBJECT_UNSPEC,
            (b, off, len) -> parseObject(b, off, len, table, objects));
        final List<ObjectInfo> flowtables = new ArrayList<>();
        dump("NFT_MSG_GETFLOWTABLE " + tableName, flowtables, NFT_MSG_GETFLOWTABLE, NFTA_FLOWTABLE_TABLE, -1,
            (b, off, len) -> parseFlowtable(b, off, len, table, flowtables));
        objects.addAll(flowtables);
        return new TableDump(chains, rules, sets, objects);
    }

    /**
     * The sets and maps of the table, without their elements (one NFT_MSG_GETSET dump).
     *
     * @return them, in the kernel's order; anonymous ones left out.
     * @throws NetlinkException with ENOENT if the table is missing.
     * @throws IOException      if the socket fails or the sets kept changing.
     */
    @Override
    public List<SetInfo> sets() throws IOException
    {
        final List<SetInfo> sets = new ArrayList<>();
        dump("NFT_MSG_GETSET " + tableName, sets, NFT_MSG_GETSET, NFTA_SET_TABLE, -1,
            (b, off, len) -> parseSet(b, off, len, table, sets));
        return sets;
    }

    /** One dump of a table's objects of one kind, started again (the list cleared) when it was interrupted. */
    private void dump(final String what, final List<?> out, final int msg, final int tableAttr, final int objType,
        final NetlinkSocket.MessageHandler handler) throws IOException
    {
        for (int attempt = 1; ; attempt++)
        {
            out.clear();
            final NetlinkWriter w = socket.request(NfTables.type(msg), NLM_F_DUMP);
            w.u8(family).u8(NFNETLINK_V0).u16BE(0);
            w.attrString(tableAttr, table);
            if (objType >= 0)
            {
                w.attrU32BE(NFTA_OBJ_TYPE, objType);
            }
            try
            {
                socket.execute(what, handler);
                return;
            }
            catch (final NetlinkException e)
            {
                if (e.errno() != LibC.EINTR || attempt == DUMP_RETRIES)
                {
                    throw e;
                }
            }
        }
    }

    private static long u64(final ByteBuffer b, final int a)
    {
        return NetlinkMessages.u64BE(b, NetlinkMessages.payload(a));
    }

    private static int u32(final ByteBuffer b, final int a)
    {
        return NetlinkMessages.u32BE(b, NetlinkMessages.payload(a));
    }

    /** A GETCHAIN reply's chain, if it is of {@code table}. */
    static void parseChain(final ByteBuffer b, final int off, final int len, final String table,
        final List<ChainInfo> out)
    {
        if (NetlinkMessages.type(b, off) != NfTables.type(NFT_MSG_NEWCHAIN))
        {
            return;
        }
        final int end = off + len;
        String of = null;
        String name = null;
        String type = null;
        long handle = -1;
        int hook = -1;
        int priority = 0;
        int policy = -1;
        int flags = 0;
        for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            switch (NetlinkMessages.attrType(b, a))
            {
                case NFTA_CHAIN_TABLE -> of = NetlinkMessages.attrString(b, a);
                case NFTA_CHAIN_NAME -> name = NetlinkMessages.attrString(b, a);
                case NFTA_CHAIN_HANDLE -> handle = u64(b, a);
                case NFTA_CHAIN_TYPE -> type = NetlinkMessages.attrString(b, a);
                case NFTA_CHAIN_POLICY -> policy = u32(b, a);
                case NFTA_CHAIN_FLAGS -> flags = u32(b, a);
                case NFTA_CHAIN_HOOK ->
                {
                    final int hookEnd = NetlinkMessages.attrEnd(b, a);
                    for (int h = NetlinkMessages.firstAttr(b, NetlinkMessages.payload(a), hookEnd); h >= 0;
                         h = NetlinkMessages.nextAttr(b, h, hookEnd))
                    {
                        if (NetlinkMessages.attrType(b, h) == NFTA_HOOK_HOOKNUM)
                        {
                            hook = u32(b, h);
                        }
                        else if (NetlinkMessages.attrType(b, h) == NFTA_HOOK_PRIORITY)
                        {
                            priority = u32(b, h);
                        }
                    }
                }
                default ->
                {
                }
            }
        }
        if (name != null && table.equals(of))
        {
            out.add(new ChainInfo(name, handle, hook >= 0 ? type : null, hook, priority, hook >= 0 ? policy : -1,
                flags));
        }
    }

    /** A GETRULE reply's rule, if it is of {@code table}: its chain, comment and expressions (counters' figures out). */
    static void parseRule(final ByteBuffer b, final int off, final int len, final String table,
        final List<RuleInfo> out)
    {
        if (NetlinkMessages.type(b, off) != NfTables.type(NFT_MSG_NEWRULE))
        {
            return;
        }
        final int end = off + len;
        String of = null;
        String chain = null;
        String comment = null;
        for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            switch (NetlinkMessages.attrType(b, a))
            {
                case NFTA_RULE_TABLE -> of = NetlinkMessages.attrString(b, a);
                case NFTA_RULE_CHAIN -> chain = NetlinkMessages.attrString(b, a);
                case NFTA_RULE_USERDATA -> comment = comment(b, NetlinkMessages.payload(a), NetlinkMessages.attrEnd(b, a));
                default ->
                {
                }
            }
        }
        if (chain == null || !table.equals(of))
        {
            return;
        }
        final ByteArrayOutputStream expressions = new ByteArrayOutputStream(256);
        appendRule(b, off, len, expressions);
        out.add(new RuleInfo(chain, comment, expressions.toByteArray()));
    }

    /**
     * The comment in a rule's user data (libnftnl's TLVs: a type byte, a length byte, the value), without its NUL;
     * null if there is none. Only the bytes up to {@code end}, the attribute's, are read.
     */
    static String comment(final ByteBuffer b, final int from, final int end)
    {
        int p = from;
        while (p + 2 <= end)
        {
            final int type = b.get(p) & 0xff;
            final int length = b.get(p + 1) & 0xff;
            if (p + 2 + length > end)
            {
                return null;
            }
            if (type == NFTNL_UDATA_RULE_COMMENT)
            {
                int n = length;
                while (n > 0 && b.get(p + 2 + n - 1) == 0)
                {
                    n--;
                }
                final byte[] text = new byte[n];
                b.get(p + 2, text);
                return new String(text, StandardCharsets.UTF_8);
            }
            p += 2 + length;
        }
        return null;
    }

    /** A GETSET reply's named set or map of {@code table}, without elements. */
    static void parseSet(final ByteBuffer b, final int off, final int len, final String table, final List<SetInfo> out)
    {
        if (NetlinkMessages.type(b, off) != NfTables.type(NFT_MSG_NEWSET))
        {
            return;
        }
        final int end = off + len;
        String of = null;
        String name = null;
        long handle = -1;
        int flags = 0;
        int keyLen = 0;
        int dataType = 0;
        int dataLen = 0;
        for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            switch (NetlinkMessages.attrType(b, a))
            {
                case NFTA_SET_TABLE -> of = NetlinkMessages.attrString(b, a);
                case NFTA_SET_NAME -> name = NetlinkMessages.attrString(b, a);
                case NFTA_SET_HANDLE -> handle = u64(b, a);
                case NFTA_SET_FLAGS -> flags = u32(b, a);
                case NFTA_SET_KEY_LEN -> keyLen = u32(b, a);
                case NFTA_SET_DATA_TYPE -> dataType = u32(b, a);
                case NFTA_SET_DATA_LEN -> dataLen = u32(b, a);
                default ->
                {
                }
            }
        }
        if (name != null && table.equals(of) && (flags & NFT_SET_ANONYMOUS) == 0)
        {
            out.add(new SetInfo(name, handle, flags, keyLen, dataType, dataLen));
        }
    }

    /** A GETOBJ reply's object of {@code table}, if nft can name its kind. */
    static void parseObject(final ByteBuffer b, final int off, final int len, final String table,
        final List<ObjectInfo> out)
    {
        if (NetlinkMessages.type(b, off) != NfTables.type(NFT_MSG_NEWOBJ))
        {
            return;
        }
        final int end = off + len;
        String of = null;
        String name = null;
        long handle = -1;
        int type = -1;
        for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            switch (NetlinkMessages.attrType(b, a))
            {
                case NFTA_OBJ_TABLE -> of = NetlinkMessages.attrString(b, a);
                case NFTA_OBJ_NAME -> name = NetlinkMessages.attrString(b, a);
                case NFTA_OBJ_HANDLE -> handle = u64(b, a);
                case NFTA_OBJ_TYPE -> type = u32(b, a);
                default ->
                {
                }
            }
        }
        final String kind = objectKind(type);
        if (name != null && table.equals(of) && kind != null)
        {
            out.add(new ObjectInfo(kind, name, handle));
        }
    }

    /**
     * An object type as nft names it in {@code delete KIND}; null for the kinds nft 1.0.6 has no statement for
     * (connlimit and tunnel objects, made only over netlink), which its listing leaves out too.
     */
    static String objectKind(final int type)
    {
        return switch (type)
        {
            case NFT_OBJECT_COUNTER -> "counter";
            case NFT_OBJECT_QUOTA -> "quota";
            case NFT_OBJECT_CT_HELPER -> "ct helper";
            case NFT_OBJECT_LIMIT -> "limit";
            case NFT_OBJECT_CT_TIMEOUT -> "ct timeout";
            case NFT_OBJECT_SECMARK -> "secmark";
            case NFT_OBJECT_CT_EXPECT -> "ct expectation";
            case NFT_OBJECT_SYNPROXY -> "synproxy";
            default -> null;
        };
    }

    /** A GETFLOWTABLE reply's flowtable of {@code table}. */
    static void parseFlowtable(final ByteBuffer b, final int off, final int len, final String table,
        final List<ObjectInfo> out)
    {
        if (NetlinkMessages.type(b, off) != NfTables.type(NFT_MSG_NEWFLOWTABLE))
        {
            return;
        }
        final int end = off + len;
        String of = null;
        String name = null;
        long handle = -1;
        for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            switch (NetlinkMessages.attrType(b, a))
            {
                case NFTA_FLOWTABLE_TABLE -> of = NetlinkMessages.attrString(b, a);
                case NFTA_FLOWTABLE_NAME -> name = NetlinkMessages.attrString(b, a);
                case NFTA_FLOWTABLE_HANDLE -> handle = u64(b, a);
                default ->
                {
                }
            }
        }
        if (name != null && table.equals(of))
        {
            out.add(new ObjectInfo("flowtable", name, handle));
        }
    }

    /** A named counter's values. */
    public record Counter(long packets, long bytes)
    {
    }

    /**
     * The table's named counters (NFT_MSG_GETOBJ dump of type counter).
     *
     * @return counter name to values, in the kernel's order.
     * @throws NetlinkException with ENOENT if the table is missing.
     * @throws IOException      if the socket fails.
     */
    @Override
    public Map<String, Counter> counters() throws IOException
    {
        final Map<String, Counter> out = new LinkedHashMap<>();
        final NetlinkWriter w = socket.request(NfTables.type(NFT_MSG_GETOBJ), NLM_F_DUMP);
        w.u8(family).u8(NFNETLINK_V0).u16BE(0);
        w.attrString(NFTA_OBJ_TABLE, table);
        w.attrU32BE(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
        socket.execute("NFT_MSG_GETOBJ counters of " + tableName, (b, off, len) -> parseCounter(b, off, len, out));
        return out;
    }

    static void parseCounter(final ByteBuffer b, final int off, final int len, final Map<String, Counter> out)
    {
        final int end = off + len;
        String name = null;
        int type = -1;
        long packets = 0;
        long bytes = 0;
        for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
             a = NetlinkMessages.nextAttr(b, a, end))
        {
            switch (NetlinkMessages.attrType(b, a))
            {
                case NFTA_OBJ_NAME -> name = NetlinkMessages.attrString(b, a);
                case NFTA_OBJ_TYPE -> type = NetlinkMessages.u32BE(b, NetlinkMessages.payload(a));
                case NFTA_OBJ_DATA ->
                {
                    final int dataEnd = NetlinkMessages.attrEnd(b, a);
                    for (int d = NetlinkMessages.firstAttr(b, NetlinkMessages.payload(a), dataEnd); d >= 0;
                         d = NetlinkMessages.nextAttr(b, d, dataEnd))
                    {
                        final int t = NetlinkMessages.attrType(b, d);
                        if (t == NFTA_COUNTER_PACKETS)
                        {
                            packets = NetlinkMessages.u64BE(b, NetlinkMessages.payload(d));
                        }
                        else if (t == NFTA_COUNTER_BYTES)
                        {
                            bytes = NetlinkMessages.u64BE(b, NetlinkMessages.payload(d));
                        }
                    }
                }
                default ->
                {
                }
            }
        }
        if (name != null && type == NFT_OBJECT_COUNTER)
        {
            out.put(name, new Counter(packets, bytes));
        }
    }

    @Override
    public void close()
    {
        socket.close();
    }

    /** NFT_MSG_NEWGEN's NFTA_GEN_ID; one instance per client, so a generation read allocates nothing. */
    private static final class GenerationReader implements NetlinkSocket.MessageHandler
    {
        private int id;
        private boolean seen;

        @Override
        public void onMessage(final ByteBuffer b, final int off, final int len)
        {
            if (NetlinkMessages.type(b, off) != NfTables.type(NFT_MSG_NEWGEN))
            {
                return;
            }
            final int end = off + len;
            for (int a = NetlinkMessages.firstAttr(b, off + NLMSG_HDRLEN + NFGENMSG_SIZE, end); a >= 0;
                 a = NetlinkMessages.nextAttr(b, a, end))
            {
                if (NetlinkMessages.attrType(b, a) == NFTA_GEN_ID)
                {
                    id = NetlinkMessages.u32BE(b, NetlinkMessages.payload(a));
                    seen = true;
                }
            }
        }
    }

    /** The errors of a batch: the first one, and how many. */
    private static final class BatchErrors implements NetlinkSocket.BatchReplyHandler
    {
        private int count;
        private int seq;
        private int errno;
        private String message;

        @Override
        public void onError(final int s, final int e, final String kernelMessage)
        {
            if (count++ == 0)
            {
                seq = s;
                errno = e;
                message = kernelMessage;
            }
        }

        /** The first refused change's index, or -1 for none or the batch itself. */
        int firstIndex(final int firstSeq)
        {
            return count == 0 ? -1 : seq - firstSeq - 1;
        }
    }

    static String familyName(final int family)
    {
        return switch (family)
        {
            case NFPROTO_INET -> "inet";
            case NFPROTO_IPV4 -> "ip";
            case NFPROTO_IPV6 -> "ip6";
            default -> "family " + family;
        };
    }

    static void checkName(final String field, final String name)
    {
        if (name == null || name.isEmpty() || name.length() > 255 || !name.matches("[!-~]+"))
        {
            throw new IllegalArgumentException(field + ": '" + name + "' is not 1..255 printable ASCII characters");
        }
    }
}
