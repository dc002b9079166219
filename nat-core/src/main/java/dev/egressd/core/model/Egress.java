package dev.egressd.core.model;

/**
 * Which address a machine leaves from, and why: the answer an operator wants first.
 *
 * @param scope     the rule that applies.
 * @param pair      the pair it leaves from (MACHINE or APP), else null.
 * @param block     the block index (APP), else -1.
 * @param firstPort the first source port it may use (APP: its block; MACHINE: 1), else -1.
 * @param lastPort  the last source port it may use (APP: its block; MACHINE: 65535), else -1.
 * @param reason    a sentence a person can read, e.g. "slot 3 on app pair 203.0.113.10".
 */
public record Egress(Scope scope, EgressPair pair, int block, int firstPort, int lastPort, String reason)
{
}
