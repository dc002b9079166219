package dev.egressd.agent.cli;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** A human-readable table: upper-case headers, left-aligned columns two spaces apart, no trailing blanks. */
final class Table
{
    private final List<String[]> rows = new ArrayList<>();
    private final int columns;

    Table(final String... headers)
    {
        this.columns = headers.length;
        rows.add(headers);
    }

    /**
     * Adds a row; null cells print as "-".
     *
     * @param cells one per column.
     * @return this.
     */
    Table row(final Object... cells)
    {
        if (cells.length != columns)
        {
            throw new IllegalArgumentException("expected " + columns + " cells, got " + Arrays.toString(cells));
        }
        final String[] row = new String[columns];
        for (int i = 0; i < columns; i++)
        {
            final String text = cells[i] == null ? "-" : cells[i].toString();
            row[i] = text.isEmpty() ? "-" : text;
        }
        rows.add(row);
        return this;
    }

    /** @return the rows added, not counting the header. */
    int size()
    {
        return rows.size() - 1;
    }

    void print(final PrintWriter out)
    {
        final int[] width = new int[columns];
        for (final String[] row : rows)
        {
            for (int i = 0; i < columns; i++)
            {
                width[i] = Math.max(width[i], row[i].length());
            }
        }
        for (final String[] row : rows)
        {
            final StringBuilder line = new StringBuilder();
            for (int i = 0; i < columns; i++)
            {
                line.append(row[i]);
                if (i < columns - 1)
                {
                    line.append(" ".repeat(width[i] - row[i].length() + 2));
                }
            }
            out.println(line.toString().stripTrailing());
        }
    }

    /**
     * Prints "key  value" lines with the keys aligned.
     *
     * @param out   where.
     * @param pairs key, value, key, value, ...; a null value prints as "-".
     */
    static void keyValues(final PrintWriter out, final List<String[]> pairs)
    {
        int width = 0;
        for (final String[] kv : pairs)
        {
            width = Math.max(width, kv[0].length());
        }
        for (final String[] kv : pairs)
        {
            final String value = kv[1] == null || kv[1].isEmpty() ? "-" : kv[1];
            out.println((kv[0] + " ".repeat(width - kv[0].length() + 2) + value).stripTrailing());
        }
    }
}
