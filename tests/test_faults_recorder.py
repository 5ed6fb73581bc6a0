"""Recorder faults on real file systems (case 4 of bench/faults.py), CI-sized.

The recorder core (what the ``episode_recorder`` node runs) fed the loop's traffic at its real
rates while its storage fails: killed with SIGKILL mid-write, a full disk (a 24 MB tmpfs), a
read-only folder, a bag folder made unwritable mid-episode, a slow disk. Every bag reads back
through the project's reader (after the next start repaired it where needed) and every message
offered while recording is in the bag or counted as dropped: none lost silently.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import pytest

from bench.faults_recorder import (
    can_mount,
    disk_full_trial,
    sigkill_trial,
    slow_disk_trial,
    unwritable_mid_trial,
    unwritable_start_trial,
)

needs_mount = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root")


def mounts_left() -> int:
    return subprocess.run(["mount"], capture_output=True, text=True).stdout.count("ramp_faults")


def test_a_recorder_killed_mid_write_leaves_a_bag_the_next_start_repairs(tmp_path):
    result = sigkill_trial(tmp_path, random.Random(1))
    assert result["started"] and result["repaired_by_next_start"], result
    assert result["readable"] and result["status"] == "recovered", result
    assert result["messages"] > 0, result
    assert result["next_episode"]["readable"], result


@needs_mount
@pytest.mark.parametrize("min_free_mb", [0.0, 4.0])
def test_a_full_disk_ends_the_episode_with_the_reason_and_loses_nothing_silently(
    tmp_path, min_free_mb
):
    result = disk_full_trial(tmp_path, min_free_mb)
    assert mounts_left() == 0
    assert result["ended_by_itself"], result
    assert result["last_error"], result
    assert result["errors_reported"], result
    # a new episode is refused while the disk is full, with the reason
    assert "free" in result["start_on_full_disk"] or "space" in result["start_on_full_disk"]
    assert result["readable"], result
    if min_free_mb == 0.0:  # the disk really filled: the next start repaired the bag
        assert result["repaired_by_next_start"], result
        assert result["status"] == "recovered" and result["error"], result
    else:  # the guard ended it cleanly before the disk was full
        assert result["status"] == "ended_on_error" and "min_free_disk_mb" in result["error"]
    assert result["silent"] == 0, result
    assert result["next_episode"]["readable"], result


@needs_mount
def test_a_read_only_output_folder_is_refused_naming_it(tmp_path):
    result = unwritable_start_trial(tmp_path)
    assert mounts_left() == 0
    assert result["refused"], result
    assert "Read-only file system" in result["answer"] and str(tmp_path) in result["answer"]


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"
)
def test_a_bag_folder_made_unwritable_mid_episode_ends_it_and_loses_nothing_silently(tmp_path):
    result = unwritable_mid_trial(tmp_path)
    assert result.get("ended_by_itself"), result
    assert "Permission denied" in result["last_error"], result
    assert result["repaired_by_next_start"], result
    assert result["readable"] and result["status"] == "recovered", result
    assert result["silent"] == 0, result


def test_a_slow_disk_drops_are_counted_in_metadata_and_status_never_silent(tmp_path):
    result = slow_disk_trial(tmp_path, rate_mb_s=2.0, seconds=2.0)
    assert result["status_dropped_while_recording"] > 0, result  # diagnostics show it
    assert result["readable"] and result["status"] == "complete", result
    assert result["dropped"] >= result["refused_at_offer"] > 0, result
    assert result["silent"] == 0, result
