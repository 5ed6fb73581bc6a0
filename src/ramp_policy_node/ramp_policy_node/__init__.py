"""Chunked-action policy inference and chunk execution (timing, splicing, limits, watchdog)."""
