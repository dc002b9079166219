package dev.egressd.agent.conntrack.ctnetlink;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * Classic BPF (the socket filter language of SO_ATTACH_FILTER): the opcodes of {@code <linux/bpf_common.h>} and
 * {@code <linux/filter.h>} that the conntrack event filter uses, an assembler with forward labels, and an
 * interpreter of the same subset with the kernel's semantics, so a program can be run over real message bytes in a
 * unit test before a kernel ever sees it.
 *
 * <p>Classic BPF jumps only forward; a conditional jump reaches at most 255 instructions ahead, an unconditional
 * one ({@code ja}) any distance. {@link Assembler#build()} refuses a program that breaks either rule or is longer
 * than {@link #BPF_MAXINSNS}, rather than let the kernel refuse it (EINVAL) at attach time.
 */
public final class ClassicBpf
{
    /** {@code <linux/bpf_common.h>} instruction classes. */
    public static final int BPF_LD = 0x00;
    /** Load into X. */
    public static final int BPF_LDX = 0x01;
    /** Store A into scratch memory. */
    public static final int BPF_ST = 0x02;
    /** Arithmetic on A. */
    public static final int BPF_ALU = 0x04;
    /** Jumps. */
    public static final int BPF_JMP = 0x05;
    /** Return: the number of bytes to keep, 0 = drop. */
    public static final int BPF_RET = 0x06;
    /** TAX / TXA. */
    public static final int BPF_MISC = 0x07;
    /** Sizes. */
    public static final int BPF_W = 0x00;
    /** 16 bits. */
    public static final int BPF_H = 0x08;
    /** 8 bits. */
    public static final int BPF_B = 0x10;
    /** Modes: the constant k. */
    public static final int BPF_IMM = 0x00;
    /** Packet at offset k. */
    public static final int BPF_ABS = 0x20;
    /** Packet at X + k. */
    public static final int BPF_IND = 0x40;
    /** Scratch memory word k. */
    public static final int BPF_MEM = 0x60;
    /** ALU op: and. */
    public static final int BPF_AND = 0x50;
    /** Jump ops. */
    public static final int BPF_JA = 0x00;
    /** Jump if A == k. */
    public static final int BPF_JEQ = 0x10;
    /** Jump if A &amp; k != 0. */
    public static final int BPF_JSET = 0x40;
    /** Operand source: k. */
    public static final int BPF_K = 0x00;
    /** {@code <linux/filter.h>} BPF_MISC ops: X = A. */
    public static final int BPF_TAX = 0x00;
    /** {@code <linux/filter.h>} BPF_MISC ops: A = X. */
    public static final int BPF_TXA = 0x80;
    /** {@code <linux/bpf_common.h>} the longest program the kernel takes. */
    public static final int BPF_MAXINSNS = 4096;
    /** {@code <linux/filter.h>} scratch memory words. */
    public static final int BPF_MEMWORDS = 16;
    /** {@code <linux/filter.h>} where the ancillary loads start (a negative offset). */
    public static final int SKF_AD_OFF = -0x1000;
    /** {@code <linux/filter.h>} A = offset of the netlink attribute of type X, searched from offset A; 0 if none. */
    public static final int SKF_AD_NLATTR = 12;
    /** {@code <linux/filter.h>} A = offset of the attribute of type X nested in the attribute at offset A; 0 if none. */
    public static final int SKF_AD_NLATTR_NEST = 16;
    /** Size of one {@code struct sock_filter}: u16 code, u8 jt, u8 jf, u32 k. */
    public static final int INSTRUCTION_SIZE = 8;
    /** The return value that keeps the whole message (~0U, as libnetfilter_conntrack's filters return). */
    public static final int ACCEPT = -1;
    /** The return value that drops the message. */
    public static final int DROP = 0;

    private static final int NLA_HDRLEN = 4;
    private static final int NLA_TYPE_MASK = 0x3FFF;

    private ClassicBpf()
    {
    }

    /** A finished program: one {@code struct sock_filter} per instruction. */
    public static final class Program
    {
        private final short[] code;
        private final byte[] jt;
        private final byte[] jf;
        private final int[] k;

        private Program(final short[] code, final byte[] jt, final byte[] jf, final int[] k)
        {
            this.code = code;
            this.jt = jt;
            this.jf = jf;
            this.k = k;
        }

        /** @return the number of instructions. */
        public int length()
        {
            return code.length;
        }

        /**
         * The program as the kernel reads it: {@code struct sock_filter[]} in native byte order.
         *
         * @return a direct buffer of {@link #length()} x {@value #INSTRUCTION_SIZE} bytes.
         */
        public ByteBuffer toNative()
        {
            final ByteBuffer b = ByteBuffer.allocateDirect(code.length * INSTRUCTION_SIZE).order(ByteOrder.nativeOrder());
            for (int i = 0; i < code.length; i++)
            {
                b.putShort(i * INSTRUCTION_SIZE, code[i]);
                b.put(i * INSTRUCTION_SIZE + 2, jt[i]);
                b.put(i * INSTRUCTION_SIZE + 3, jf[i]);
                b.putInt(i * INSTRUCTION_SIZE + 4, k[i]);
            }
            return b;
        }

        /**
         * Runs the program over one message as the kernel's socket filter would (the ancillary netlink attribute
         * loads included); a load outside the message ends the program with 0 (drop), as in the kernel.
         *
         * @param packet the message bytes (one netlink message: what the kernel puts in one skb).
         * @param length how many bytes of {@code packet} are the message.
         * @return the return value: 0 drops the message.
         */
        public int run(final byte[] packet, final int length)
        {
            int a = 0;
            int x = 0;
            final int[] mem = new int[BPF_MEMWORDS];
            int pc = 0;
            while (pc < code.length)
            {
                final int c = code[pc] & 0xFFFF;
                final int kk = k[pc];
                switch (c & 0x07)
                {
                    case BPF_LD ->
                    {
                        final int mode = c & 0xE0;
                        if (mode == BPF_IMM)
                        {
                            a = kk;
                        }
                        else if (mode == BPF_MEM)
                        {
                            a = mem[kk];
                        }
                        else if (mode == BPF_ABS && kk == SKF_AD_OFF + SKF_AD_NLATTR)
                        {
                            a = nlattr(packet, length, a, x);
                        }
                        else if (mode == BPF_ABS && kk == SKF_AD_OFF + SKF_AD_NLATTR_NEST)
                        {
                            a = nlattrNest(packet, length, a, x);
                        }
                        else if (mode == BPF_ABS || mode == BPF_IND)
                        {
                            final long at = (mode == BPF_IND ? (x & 0xFFFF_FFFFL) : 0) + kk;
                            final int size = switch (c & 0x18)
                            {
                                case BPF_W -> 4;
                                case BPF_H -> 2;
                                default -> 1;
                            };
                            if (kk < 0 || at + size > length)
                            {
                                return DROP;
                            }
                            int v = 0;
                            for (int i = 0; i < size; i++)
                            {
                                v = (v << 8) | (packet[(int)at + i] & 0xFF); // network order, as the kernel loads
                            }
                            a = v;
                        }
                        else
                        {
                            throw new IllegalStateException("unsupported load 0x" + Integer.toHexString(c));
                        }
                    }
                    case BPF_LDX ->
                    {
                        if ((c & 0xE0) != BPF_IMM)
                        {
                            throw new IllegalStateException("unsupported ldx 0x" + Integer.toHexString(c));
                        }
                        x = kk;
                    }
                    case BPF_ST -> mem[kk] = a;
                    case BPF_ALU ->
                    {
                        if (c != (BPF_ALU | BPF_AND | BPF_K))
                        {
                            throw new IllegalStateException("unsupported alu 0x" + Integer.toHexString(c));
                        }
                        a &= kk;
                    }
                    case BPF_JMP ->
                    {
                        final int op = c & 0xF0;
                        if (op == BPF_JA)
                        {
                            pc += kk;
                        }
                        else
                        {
                            final boolean taken = switch (op)
                            {
                                case BPF_JEQ -> a == kk;
                                case BPF_JSET -> (a & kk) != 0;
                                default -> throw new IllegalStateException("unsupported jump 0x" + Integer.toHexString(c));
                            };
                            pc += taken ? (jt[pc] & 0xFF) : (jf[pc] & 0xFF);
                        }
                    }
                    case BPF_RET ->
                    {
                        return kk;
                    }
                    case BPF_MISC -> {
                        if ((c & 0xF8) == BPF_TAX)
                        {
                            x = a;
                        }
                        else
                        {
                            a = x;
                        }
                    }
                    default -> throw new IllegalStateException("unsupported class 0x" + Integer.toHexString(c));
                }
                pc++;
            }
            throw new IllegalStateException("ran off the end of the program");
        }

        @Override
        public String toString()
        {
            final StringBuilder s = new StringBuilder();
            for (int i = 0; i < code.length; i++)
            {
                s.append(String.format("%4d: code 0x%02x jt %3d jf %3d k 0x%08x%n", i, code[i], jt[i] & 0xFF,
                    jf[i] & 0xFF, k[i]));
            }
            return s.toString();
        }
    }

    /** The kernel's {@code bpf_skb_get_nlattr}: {@code nla_find} over the rest of the message from offset a. */
    private static int nlattr(final byte[] p, final int length, final int a, final int x)
    {
        if (length < NLA_HDRLEN || a < 0 || a > length - NLA_HDRLEN)
        {
            return 0;
        }
        return find(p, a, length, x);
    }

    /** The kernel's {@code bpf_skb_get_nlattr_nest}: {@code nla_find_nested} in the attribute at offset a. */
    private static int nlattrNest(final byte[] p, final int length, final int a, final int x)
    {
        if (length < NLA_HDRLEN || a < 0 || a > length - NLA_HDRLEN)
        {
            return 0;
        }
        final int len = u16(p, a);
        if (len > length - a)
        {
            return 0;
        }
        return find(p, a + NLA_HDRLEN, a + len, x);
    }

    private static int find(final byte[] p, final int from, final int end, final int type)
    {
        int at = from;
        while (end - at >= NLA_HDRLEN)
        {
            final int len = u16(p, at);
            if (len < NLA_HDRLEN || len > end - at)
            {
                return 0; // !nla_ok: the walk stops
            }
            if ((u16(p, at + 2) & NLA_TYPE_MASK) == type)
            {
                return at;
            }
            at += (len + 3) & ~3;
        }
        return 0;
    }

    /** Netlink attribute headers are in host order. */
    private static int u16(final byte[] p, final int at)
    {
        return ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN ? (p[at] & 0xFF) | (p[at + 1] & 0xFF) << 8
            : (p[at] & 0xFF) << 8 | (p[at + 1] & 0xFF);
    }

    /** Builds a program; jumps name labels placed later. */
    public static final class Assembler
    {
        private short[] code = new short[64];
        private byte[] jt = new byte[64];
        private byte[] jf = new byte[64];
        private int[] k = new int[64];
        private String[] jtLabel = new String[64];
        private String[] jfLabel = new String[64];
        private int n;
        private final java.util.Map<String, Integer> labels = new java.util.HashMap<>();

        /** @return the number of instructions so far. */
        public int size()
        {
            return n;
        }

        /**
         * Places a label at the next instruction.
         *
         * @param name the label, unique in the program.
         * @return this.
         */
        public Assembler label(final String name)
        {
            if (labels.put(name, n) != null)
            {
                throw new IllegalArgumentException("label " + name + " placed twice");
            }
            return this;
        }

        /**
         * A statement without jumps.
         *
         * @param opcode the code.
         * @param value  k.
         * @return this.
         */
        public Assembler stmt(final int opcode, final int value)
        {
            return add(opcode, value, null, null);
        }

        /**
         * A conditional jump to labels (null: the next instruction).
         *
         * @param opcode  e.g. {@code BPF_JMP | BPF_JEQ | BPF_K}.
         * @param value   k.
         * @param ifTrue  where to go if the test holds.
         * @param ifFalse where to go if not.
         * @return this.
         */
        public Assembler jump(final int opcode, final int value, final String ifTrue, final String ifFalse)
        {
            return add(opcode, value, ifTrue, ifFalse);
        }

        /**
         * An unconditional jump (any distance forward).
         *
         * @param target the label.
         * @return this.
         */
        public Assembler ja(final String target)
        {
            return add(BPF_JMP | BPF_JA, 0, target, null);
        }

        private Assembler add(final int opcode, final int value, final String t, final String f)
        {
            if (n == code.length)
            {
                code = Arrays.copyOf(code, n * 2);
                jt = Arrays.copyOf(jt, n * 2);
                jf = Arrays.copyOf(jf, n * 2);
                k = Arrays.copyOf(k, n * 2);
                jtLabel = Arrays.copyOf(jtLabel, n * 2);
                jfLabel = Arrays.copyOf(jfLabel, n * 2);
            }
            code[n] = (short)opcode;
            k[n] = value;
            jtLabel[n] = t;
            jfLabel[n] = f;
            n++;
            return this;
        }

        /**
         * Resolves the labels.
         *
         * @return the program.
         * @throws IllegalStateException if a label is missing or behind its jump, a conditional jump is longer than
         *                               255, or the program is longer than {@link #BPF_MAXINSNS}.
         */
        public Program build()
        {
            if (n == 0 || n > BPF_MAXINSNS)
            {
                throw new IllegalStateException("a classic BPF program has 1.." + BPF_MAXINSNS + " instructions, not " + n);
            }
            for (int i = 0; i < n; i++)
            {
                final boolean ja = code[i] == (short)(BPF_JMP | BPF_JA);
                if (ja)
                {
                    k[i] = offset(i, jtLabel[i], Integer.MAX_VALUE);
                }
                else
                {
                    jt[i] = (byte)offset(i, jtLabel[i], 255);
                    jf[i] = (byte)offset(i, jfLabel[i], 255);
                }
            }
            return new Program(Arrays.copyOf(code, n), Arrays.copyOf(jt, n), Arrays.copyOf(jf, n), Arrays.copyOf(k, n));
        }

        private int offset(final int from, final String label, final int max)
        {
            if (label == null)
            {
                return 0;
            }
            final Integer to = labels.get(label);
            if (to == null)
            {
                throw new IllegalStateException("label " + label + " never placed");
            }
            final int d = to - from - 1;
            if (d < 0 || d > max)
            {
                throw new IllegalStateException("jump from " + from + " to " + label + " (" + to + ") is out of reach");
            }
            return d;
        }
    }
}
