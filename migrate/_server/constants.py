# -*- test-case-name: tests.test_hostile,tests.test_memory_real -*-
"""
The server's constants: how long refused clients wait, what they are told
when the server goes away, and what the memory budget counts for what it
cannot measure.
"""

from __future__ import annotations


# Seconds after which a client refused as busy may try again: soon when
# handshakes are crowded (each lasts a round trip), later when the session
# table is full.
_BUSY_RETRY = 0.25

#: What the clients of sessions that end with their server are told.
_SHUTDOWN_NOTICE = "server shut down"

#: What clients reconnecting to a server that stops are told: it is
#: checkpointing its sessions for a restart on the same store.
_RESTART_NOTICE = "server restarting"

#: When a client refused by a stopping server may try again.
_STOPPING_RETRY = 1.0

_FULL_RETRY = 2.0

#: What the memory budget counts for a handshake in progress: its carrier,
#: parser, handshake state and transport (an estimate, in bytes).
HANDSHAKE_COST = 8 * 1024

#: What the memory budget counts for a closed-session record (the session
#: object without its data: an estimate, in bytes).
RECORD_COST = 4 * 1024

#: Freed session data (bytes) after which the server gives the C library's
#: free heap back to the system (see L{migrate._memory}).
_TRIM_AFTER = 8 * 1024 * 1024
