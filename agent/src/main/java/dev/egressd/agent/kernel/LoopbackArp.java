package dev.egressd.agent.kernel;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The two ARP sysctls a host needs when shared pair addresses are on {@code lo} (docs/region.md, "Addresses on lo"):
 * <ul>
 * <li>{@code net.ipv4.conf.all.arp_ignore = 1}: answer an ARP request only for an address of the interface it came
 *     in on, so no host answers for the shared address (it is on {@code lo}, not on the uplink). 2 and 8 ignore
 *     those requests too and are left as they are; 0 answers them, and 3 to 7 answer for a global address on any
 *     interface, so those are raised to 1.</li>
 * <li>{@code net.ipv4.conf.all.arp_announce = 2}: a host's own ARP requests name the best address of the outgoing
 *     interface as sender, never a shared address a packet leaves from (that would move the router's neighbour
 *     entry for the shared address to this host).</li>
 * </ul>
 * IPv6 needs nothing: the kernel answers a neighbour solicitation only for an address of the interface it came in
 * on, and its own solicitations fall back to the link-local source when the packet's source is not on the outgoing
 * interface. Both keys are per network namespace; {@link #PROC} reads and writes those of the calling thread's.
 */
public final class LoopbackArp
{
    /** Which ARP requests the host answers. */
    public static final String ARP_IGNORE = "net.ipv4.conf.all.arp_ignore";
    /** Which source address the host's own ARP requests name. */
    public static final String ARP_ANNOUNCE = "net.ipv4.conf.all.arp_announce";

    /** How {@link #problem} starts when the sysctls cannot be read (e.g. a unit that hides /proc/sys). */
    public static final String UNREADABLE = "cannot check the ARP sysctls: ";

    /** The arp_ignore values that do not answer for an address on lo: 1, 2 (stricter still) and 8 (never answer). */
    private static final Set<Integer> IGNORE_OK = Set.of(1, 2, 8);
    /** The highest and only good arp_announce. */
    private static final int ANNOUNCE = 2;

    private static final Logger LOG = LoggerFactory.getLogger(LoopbackArp.class);

    /** Reads and writes sysctls: {@link #PROC} or a fake in tests. */
    public interface Sysctls
    {
        /**
         * A value.
         *
         * @param key the sysctl key.
         * @return its value.
         * @throws IOException naming the key if it cannot be read.
         */
        String read(String key) throws IOException;

        /**
         * Sets a value.
         *
         * @param key   the sysctl key.
         * @param value the value.
         * @throws IOException naming the key if it cannot be written.
         */
        void write(String key, String value) throws IOException;
    }

    /** The calling thread's network namespace, through {@code /proc/sys}. */
    public static final Sysctls PROC = new Sysctls()
    {
        @Override
        public String read(final String key) throws IOException
        {
            return Sysctl.read(key);
        }

        @Override
        public void write(final String key, final String value) throws IOException
        {
            Sysctl.write(key, value);
        }
    };

    private LoopbackArp()
    {
    }

    /**
     * Raises each of the two sysctls that does not keep the host from answering ARP for, or announcing, a shared
     * address; each change is logged at INFO with the key, the old and the new value. Values that are already good
     * are left as they are.
     *
     * @param sysctls where they are read and written.
     * @return the changes, one {@code key old -> new} each (empty when both were good).
     * @throws KernelException naming the key if one cannot be read, parsed or written.
     */
    public static List<String> ensure(final Sysctls sysctls) throws KernelException
    {
        final List<String> changes = new ArrayList<>();
        final int ignore = value(sysctls, ARP_IGNORE);
        if (!IGNORE_OK.contains(ignore))
        {
            set(sysctls, ARP_IGNORE, ignore, 1, changes);
        }
        final int announce = value(sysctls, ARP_ANNOUNCE);
        if (announce < ANNOUNCE)
        {
            set(sysctls, ARP_ANNOUNCE, announce, ANNOUNCE, changes);
        }
        return changes;
    }

    /**
     * What is wrong with the two sysctls now (someone lowered them after the start, say).
     *
     * @param sysctls where they are read.
     * @return one line naming each bad key with its value and the value it needs, or why they cannot be read;
     *         empty when both are good.
     */
    public static Optional<String> problem(final Sysctls sysctls)
    {
        return problem(sysctls, null);
    }

    /**
     * As {@link #problem(Sysctls)}, also with the uplink's own {@code arp_ignore}: the kernel applies the higher of
     * {@code all} and the interface's, so an uplink at 3..7 answers for lo's addresses whatever {@code all} says.
     * That one is reported, never changed (it is the operator's per-interface choice).
     *
     * @param sysctls where they are read.
     * @param uplink  the uplink's name, or null to look at {@code all} only.
     * @return the problem, as for {@link #problem(Sysctls)}.
     */
    public static Optional<String> problem(final Sysctls sysctls, final String uplink)
    {
        final List<String> bad = new ArrayList<>();
        try
        {
            final int ignore = value(sysctls, ARP_IGNORE);
            if (!IGNORE_OK.contains(ignore))
            {
                bad.add(ARP_IGNORE + " is " + ignore + ", needs 1");
            }
            else if (uplink != null)
            {
                // the slash form names an interface whose name holds a dot (eth0.100)
                final String own = "net/ipv4/conf/" + uplink + "/arp_ignore";
                final int effective = Math.max(ignore, value(sysctls, own));
                if (!IGNORE_OK.contains(effective))
                {
                    bad.add(own + " is " + effective + " (the higher of it and all's counts), needs 0, 1 or 2");
                }
            }
            final int announce = value(sysctls, ARP_ANNOUNCE);
            if (announce < ANNOUNCE)
            {
                bad.add(ARP_ANNOUNCE + " is " + announce + ", needs 2");
            }
        }
        catch (final KernelException e)
        {
            return Optional.of(UNREADABLE + e.getMessage());
        }
        if (bad.isEmpty())
        {
            return Optional.empty();
        }
        return Optional.of(String.join("; ", bad) + ": this host answers ARP for, or announces, the shared pair "
            + "addresses on lo (docs/region.md, \"Addresses on lo\")");
    }

    private static void set(final Sysctls sysctls, final String key, final int old, final int value,
        final List<String> changes) throws KernelException
    {
        try
        {
            sysctls.write(key, Integer.toString(value));
        }
        catch (final IOException e)
        {
            throw failure(e.getMessage() + " (set " + key + " = " + value + " by hand, e.g. in /etc/sysctl.d/, "
                + "or give egressd a writable /proc/sys)", e);
        }
        LOG.info("sysctl {}: {} -> {} (pair addresses on lo: docs/region.md, \"Addresses on lo\")", key, old, value);
        changes.add(key + " " + old + " -> " + value);
    }

    private static int value(final Sysctls sysctls, final String key) throws KernelException
    {
        final String text;
        try
        {
            text = sysctls.read(key);
        }
        catch (final IOException e)
        {
            throw failure(e.getMessage(), e);
        }
        try
        {
            return Integer.parseInt(text.strip());
        }
        catch (final NumberFormatException e)
        {
            throw failure("sysctl " + key + ": not a number: " + text, e);
        }
    }

    private static KernelException failure(final String message, final Exception cause)
    {
        return new KernelException(message, cause); // the message starts with "sysctl <key>"
    }
}
