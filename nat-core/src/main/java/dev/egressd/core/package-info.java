/** The egressd allocator, destination ledger and kernel plan: pure Java, no I/O, no native code. */
package dev.egressd.core;
