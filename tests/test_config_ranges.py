"""Issue 21 §2 and §4: value ranges of the typed configs (named by dotted key, blamed on the override that set
them, YAML words as typed) and ``occ train --resume`` with nothing to resume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest

from occ_ros.core.config import ConfigError, Range, check_fields, from_mapping
from occ_tools.cli import main
from occ_training.labels.lifting import LiftingConfig
from occ_training.labels.pipeline import load_label_settings
from occ_training.rendering.losses import RenderingLossConfig
from occ_training.rendering.renderer import RenderingConfig
from occ_training.trainer.config import OptimConfig, TrainConfig, load_train_config

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "config" / "train" / "demo.yaml"


@dataclass(frozen=True)
class Inner:
    rate: Annotated[float, Range(gt=0)] = 1.0
    pair: Annotated[tuple[float, float], Range(ge=0, lt=1)] = (0.5, 0.5)
    count: Annotated[int | None, Range(ge=1)] = None

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class Outer:
    inner: Inner = Inner()
    steps: Annotated[int, Range(ge=1)] = 1


def test_ranges_are_checked_on_load_and_on_direct_construction() -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping(Outer, {"inner": {"rate": -1}}, "x.yaml")
    assert "inner.rate must be > 0, got -1" in str(info.value) and info.value.key == "inner.rate"
    with pytest.raises(ConfigError, match=r"inner\.pair must be in \[0, 1\) \(every item\), got \[0\.5, 1\]"):
        from_mapping(Outer, {"inner": {"pair": [0.5, 1]}})
    with pytest.raises(ConfigError, match=r"steps must be >= 1, got 0"):
        from_mapping(Outer, {"steps": 0})
    with pytest.raises(ConfigError, match="must be > 0, got nan"):
        from_mapping(Outer, {"inner": {"rate": float("nan")}})
    assert from_mapping(Outer, {"inner": {"count": None, "rate": 2}}).inner.rate == 2.0
    with pytest.raises(ValueError, match=r"Inner: rate must be > 0, got -1"):
        Inner(rate=-1)
    with pytest.raises(ValueError, match=r"OptimConfig: lr must be > 0, got -0\.1"):
        OptimConfig(lr=-0.1)
    with pytest.raises(ValueError, match=r"TrainConfig: batch_size must be >= 1"):
        TrainConfig(batch_size=0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-1", "optim.lr must be > 0, got -1"),
        ("optim.weight_decay=-0.5", "optim.weight_decay must be >= 0"),
        ("optim.betas=[0.9, 1.0]", "optim.betas must be in [0, 1)"),
        ("optim.warmup_steps=-1", "optim.warmup_steps must be >= 0"),
        ("optim.grad_clip=-1", "optim.grad_clip must be >= 0"),
        ("steps=0", "steps must be >= 1"),
        ("batch_size=0", "batch_size must be >= 1"),
        ("loss.depth=-1", "loss.depth must be in [0, inf)"),
        ("rendering.rays_per_camera=0", "rendering.rays_per_camera must be >= 1"),
        ("rendering.samples_per_ray=0", "rendering.samples_per_ray must be >= 1"),
        ("photometric.stride=0", "photometric.stride must be >= 1"),
    ],
)
def test_a_bad_override_is_named_as_the_override(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_train_config(DEMO, [override])
    assert str(info.value).startswith(f"override {override}: {message}")
    assert str(DEMO) not in str(info.value)


def test_a_bad_value_in_the_file_is_blamed_on_the_file(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "train.yaml"
    bad.write_text(DEMO.read_text().replace("  lr: 0.002", "  lr: -0.002"))
    with pytest.raises(ConfigError) as info:
        load_train_config(bad, ["steps=5"])
    assert str(info.value) == f"{bad}: optim.lr must be > 0, got -0.002"
    # through the CLI: before any work, no traceback
    assert main(["train", "--config", str(bad), f"out={tmp_path / 'run'}"]) == 1
    err = capsys.readouterr().err
    assert "optim.lr must be > 0" in err and "Traceback" not in err and not (tmp_path / "run").exists()


def test_a_yaml_word_is_shown_as_typed(tmp_path: Path) -> None:
    bad = tmp_path / "train.yaml"
    bad.write_text(DEMO.read_text() + "device: no\n")
    with pytest.raises(ConfigError) as info:
        load_train_config(bad)
    assert "device: expected one of ['auto', 'cpu', 'cuda'], got 'no'" in str(info.value)
    assert "False" not in str(info.value)
    bad.write_text("optim:\n  warmup_steps: yes\n")
    with pytest.raises(ConfigError, match=r"optim\.warmup_steps: expected int, got 'yes'"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match=r"override steps=on: steps: expected int, got 'on'"):
        load_train_config(DEMO, ["steps=on"])


def test_rendering_and_label_configs_have_ranges(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RenderingLossConfig: semantic_min_confidence must be in"):
        RenderingLossConfig(semantic_min_confidence=2.0)
    with pytest.raises(ValueError, match="RenderingConfig: labelled_fraction must be in"):
        RenderingConfig(labelled_fraction=-0.1)
    with pytest.raises(ValueError, match="LiftingConfig: min_support must be >= 0"):
        LiftingConfig(min_support=-1)
    labels = tmp_path / "labels.yaml"
    labels.write_text("lifting:\n  window: -2\n")
    with pytest.raises(ConfigError) as info:
        load_label_settings(labels)
    assert str(info.value) == f"{labels}: lifting.window must be >= 0, got -2"
    labels.write_text("calibrator:\n  refine_lr: 0\n")
    with pytest.raises(ConfigError, match=r"calibrator\.refine_lr must be in \(0, inf\), got 0"):
        load_label_settings(labels)
    labels.write_text("sim:\n  depth:\n    noise: -1\n")
    with pytest.raises(ConfigError) as info:
        load_label_settings(labels)
    assert str(info.value) == f"{labels}: sim.depth.noise must be >= 0, got -1"


def test_resume_with_nothing_to_resume_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert main(["train", "--config", str(DEMO), "--resume", "--quiet", f"out={run}"]) == 1
    err = capsys.readouterr().err
    assert "--resume" in err and str(run) in err and "no checkpoint" in err
    assert list(run.iterdir()) == []  # nothing started
