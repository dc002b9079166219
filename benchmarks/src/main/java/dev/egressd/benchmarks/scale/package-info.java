/**
 * The scale benches: mains that run egressd's real kernel, control loop and conntrack code as a host grows, each
 * started by a {@code scripts/bench-*} runner inside a throw-away network namespace.
 */
package dev.egressd.benchmarks.scale;
