package dev.egressd.agent.cli;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Callable;

/** What every egressctl command shares: the daemon client, {@code --json}, output and error handling. */
abstract class CtlCommand implements Callable<Integer>
{
    @ParentCommand
    Egressctl top;

    @Spec
    CommandSpec spec;

    @Option(names = {"-h", "--help"}, usageHelp = true, description = "show this command's help and exit")
    boolean help;

    @Option(names = "--json", description = "print JSON (docs/cli.md gives each command's shape) instead of a table")
    boolean json;

    /** The formats {@code -o} takes. */
    static final class Formats implements Iterable<String>
    {
        @Override
        public java.util.Iterator<String> iterator()
        {
            return java.util.List.of("table", "json").iterator();
        }
    }

    /**
     * {@code -o json} (kubectl's spelling) is {@code --json}; {@code -o table} is the default.
     *
     * @param format table or json.
     */
    @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", completionCandidates = Formats.class,
        description = "output format: ${COMPLETION-CANDIDATES} (-o json is --json)")
    void output(final String format)
    {
        switch (format)
        {
            case "json" -> json = true;
            case "table" -> json = false;
            default -> throw new CommandLine.ParameterException(spec.commandLine(), "Invalid value for option "
                + "'--output': '" + format + "' (expected one of: table, json)");
        }
    }

    private DaemonClient client;

    @Override
    public final Integer call() throws CtlException
    {
        client = top.client();
        final int code = run();
        out().flush();
        return code;
    }

    /**
     * The command's work.
     *
     * @return the exit code.
     * @throws CtlException with the exit code of a failure.
     */
    abstract int run() throws CtlException;

    PrintWriter out()
    {
        return spec.commandLine().getOut();
    }

    PrintWriter err()
    {
        return spec.commandLine().getErr();
    }

    /**
     * Sends a request and returns the answer, whatever its status.
     *
     * @param method the method.
     * @param uri    the path.
     * @param body   a JSON body, or null.
     * @return the answer.
     * @throws CtlException 3 unreachable, 4 permission denied (EACCES or 403).
     */
    DaemonClient.Answer send(final String method, final String uri, final String body) throws CtlException
    {
        final DaemonClient.Answer answer = client.send(method, uri, body);
        if (answer.status() == 403)
        {
            throw new CtlException(ExitCodes.PERMISSION, "permission denied: " + answer.errorMessage());
        }
        return answer;
    }

    /**
     * Sends a request that must succeed.
     *
     * @param method the method.
     * @param uri    the path.
     * @param body   a JSON body, or null.
     * @return the answer's JSON.
     * @throws CtlException 1 when the daemon answers an error (its JSON is printed with {@code --json}), 3, 4.
     */
    JsonNode call(final String method, final String uri, final String body) throws CtlException
    {
        final DaemonClient.Answer answer = send(method, uri, body);
        if (answer.status() / 100 != 2)
        {
            throw daemonError(method, uri, answer);
        }
        final JsonNode node = answer.json();
        if (node.isMissingNode())
        {
            throw new CtlException(ExitCodes.ERROR, method + " " + uri + ": the daemon's answer is not JSON");
        }
        return node;
    }

    JsonNode get(final String uri) throws CtlException
    {
        return call("GET", uri, null);
    }

    /**
     * The failure for an error answer; with {@code --json} the daemon's error body goes to stdout too.
     *
     * @param method the method.
     * @param uri    the path.
     * @param answer the answer.
     * @return exit 4 for 403, else 1.
     */
    CtlException daemonError(final String method, final String uri, final DaemonClient.Answer answer)
    {
        if (json && !answer.json().isMissingNode())
        {
            printJson(answer.json());
        }
        final String code = answer.errorCode();
        return new CtlException(answer.status() == 403 ? ExitCodes.PERMISSION : ExitCodes.ERROR,
            answer.errorMessage() + " (" + method + " " + uri + ": " + answer.status()
                + (code.isEmpty() ? "" : " " + code) + ")");
    }

    void printJson(final JsonNode node)
    {
        try
        {
            out().println(DaemonClient.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(node));
        }
        catch (final JsonProcessingException e)
        {
            throw new IllegalStateException(e);
        }
        out().flush();
    }

    static String path(final String segment)
    {
        return URLEncoder.encode(segment, StandardCharsets.UTF_8).replace("+", "%20");
    }

    /** @return the text of a field, or null when absent or null. */
    static String text(final JsonNode node, final String field)
    {
        final JsonNode value = node.path(field);
        return value.isMissingNode() || value.isNull() ? null : value.asText();
    }

    /** @return "a, b" of the non-null values, or null if none. */
    static String join(final String... values)
    {
        final StringBuilder b = new StringBuilder();
        for (final String v : values)
        {
            if (v != null && !v.isEmpty())
            {
                b.append(b.length() == 0 ? "" : ", ").append(v);
            }
        }
        return b.length() == 0 ? null : b.toString();
    }

    /** @return the ports of an egress view as "first-last", or null. */
    static String ports(final JsonNode egress)
    {
        final JsonNode ports = egress.path("ports");
        if (!ports.isObject())
        {
            return null;
        }
        return ports.path("first").asInt() + "-" + ports.path("last").asInt();
    }

    /** @return a fraction as a percentage with one decimal, e.g. "2.9%". */
    static String percent(final double use)
    {
        return String.format(java.util.Locale.ROOT, "%.1f%%", use * 100);
    }
}
