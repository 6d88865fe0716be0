"""Issue 21: output paths checked before the work, an unscorable eval says why, crash leftovers, full disks."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from occ_ros.core.grid import GridSpec
from occ_ros.datasets import OccupancyLabels
from occ_ros.datasets.sample import save_labels
from occ_ros.io import atomic
from occ_ros.io.atomic import atomic_directory, atomic_write_text, check_writable, remove_stale_partials
from occ_tools import cli

# every command with an output path: (argv with OUT where the bad path goes, the flag, the _run_ function)
COMMANDS = [
    (["eval", "--pred", "p", "--gt", "g", "--json", "OUT"], "--json", "_run_eval"),
    (["bench", "--model", "m.onnx", "--json", "OUT"], "--json", "_run_bench"),
    (["replay", "--bag", "b", "--model", "m.onnx", "--out", "OUT"], "--out", "_run_replay"),
    (["replay", "--bag", "b", "--model", "m.onnx", "--out", "ok", "--timings", "OUT"], "--timings", "_run_replay"),
    (["replay", "--bag", "b", "--model", "m", "--out", "ok", "--latency-plot", "OUT"], "--latency-plot", "_run_replay"),
    (["replay", "--bag", "b", "--model", "m", "--out", "ok", "--predictions", "OUT"], "--predictions", "_run_replay"),
    (["replay", "--bag", "b", "--model", "m", "--out", "ok", "--json", "OUT"], "--json", "_run_replay"),
    (["predict", "--model", "m", "--data", "d", "--out", "OUT"], "--out", "_run_predict"),
    (["query", "--model", "m", "--data", "d", "--text", "car", "--out", "OUT"], "--out", "_run_query"),
    (["labels", "--data", "d", "--out", "OUT"], "--out", "_run_labels"),
    (["synth", "--out", "OUT"], "--out", "_run_synth"),
    (["gt", "--from-lidar", "--data", "d", "--out", "OUT"], "--out", "_run_gt"),
    (["demo", "--out", "OUT"], "--out", "_run_demo"),
    (["export", "--checkpoint", "c.ckpt", "--out", "OUT"], "--out", "_run_export"),
    (["export", "--onnx", "m.onnx", "--engine", "OUT"], "--engine", "_run_export"),
    (["export", "--onnx", "m.onnx", "--engine", "e", "--timing-cache", "OUT"], "--timing-cache", "_run_export"),
    (["export", "--onnx", "m.onnx", "--calib", "d", "--calib-npz", "OUT"], "--calib-npz", "_run_export"),
]


@pytest.mark.parametrize(("argv", "flag", "func"), COMMANDS, ids=[f"{a[0]} {f}" for a, f, _ in COMMANDS])
def test_an_output_under_a_file_fails_before_the_work_naming_flag_and_path(
    argv: list[str], flag: str, func: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    ran: list[str] = []
    monkeypatch.setattr(cli, func, lambda args: ran.append(func) or 0)
    blocker = tmp_path / "some_file.txt"
    blocker.write_text("not a folder")
    bad = blocker / "out.json"
    argv = [str(bad) if a == "OUT" else (str(tmp_path / a) if a in ("ok", "e") else a) for a in argv]
    assert cli.main(argv) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert ran == []  # the work never started
    assert f"occ {argv[0]}: error:" in err and flag in err and str(bad) in err and "not a directory" in err
    assert "Traceback" not in err and not (tmp_path / "ok").exists()


def test_train_checks_its_run_folder_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import occ_training.trainer.loop as loop

    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("training started"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = tmp_path / "train.yaml"
    config.write_text(f"out: {blocker / 'run'}\n")
    assert cli.main(["train", "--config", str(config)]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert "out (the run folder)" in err and str(blocker / "run") in err and "not a directory" in err


def test_a_good_output_path_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(cli, "_run_bench", lambda args: ran.append(str(args.json)) or 0)
    out = tmp_path / "new" / "deeper" / "bench.json"
    assert cli.main(["bench", "--model", "m.onnx", "--json", str(out)]) == 0
    assert ran == [str(out)] and not (tmp_path / "new").exists()  # checking creates nothing


def test_check_writable_kinds_and_read_only_places(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(OSError, match="--json .*folder: is a directory"):
        check_writable(folder, "--json")
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="--out .*file: is a file, not a directory"):
        check_writable(tmp_path / "file", "--out", "dir")
    check_writable(tmp_path / "a" / "b" / "c.json", "--json")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OSError, match="permission denied"):
            check_writable(locked / "x.json", "--json")


# ----------------------------------------------------------------------------- occ eval: nothing to score
def test_eval_with_all_zero_masks_says_why_and_fails(tmp_path: Path, capsys) -> None:
    grid = GridSpec((0.0, 0.0, 0.0), (4.0, 4.0, 2.0), (1.0, 1.0, 1.0))
    sem = np.zeros(grid.shape, np.uint8)
    zeros = np.zeros(grid.shape, np.uint8)
    for root in ("gt", "pred"):
        labels = OccupancyLabels(sem, mask_camera=zeros, mask_lidar=zeros, grid=grid)
        save_labels(tmp_path / root / "labels.npz", labels)
    out = tmp_path / "m.json"
    argv = ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--quiet", "--json", str(out)]
    assert cli.main(argv) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert "no voxel was scorable" in err and "outside mask_camera" in err
    assert not out.exists()


# ----------------------------------------------------------------------------- crash leftovers, full disks
def test_a_killed_runs_partial_folder_is_removed_by_the_next_run(tmp_path: Path) -> None:
    final = tmp_path / "synth"
    code = (
        "import os, sys\n"
        "from occ_ros.io.atomic import atomic_directory\n"
        f"with atomic_directory({str(final)!r}) as tmp:\n"
        "    (tmp / 'frame').write_text('half')\n"
        "    os._exit(9)\n"  # killed mid-write: no cleanup runs
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9
    leftovers = list(tmp_path.glob(".synth.partial-*"))
    assert len(leftovers) == 1
    with atomic_directory(final) as tmp:
        live = list(tmp_path.glob(".synth.partial-*"))
        assert live == [tmp]  # the dead process' folder is gone, ours is not
        (tmp / "frame").write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]


def test_a_live_runs_partial_folder_is_kept(tmp_path: Path) -> None:
    final = tmp_path / "synth"
    with atomic_directory(final) as tmp:
        assert remove_stale_partials(final) == [] and tmp.is_dir()
        (tmp / "x").write_text("")
    old_format = tmp_path / ".synth.partial-abc123"  # no owner in the name: only removed when old
    old_format.mkdir()
    assert remove_stale_partials(final) == []
    os.utime(old_format, (0, 0))
    assert remove_stale_partials(final) == [old_format] and not old_format.exists()


def test_a_full_disk_names_the_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    path = tmp_path / "metrics.json"
    with pytest.raises(OSError) as info:
        atomic_write_text(path, "{}")
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value) and "No space left" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_an_unscorable_semantickitti_run_says_why() -> None:
    with pytest.raises(cli.CliError, match=r"no voxel was scorable: every ground-truth voxel of the 2 frames"):
        cli._check_scorable(np.zeros((20, 20), np.int64), 2, "the valid (not F.invalid) voxels")
    cli._check_scorable(np.eye(20, dtype=np.int64), 2, "the valid (not F.invalid) voxels")


def test_a_run_killed_between_its_renames_gets_the_previous_output_back(tmp_path: Path) -> None:
    final = tmp_path / "synth"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trash = tmp_path / f".synth.old-{atomic._host()}~{dead.pid}~x"  # its owner is gone
    (trash / "synth").mkdir(parents=True)
    (trash / "synth" / "meta.json").write_text("previous")
    assert remove_stale_partials(final) == [trash]
    assert (final / "meta.json").read_text() == "previous" and not trash.exists()


def test_a_failed_final_rename_names_the_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=r"No space left on device: '.*synth'"):
        with atomic_directory(tmp_path / "synth") as tmp:
            (tmp / "x").write_text("")
            monkeypatch.setattr(atomic.os, "replace", full)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
