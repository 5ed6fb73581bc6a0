"""Chunked-action policy inference and chunk execution (latency compensation, splicing, limits, watchdog)."""
