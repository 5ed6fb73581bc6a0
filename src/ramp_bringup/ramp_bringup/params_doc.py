"""docs/parameters.md from the parameter specs of every node (``ramp_common.params``).

``python -m ramp_bringup.params_doc`` writes the file (``--out PATH``; ``--check`` only compares
and exits 1 when it is out of date). The nodes come from the stack's node registry
(``ramp_bringup.stack.node_registry``); each node module holds its parameters as ``PARAMS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ramp_bringup.stack import node_registry
from ramp_common.params import Param

HEADER = """# Node parameters

Generated from each node's parameter specs (`PARAMS` in the node module, `ramp_common.params`) by
`python -m ramp_bringup.params_doc`; do not edit by hand (a test checks that this file matches).
Values come from the robot config (`src/ramp_bringup/config/<robot>.yaml`). **read-only**
parameters are fixed at start-up: `ros2 param set` on them is refused with a reason; the
**reloadable** ones take effect while the node runs. Units are SI unless written otherwise.
"""


def node_params() -> dict[str, tuple[Param, ...]]:
    """Every registered node's parameter specs, by node name."""
    out: dict[str, tuple[Param, ...]] = {}
    for name, spec in node_registry().items():
        module = importlib.import_module(spec.factory.split(":")[0])
        out[name] = tuple(module.PARAMS)
    return out


def _value(value: Any) -> str:
    if value is None:
        return "(required)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(params: dict[str, Sequence[Param]]) -> str:
    """The markdown text: one table per node."""
    lines = [HEADER]
    for node, specs in params.items():
        lines += [
            f"## `{node}`",
            "",
            "| parameter | type | default | unit | allowed | change | description |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for p in specs:
            change = "reloadable" if p.reloadable else "read-only"
            row = (
                f"`{p.name}`",
                p.type,
                f"`{_value(p.default)}`" if p.default is not None else "(required)",
                p.unit,
                p.constraints(),
                change,
                p.description,
            )
            lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with --check compare) docs/parameters.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/parameters.md"))
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when stale")
    args = parser.parse_args(argv)
    text = render(node_params())
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m ramp_bringup.params_doc")
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
