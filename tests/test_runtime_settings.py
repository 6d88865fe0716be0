"""Issue 22 section 3: the CPU settings ``threads`` / ``spinning`` reach the runtimes (read back from onnxruntime's
own session options and from torch), from the node's parameters, ``occ replay`` and ``occ bench`` alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from occ_ros.core.resources import models_dir
from occ_ros.inference import backend as backend_module
from occ_ros.inference.backend import BackendError, RuntimeSettings, backend_options, open_backend
from occ_ros.node.params import ModelParams
from occ_tools import cli

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

CKPT = models_dir() / "demo.ckpt"
SPINNING = "session.intra_op.allow_spinning"


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from occ_export.onnx_export import export_onnx

    return export_onnx(CKPT, tmp_path_factory.mktemp("onnx") / "demo.onnx").path


@pytest.fixture
def torch_threads() -> Iterator[int]:
    """torch's thread count before the test, restored after it (torch.set_num_threads is process-wide)."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


@pytest.mark.parametrize(("threads", "spinning"), [(1, False), (2, True), (2, False)])
def test_onnxruntime_session_gets_threads_and_spinning(onnx_model: Path, threads: int, spinning: bool) -> None:
    options = backend_options("onnxruntime", RuntimeSettings(threads, spinning))
    with open_backend(onnx_model, "onnxruntime", warmup=False, **options) as loaded:
        used = loaded.session.get_session_options()  # what the real InferenceSession holds
        assert used.intra_op_num_threads == threads
        assert used.get_session_config_entry(SPINNING) == ("1" if spinning else "0")
        assert loaded.settings == {"threads": threads, "spinning": spinning}


def test_onnxruntime_threads_0_is_its_own_default(onnx_model: Path) -> None:
    with open_backend(onnx_model, "onnxruntime", warmup=False, threads=0) as loaded:
        assert loaded.session.get_session_options().intra_op_num_threads == ort.SessionOptions().intra_op_num_threads


@pytest.mark.parametrize(("options", "named"), [({"threads": -2}, "threads"), ({"spinning": "off"}, "spinning")])
def test_onnxruntime_bad_setting_is_named(onnx_model: Path, options: dict[str, Any], named: str) -> None:
    with pytest.raises(BackendError, match=f"demo.onnx: {named}: expected"):
        open_backend(onnx_model, "onnxruntime", warmup=False, **options)


def test_torch_backend_sets_torch_threads(torch_threads: int) -> None:
    target = 1 if torch_threads != 1 else 2
    loaded = open_backend(CKPT, "torch", warmup=False, **backend_options("torch", RuntimeSettings(target)))
    assert torch.get_num_threads() == target and loaded.settings == {"threads": target}
    open_backend(CKPT, "torch", warmup=False, threads=0)  # 0: torch's setting is left alone
    assert torch.get_num_threads() == target
    with pytest.raises(BackendError, match="threads: expected an integer >= 0"):
        open_backend(CKPT, "torch", warmup=False, threads=-1)


# ---------------------------------------------------------------------- occ replay / occ bench flags
class Captured(Exception):
    """Raised by the stand-in opener once it has recorded its arguments."""


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``open_backend`` call's backend and keyword options; the call then stops the command."""
    calls: list[dict[str, Any]] = []

    def fake(path: Any, backend: str = "auto", **kwargs: Any) -> Any:
        calls.append({"backend": backend, **kwargs})
        raise Captured

    monkeypatch.setattr(backend_module, "open_backend", fake)
    monkeypatch.setattr("occ_ros.replay.open_backend", fake)
    return calls


def _replay(tmp_path: Path, *flags: str) -> None:
    (tmp_path / "bag").mkdir(exist_ok=True)
    with pytest.raises(Captured):
        cli.main(["replay", "--bag", str(tmp_path / "bag"), "--model", "m.onnx", "--out", str(tmp_path / "o"), *flags])


def test_replay_flags_override_the_param_file_which_overrides_the_defaults(
    tmp_path: Path, opened: list[dict[str, Any]]
) -> None:
    params = tmp_path / "node.yaml"
    params.write_text("/**:\n  ros__parameters:\n    threads: 2\n    spinning: false\n")
    default = ModelParams()
    _replay(tmp_path)
    _replay(tmp_path, "--params", str(params))
    _replay(tmp_path, "--params", str(params), "--threads", "0")
    _replay(tmp_path, "--threads", "3", "--no-spinning")
    _replay(tmp_path, "--spinning")
    assert [(c["threads"], c["spinning"]) for c in opened] == [
        (default.threads, default.spinning),
        (2, False),
        (0, False),
        (3, False),
        (default.threads, True),
    ]
    assert {c["backend"] for c in opened} == {"onnxruntime"}


@pytest.mark.parametrize(("value", "why"), [("-1", "must be at least 0"), ("two", "expected an integer")])
def test_replay_and_bench_refuse_a_bad_threads_value(value: str, why: str, capsys: pytest.CaptureFixture) -> None:
    for command in (["replay", "--bag", "b", "--model", "m.onnx", "--out", "o"], ["bench", "--model", "m.onnx"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*command, "--threads", value])
        assert exit_info.value.code == 2
        assert f"argument --threads: {why}" in capsys.readouterr().err


def test_bench_passes_the_settings_its_backend_uses(
    opened: list[dict[str, Any]], capsys: pytest.CaptureFixture
) -> None:
    default = ModelParams()
    for argv in (["--model", "m.onnx"], ["--model", "m.onnx", "--threads", "2", "--no-spinning"]):
        with pytest.raises(Captured):
            cli.main(["bench", *argv])
    with pytest.raises(Captured):
        cli.main(["bench", "--model", "m.ckpt", "--threads", "2", "--no-spinning"])
    assert "--spinning do(es) not apply to the torch backend" in capsys.readouterr().err
    with pytest.raises(Captured):
        cli.main(["bench", "--model", "m.engine", "--device", "cuda", "--threads", "4"])
    assert "--threads do(es) not apply to the tensorrt backend" in capsys.readouterr().err
    assert opened == [
        {"backend": "onnxruntime", "device": "cpu", "warmup": False, "threads": default.threads,
         "spinning": default.spinning},
        {"backend": "onnxruntime", "device": "cpu", "warmup": False, "threads": 2, "spinning": False},
        {"backend": "torch", "device": "cpu", "warmup": False, "threads": 2, "half": False},
        {"backend": "tensorrt", "device": "cuda", "warmup": False},
    ]  # fmt: skip
