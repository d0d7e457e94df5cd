"""Circuit breaker for the payment gateway, its state shared by every process through Redis.

The circuit opens when, over a sliding window, enough calls were made and the share of
failures reaches the threshold (a success slower than the read timeout counts as a failure;
a card decline does not count). Open, it fails fast with CircuitOpenError; then one caller in
the whole fleet gets the half-open probe, whose outcome closes or reopens it. The state
machine is one Lua script (script.py), so every check-and-change is atomic across processes
and each transition is told to exactly one caller (reply.py: a log line and the listeners).
A closed circuit costs no round-trip per call: each process trusts the state it last heard
for ``sync_interval`` and sends its counts in batches (shared.py). While Redis is away each
process uses the same rules on its own counts (memory.py). The rules and types are in
policy.py; the design's long form is in docs/reliability.md ("The shared breaker").
"""
