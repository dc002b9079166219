package dev.egressd.agent.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code egressctl completion bash|zsh}: the shell completion script on stdout, as {@code kubectl completion} does.
 * Both are picocli's bash script: it enables zsh's {@code bashcompinit} itself when zsh sources it.
 */
@Command(name = "completion", description = "Prints the shell completion script for bash or zsh on stdout. "
    + "Load it in the current shell with: source <(egressctl completion bash) (or zsh). The Debian package "
    + "installs the bash one already.")
final class CompletionCommand implements Callable<Integer>
{
    /** The shells {@code completion} writes for. */
    static final class Shells implements Iterable<String>
    {
        @Override
        public java.util.Iterator<String> iterator()
        {
            return List.of("bash", "zsh").iterator();
        }
    }

    @Spec
    CommandSpec spec;

    @Option(names = {"-h", "--help"}, usageHelp = true, description = "show this help and exit")
    boolean help;

    @Parameters(index = "0", paramLabel = "SHELL", completionCandidates = Shells.class,
        description = "${COMPLETION-CANDIDATES}")
    String shell;

    @Override
    public Integer call()
    {
        final CommandLine root = spec.root().commandLine();
        final String script = switch (shell)
        {
            case "bash" -> EgressctlGen.completion(root);
            case "zsh" -> EgressctlGen.zshCompletion(root);
            default -> throw new CommandLine.ParameterException(spec.commandLine(),
                "Invalid value for SHELL: '" + shell + "' (expected one of: bash, zsh)");
        };
        spec.commandLine().getOut().print(script);
        spec.commandLine().getOut().flush();
        return ExitCodes.OK;
    }
}
