package dev.egressd.agent;

import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandleProxies;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;

/**
 * SIGHUP handling through the JDK's signal hook (jdk.unsupported's sun.misc.Signal). It is reached by method handles
 * because javac warns at every direct use of sun.misc, a warning no option or annotation silences, and the build
 * compiles with -Werror.
 */
final class Signals
{
    private Signals()
    {
    }

    /**
     * Runs an action on every SIGHUP.
     *
     * @param action the action (run on the JVM's signal thread).
     */
    static void onHangUp(final Runnable action)
    {
        try
        {
            final Class<?> signal = Class.forName("sun.misc.Signal");
            final Class<?> handler = Class.forName("sun.misc.SignalHandler");
            final MethodHandles.Lookup lookup = MethodHandles.publicLookup();
            final MethodHandle run = lookup.findVirtual(Runnable.class, "run", MethodType.methodType(void.class));
            final Object onSignal = MethodHandleProxies.asInterfaceInstance(handler,
                MethodHandles.dropArguments(run.bindTo(action), 0, signal));
            final Object hangUp = lookup.findConstructor(signal, MethodType.methodType(void.class, String.class))
                .invoke("HUP");
            lookup.findStatic(signal, "handle", MethodType.methodType(handler, signal, handler))
                .invoke(hangUp, onSignal);
        }
        catch (final RuntimeException | Error e)
        {
            throw e;
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("cannot install the SIGHUP handler", e);
        }
    }
}
