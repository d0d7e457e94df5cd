"""The drills themselves, one module a kind: each takes its (validated, bounded) parameters
and a progress callback and returns a report."""
