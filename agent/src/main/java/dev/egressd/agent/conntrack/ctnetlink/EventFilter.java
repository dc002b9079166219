package dev.egressd.agent.conntrack.ctnetlink;

import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_ABS;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_ALU;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_AND;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_B;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_IMM;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_IND;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_JEQ;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_JMP;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_JSET;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_K;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_LD;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_LDX;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_MISC;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_RET;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_TAX;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.BPF_W;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.SKF_AD_NLATTR;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.SKF_AD_NLATTR_NEST;
import static dev.egressd.agent.conntrack.ctnetlink.ClassicBpf.SKF_AD_OFF;

import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.netlink.NetlinkConstants;
import java.nio.ByteOrder;

/**
 * The socket filter on the conntrack event socket: it lets through only the events the ledger acts on, so the
 * others never cross into Java. What the ledger does with an event (docs/design.md, "Conntrack"): NEW and DESTROY
 * of a source-translated flow from a guest address open and close it; an UPDATE of such a TCP flow to TIME_WAIT or
 * CLOSE closes it; everything else is ignored. So the program keeps, per message:
 * <ol>
 *   <li>anything not a ctnetlink NEW or DELETE (nothing else is expected on the socket: kept, Java decides);</li>
 *   <li>of an UPDATE (NEW without NLM_F_CREATE), only one whose CTA_PROTOINFO_TCP_STATE is TIME_WAIT or CLOSE;</li>
 *   <li>of a DESTROY, none whose CTA_PROTOINFO_TCP_STATE is TIME_WAIT or CLOSE (the 6.x kernels this was built on
 *       report the state in a DESTROY too; a DESTROY without one is kept). The UPDATE to that state closed the flow
 *       in the ledger, or the flow was never opened (a NEW or dumped entry in a closing state is not counted), or an
 *       overrun lost that UPDATE and the resync that follows sweeps the flow: such a DESTROY changes nothing, and it
 *       is a third of the events of a short TCP connection;</li>
 *   <li>only a flow whose CTA_STATUS has IPS_SRC_NAT, or that carries no status;</li>
 *   <li>only a flow whose original source (CTA_TUPLE_ORIG, CTA_TUPLE_IP, CTA_IP_V4_SRC / _V6_SRC) is in the
 *       {@link GuestPrefixes} cover, or whose tuple cannot be found.</li>
 * </ol>
 * Every doubt keeps the message: a message kept wrongly costs a parse, one dropped wrongly would be a flow the
 * ledger misses until the next resync. The attributes are found with the kernel's netlink-attribute helpers
 * (SKF_AD_NLATTR, SKF_AD_NLATTR_NEST), as libnetfilter_conntrack's event filters do. The kernel puts each event in
 * its own skb, so the program sees one message at a time.
 */
public final class EventFilter
{
    /** Where the attributes start: struct nlmsghdr, then struct nfgenmsg. */
    static final int ATTRIBUTES = NetlinkConstants.NLMSG_HDRLEN + NetlinkConstants.NFGENMSG_SIZE;
    /** nfgenmsg.nfgen_family. */
    static final int FAMILY = NetlinkConstants.NLMSG_HDRLEN;

    private static final boolean LITTLE = ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN;
    /** nlmsg_type is a host-order u16 at 4: the subsystem is its high byte, the message its low byte. */
    static final int SUBSYS_BYTE = LITTLE ? 5 : 4;
    static final int MSG_BYTE = LITTLE ? 4 : 5;
    /** nlmsg_flags is a host-order u16 at 6; NLM_F_CREATE (0x400) is in its high byte. */
    static final int FLAGS_HIGH_BYTE = LITTLE ? 7 : 6;

    private static final int NLATTR = SKF_AD_OFF + SKF_AD_NLATTR;
    private static final int NLATTR_NEST = SKF_AD_OFF + SKF_AD_NLATTR_NEST;
    private static final int LD_IMM = BPF_LD | BPF_W | BPF_IMM;
    private static final int LD_ABS_W = BPF_LD | BPF_W | BPF_ABS;
    private static final int LD_ABS_B = BPF_LD | BPF_B | BPF_ABS;
    private static final int LD_IND_W = BPF_LD | BPF_W | BPF_IND;
    private static final int LD_IND_B = BPF_LD | BPF_B | BPF_IND;
    private static final int LDX_IMM = BPF_LDX | BPF_W | BPF_IMM;
    private static final int JEQ = BPF_JMP | BPF_JEQ | BPF_K;
    private static final int JSET = BPF_JMP | BPF_JSET | BPF_K;
    private static final int RET = BPF_RET | BPF_K;
    private static final int TAX = BPF_MISC | BPF_TAX;

    private EventFilter()
    {
    }

    /**
     * Loads the message's TCP state (CTA_PROTOINFO, then CTA_PROTOINFO_TCP, then CTA_PROTOINFO_TCP_STATE) into A, or
     * jumps to {@code missing} when the message carries none: what both the DESTROY and the UPDATE paths judge.
     */
    private static ClassicBpf.Assembler loadTcpState(final ClassicBpf.Assembler a, final String missing)
    {
        a.stmt(LD_IMM, ATTRIBUTES).stmt(LDX_IMM, NetlinkConstants.CTA_PROTOINFO).stmt(LD_ABS_W, NLATTR)
            .jump(JEQ, 0, missing, null);
        a.stmt(LDX_IMM, NetlinkConstants.CTA_PROTOINFO_TCP).stmt(LD_ABS_W, NLATTR_NEST).jump(JEQ, 0, missing, null);
        a.stmt(LDX_IMM, NetlinkConstants.CTA_PROTOINFO_TCP_STATE).stmt(LD_ABS_W, NLATTR_NEST)
            .jump(JEQ, 0, missing, null);
        return a.stmt(TAX, 0).stmt(LD_IND_B, NetlinkConstants.NLA_HDRLEN);
    }

    /**
     * The program for a cover of the guest addresses.
     *
     * @param guests the cover.
     * @return the program (at most 4 instructions per IPv4 and 13 per IPv6 prefix, plus about 60).
     */
    public static ClassicBpf.Program program(final GuestPrefixes guests)
    {
        final ClassicBpf.Assembler a = new ClassicBpf.Assembler();
        a.stmt(LD_ABS_B, SUBSYS_BYTE).jump(JEQ, NetlinkConstants.NFNL_SUBSYS_CTNETLINK, null, "accept");
        a.stmt(LD_ABS_B, MSG_BYTE).jump(JEQ, NetlinkConstants.IPCTNL_MSG_CT_NEW, "new", null)
            .jump(JEQ, NetlinkConstants.IPCTNL_MSG_CT_DELETE, "destroy", "accept");
        // a DESTROY of a TCP flow already in TIME_WAIT or CLOSE: its UPDATE to that state closed it (or it was never
        // opened), so the DESTROY would be a no-op; a DESTROY without a TCP state (UDP, ICMP, older kernels) is kept
        loadTcpState(a.label("destroy"), "status")
            .jump(JEQ, NetlinkConstants.TCP_CONNTRACK_TIME_WAIT, "drop", null)
            .jump(JEQ, NetlinkConstants.TCP_CONNTRACK_CLOSE, "drop", "status");
        a.label("new").stmt(LD_ABS_B, FLAGS_HIGH_BYTE).jump(JSET, NetlinkConstants.NLM_F_CREATE >>> 8, "status", null);
        // an UPDATE: only TCP's TIME_WAIT and CLOSE mean anything to the ledger
        loadTcpState(a, "drop")
            .jump(JEQ, NetlinkConstants.TCP_CONNTRACK_TIME_WAIT, "status", null)
            .jump(JEQ, NetlinkConstants.TCP_CONNTRACK_CLOSE, "status", "drop");
        // source-translated, or no status to tell
        a.label("status").stmt(LD_IMM, ATTRIBUTES).stmt(LDX_IMM, NetlinkConstants.CTA_STATUS).stmt(LD_ABS_W, NLATTR)
            .jump(JEQ, 0, "tuple", null);
        a.stmt(TAX, 0).stmt(LD_IND_W, NetlinkConstants.NLA_HDRLEN).jump(JSET, NetlinkConstants.IPS_SRC_NAT, "tuple", "drop");
        // the original source
        a.label("tuple").stmt(LD_IMM, ATTRIBUTES).stmt(LDX_IMM, NetlinkConstants.CTA_TUPLE_ORIG).stmt(LD_ABS_W, NLATTR)
            .jump(JEQ, 0, "accept", null);
        a.stmt(LDX_IMM, NetlinkConstants.CTA_TUPLE_IP).stmt(LD_ABS_W, NLATTR_NEST).jump(JEQ, 0, "accept", null);
        a.stmt(LD_ABS_B, FAMILY).jump(JEQ, LibC.AF_INET, "v4", null).jump(JEQ, LibC.AF_INET6, null, "accept").ja("v6");
        a.label("accept").stmt(RET, ClassicBpf.ACCEPT);
        a.label("drop").stmt(RET, ClassicBpf.DROP);

        a.label("v4");
        tupleIp(a);
        a.stmt(LDX_IMM, NetlinkConstants.CTA_IP_V4_SRC).stmt(LD_ABS_W, NLATTR_NEST)
            .jump(JEQ, 0, null, "v4found").stmt(RET, ClassicBpf.ACCEPT);
        a.label("v4found").stmt(TAX, 0);
        final int[] nets4 = guests.networks4();
        final int mask4 = GuestPrefixes.mask32(guests.length4());
        for (int i = 0; i < nets4.length; i++)
        {
            a.stmt(LD_IND_W, NetlinkConstants.NLA_HDRLEN);
            if (mask4 != -1)
            {
                a.stmt(BPF_ALU | BPF_AND | BPF_K, mask4);
            }
            a.jump(JEQ, nets4[i], null, "v4next" + i).stmt(RET, ClassicBpf.ACCEPT).label("v4next" + i);
        }
        a.stmt(RET, ClassicBpf.DROP);

        a.label("v6");
        tupleIp(a);
        a.stmt(LDX_IMM, NetlinkConstants.CTA_IP_V6_SRC).stmt(LD_ABS_W, NLATTR_NEST)
            .jump(JEQ, 0, null, "v6found").stmt(RET, ClassicBpf.ACCEPT);
        a.label("v6found").stmt(TAX, 0);
        final int len6 = guests.length6();
        for (int i = 0; i < guests.count6(); i++)
        {
            final long high = guests.high6(i);
            final long low = guests.low6(i);
            final int[] words = {(int)(high >>> 32), (int)high, (int)(low >>> 32), (int)low};
            for (int w = 0; w < 4 && 32 * w < len6; w++)
            {
                final int mask = len6 >= 32 * (w + 1) ? -1 : GuestPrefixes.mask32(len6 - 32 * w);
                a.stmt(LD_IND_W, NetlinkConstants.NLA_HDRLEN + 4 * w);
                if (mask != -1)
                {
                    a.stmt(BPF_ALU | BPF_AND | BPF_K, mask);
                }
                a.jump(JEQ, words[w], null, "v6next" + i);
            }
            a.stmt(RET, ClassicBpf.ACCEPT).label("v6next" + i);
        }
        a.stmt(RET, ClassicBpf.DROP);
        return a.build();
    }

    /**
     * A = the offset of CTA_TUPLE_ORIG / CTA_TUPLE_IP, found again rather than kept in scratch memory: the kernel's
     * checker follows the code in a line and counts a word stored before a {@code ret} as unset after it, so a
     * label placed behind a {@code ret} could not load it (EINVAL). Both were found before this point.
     */
    private static void tupleIp(final ClassicBpf.Assembler a)
    {
        a.stmt(LD_IMM, ATTRIBUTES).stmt(LDX_IMM, NetlinkConstants.CTA_TUPLE_ORIG).stmt(LD_ABS_W, NLATTR)
            .stmt(LDX_IMM, NetlinkConstants.CTA_TUPLE_IP).stmt(LD_ABS_W, NLATTR_NEST);
    }
}
