"""Operator console: a web page over the stack's topics and services (see docs/console.md)."""
