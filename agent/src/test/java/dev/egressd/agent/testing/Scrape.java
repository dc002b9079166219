package dev.egressd.agent.testing;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A Prometheus text scrape, parsed into samples (test code: enough of the exposition format for egressd's scrape).
 *
 * @param text    the scrape as served.
 * @param samples every sample, in order.
 */
public record Scrape(String text, List<Sample> samples)
{
    private static final Pattern LINE = Pattern.compile("^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(.*)\\})?\\s+(\\S+)(\\s+\\S+)?$");
    private static final Pattern LABEL = Pattern.compile("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"");

    /** One sample: its name, labels and value. */
    public record Sample(String name, Map<String, String> labels, double value)
    {
    }

    public static Scrape parse(final String text)
    {
        final List<Sample> samples = new ArrayList<>();
        for (final String line : text.split("\n"))
        {
            if (line.isBlank() || line.startsWith("#"))
            {
                continue;
            }
            final Matcher m = LINE.matcher(line.strip());
            if (!m.matches())
            {
                throw new IllegalArgumentException("not a sample line: " + line);
            }
            final Map<String, String> labels = new LinkedHashMap<>();
            if (m.group(3) != null)
            {
                final Matcher l = LABEL.matcher(m.group(3));
                while (l.find())
                {
                    labels.put(l.group(1), l.group(2));
                }
            }
            samples.add(new Sample(m.group(1), labels, number(m.group(4))));
        }
        return new Scrape(text, samples);
    }

    private static double number(final String text)
    {
        return switch (text)
        {
            case "+Inf" -> Double.POSITIVE_INFINITY;
            case "-Inf" -> Double.NEGATIVE_INFINITY;
            default -> Double.parseDouble(text);
        };
    }

    /**
     * The value of the one sample with this name whose labels include the given ones.
     *
     * @param name   the sample name as scraped.
     * @param labels label, value, label, value...
     * @return the value, or NaN when there is no such sample.
     */
    public double value(final String name, final String... labels)
    {
        for (final Sample s : samples)
        {
            if (!s.name().equals(name))
            {
                continue;
            }
            boolean all = true;
            for (int i = 0; i + 1 < labels.length; i += 2)
            {
                all &= labels[i + 1].equals(s.labels().get(labels[i]));
            }
            if (all)
            {
                return s.value();
            }
        }
        return Double.NaN;
    }
}
