package dev.egressd.agent.testing;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Inherited;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Marks a test that needs what only a privileged host has: root, network namespaces, libnftables, or a host tool
 * such as {@code promtool} or {@code systemd-analyze}. It carries {@code @Tag("privileged")}, so a run can pick
 * these tests ({@code -Dgroups=privileged}) or leave them out ({@code -DexcludedGroups=privileged}).
 *
 * <p>Such a test checks what it needs with {@link Requirements} and is skipped without it, except under
 * {@code EGRESSD_REQUIRE_PRIVILEGED=1} (CI), where {@link Requirements} fails it instead and
 * {@link PrivilegedExtension} turns any other skip into a failure too: CI never passes with a privileged test
 * skipped.
 */
@Target({ElementType.TYPE, ElementType.METHOD})
@Retention(RetentionPolicy.RUNTIME)
@Documented
@Inherited
@Tag(Privileged.TAG)
@ExtendWith(PrivilegedExtension.class)
public @interface Privileged
{
    /** The JUnit tag of every privileged test. */
    String TAG = "privileged";
}
