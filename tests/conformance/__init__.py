"""Conformance suite: leakware must never change what the host app does."""
