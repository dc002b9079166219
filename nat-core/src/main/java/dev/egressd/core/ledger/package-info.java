/**
 * The per-destination connection ledger: per machine and per destination IP, how many connections are live and
 * which translated ports they use, fed by conntrack NEW/DESTROY events. Single writer: no locks.
 */
package dev.egressd.core.ledger;
