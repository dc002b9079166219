package dev.egressd.agent.conntrack.ctnetlink;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressd.agent.natives.LibC;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

class ClassicBpfTest
{
    private static final Pattern DEFINE = Pattern.compile("^\\s*#\\s*define\\s+(\\w+)\\s+\\(?(-?0x[0-9a-fA-F]+|-?\\d+)\\)?.*$");
    private static final Pattern ENUM = Pattern.compile("^\\s*(\\w+)\\s*=\\s*(0x[0-9a-fA-F]+|\\d+)\\s*,.*$");

    private static Map<String, Long> header(final Path path) throws IOException
    {
        final Map<String, Long> out = new LinkedHashMap<>();
        for (final String line : Files.readAllLines(path))
        {
            Matcher m = DEFINE.matcher(line);
            if (!m.matches())
            {
                m = ENUM.matcher(line);
                if (!m.matches())
                {
                    continue;
                }
            }
            out.putIfAbsent(m.group(1), Long.decode(m.group(2)));
        }
        return out;
    }

    @Test
    void constantsArePinned()
    {
        assertThat(new int[] {ClassicBpf.BPF_LD, ClassicBpf.BPF_LDX, ClassicBpf.BPF_ST, ClassicBpf.BPF_ALU,
            ClassicBpf.BPF_JMP, ClassicBpf.BPF_RET, ClassicBpf.BPF_MISC}).containsExactly(0, 1, 2, 4, 5, 6, 7);
        assertThat(new int[] {ClassicBpf.BPF_W, ClassicBpf.BPF_H, ClassicBpf.BPF_B}).containsExactly(0, 0x08, 0x10);
        assertThat(new int[] {ClassicBpf.BPF_IMM, ClassicBpf.BPF_ABS, ClassicBpf.BPF_IND, ClassicBpf.BPF_MEM})
            .containsExactly(0, 0x20, 0x40, 0x60);
        assertThat(new int[] {ClassicBpf.BPF_AND, ClassicBpf.BPF_JA, ClassicBpf.BPF_JEQ, ClassicBpf.BPF_JSET,
            ClassicBpf.BPF_K, ClassicBpf.BPF_TAX, ClassicBpf.BPF_TXA}).containsExactly(0x50, 0, 0x10, 0x40, 0, 0, 0x80);
        assertThat(ClassicBpf.SKF_AD_OFF + ClassicBpf.SKF_AD_NLATTR).isEqualTo(-4084);
        assertThat(ClassicBpf.SKF_AD_OFF + ClassicBpf.SKF_AD_NLATTR_NEST).isEqualTo(-4080);
        assertThat(ClassicBpf.BPF_MAXINSNS).isEqualTo(4096);
        assertThat(ClassicBpf.BPF_MEMWORDS).isEqualTo(16);
        assertThat(LibC.SO_ATTACH_FILTER).isEqualTo(26);
        assertThat(LibC.MSG_WAITFORONE).isEqualTo(0x10000);
    }

    /** Re-reads each constant from the headers installed here, so a typo cannot agree with the pinned table. */
    @Test
    void constantsMatchTheInstalledHeaders() throws IOException
    {
        final Path common = Path.of("/usr/include/linux/bpf_common.h");
        final Path filter = Path.of("/usr/include/linux/filter.h");
        final Path socket = Path.of("/usr/include/asm-generic/socket.h");
        assumeTrue(Files.exists(common) && Files.exists(filter) && Files.exists(socket), "no kernel UAPI headers");
        final Map<String, Long> h = header(common);
        h.putAll(header(filter));
        h.putAll(header(socket));
        final Map<String, Integer> ours = new LinkedHashMap<>();
        ours.put("BPF_LD", ClassicBpf.BPF_LD);
        ours.put("BPF_LDX", ClassicBpf.BPF_LDX);
        ours.put("BPF_ST", ClassicBpf.BPF_ST);
        ours.put("BPF_ALU", ClassicBpf.BPF_ALU);
        ours.put("BPF_JMP", ClassicBpf.BPF_JMP);
        ours.put("BPF_RET", ClassicBpf.BPF_RET);
        ours.put("BPF_MISC", ClassicBpf.BPF_MISC);
        ours.put("BPF_W", ClassicBpf.BPF_W);
        ours.put("BPF_H", ClassicBpf.BPF_H);
        ours.put("BPF_B", ClassicBpf.BPF_B);
        ours.put("BPF_IMM", ClassicBpf.BPF_IMM);
        ours.put("BPF_ABS", ClassicBpf.BPF_ABS);
        ours.put("BPF_IND", ClassicBpf.BPF_IND);
        ours.put("BPF_MEM", ClassicBpf.BPF_MEM);
        ours.put("BPF_AND", ClassicBpf.BPF_AND);
        ours.put("BPF_JA", ClassicBpf.BPF_JA);
        ours.put("BPF_JEQ", ClassicBpf.BPF_JEQ);
        ours.put("BPF_JSET", ClassicBpf.BPF_JSET);
        ours.put("BPF_K", ClassicBpf.BPF_K);
        ours.put("BPF_TAX", ClassicBpf.BPF_TAX);
        ours.put("BPF_TXA", ClassicBpf.BPF_TXA);
        ours.put("BPF_MAXINSNS", ClassicBpf.BPF_MAXINSNS);
        ours.put("BPF_MEMWORDS", ClassicBpf.BPF_MEMWORDS);
        ours.put("SKF_AD_OFF", ClassicBpf.SKF_AD_OFF);
        ours.put("SKF_AD_NLATTR", ClassicBpf.SKF_AD_NLATTR);
        ours.put("SKF_AD_NLATTR_NEST", ClassicBpf.SKF_AD_NLATTR_NEST);
        ours.put("SO_ATTACH_FILTER", LibC.SO_ATTACH_FILTER);
        for (final Map.Entry<String, Integer> e : ours.entrySet())
        {
            assertThat(h).as(e.getKey()).containsKey(e.getKey());
            assertThat(h.get(e.getKey())).as(e.getKey()).isEqualTo(e.getValue().longValue());
        }
        final Path bits = Path.of("/usr/include/x86_64-linux-gnu/bits/socket.h");
        if (Files.exists(bits))
        {
            assertThat(header(bits).get("MSG_WAITFORONE")).isEqualTo((long)LibC.MSG_WAITFORONE);
        }
    }

    @Test
    void theAssemblerRefusesWhatTheKernelWould()
    {
        final ClassicBpf.Assembler far = new ClassicBpf.Assembler();
        far.jump(ClassicBpf.BPF_JMP | ClassicBpf.BPF_JEQ, 1, "end", null);
        for (int i = 0; i < 256; i++)
        {
            far.stmt(ClassicBpf.BPF_LD, i);
        }
        far.label("end").stmt(ClassicBpf.BPF_RET, 0);
        assertThatThrownBy(far::build).hasMessageContaining("out of reach");

        final ClassicBpf.Assembler viaJa = new ClassicBpf.Assembler();
        viaJa.jump(ClassicBpf.BPF_JMP | ClassicBpf.BPF_JEQ, 1, null, "ret").ja("end").label("ret")
            .stmt(ClassicBpf.BPF_RET, 5);
        for (int i = 0; i < 300; i++)
        {
            viaJa.stmt(ClassicBpf.BPF_LD, i);
        }
        viaJa.label("end").stmt(ClassicBpf.BPF_RET, 7);
        final ClassicBpf.Program p = viaJa.build();
        assertThat(p.run(new byte[0], 0)).isEqualTo(5);          // A = 0: not 1
        assertThat(p.length()).isEqualTo(304);
        assertThat(p.toNative().getInt(4)).isEqualTo(1);          // k of the first instruction
        assertThat(p.toNative().get(3)).isEqualTo((byte)1);       // its jf: over the ja

        final ClassicBpf.Assembler missing = new ClassicBpf.Assembler().ja("nowhere");
        assertThatThrownBy(missing::build).hasMessageContaining("never placed");
        final ClassicBpf.Assembler tooLong = new ClassicBpf.Assembler();
        for (int i = 0; i <= ClassicBpf.BPF_MAXINSNS; i++)
        {
            tooLong.stmt(ClassicBpf.BPF_RET, 0);
        }
        assertThatThrownBy(tooLong::build).hasMessageContaining("4096");
    }

    @Test
    void outOfBoundsLoadsDropAsInTheKernel()
    {
        final ClassicBpf.Program p = new ClassicBpf.Assembler()
            .stmt(ClassicBpf.BPF_LD | ClassicBpf.BPF_W | ClassicBpf.BPF_ABS, 2)
            .stmt(ClassicBpf.BPF_RET, ClassicBpf.ACCEPT).build();
        assertThat(p.run(new byte[] {1, 2, 3, 4, 5}, 5)).isEqualTo(ClassicBpf.DROP);
        assertThat(p.run(new byte[] {1, 2, 3, 4, 5, 6}, 6)).isEqualTo(ClassicBpf.ACCEPT);
    }
}
