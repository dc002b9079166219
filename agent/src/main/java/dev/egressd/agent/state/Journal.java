package dev.egressd.agent.state;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32;

/**
 * The journal's framing: each record is {@code length (4 bytes) | ~length (4) | CRC32 of the payload (4) | payload}
 * (big-endian). The length is written twice so a damaged length is told from a record that ends past the file.
 *
 * <p>A crash can leave the last record torn (a prefix of it, or zeros where the file grew but the data never got
 * to disk): that record was never answered, so it is dropped. A bad record followed by a valid one cannot be a torn
 * write: records after it were answered, so the journal is corrupt.
 *
 * <p>Zeros from a record's start to the file's end are the journal's end, not a torn record: a preallocated journal
 * ({@link StateStore#preallocated()}) keeps zeros written ahead of its records, and no record starts with a zero
 * length. A record whose append a crash cut leaves bytes other than zeros there (its header, or a part of its
 * payload past zeros) and is dropped as torn; one whose bytes never reached the disk at all left only zeros, and
 * reads as the end, as it would have read without the preallocation.
 */
final class Journal
{
    /** Bytes before a record's payload. */
    static final int HEADER = 12;

    /** No record is this large (the whole state of a large host is well under it). */
    static final int MAX_RECORD = 64 << 20;

    private Journal()
    {
    }

    /**
     * Frames a payload.
     *
     * @param payload the payload.
     * @return the record's bytes.
     */
    static byte[] frame(final byte[] payload)
    {
        final CRC32 crc = new CRC32();
        crc.update(payload);
        final ByteBuffer buffer = ByteBuffer.allocate(HEADER + payload.length);
        buffer.putInt(payload.length).putInt(~payload.length).putInt((int)crc.getValue()).put(payload);
        return buffer.array();
    }

    /**
     * What a journal's bytes hold.
     *
     * @param payloads the payloads of the valid records, in order.
     * @param valid    the length of the valid prefix (where a torn tail starts), or of the whole file.
     * @param torn     whether a torn tail was found past {@code valid}.
     * @param corrupt  why the journal is corrupt (a bad record with valid ones after it), or null.
     */
    record Read(List<byte[]> payloads, long valid, boolean torn, String corrupt)
    {
    }

    /**
     * Reads a journal's records.
     *
     * @param bytes the file.
     * @return what it holds.
     */
    static Read read(final byte[] bytes)
    {
        final List<byte[]> payloads = new ArrayList<>();
        int pos = 0;
        while (pos < bytes.length)
        {
            final int length = validAt(bytes, pos);
            if (length < 0)
            {
                if (zerosFrom(bytes, pos))
                {
                    return new Read(payloads, pos, false, null);
                }
                for (int later = pos + 1; later + HEADER <= bytes.length; later++)
                {
                    if (validAt(bytes, later) >= 0)
                    {
                        return new Read(payloads, pos, false, "record " + payloads.size() + " at byte " + pos
                            + " is damaged and a valid record follows at byte " + later);
                    }
                }
                return new Read(payloads, pos, true, null);
            }
            final byte[] payload = new byte[length];
            System.arraycopy(bytes, pos + HEADER, payload, 0, length);
            payloads.add(payload);
            pos += HEADER + length;
        }
        return new Read(payloads, pos, false, null);
    }

    /** Whether every byte from {@code pos} on is zero: the preallocated rest of the journal. */
    private static boolean zerosFrom(final byte[] bytes, final int pos)
    {
        for (int i = pos; i < bytes.length; i++)
        {
            if (bytes[i] != 0)
            {
                return false;
            }
        }
        return true;
    }

    /** The payload length of a valid record at {@code pos}, or -1. */
    private static int validAt(final byte[] bytes, final int pos)
    {
        if (bytes.length - pos < HEADER)
        {
            return -1;
        }
        final ByteBuffer buffer = ByteBuffer.wrap(bytes, pos, HEADER);
        final int length = buffer.getInt();
        final int inverse = buffer.getInt();
        final int crc = buffer.getInt();
        if (length <= 0 || length > MAX_RECORD || inverse != ~length || length > bytes.length - pos - HEADER)
        {
            return -1;
        }
        final CRC32 check = new CRC32();
        check.update(bytes, pos + HEADER, length);
        return (int)check.getValue() == crc ? length : -1;
    }
}
