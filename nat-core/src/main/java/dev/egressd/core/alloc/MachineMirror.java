package dev.egressd.core.alloc;

import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;

/**
 * The allocator's machines as last scanned, by handle, telling each of its readers which handles changed since
 * that reader last looked: what the loop's incremental consumers (the desired plan, the state export, the conntrack
 * feed) keep up to date from, so a change costs them O(what changed) instead of each keeping its own copy and
 * scanning every machine.
 *
 * <p>{@link #update} compares what the allocator reports with the copy, by reference ({@link Machine} and
 * {@link EgressPair} are immutable: a changed one is another reference) and by number; it looks only when the
 * allocator changed since the last look ({@link EgressAllocator#edits()}), so every consumer of a change shares one
 * look, and then only at the machines the allocator says it changed ({@link EgressAllocator#scanChanged}): O(what
 * moved), the id order kept by insertion. A new allocator gets one full scan ({@link EgressAllocator#scanMachines}). A handle that changed is queued on each reader that asked for one of the fields that
 * changed, with those fields ({@link Reader#fields(int)}); one that appeared or went away is queued on every reader,
 * with {@link #PRESENCE} and the fields it had or has. A machine gone and its handle reused by another between two
 * looks is a change of {@link #MACHINE} (another reference) on the same handle.
 *
 * <p>Another allocator than the last (a rollback rebuilds it) is compared like any other scan: its machines are
 * other references, so they are all changed. Single thread (the loop's).
 */
public final class MachineMirror
{
    /** The machine's record. */
    public static final int MACHINE = 1;
    /** Its scope. */
    public static final int SCOPE = 1 << 1;
    /** The pair it leaves from. */
    public static final int PAIR = 1 << 2;
    /** Its ports. */
    public static final int PORTS = 1 << 3;
    /** Its block. */
    public static final int BLOCK = 1 << 4;
    /** Its machine-scoped pair. */
    public static final int SCOPED = 1 << 5;
    /** Whether it is held closed after a restore lost its machine-scoped pair. */
    public static final int PAIR_LOST = 1 << 6;
    /** The handle holds a machine where it held none, or the other way round. */
    public static final int PRESENCE = 1 << 7;
    /** Every field. */
    public static final int ALL = (1 << 8) - 1;

    private EgressAllocator mirrored;
    private long mirroredEdits;
    private Machine[] machine = new Machine[64];
    private Scope[] scope = new Scope[64];
    private EgressPair[] pair = new EgressPair[64];
    private int[] block = new int[64];
    private int[] first = new int[64];
    private int[] last = new int[64];
    private EgressPair[] scoped = new EgressPair[64];
    private boolean[] pairLost = new boolean[64];
    private long[] seen = new long[64];
    private int handles;
    private long scans;
    private int[] order = new int[64];
    private int count;
    private final BitSet withScoped = new BitSet();
    private final List<Reader> readers = new ArrayList<>();
    private final EgressAllocator.MachineScan visit = this::visit;
    private final EgressAllocator.MachineScan visitChanged = this::visitChanged;
    private final java.util.function.IntConsumer gone = this::gone;
    private long incremental;

    /** An empty copy: the first {@link #update} finds every machine new. */
    public MachineMirror()
    {
        Arrays.fill(block, -1);
        Arrays.fill(first, -1);
        Arrays.fill(last, -1);
    }

    /**
     * Brings the copy up to the allocator's machines: nothing to do when the allocator is the same and has not
     * changed since the last scan, else one scan.
     *
     * @param allocator the allocator now.
     */
    public void update(final EgressAllocator allocator)
    {
        if (allocator == mirrored && allocator.edits() == mirroredEdits)
        {
            return;
        }
        final boolean same = allocator == mirrored;
        mirrored = allocator;
        mirroredEdits = allocator.edits();
        scans++;
        // The same allocator: only the machines it says it changed since the last look (O(what moved)); its first
        // look, or another reader took its changes: every machine.
        if (same && allocator.scanChanged(this, visitChanged, gone))
        {
            incremental++;
            return;
        }
        allocator.resetChanged(this);
        count = 0;
        allocator.scanMachines(visit);
        for (int h = 0; h < handles; h++)
        {
            if (machine[h] != null && seen[h] != scans)
            {
                final int was = fieldsOf(h);
                clear(h);
                changed(h, was | PRESENCE);
            }
        }
    }

    /**
     * How many of the {@link #scans()} looked only at the machines the allocator said it changed.
     *
     * @return the count.
     */
    public long incrementalScans()
    {
        return incremental;
    }

    /**
     * Scans done so far ({@link #update} calls that found the allocator changed).
     *
     * @return the count.
     */
    public long scans()
    {
        return scans;
    }

    /**
     * A new reader, to whom every machine now held is new.
     *
     * @param fields the fields whose changes it is told of ({@link #PRESENCE} is always told).
     * @return the reader.
     */
    public Reader reader(final int fields)
    {
        final Reader r = new Reader(fields | PRESENCE);
        readers.add(r);
        r.all();
        return r;
    }

    private void visit(final int h, final Machine m, final Scope s, final EgressPair p, final int b,
        final int firstPort, final int lastPort, final EgressPair sp, final boolean lost)
    {
        if (h >= machine.length)
        {
            grow(h + 1);
        }
        handles = Math.max(handles, h + 1);
        seen[h] = scans;
        order[count++] = h;
        record(h, m, s, p, b, firstPort, lastPort, sp, lost);
    }

    /** One changed machine: as {@link #visit}, keeping the id order by insertion instead of a walk. */
    private void visitChanged(final int h, final Machine m, final Scope s, final EgressPair p, final int b,
        final int firstPort, final int lastPort, final EgressPair sp, final boolean lost)
    {
        if (h >= machine.length)
        {
            grow(h + 1);
        }
        handles = Math.max(handles, h + 1);
        seen[h] = scans;
        final Machine was = machine[h];
        final boolean moved = was == null || !was.id().equals(m.id());
        if (was != null && moved)
        {
            removeFromOrder(h);
        }
        record(h, m, s, p, b, firstPort, lastPort, sp, lost);
        if (moved)
        {
            insertInOrder(h);
        }
    }

    /** A changed handle that holds no machine now. */
    private void gone(final int h)
    {
        if (h < machine.length && machine[h] != null)
        {
            removeFromOrder(h);
            final int was = fieldsOf(h);
            clear(h);
            changed(h, was | PRESENCE);
        }
    }

    /** Where {@code id} is, or would go, in {@link #order} (the first of equal ids). */
    private int search(final String id)
    {
        int lo = 0;
        int hi = count;
        while (lo < hi)
        {
            final int mid = (lo + hi) >>> 1;
            if (machine[order[mid]].id().compareTo(id) < 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        return lo;
    }

    private void insertInOrder(final int h)
    {
        final int at = search(machine[h].id());
        System.arraycopy(order, at, order, at + 1, count - at);
        order[at] = h;
        count++;
    }

    /** Removes handle h, whose machine is still recorded, from the order (an id may be held twice in a batch). */
    private void removeFromOrder(final int h)
    {
        final String id = machine[h].id();
        for (int at = search(id); at < count && machine[order[at]].id().equals(id); at++)
        {
            if (order[at] == h)
            {
                System.arraycopy(order, at + 1, order, at, count - at - 1);
                count--;
                return;
            }
        }
    }

    private void record(final int h, final Machine m, final Scope s, final EgressPair p, final int b,
        final int firstPort, final int lastPort, final EgressPair sp, final boolean lost)
    {
        int fields = 0;
        if (machine[h] != m)
        {
            fields |= machine[h] == null ? PRESENCE | MACHINE : MACHINE;
            machine[h] = m;
        }
        if (scope[h] != s)
        {
            fields |= SCOPE;
            scope[h] = s;
        }
        if (pair[h] != p)
        {
            fields |= PAIR;
            pair[h] = p;
        }
        if (first[h] != firstPort || last[h] != lastPort)
        {
            fields |= PORTS;
            first[h] = firstPort;
            last[h] = lastPort;
        }
        if (block[h] != b)
        {
            fields |= BLOCK;
            block[h] = b;
        }
        if (scoped[h] != sp)
        {
            fields |= SCOPED;
            scoped[h] = sp;
            withScoped.set(h, sp != null);
        }
        if (pairLost[h] != lost)
        {
            fields |= PAIR_LOST;
            pairLost[h] = lost;
        }
        if (fields != 0)
        {
            changed(h, fields);
        }
    }

    /** The fields a held handle has that an empty one has not. */
    private int fieldsOf(final int h)
    {
        return MACHINE | SCOPE | (pair[h] != null ? PAIR : 0) | (first[h] != -1 || last[h] != -1 ? PORTS : 0)
            | (block[h] != -1 ? BLOCK : 0) | (scoped[h] != null ? SCOPED : 0) | (pairLost[h] ? PAIR_LOST : 0);
    }

    private void clear(final int h)
    {
        machine[h] = null;
        scope[h] = null;
        pair[h] = null;
        first[h] = -1;
        last[h] = -1;
        block[h] = -1;
        scoped[h] = null;
        pairLost[h] = false;
        withScoped.clear(h);
    }

    private void changed(final int h, final int fields)
    {
        for (final Reader r : readers)
        {
            r.queue(h, fields);
        }
    }

    private void grow(final int size)
    {
        final int was = machine.length;
        final int n = Math.max(size, was * 2);
        machine = Arrays.copyOf(machine, n);
        scope = Arrays.copyOf(scope, n);
        pair = Arrays.copyOf(pair, n);
        block = Arrays.copyOf(block, n);
        first = Arrays.copyOf(first, n);
        last = Arrays.copyOf(last, n);
        scoped = Arrays.copyOf(scoped, n);
        pairLost = Arrays.copyOf(pairLost, n);
        seen = Arrays.copyOf(seen, n);
        order = Arrays.copyOf(order, n);
        Arrays.fill(block, was, n, -1);
        Arrays.fill(first, was, n, -1);
        Arrays.fill(last, was, n, -1);
        for (final Reader r : readers)
        {
            r.grow(n);
        }
    }

    /**
     * How many machines the last scan found.
     *
     * @return the count.
     */
    public int size()
    {
        return count;
    }

    /**
     * The handle of the i-th machine of the last scan, in id order.
     *
     * @param i from 0 to {@link #size()} (excluded).
     * @return the handle.
     */
    public int inOrder(final int i)
    {
        return order[i];
    }

    /**
     * The next handle at or after {@code from} that holds a machine with a machine-scoped pair.
     *
     * @param from the first handle to look at.
     * @return the handle, or -1 if none.
     */
    public int nextScoped(final int from)
    {
        return withScoped.nextSetBit(from);
    }

    /**
     * Whether a handle holds a machine.
     *
     * @param h the handle.
     * @return true if so.
     */
    public boolean present(final int h)
    {
        return h < machine.length && machine[h] != null;
    }

    /**
     * The machine a handle holds.
     *
     * @param h the handle.
     * @return its record, or null.
     */
    public Machine machine(final int h)
    {
        return h < machine.length ? machine[h] : null;
    }

    /**
     * A handle's scope.
     *
     * @param h the handle.
     * @return the scope, or null if it holds no machine.
     */
    public Scope scope(final int h)
    {
        return scope[h];
    }

    /**
     * The pair a handle's machine leaves from.
     *
     * @param h the handle.
     * @return the pair, or null.
     */
    public EgressPair pair(final int h)
    {
        return pair[h];
    }

    /**
     * A handle's block when app-scoped.
     *
     * @param h the handle.
     * @return the block, or -1.
     */
    public int block(final int h)
    {
        return block[h];
    }

    /**
     * A handle's first port.
     *
     * @param h the handle.
     * @return the port, or -1 when it has no pair.
     */
    public int firstPort(final int h)
    {
        return first[h];
    }

    /**
     * A handle's last port.
     *
     * @param h the handle.
     * @return the port, or -1 when it has no pair.
     */
    public int lastPort(final int h)
    {
        return last[h];
    }

    /**
     * A handle's machine-scoped pair.
     *
     * @param h the handle.
     * @return the pair, or null.
     */
    public EgressPair scoped(final int h)
    {
        return scoped[h];
    }

    /**
     * Whether a handle's machine is held closed after a restore lost its machine-scoped pair.
     *
     * @param h the handle.
     * @return true if so.
     */
    public boolean pairLost(final int h)
    {
        return pairLost[h];
    }

    /**
     * One consumer's view of what changed: the handles whose fields it asked for changed since it last took them
     * ({@link #clear()}), each once, with the fields that changed meanwhile.
     */
    public final class Reader
    {
        private final int wanted;
        private int[] pending = new int[64];
        private int[] fields = new int[64];
        private int n;

        private Reader(final int wanted)
        {
            this.wanted = wanted;
            grow(machine.length);
        }

        private void grow(final int size)
        {
            if (fields.length < size)
            {
                pending = Arrays.copyOf(pending, size);
                fields = Arrays.copyOf(fields, size);
            }
        }

        private void queue(final int h, final int changed)
        {
            final int f = changed & wanted;
            if (f == 0)
            {
                return;
            }
            if (fields[h] == 0)
            {
                pending[n++] = h;
            }
            fields[h] |= f;
        }

        /**
         * How many handles changed.
         *
         * @return the count.
         */
        public int size()
        {
            return n;
        }

        /**
         * The i-th handle that changed (in no particular order).
         *
         * @param i from 0 to {@link #size()} (excluded).
         * @return the handle.
         */
        public int handle(final int i)
        {
            return pending[i];
        }

        /**
         * What changed of a queued handle.
         *
         * @param h the handle.
         * @return the fields (a mask of {@link MachineMirror#MACHINE} and the others).
         */
        public int fields(final int h)
        {
            return h < fields.length ? fields[h] : 0;
        }

        /** Takes what changed as known: the next changes start from here. */
        public void clear()
        {
            for (int i = 0; i < n; i++)
            {
                fields[pending[i]] = 0;
            }
            n = 0;
        }

        /** Queues every handle that holds a machine, as new ({@link MachineMirror#PRESENCE} and all its fields). */
        public void all()
        {
            for (int i = 0; i < count; i++)
            {
                final int h = order[i];
                queue(h, fieldsOf(h) | PRESENCE);
            }
        }
    }
}
