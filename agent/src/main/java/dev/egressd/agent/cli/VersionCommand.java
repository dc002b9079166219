package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.egressd.agent.version.Version;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code egressctl version}: egressctl's version and git revision, then the daemon's, from {@code GET /v1/health}
 * (as {@code kubectl version} prints client and server).
 */
@Command(name = "version", description = "egressctl's version and git revision, and the daemon's (from GET "
    + "/v1/health). egressctl's own line is printed first, so an unreachable daemon (exit 3) still shows it.")
final class VersionCommand extends CtlCommand
{
    @Option(names = "--client", description = "print egressctl's version only; do not ask the daemon")
    boolean clientOnly;

    @Override
    int run() throws CtlException
    {
        final ObjectNode node = DaemonClient.MAPPER.createObjectNode();
        node.putObject("egressctl").put("version", Version.version()).put("revision", Version.revision());
        if (clientOnly)
        {
            print(node);
            return ExitCodes.OK;
        }
        if (!json)
        {
            // before asking, so that the line is there even when the daemon cannot be reached
            out().println(Version.line("egressctl"));
            out().flush();
        }
        final DaemonClient.Answer answer = send("GET", "/v1/health", null);
        // 503 carries the same health view while the kernel is unavailable: the version is still in it
        if (answer.status() != 200 && answer.status() != 503)
        {
            throw daemonError("GET", "/v1/health", answer);
        }
        final JsonNode health = answer.json();
        final String version = text(health, "version");
        if (version == null)
        {
            throw new CtlException(ExitCodes.ERROR, "GET /v1/health: the daemon's answer has no version");
        }
        // a daemon older than the revision field says nothing about it
        final String revision = health.path("revision").asText(Version.UNKNOWN);
        node.putObject("egressd").put("version", version).put("revision", revision);
        if (json)
        {
            printJson(node);
        }
        else
        {
            out().println("egressd " + version + " (revision " + revision + ")");
        }
        return ExitCodes.OK;
    }

    private void print(final ObjectNode node)
    {
        if (json)
        {
            printJson(node);
        }
        else
        {
            out().println(Version.line("egressctl"));
        }
    }
}
