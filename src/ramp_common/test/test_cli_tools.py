"""A tool piped into ``head`` stops quietly when head has read enough."""

import subprocess
import sys

SCRIPT = """
import sys
from ramp_common.cli_tools import closed_pipe
def main():
    try:
        for i in range(200000):
            print(f"line {i}")
        return 0
    except BrokenPipeError:
        return closed_pipe()
raise SystemExit(main())
"""


def test_closed_pipe_exits_141_without_a_traceback():
    writer = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert writer.stdout is not None
    assert writer.stdout.readline() == b"line 0\n"
    writer.stdout.close()  # the reader goes away, as head does
    _, err = writer.communicate(timeout=30)
    assert writer.returncode == 141
    assert err == b""
