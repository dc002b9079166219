package dev.egressd.agent.region;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;

import dev.egressd.agent.region.RegionStore.SlotId;
import dev.egressd.core.model.Ipv4Address;

import java.io.IOException;
import java.util.List;
import java.util.regex.Pattern;

/**
 * The region's keys under {@code <prefix>/<region>/} and their JSON values (docs/region.md, "Keys"). A value is
 * written by one mapper with a fixed field order, so a transaction may compare a value byte for byte with what it
 * wrote.
 */
final class RegionKeys
{
    /** An app, machine or host id inside a key: no '/', so a key splits back into its parts. */
    private static final Pattern ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._:@-]{0,252}");
    private static final Pattern REGION = Pattern.compile("[a-z0-9][a-z0-9-]{0,62}");
    private static final Pattern PREFIX = Pattern.compile("(/[A-Za-z0-9._-]+)+");

    static final String APPS = "apps/";
    static final String PAIRS = "pairs/";
    static final String SLOTS = "slots/";
    static final String MACHINES = "machines/";
    static final String HOSTS = "hosts/";
    static final String ALIVE = "alive/";
    static final String MARKS = "marks/";
    static final String ROUTERS = "routers/";

    private static final ObjectMapper JSON = new ObjectMapper()
        .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
        .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    private final String base;

    /**
     * The keys of one region.
     *
     * @param prefix the prefix, e.g. {@code /egressd}.
     * @param region the region.
     */
    RegionKeys(final String prefix, final String region)
    {
        if (prefix == null || !PREFIX.matcher(prefix).matches())
        {
            throw new IllegalArgumentException("etcd-prefix: " + prefix
                + " is not an absolute key prefix like /egressd (segments of A-Z a-z 0-9 . _ -, no trailing /)");
        }
        if (region == null || !REGION.matcher(region).matches())
        {
            throw new IllegalArgumentException("region: " + region + " is not 1..63 of a-z 0-9 -");
        }
        this.base = prefix + "/" + region + "/";
    }

    /** @return {@code <prefix>/<region>/}, the prefix of every key of the region. */
    String base()
    {
        return base;
    }

    String app(final String id)
    {
        return base + APPS + id;
    }

    String pair(final Ipv4Address ipv4)
    {
        return base + PAIRS + ipv4;
    }

    String slot(final SlotId slot)
    {
        // Two digits at least, so a pair's slots sort in block order (block-count is at most 64).
        return base + SLOTS + slot.pair() + "/" + String.format("%02d", slot.block());
    }

    String machine(final String id)
    {
        return base + MACHINES + id;
    }

    String host(final String id)
    {
        return base + HOSTS + id;
    }

    String alive(final String id)
    {
        return base + ALIVE + id;
    }

    /** {@code marks/<n>}: its value is the id of the host that holds mark n (plain text, not JSON). */
    String mark(final int mark)
    {
        return base + MARKS + mark;
    }

    String router(final String id)
    {
        return base + ROUTERS + id;
    }

    /**
     * Checks an id that becomes part of a key.
     *
     * @param field the field's name, for the error.
     * @param id    the id.
     * @return the id.
     */
    static String id(final String field, final String id)
    {
        if (id == null || !ID.matcher(id).matches())
        {
            throw new IllegalArgumentException(field + ": " + id
                + " is not an id (1..253 of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit)");
        }
        return id;
    }

    /**
     * Checks a slot.
     *
     * @param slot the slot.
     * @return the slot.
     */
    static SlotId slot(final String field, final SlotId slot)
    {
        if (slot == null || slot.pair() == null || slot.block() < 0 || slot.block() > 63)
        {
            throw new IllegalArgumentException(field + ": " + slot + " is not a pair and a block 0..63");
        }
        return slot;
    }

    /**
     * Parses a slot key's tail ({@code <ipv4>/<block>}).
     *
     * @param tail the key after {@code slots/}.
     * @return the slot.
     */
    static SlotId parseSlot(final String tail)
    {
        final int slash = tail.indexOf('/');
        if (slash < 0)
        {
            throw new IllegalArgumentException("slot key without a block: " + tail);
        }
        return new SlotId(Ipv4Address.parse(tail.substring(0, slash)), Integer.parseInt(tail.substring(slash + 1)));
    }

    static byte[] write(final Object value)
    {
        try
        {
            return JSON.writeValueAsBytes(value);
        }
        catch (final JsonProcessingException e)
        {
            throw new IllegalStateException("cannot write " + value, e);
        }
    }

    static <T> T read(final byte[] bytes, final Class<T> type) throws IOException
    {
        final T value = JSON.readValue(bytes, type);
        if (value == null)
        {
            throw new IOException("null value");
        }
        return value;
    }

    /** {@code apps/<id>}. */
    record AppValue(boolean failClosed)
    {
    }

    /** {@code pairs/<ipv4>}. */
    record PairValue(String app, String ipv4, String ipv6, String region, boolean drained)
    {
    }

    /** {@code slots/<ipv4>/<block>}: host and machine null while quarantined. */
    record SlotValue(String host, String machine, boolean leaving, long quarantineUntil)
    {
    }

    /** {@code machines/<id>}: the machine's one slot in the region, and its host. */
    record MachineValue(String host, String pair, int block)
    {
    }

    /** {@code hosts/<id>}: durable; {@code mark} 0 in a key written before marks existed (none assigned). */
    record HostValue(List<String> addresses, int mark)
    {
    }

    /** {@code routers/<id>}: on the router's lease; the last region revision its kernel applied. */
    record RouterValue(long applied)
    {
    }

    /** {@code alive/<id>}: on the host's lease; its presence is what counts. */
    record AliveValue(long since)
    {
    }
}
