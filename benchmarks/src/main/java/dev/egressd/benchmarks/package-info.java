/** JMH benchmarks of the nat-core hot paths; each runs against the reference model as its baseline. */
package dev.egressd.benchmarks;
