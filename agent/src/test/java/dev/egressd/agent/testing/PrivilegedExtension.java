package dev.egressd.agent.testing;

import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.LifecycleMethodExecutionExceptionHandler;
import org.junit.jupiter.api.extension.TestExecutionExceptionHandler;
import org.opentest4j.AssertionFailedError;
import org.opentest4j.TestAbortedException;

/**
 * Under {@code EGRESSD_REQUIRE_PRIVILEGED=1}, a {@link Privileged} test that aborts (a failed assumption, wherever
 * it was made) fails instead: the tag promises CI that the test ran. Without the variable it changes nothing.
 */
public final class PrivilegedExtension
    implements TestExecutionExceptionHandler, LifecycleMethodExecutionExceptionHandler
{
    @Override
    public void handleTestExecutionException(final ExtensionContext context, final Throwable thrown) throws Throwable
    {
        throw failIfRequired(thrown);
    }

    @Override
    public void handleBeforeAllMethodExecutionException(final ExtensionContext context, final Throwable thrown)
        throws Throwable
    {
        throw failIfRequired(thrown);
    }

    @Override
    public void handleBeforeEachMethodExecutionException(final ExtensionContext context, final Throwable thrown)
        throws Throwable
    {
        throw failIfRequired(thrown);
    }

    private static Throwable failIfRequired(final Throwable thrown)
    {
        return failIfRequired(thrown, Requirements.required());
    }

    /**
     * What a privileged test's exception becomes.
     *
     * @param thrown   what the test, or a method run before it, threw.
     * @param required whether skipping is forbidden.
     * @return a failure for an abort when skipping is forbidden, else {@code thrown}.
     */
    static Throwable failIfRequired(final Throwable thrown, final boolean required)
    {
        if (thrown instanceof TestAbortedException && required)
        {
            return new AssertionFailedError("a privileged test was skipped (" + thrown.getMessage() + ") and "
                + Requirements.REQUIRE_VARIABLE + "=1 forbids skipping it", thrown);
        }
        return thrown;
    }
}
