package dev.egressd.agent.testing;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Test fixture: the IFA_PROTO of each address on an interface, read by {@code addr-protocols.py} (a raw
 * RTM_GETADDR dump in Python), independently of {@link RtnetlinkAddresses}' parser. The iproute2 on this
 * machine (6.1) cannot show an address protocol, so {@code ip -j addr} alone cannot check the mark.
 */
public final class AddressProtocols
{
    private AddressProtocols()
    {
    }

    /**
     * The command to run inside the namespace, e.g. after {@code ip netns exec NS}.
     *
     * @param ifname the interface.
     * @return {@code python3 -c SCRIPT ifname}.
     */
    public static List<String> command(final String ifname)
    {
        try (InputStream in = AddressProtocols.class.getResourceAsStream("addr-protocols.py"))
        {
            if (in == null)
            {
                throw new IllegalStateException("addr-protocols.py is not on the test classpath");
            }
            return List.of("python3", "-c", new String(in.readAllBytes(), StandardCharsets.UTF_8), ifname);
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Parses the script's output.
     *
     * @param output lines of {@code ADDRESS PREFIXLEN PROTO}.
     * @return {@code ADDRESS/PREFIXLEN} to protocol, in kernel order.
     */
    public static Map<String, Integer> parse(final String output)
    {
        final Map<String, Integer> out = new LinkedHashMap<>();
        for (final String line : output.split("\n"))
        {
            final String[] f = line.trim().split("\\s+");
            if (f.length == 3)
            {
                out.put(f[0] + "/" + f[1], Integer.parseInt(f[2]));
            }
        }
        return out;
    }
}
