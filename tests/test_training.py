"""The training stack: config, data plumbing, objective pieces, DDP equivalence, exact resume, predict / eval.

One tiny synthetic sequence (5 frames, pseudo-labels made by ``occ labels``) is shared by the module; every model
is the smallest the config allows, so the whole file runs in well under two minutes on two CPU cores.

The pseudo-labels are made with ``--depth metric``: with the default relative depth the photometric calibration
of ``occ labels`` costs tens of seconds per frame on a loaded 2-core machine. Training then uses metric teacher
depth as well (``data.teachers.depth=metric``), so depth targets need no calibration.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import default_collate

from occ_ros.core.config import ConfigError, from_mapping
from occ_ros.core.preprocess import PreprocessConfig, preprocess
from occ_ros.core.rig import Camera
from occ_ros.core.vocabulary import OCC3D
from occ_ros.datasets.sample import IGNORE_LABEL
from occ_ros.datasets.synth import SynthReader
from occ_ros.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from occ_ros.model.network import OccupancyNetwork
from occ_ros.pipeline.query import query_scores
from occ_tools.cli import main
from occ_training.rendering.fields import VoxelField
from occ_training.rendering.losses import RenderingLossConfig
from occ_training.rendering.rays import UniformSampler
from occ_training.rendering.renderer import VolumeRenderer
from occ_training.synth.sequence import generate
from occ_training.trainer.config import load_train_config, terms_off
from occ_training.trainer.data import DataError, FrameDataset, connected_segments, to_network_grid
from occ_training.trainer.distributed import GlooSyncBatchNorm, convert_sync_batchnorm
from occ_training.trainer.loop import frame_at, frame_position, lr_factor, train
from occ_training.trainer.objective import FrameGenerators, Objective, label_volume_teacher

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "config" / "train" / "demo.yaml"
FRAMES = 5

#: The smallest model and rendering the demo config allows; every loss term off unless a test turns it on.
TINY = [
    "model.backbone_channels=8",
    "model.feature_channels=8",
    "model.bev_channels=8",
    "model.z_samples=2",
    "model.clip_dim=0",
    "rendering.rays_per_camera=32",
    "rendering.samples_per_ray=16",
    *terms_off(),
    "data.teachers.depth=metric",
    "data.val=[]",
    "decision.logit_adjustment=none",
    "threads=1",
    "grad_accum=1",
    "val_every=0",
]
#: Voxel losses plus two rendering terms (per-frame ray generators: pixels and jitter).
RENDERING = ["loss.depth=0.05", "loss.semantic=0.2"]
#: Every loss term on (a depth-bin view transform and an 8-channel CLIP head for lift_depth and clip).
ALL_TERMS = [
    *RENDERING,
    "loss.photometric=0.2",
    "loss.clip=0.2",
    "loss.ray_kl=0.1",
    "loss.affinity=0.1",
    "loss.lift_depth=0.1",
    "loss.affinity_max_rays=32",
    "model.depth_bins=8",
    "model.clip_dim=8",
    "data.teachers.sim.features.dim=8",
]


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    """In-process runs set ``threads=1``; give the test process its thread count back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Path:
    """5 synthetic frames with pseudo-labels in ``<seq>/pseudo_labels``, made by the ``occ labels`` CLI."""
    seq = generate(tmp_path_factory.mktemp("train") / "seq", frames=FRAMES, seed=3, progress=False)
    args = ["labels", "--data", str(seq), "--out", str(seq / "pseudo_labels"), "--teacher", "sim"]
    assert main([*args, "--depth", "metric", "--quiet"]) == 0
    return seq


def tiny(seq: Path, out: Path, *extra: str) -> list[str]:
    """Overrides of a tiny run on ``seq`` writing to ``out`` (later overrides win)."""
    return [*TINY, f"data.train=['{seq}']", f"out={out}", *extra]


def config(seq: Path, out: Path, *extra: str):
    return load_train_config(DEMO, tiny(seq, out, *extra))


def metrics(run: Path, kind: str = "train") -> dict[int, dict]:
    """``metrics.jsonl`` records of one kind by step (the last record of a step wins, as after a resume)."""
    out: dict[int, dict] = {}
    path = run / "metrics.jsonl"
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line being written right now
            continue
        if record.get("kind") == kind:
            out[record["step"]] = record
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def state(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


# ---------------------------------------------------------------------------------------------- 1. config
def test_unknown_keys_fail_naming_the_key_before_any_work(tmp_path, capsys):
    missing = tmp_path / "no_such_dataset"
    out = tmp_path / "run"
    base = ["train", "--config", str(DEMO), "--quiet", f"data.train=['{missing}']", "data.val=[]", f"out={out}"]
    base.append("decision.logit_adjustment=none")

    assert main([*base, "optim.lrr=1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("occ train: error:")
    assert "'lrr'" in err and "optim.lrr" in err
    assert str(missing) not in err  # the config failed before the dataset was looked at

    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text() + "optim_typo: 3\n")
    assert main(["train", "--config", str(bad), "--quiet", f"data.train=['{missing}']", f"out={out}"]) == 1
    err = capsys.readouterr().err
    assert "optim_typo" in err and str(bad) in err and str(missing) not in err

    nested = tmp_path / "nested.yaml"
    nested.write_text(DEMO.read_text().replace("  lr: 0.002", "  lr: 0.002\n  momentum: 0.9"))
    with pytest.raises(ConfigError, match="momentum"):
        load_train_config(nested)

    # a valid config gets as far as the data: the missing folder is what fails then
    assert main(base) == 1
    assert str(missing) in capsys.readouterr().err
    assert not out.exists()


def test_wrong_types_name_the_key():
    with pytest.raises(ConfigError, match=r"steps") as info:
        load_train_config(DEMO, ["steps=abc"])
    assert "abc" in str(info.value)
    with pytest.raises(ConfigError, match=r"neck"):
        load_train_config(DEMO, ["model.neck=7"])
    with pytest.raises(ConfigError, match=r"data\.cache"):
        load_train_config(DEMO, ["data.cache=3"])
    with pytest.raises(ConfigError, match=r"optim\.betas"):
        load_train_config(DEMO, ["optim.betas=[0.9]"])
    with pytest.raises(ConfigError, match=r"KEY=VALUE"):
        load_train_config(DEMO, ["steps"])
    with pytest.raises(ConfigError, match=r"batch_size"):
        load_train_config(DEMO, ["batch_size=0"])


def test_yaml_off_is_the_word_off_where_a_choice_takes_it():
    """``amp: off`` is a boolean to YAML 1.1; a choice that has the word ``off`` takes it back, others still fail."""
    assert load_train_config(DEMO, ["amp=off"]).amp == "off"
    with pytest.raises(ConfigError, match=r"data\.kind: expected one of \['auto', .*\], got 'off'"):
        load_train_config(DEMO, ["data.kind=off"])  # the word as typed, not YAML's False


def test_a_bad_word_names_the_key_and_the_choices():
    words = r"\['far', 'expected', 'normalized'\]"
    with pytest.raises(ConfigError, match=rf"rendering\.depth_mode: expected one of {words}, got 'median'"):
        load_train_config(DEMO, ["rendering.depth_mode=median"])
    with pytest.raises(ConfigError, match=r"loss\.depth_kind: expected one of \['l1', 'silog'\], got 'l2'"):
        load_train_config(DEMO, ["loss.depth_kind=l2"])
    with pytest.raises(ConfigError, match=r"data\.teachers\.kind: expected one of \['sim', 'hf', 'onnx'\]"):
        load_train_config(DEMO, ["data.teachers.kind=tflite"])


def test_vocabulary_size_must_match_the_class_count():
    config = load_train_config(DEMO, ["model.num_classes=5"])
    with pytest.raises(ConfigError) as info:
        config.load_vocabulary()
    message = str(info.value)
    assert "18" in message and "5" in message and "model.num_classes" in message
    assert len(load_train_config(DEMO).load_vocabulary()) == 18


def test_fixed_length_tuples_convert_in_order():
    # regression: the items of a fixed-length tuple were zipped with the types in the wrong order
    pre = from_mapping(PreprocessConfig, {"height": 4, "width": 4, "mean": [0.1, 0.2, 0.3], "std": [1, 2, 3]})
    assert pre.mean == (0.1, 0.2, 0.3)
    assert pre.std == (1.0, 2.0, 3.0) and all(isinstance(v, float) for v in pre.std)
    config = load_train_config(DEMO, ["image.mean=[0.5, 0.25, 0.125]", "optim.betas=[0.8, 0.95]"])
    assert config.image.mean == (0.5, 0.25, 0.125)
    assert config.optim.betas == (0.8, 0.95)
    assert config.preprocess().mean == (0.5, 0.25, 0.125)
    with pytest.raises(ConfigError, match="expected 3 items"):
        from_mapping(PreprocessConfig, {"height": 4, "width": 4, "mean": [0.1, 0.2]})


def test_overrides_reach_nested_sections_and_the_config_round_trips():
    config = load_train_config(DEMO, ["steps=7", "optim.lr=1e-3", "data.train=[a, b]", "data.teachers.depth=metric"])
    assert config.steps == 7 and config.optim.lr == 1e-3
    assert config.data.train == ("a", "b") and config.data.teachers.depth == "metric"
    raw = yaml.safe_load(DEMO.read_text())
    assert config.optim.warmup_steps == raw["optim"]["warmup_steps"]  # untouched keys keep the file's values
    from occ_training.trainer.config import config_from_mapping

    assert config_from_mapping(config.to_dict()) == config


# ---------------------------------------------------------------------------------------------- schedule / order
def test_lr_schedule_by_hand():
    config = load_train_config(DEMO, ["steps=6", "optim.warmup_steps=2", "optim.min_lr_ratio=0.05"])
    expected = [0.5, 1.0, 1.0]  # warm-up (s + 1) / 2, then cosine from 1 ...
    expected += [0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p / 4)) for p in (1, 2, 3, 4)]  # ... to 0.05
    assert [lr_factor(s, config) for s in range(7)] == pytest.approx(expected)
    assert expected[-1] == pytest.approx(0.05)
    constant = load_train_config(DEMO, ["optim.warmup_steps=0", "optim.schedule=constant"])
    assert [lr_factor(s, constant) for s in (0, 5, 999)] == [1.0, 1.0, 1.0]


def test_data_stream_positions_do_not_depend_on_the_process_split():
    one = load_train_config(DEMO, ["batch_size=2", "grad_accum=2"])
    two = load_train_config(DEMO, ["batch_size=1", "grad_accum=2"])
    for step in range(3):
        for micro in range(2):
            single = [frame_position(step, micro, 0, j, one, 1) for j in range(2)]
            split = [frame_position(step, micro, r, 0, two, 2) for r in range(2)]
            assert single == split == [4 * step + 2 * micro, 4 * step + 2 * micro + 1]
    # every epoch is a permutation of the frames, and epochs differ
    epochs = [[frame_at(e * 7 + k, 7, seed=3) for k in range(7)] for e in range(3)]
    assert all(sorted(e) == list(range(7)) for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1
    assert [frame_at(k, 7, seed=3) for k in range(7)] == epochs[0]  # a function of the position only


# ---------------------------------------------------------------------------------------------- 2. data plumbing
def _camera(width: int = 40, height: int = 20) -> Camera:
    K = np.array([[30.0, 0, (width - 1) / 2], [0, 30.0, (height - 1) / 2], [0, 0, 1]])
    return Camera("CAM_FRONT", "cam_front", width, height, K, np.eye(4))


def _coordinate_map(width: int = 40, height: int = 20) -> np.ndarray:
    """(H, W, 2) map whose value at source pixel (u, v) is (u, v)."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.stack([u, v], axis=-1)


def test_to_network_grid_reads_the_source_pixel_of_each_network_pixel():
    camera = _camera()
    # 40x20 -> scale 0.5 -> 20x10; 8 rows kept, crop 1.0 cuts the 2 excess rows from the top
    pre = PreprocessConfig(height=8, width=20, crop=1.0)
    values, inside = to_network_grid(_coordinate_map(), camera, pre, (8, 20), "bilinear")
    assert values.shape == (8, 20, 2) and inside.shape == (8, 20) and inside.all()
    for v in range(8):
        for u in range(20):
            # network pixel (u, v) comes from source pixel ((u + .5) / s - .5, (v + crop_top + .5) / s - .5)
            assert values[v, u, 0] == pytest.approx((u + 0.5) / 0.5 - 0.5, abs=1e-4)
            assert values[v, u, 1] == pytest.approx((v + 2 + 0.5) / 0.5 - 0.5, abs=1e-4)

    # a coarser output grid: cell (i, j) sits at network pixel ((j + .5) * 20 / 10 - .5, (i + .5) * 8 / 4 - .5)
    values, _ = to_network_grid(_coordinate_map(), camera, pre, (4, 10), "bilinear")
    for i in range(4):
        for j in range(10):
            un, vn = (j + 0.5) * 2 - 0.5, (i + 0.5) * 2 - 0.5
            assert values[i, j, 0] == pytest.approx((un + 0.5) / 0.5 - 0.5, abs=1e-4)
            assert values[i, j, 1] == pytest.approx((vn + 2 + 0.5) / 0.5 - 0.5, abs=1e-4)

    # crop 0.0 keeps the top rows instead
    values, _ = to_network_grid(_coordinate_map(), camera, PreprocessConfig(8, 20, crop=0.0), (8, 20), "bilinear")
    assert values[:, 0, 1] == pytest.approx([2 * v + 0.5 for v in range(8)], abs=1e-4)

    # nearest: exactly the value of a source pixel of the 2x2 block the network pixel covers
    values, _ = to_network_grid(_coordinate_map(), camera, pre, (8, 20), "nearest")
    for v in range(8):
        for u in range(20):
            assert values[v, u, 0] in (2 * u, 2 * u + 1)
            assert values[v, u, 1] in (2 * (v + 2), 2 * (v + 2) + 1)


def test_to_network_grid_marks_rows_below_the_image_outside():
    camera = _camera()
    # 12 network rows but the scaled image has only 10: rows 10 and 11 are zero padding
    pre = PreprocessConfig(height=12, width=20, crop=1.0)
    values, inside = to_network_grid(_coordinate_map() + 1.0, camera, pre, (12, 20), "bilinear")
    assert inside[:10].all() and not inside[10:].any()
    assert np.all(values[10:] == 0.0)
    assert values[9, 3, 1] == pytest.approx((9 + 0.5) / 0.5 - 0.5 + 1.0, abs=1e-4)  # no crop: crop_top = 0


def test_connected_segments_split_separate_blobs_of_one_class():
    i = IGNORE_LABEL
    labels = np.array(
        [
            [1, 1, 0, 0, 1],
            [1, 1, 0, 0, 1],
            [0, 0, 1, 0, 0],  # the middle 1 touches the left blob only diagonally: a third blob
            [i, i, 0, 2, 2],
        ],
        dtype=np.uint8,
    )
    ids = connected_segments(labels)
    assert ids.dtype == np.int32 and ids.shape == labels.shape
    assert np.all(ids[labels == i] == -1) and np.all(ids[labels != i] >= 0)
    blobs = {  # the 4-connected regions, by hand
        "left 1s": [(0, 0), (0, 1), (1, 0), (1, 1)],
        "right 1s": [(0, 4), (1, 4)],
        "middle 1": [(2, 2)],
        "upper 0s": [(0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (2, 4)],
        "lower-left 0s": [(2, 0), (2, 1)],  # cut off by the left 1s and the middle 1
        "lone 0": [(3, 2)],  # touches the middle 1, an ignored pixel and a 2
        "2s": [(3, 3), (3, 4)],
    }
    seen = set()
    for pixels in blobs.values():
        values = {int(ids[p]) for p in pixels}
        assert len(values) == 1, pixels  # one id per 4-connected region ...
        seen |= values
    assert len(seen) == len(blobs)  # ... and a different one for every region
    assert sum(len(p) for p in blobs.values()) == int((labels != i).sum())


# ---------------------------------------------------------------------------------------------- 3. BN, teacher
def test_gloo_sync_batchnorm_is_batchnorm_in_one_process():
    torch.manual_seed(0)
    for plain, shape in ((nn.BatchNorm2d(3), (4, 3, 5, 6)), (nn.BatchNorm3d(3), (2, 3, 4, 5, 2))):
        with torch.no_grad():
            plain.weight.uniform_(0.5, 2.0)
            plain.bias.uniform_(-1, 1)
        sync = GlooSyncBatchNorm(3)
        sync.load_state_dict(plain.state_dict())
        x = torch.randn(shape) * 3 + 1
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = plain(xa), sync(xb)
        torch.testing.assert_close(yb, ya)
        grad = torch.randn(shape)
        ya.backward(grad)
        yb.backward(grad)
        torch.testing.assert_close(xb.grad, xa.grad)
        torch.testing.assert_close(sync.weight.grad, plain.weight.grad)
        torch.testing.assert_close(sync.running_var, plain.running_var)
        plain.eval(), sync.eval()
        torch.testing.assert_close(sync(x), plain(x))
        # and by hand: train mode normalises with the biased batch variance
        sync.train()
        dims = [0, *range(2, x.dim())]
        mean, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
        view = [1, 3] + [1] * (x.dim() - 2)
        expected = (x - mean) / torch.sqrt(var + sync.eps) * sync.weight.view(view) + sync.bias.view(view)
        torch.testing.assert_close(sync(x), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="4-D or 5-D"):
        GlooSyncBatchNorm(3)(torch.randn(2, 3))


def test_convert_sync_batchnorm_keeps_the_weights():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.Sequential(nn.BatchNorm2d(3)))
    model(torch.randn(4, 2, 3, 3))  # move the running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_sync_batchnorm(model, torch.device("cpu"))
    kinds = [type(m) for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert kinds == [GlooSyncBatchNorm, GlooSyncBatchNorm]
    after = converted.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def _sync_bn_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        x = torch.randn(4, 3, 5, 6, dtype=torch.float64) * 2 + 3
        bn = GlooSyncBatchNorm(3).double()
        with torch.no_grad():
            bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        mine = x[2 * rank : 2 * rank + 2].clone().requires_grad_()
        y = bn(mine)
        (y * torch.arange(y.numel(), dtype=torch.float64).reshape(y.shape).sin()).sum().backward()
        torch.save(
            {
                "y": y.detach(),
                "grad": mine.grad,
                "weight_grad": bn.weight.grad,
                "bias_grad": bn.bias.grad,
                "running_mean": bn.running_mean,
                "running_var": bn.running_var,
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.barrier()  # no rank tears gloo down while the other still talks to it
        dist.destroy_process_group()


def test_gloo_sync_batchnorm_over_two_processes_is_batchnorm_over_the_whole_batch(tmp_path):
    """Two gloo processes with half the batch each give the full batch's output, input gradients and statistics."""
    import torch.multiprocessing as mp

    mp.spawn(_sync_bn_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    torch.manual_seed(0)
    x = (torch.randn(4, 3, 5, 6, dtype=torch.float64) * 2 + 3).requires_grad_()
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    y = bn(x)
    # the per-rank objectives summed = the full-batch objective (each rank weights its slice the same way)
    weights = torch.cat([torch.arange(y[:2].numel(), dtype=torch.float64).reshape(y[:2].shape).sin()] * 2)
    (y * weights).sum().backward()
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach())
    torch.testing.assert_close(torch.cat([r["grad"] for r in ranks]), x.grad)
    # parameter gradients are per-rank partial sums (DDP adds them up)
    torch.testing.assert_close(ranks[0]["weight_grad"] + ranks[1]["weight_grad"], bn.weight.grad)
    torch.testing.assert_close(ranks[0]["bias_grad"] + ranks[1]["bias_grad"], bn.bias.grad)
    for r in ranks:
        torch.testing.assert_close(r["running_mean"], bn.running_mean)
        torch.testing.assert_close(r["running_var"], bn.running_var)


def test_label_volume_teacher_renders_the_labels():
    # classes 0, 1 and free = 2; a 2x2x2 volume with occupied, free and unknown voxels
    labels = torch.tensor([[[[0, 2], [IGNORE_LABEL, 1]], [[2, 2], [1, IGNORE_LABEL]]]], dtype=torch.uint8)
    out = label_volume_teacher(labels, num_classes=3, free_index=2, density=20.0, unknown_density=0.5)
    assert out["density"].shape == (1, 1, 2, 2, 2) and out["semantics"].shape == (1, 3, 2, 2, 2)
    expected_density = [[[20.0, 0.0], [0.5, 20.0]], [[0.0, 0.0], [20.0, 0.5]]]
    assert out["density"][0, 0].tolist() == expected_density
    sem = out["semantics"][0]
    for x in range(2):
        for y in range(2):
            for z in range(2):
                label = int(labels[0, x, y, z])
                logits = sem[:, x, y, z].tolist()
                if label == IGNORE_LABEL:
                    assert logits == [0.0, 0.0, 0.0]  # unknown: uniform
                else:
                    assert logits == [10.0 if c == label else 0.0 for c in range(3)]
    probs = torch.softmax(sem[:, 0, 0, 0], 0)
    assert float(probs[0]) == pytest.approx(math.exp(10) / (math.exp(10) + 2), rel=1e-6)


def test_the_render_step_feeds_loss_terms_that_never_render(sequence, tmp_path, monkeypatch):
    """Objective.render gives typed outputs of the documented shapes; Objective.loss_dict only consumes them."""
    cfg = config(sequence, tmp_path, *ALL_TERMS)
    batch = default_collate([FrameDataset(cfg, OCC3D, "train")[2]])  # the middle frame: both neighbours exist
    grid, classes = cfg.model.grid_spec, cfg.model.num_classes
    gen = torch.Generator().manual_seed(0)
    outputs = {  # the network's volumes, made up
        "density": torch.rand(1, 1, *grid.shape, generator=gen).requires_grad_(),
        "semantics": torch.randn(1, classes, *grid.shape, generator=gen).requires_grad_(),
        "features": torch.randn(1, 8, *grid.shape, generator=gen).requires_grad_(),
        "depth_logits": torch.randn(1, 6, 8, 14, 25, generator=gen).requires_grad_(),
    }
    teacher = label_volume_teacher(batch["labels"], classes, classes - 1, 20.0, 0.0)
    objective = Objective(cfg, classes, classes - 1)
    total, logs = objective(outputs, batch, [FrameGenerators.seeded(7, torch.device("cpu"))], teacher)
    rendered = objective.render(outputs, batch, 0, FrameGenerators.seeded(7, torch.device("cpu")), teacher)

    cams, per_camera, samples = 6, 32, 16  # the tiny config's rays and samples
    rays = cams * per_camera
    assert rendered.pixels is not None and rendered.pixels.shape == (1, cams, per_camera, 2)
    student, taught, image = rendered.rays, rendered.teacher, rendered.image
    assert student is not None and taught is not None and image is not None
    assert student.weights.shape == taught.weights.shape == (1, rays, samples)
    for per_ray in (student.depth, student.accumulation, student.hit, student.exit_depth, taught.depth):
        assert per_ray.shape == (1, rays)
    assert student.semantics is not None and student.semantics.shape == (1, rays, classes - 1)
    assert student.features is not None and student.features.shape == (1, rays, 8)
    assert taught.semantics is not None and taught.semantics.shape == (1, rays, classes - 1)
    assert taught.features is None and not taught.weights.requires_grad
    assert rendered.image_size == (14, 25)  # every 8th pixel of 112 x 200
    assert image.depth.shape == (1, cams * 14 * 25) and image.semantics is None and image.features is None

    def refuse(*args, **kwargs):
        raise AssertionError("loss_dict sampled, read the field or rendered")

    monkeypatch.setattr(UniformSampler, "__call__", refuse)
    monkeypatch.setattr(VoxelField, "forward", refuse)
    monkeypatch.setattr(VolumeRenderer, "__call__", refuse)
    terms = objective.loss_dict(outputs, batch, 0, rendered)
    assert set(terms) == set(RenderingLossConfig.TERMS)
    frame_total, frame_logs = cfg.loss.total(terms)
    assert torch.equal(frame_total, total) and frame_logs == logs  # the same numbers as the whole objective
    frame_total.backward()
    for volume in outputs.values():  # every head gets a gradient
        assert volume.grad is not None and float(volume.grad.abs().sum()) > 0


# ---------------------------------------------------------------------------------------------- 7. query scores
def test_query_scores_match_only_the_voxel_aligned_with_the_query():
    query = np.array([1.0, 0.0, 0.0], np.float32)
    car = np.array([0.0, 1.0, 0.0], np.float32)
    near_duplicate = np.array([0.95, math.sqrt(1 - 0.95**2), 0.0], np.float32)  # cos 0.95 to the query
    vocabulary = np.stack([car, near_duplicate])
    # voxel 0 points mostly along the query (unnormalised), voxel 1 mostly along "car"
    features = np.zeros((3, 2, 1, 1), np.float32)
    features[:, 0, 0, 0] = [3.0, 1.0, 0.0]
    features[:, 1, 0, 0] = [1.0, 4.0, 0.0]
    occupied = np.zeros((2, 1, 1), np.uint8)  # class 0 everywhere, free index 17
    sim, match = query_scores(features, occupied, 17, query, vocabulary)
    assert sim.dtype == np.float32 and sim.shape == (2, 1, 1)
    assert sim[0, 0, 0] == pytest.approx(3 / math.sqrt(10), abs=1e-6)
    assert sim[1, 0, 0] == pytest.approx(1 / math.sqrt(17), abs=1e-6)
    # the near-duplicate prompt is not a competitor, so voxel 0 matches although its cosine to it is higher
    assert float(features[:, 0, 0, 0] @ near_duplicate) / math.sqrt(10) > sim[0, 0, 0]
    assert match[:, 0, 0].tolist() == [True, False]
    # free voxels never match, however well aligned
    free = np.full((2, 1, 1), 17, np.uint8)
    _, match = query_scores(features, free, 17, query, vocabulary)
    assert not match.any()


# ---------------------------------------------------------------------------------------------- 8. data errors
def test_training_data_without_pseudo_labels_says_how_to_make_them(sequence, tmp_path):
    cfg = config(sequence, tmp_path / "run", "data.labels=no_labels_here")
    with pytest.raises(DataError) as info:
        FrameDataset(cfg, OCC3D, "train")
    message = str(info.value)
    assert "occ labels" in message and str(sequence / "no_labels_here") in message
    assert f"{FRAMES} of {FRAMES}" in message
    # through the CLI: exit 1, the same advice
    assert main(["train", "--config", str(DEMO), "--quiet", *tiny(sequence, tmp_path / "run"), "data.labels=x"]) == 1
    assert not (tmp_path / "run").exists()


def test_the_advice_names_the_sequence_whose_labels_are_missing(sequence, tmp_path):
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(sequence, unlabelled, ignore=shutil.ignore_patterns("pseudo_labels"))
    cfg = load_train_config(DEMO, [*TINY, f"data.train=['{sequence}', '{unlabelled}']", f"out={tmp_path / 'run'}"])
    with pytest.raises(DataError) as info:
        FrameDataset(cfg, OCC3D, "train")
    message = str(info.value)
    assert f"{FRAMES} of {2 * FRAMES}" in message
    assert f"--data {unlabelled} --out {unlabelled / 'pseudo_labels'}" in message  # not the first, labelled one


def test_other_data_errors_name_both_sides(sequence, tmp_path):
    with pytest.raises(DataError, match="5 cameras|takes 5"):
        FrameDataset(config(sequence, tmp_path, "model.num_cameras=5"), OCC3D, "train")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "missing"))):
        FrameDataset(config(sequence, tmp_path, f"data.train=['{tmp_path / 'missing'}']"), OCC3D, "train")
    # relative teacher depth needs the labels' calibration, which metric pseudo-labels do not have
    dataset = FrameDataset(config(sequence, tmp_path, "loss.depth=0.1", "data.teachers.depth=relative"), OCC3D)
    with pytest.raises(DataError, match="depth_scale"):
        dataset[0]


def test_training_items_hold_the_targets_on_the_network_grid(sequence, tmp_path):
    cfg = config(sequence, tmp_path, *RENDERING)
    dataset = FrameDataset(cfg, OCC3D, "train")
    assert len(dataset) == FRAMES
    item = dataset[1]
    reader = SynthReader(sequence)
    sample = reader.load(1)
    net = preprocess(sample.images, sample.rig, cfg.preprocess())
    np.testing.assert_array_equal(item["images"], net.images)
    labels = np.load(sequence / "pseudo_labels" / sample.scene / sample.frame / "labels.npz")
    np.testing.assert_array_equal(item["labels"], labels["semantics"])
    np.testing.assert_array_equal(item["label_mask"], labels["mask_camera"].astype(bool))
    assert item["depth"].shape == (6, 112, 200) and item["sem_labels"].shape == (6, 112, 200)
    assert (item["depth"] > 0).mean() > 0.3  # metric depth on most pixels
    seen = item["sem_labels"] != IGNORE_LABEL
    assert np.all((item["segments"] >= 0) == seen)
    assert "photometric" not in item and "features" not in item and "gt" not in item


# ---------------------------------------------------------------------------------------------- 4. DDP
@pytest.mark.slow  # end to end: whole training runs in several processes
def test_ddp_two_processes_follow_the_single_process_run(sequence, tmp_path):
    """torchrun, 2 CPU processes x 1 frame == 1 process x 2 frames (synchronized BN, averaged gradients).

    Float32 sums in another order (gloo all-reduce, the synchronized BN formula) change gradients by ~1e-4
    relative, and Adam's first steps (~lr * sign(g)) flip the update of the few weights whose gradient is ~0; the
    network's gradient is also not smooth (ReLU, Lovasz): a 1e-6 weight change moves it by ~2%. So the runs are
    compared where they are well defined: step 1 to float precision, later losses at rtol 1e-4 with a small
    learning rate, and the weight updates as a whole (a wrong gradient changes most of their signs).
    """
    steps, lr = 4, 2e-5
    common = [
        *RENDERING,
        f"steps={steps}",
        "log_every=1",
        "ckpt_every=0",
        f"optim.lr={lr}",
        "optim.warmup_steps=0",
        "optim.schedule=constant",
        "model.clip_dim=4",  # a feature head that no loss uses: DDP must not wait for its gradient
    ]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    train(config(sequence, single, *common, "batch_size=2"), progress=False)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launcher += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    command = [*launcher, "-m", "occ_tools.cli", "train", "--config", str(DEMO), "--quiet"]
    command += tiny(sequence, ddp, *common, "batch_size=1")
    proc = subprocess.run(command, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count(f"train: {steps} steps") == 2  # both processes ran every step

    a, b = metrics(single), metrics(ddp)
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    terms = ["loss", "voxel_ce", "voxel_lovasz", "depth", "semantic"]
    for name in terms:  # before any update: the same numbers to float precision
        assert b[1][name] == pytest.approx(a[1][name], rel=1e-5), name
    # the gradient less tightly: Lovasz sorts the errors, and float-order noise reorders near-ties (5.6e-4 apart
    # with torch 2.13's CUDA wheel on a CPU under Python 3.10; a missing all-reduce or an unsynchronized batch
    # norm is off by percents)
    assert b[1]["grad_norm"] == pytest.approx(a[1]["grad_norm"], rel=1e-3)
    for step in range(1, steps + 1):
        for name in terms:
            assert b[step][name] == pytest.approx(a[step][name], rel=1e-4), (step, name)
        assert b[step]["lr"] == a[step]["lr"] == pytest.approx(lr)

    # the weights: the same updates from the same initial weights
    cfg = config(sequence, single, *common)
    torch.manual_seed(cfg.seed)
    initial = OccupancyNetwork(cfg.model).state_dict()
    wa, wb = state(single / "model.ckpt"), state(ddp / "model.ckpt")
    assert wa.keys() == wb.keys() == initial.keys()
    params = [k for k in wa if wa[k].is_floating_point() and "running" not in k]
    da = torch.cat([(wa[k] - initial[k]).flatten().double() for k in params])
    db = torch.cat([(wb[k] - initial[k]).flatten().double() for k in params])
    # Adam moves every weight by at most ~lr per step
    assert float(da.abs().max()) <= 1.5 * steps * lr and float(db.abs().max()) <= 1.5 * steps * lr
    assert float((da - db).norm() / da.norm()) < 0.1
    assert float((da - db).abs().max()) <= 2.5 * steps * lr
    for k in (k for k in wa if k.startswith("feature_head.")):  # unused: no update, no weight decay
        assert torch.equal(wa[k], initial[k]) and torch.equal(wb[k], initial[k]), k
    for k in wa:
        if "running" in k:  # batch statistics of the global batch in both runs
            torch.testing.assert_close(wb[k], wa[k], rtol=1e-3, atol=1e-4, msg=k)
        elif not wa[k].is_floating_point():
            assert torch.equal(wb[k], wa[k]), k


# ---------------------------------------------------------------------------------------------- 5. resume
@pytest.mark.slow  # end to end: whole training runs in several processes
def test_a_killed_run_resumes_exactly(sequence, tmp_path, capsys):
    steps = 8
    args = [*RENDERING, f"steps={steps}", "log_every=1", "ckpt_every=1", "optim.warmup_steps=3"]
    reference, run = tmp_path / "reference", tmp_path / "run"
    train(config(sequence, reference, *args), progress=False)

    log = (tmp_path / "killed.log").open("w")
    command = [sys.executable, "-m", "occ_tools.cli", "train", "--config", str(DEMO), "--quiet"]
    proc = subprocess.Popen([*command, *tiny(sequence, run, *args)], cwd=REPO, env=cli_env(), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 600  # catches a hung run; a loaded machine is only slower
        while not ((run / "last.ckpt").exists() and max(metrics(run), default=0) >= 3):
            assert proc.poll() is None, (
                f"the run ended before it could be killed: {(tmp_path / 'killed.log').read_text()}"
            )
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.02)
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
        log.close()
    killed_at = int(read_checkpoint(run / "last.ckpt")["step"])
    assert 2 <= killed_at < steps
    assert not (run / "model.ckpt").exists()

    assert main(["train", "--config", str(DEMO), "--resume", "--quiet", *tiny(sequence, run, *args)]) == 0
    assert f"train: {steps} steps" in capsys.readouterr().out
    want, got = state(reference / "model.ckpt"), state(run / "model.ckpt")
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert read_checkpoint(run / "model.ckpt")["step"] == steps
    a, b = metrics(reference), metrics(run)
    assert sorted(b) == list(range(1, steps + 1))
    for step in range(killed_at + 1, steps + 1):
        for name in ("loss", "voxel_ce", "voxel_lovasz", "depth", "semantic", "grad_norm", "lr"):
            assert b[step][name] == a[step][name], (step, name)
    # the schedule survived the restart: warm-up 3 steps, then cosine (step s, 1-based, updates with factor s - 1)
    for step in range(1, steps + 1):
        assert a[step]["lr"] == pytest.approx(2e-3 * lr_factor(step - 1, config(sequence, run, *args)))

    # a second fresh run must not overwrite this one ...
    assert main(["train", "--config", str(DEMO), "--quiet", *tiny(sequence, run, *args)]) == 1
    err = capsys.readouterr().err
    assert "--resume" in err and str(run) in err
    # ... and a resumed one must keep the settings that shape the trajectory (steps may change)
    assert (
        main(["train", "--config", str(DEMO), "--resume", "--quiet", *tiny(sequence, run, *args), "optim.lr=1e-3"]) == 1
    )
    err = capsys.readouterr().err
    assert "optim.lr" in err and "steps" not in err.split("only")[0]
    assert torch.equal(state(run / "model.ckpt")["head_conv.0.weight"], got["head_conv.0.weight"])
    # a finished run can be extended
    assert main(["train", "--config", str(DEMO), "--resume", "--quiet", *tiny(sequence, run, *args), "steps=9"]) == 0
    assert read_checkpoint(run / "model.ckpt")["step"] == 9 and max(metrics(run)) == 9


# ---------------------------------------------------------------------------------------------- 6. predict / eval
@pytest.fixture(scope="module")
def trained(sequence, tmp_path_factory) -> Path:
    """A tiny model trained 3 steps, validated on the sequence itself (it has ground truth)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(config(sequence, run, "steps=3", "log_every=1", f"data.val=['{sequence}']", "data.val_frames=0"), False)
    return run


def test_predict_writes_occ3d_labels_that_eval_scores(sequence, trained, tmp_path, capsys):
    out = tmp_path / "pred"
    assert (
        main(["predict", "--model", str(trained / "model.ckpt"), "--data", str(sequence), "--out", str(out), "--quiet"])
        == 0
    )
    gt_files = sorted(p.relative_to(sequence / "gts") for p in (sequence / "gts").rglob("labels.npz"))
    pred_files = sorted(p.relative_to(out) for p in out.rglob("labels.npz"))
    assert len(gt_files) == FRAMES and pred_files == gt_files  # <scene>/<frame>/labels.npz, one per frame
    for rel in pred_files:
        with np.load(out / rel) as npz:
            assert sorted(npz.files) == ["grid", "semantics"]  # the model's grid, stored (occ_ros.io.labels)
            assert json.loads(str(npz["grid"])) == read_checkpoint(trained / "model.ckpt")["model"]["grid"]
            assert npz["semantics"].dtype == np.uint8 and npz["semantics"].shape == (80, 80, 8)
            assert int(npz["semantics"].max()) < 18

    # the file holds the argmax of the network on the preprocessed frame
    bundle = load_checkpoint(trained / "model.ckpt")
    sample = SynthReader(sequence).load(2)
    net = preprocess(sample.images, sample.rig, bundle.preprocess)
    with torch.no_grad():
        logits = bundle.model(*(torch.from_numpy(a)[None] for a in (net.images, net.K, net.cam_from_ego)))
    with np.load(out / sample.scene / sample.frame / "labels.npz") as npz:
        np.testing.assert_array_equal(npz["semantics"], logits["semantics"][0].argmax(0).numpy())

    report = tmp_path / "eval.json"
    capsys.readouterr()
    assert main(["eval", "--pred", str(out), "--gt", str(sequence / "gts"), "--json", str(report), "--quiet"]) == 0
    scores = json.loads(report.read_text())
    assert scores["samples"] == FRAMES
    # the run's own final validation (camera mask, same weights) agrees with predict + eval
    val = metrics(trained, "val")
    assert list(val) == [3]
    assert val[3]["iou"] == pytest.approx(scores["iou"], abs=0.011)
    if scores["miou"] is not None:
        assert val[3]["miou"] == pytest.approx(scores["miou"], abs=0.011)


def test_predict_refuses_a_model_on_another_grid_naming_both_grids(sequence, trained, tmp_path, capsys):
    data = read_checkpoint(trained / "model.ckpt")
    data["model"]["grid"] = {"range_min": [-24.0, -32.0, -1.0], "range_max": [40.0, 32.0, 5.4], "voxel_size": [0.8] * 3}
    shifted = save_checkpoint(tmp_path / "shifted.ckpt", data)  # the same shape 8 m further forward
    out = tmp_path / "out"
    assert main(["predict", "--model", str(shifted), "--data", str(sequence), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("occ predict: error: grid mismatch:")
    assert f"the model {shifted} has grid 80x80x8 voxels of 0.8 m over x [-24, 40] y [-32, 32] z [-1, 5.4] m" in err
    assert f"the data {sequence} has grid 80x80x8 voxels of 0.8 m over x [-32, 32] y [-32, 32] z [-1, 5.4] m" in err
    assert not out.exists()  # refused before any frame


def test_predict_refuses_a_checkpoint_that_does_not_fit_the_data(sequence, trained, tmp_path, capsys):
    data = read_checkpoint(trained / "model.ckpt")
    data["vocabulary"]["name"] = "renamed"
    data["vocabulary"]["classes"][0]["name"] = "debris"
    renamed = save_checkpoint(tmp_path / "renamed.ckpt", data)
    args = ["--data", str(sequence), "--out", str(tmp_path / "out"), "--quiet"]
    assert main(["predict", "--model", str(renamed), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("occ predict: error:")
    assert "'renamed'" in err and "'occ3d'" in err and "debris" in err and str(renamed) in err

    missing = tmp_path / "nowhere" / "model.ckpt"
    assert main(["predict", "--model", str(missing), *args]) == 1
    assert str(missing) in capsys.readouterr().err

    data = read_checkpoint(trained / "model.ckpt")
    data["model"]["num_cameras"] = 5
    data["cameras"] = data["cameras"][:5]  # a 5-camera model records 5 names
    five = save_checkpoint(tmp_path / "five.ckpt", data)
    assert main(["predict", "--model", str(five), *args]) == 1
    err = capsys.readouterr().err
    assert "5 cameras" in err and "has 6" in err
    assert not (tmp_path / "out").exists()

    # occ query needs a CLIP head, which this model lacks
    assert (
        main(
            [
                "query",
                "--model",
                str(trained / "model.ckpt"),
                "--data",
                str(sequence),
                "--text",
                "car",
                "--out",
                str(tmp_path / "q"),
            ]
        )
        == 1
    )
    assert "clip_dim" in capsys.readouterr().err


def test_checkpoints_describe_themselves(trained, tmp_path):
    last = read_checkpoint(trained / "last.ckpt")
    model = read_checkpoint(trained / "model.ckpt")
    assert last["step"] == model["step"] == 3
    assert "train" in last and "train" not in model
    assert {"optimizer", "scheduler", "scaler", "class_weights", "config"} <= set(last["train"])
    assert model["vocabulary"]["name"] == "occ3d" and model["model"]["backbone_channels"] == 8
    assert model["preprocess"]["height"] == 112 and model["preprocess"]["width"] == 200
    bundle = load_checkpoint(trained / "model.ckpt")
    assert not bundle.model.training and bundle.step == 3
    for k, v in bundle.model.state_dict().items():
        assert torch.equal(v, model["state_dict"][k])
    saved = json.loads(json.dumps(last["train"]["config"]))
    assert saved["model"]["bev_channels"] == 8 and saved["steps"] == 3
    # provenance for the export metadata: the camera order of the training rig and the training config's sha256
    from occ_ros.inference.model_info import config_hash

    rig = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
    assert model["cameras"] == last["cameras"] == rig and bundle.cameras == tuple(rig)
    assert model["config_hash"] == config_hash(saved) and len(bundle.config_hash) == 64
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    from occ_ros.model.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=str(corrupt)):
        load_checkpoint(corrupt)


# ---------------------------------------------------------------------------------------------- decision
def test_adjustment_bias_is_minus_tau_log_weight():
    from occ_training.trainer.logit_adjustment import adjustment_bias

    bias = adjustment_bias(torch.tensor([math.e**2, 1.0, math.e]), 0.5)
    assert torch.allclose(bias, torch.tensor([-1.0, 0.0, -0.5]))
    with pytest.raises(ValueError, match="positive"):
        adjustment_bias(torch.tensor([1.0, 0.0]), 0.5)


def test_choose_adjustment_picks_the_tau_that_removes_false_positives_by_hand():
    """10 voxels, 2 of them car. Car logit 3 on the true cars, 1 on three free voxels, free logit 0 everywhere;
    log w_car = 2, every other weight 1. Adjusted car scores are 3 - 2 tau and 1 - 2 tau: tau < 0.5 keeps the
    three false cars (car IoU 2/5), 0.5 < tau < 1.5 drops them (IoU 1), tau > 1.5 drops everything (IoU 0)."""
    from occ_training.trainer.logit_adjustment import choose_adjustment

    car, free = OCC3D.index("car"), OCC3D.free_index
    logits = torch.full((18, 10, 1, 1), -50.0)
    logits[free] = 0.0
    logits[car, :2] = 3.0
    logits[car, 2:5] = 1.0
    labels = np.full((10, 1, 1), free, np.uint8)
    labels[:2] = car
    labels[9] = 255  # unlabelled: not scored
    mask = np.ones((10, 1, 1), bool)
    mask[8] = False  # outside the camera mask: not scored (the raw argmax calls it free anyway)
    weights = torch.ones(18)
    weights[car] = math.e**2
    choice = choose_adjustment([(logits, labels, mask)], weights, OCC3D, [0.0, 0.25, 1.0, 2.0])
    assert choice.miou == {0.0: 40.0, 0.25: 40.0, 1.0: 100.0, 2.0: 0.0}
    assert choice.tau == 1.0 and choice.frames == 1
    assert torch.allclose(choice.bias[car], torch.tensor(-2.0)) and float(choice.bias[free]) == 0.0
    # ties go to the weaker adjustment
    assert choose_adjustment([(logits, labels, mask)], weights, OCC3D, [0.25, 0.0]).tau == 0.0
    with pytest.raises(ValueError, match="no frame"):
        choose_adjustment([], weights, OCC3D, [0.0])


def test_logit_adjustment_on_val_needs_validation_data_and_class_weights():
    with pytest.raises(ConfigError, match=r"data\.val"):
        load_train_config(DEMO, ["decision.logit_adjustment=val", "data.val=[]"])
    with pytest.raises(ConfigError, match=r"class_weighting"):
        load_train_config(DEMO, ["decision.logit_adjustment=val", "data.val=[x]", "loss.class_weighting=none"])
    with pytest.raises(ConfigError, match=r"decision\.taus"):
        load_train_config(DEMO, ["decision.taus=[]"])


def test_a_run_with_logit_adjustment_stores_the_bias_that_scores_best_on_the_val_pseudo_labels(sequence, tmp_path):
    """The logged mIoU of every tau is recomputed here with a plain confusion matrix from the saved model's raw
    logits and the pseudo-label files; the stored bias is -tau log w of the run's class weights."""
    run = tmp_path / "run"
    taus = [0.5, 1.0, 2.0]  # no 0: the stored bias cannot be trivially zero
    cfg = config(
        sequence,
        run,
        "steps=3",
        f"data.val=['{sequence}']",
        "data.val_frames=0",
        "decision.logit_adjustment=val",
        f"decision.taus={taus}",
    )
    train(cfg, progress=False)
    decision = metrics(run, "decision")[3]
    weights = read_checkpoint(run / "last.ckpt")["train"]["class_weights"]
    bundle = load_checkpoint(run / "model.ckpt")
    assert decision["tau"] in taus and float(bundle.model.decision_bias.abs().max()) > 0
    assert torch.allclose(bundle.model.decision_bias, -decision["tau"] * torch.log(weights))
    recorded = read_checkpoint(run / "model.ckpt")["decision"]
    assert recorded == {k: v for k, v in decision.items() if k not in ("kind", "step")}
    reader = SynthReader(sequence)
    confusion = {tau: np.zeros((18, 18), np.int64) for tau in taus}
    for i in range(len(reader)):
        sample = reader.load(i)
        net = preprocess(sample.images, sample.rig, bundle.preprocess)
        with torch.no_grad():
            raw = bundle.model(*(torch.from_numpy(a)[None] for a in (net.images, net.K, net.cam_from_ego)))
        raw = raw["semantics"][0].numpy()
        with np.load(sequence / "pseudo_labels" / sample.scene / sample.frame / "labels.npz") as npz:
            target, mask = npz["semantics"].astype(np.int64), npz["mask_camera"].astype(bool)
        for tau in taus:
            pred = (raw - tau * np.log(weights.numpy())[:, None, None, None]).argmax(axis=0)
            np.add.at(confusion[tau], (target[mask], pred[mask]), 1)
    for tau in taus:
        c = confusion[tau][:17, :17].astype(float)
        tp, union = np.diag(c), confusion[tau].sum(0)[:17] + confusion[tau].sum(1)[:17] - np.diag(c)
        miou = 100 * np.mean(tp[union > 0] / union[union > 0])
        assert decision["pseudo_label_miou_by_tau"][str(float(tau))] == pytest.approx(miou, abs=0.01)
    by_tau = {float(t): v for t, v in decision["pseudo_label_miou_by_tau"].items()}
    assert decision["tau"] == min(t for t, v in by_tau.items() if v == max(by_tau.values()))
    assert decision["frames"] == FRAMES and metrics(run, "val")  # validation ran after the choice


# ---------------------------------------------------------------------------------------------- shipped
@pytest.mark.parametrize("name", ["demo", "occ3d_nuscenes", "rosbag"])
def test_shipped_configs_load(name):
    cfg = load_train_config(REPO / "config" / "train" / f"{name}.yaml")
    cfg.load_vocabulary()  # the class count fits the vocabulary
    if name != "demo":
        assert cfg.model.grid_spec.shape == (200, 200, 16) and cfg.model.image_size == (256, 704)


def test_the_shipped_checkpoint_finds_cars_by_text(sequence, tmp_path):
    """models/demo.ckpt (trained on other seeds) + "car": the CLIP head's matches overlap the true car voxels about as
    well as the semantic head's "car" class does (IoU, which does not depend on where either sits on its
    precision / recall trade-off), and are cars far more often than chance (the share of cars among occupied
    voxels)."""
    from occ_ros.core.resources import models_dir
    from occ_ros.inference.backend import open_backend
    from occ_tools.predict import prepare, run_query

    model = models_dir() / "demo.ckpt"
    assert model.stat().st_size <= 20 * 2**20
    summary = run_query(model, sequence, "car", tmp_path / "q")
    assert summary.picture is not None and summary.picture.stat().st_size > 1000
    reader = SynthReader(sequence)
    predictor = open_backend(model)
    car, free = reader.vocabulary.index("car"), reader.vocabulary.free_index
    n = {"match": 0, "match_car": 0, "head": 0, "head_car": 0, "car": 0, "occupied": 0}
    for i in range(len(reader)):
        sample = reader.load(i)
        with np.load(tmp_path / "q" / sample.scene / sample.frame / "query.npz") as npz:
            match = npz["match"]
            assert npz["points"].shape == (int(match.sum()), 3)
        head = predictor(prepare(predictor, sample))["labels"] == car
        gt = sample.gt.semantics
        n["match"] += int(match.sum())
        n["match_car"] += int((match & (gt == car)).sum())
        n["head"] += int(head.sum())
        n["head_car"] += int((head & (gt == car)).sum())
        n["car"] += int((gt == car).sum())
        n["occupied"] += int((gt != free).sum())
    assert n["match"] > 0 and n["head"] > 0
    query_iou = n["match_car"] / (n["match"] + n["car"] - n["match_car"])
    head_iou = n["head_car"] / (n["head"] + n["car"] - n["head_car"])
    assert query_iou > 0.7 * head_iou
    assert n["match_car"] / n["match"] > 4 * n["car"] / n["occupied"]


def test_images_too_short_for_the_checkpoint_name_both_sizes(trained):
    """A camera whose image, scaled to the network width, is shorter than the network input: both sizes named."""
    from occ_ros.core.rig import CameraRig
    from occ_ros.inference.model_info import ModelInfoError

    info = load_checkpoint(trained / "model.ckpt").model_info()  # what occ predict checks, whatever the backend
    K = np.array([[200.0, 0, 199.5], [0, 200.0, 49.5], [0, 0, 1]])
    wide = [Camera(f"CAM_{i}", f"cam_{i}", 400, 100, K, np.eye(4)) for i in range(6)]  # 400x100 -> 200x50
    with pytest.raises(ModelInfoError, match=r"400x100.*200x50.*200x112"):
        info.check_data(OCC3D, CameraRig(tuple(wide)))
    fits = [Camera(f"CAM_{i}", f"cam_{i}", 800, 450, K, np.eye(4)) for i in range(6)]  # 800x450 -> 200x112.5
    info.check_data(OCC3D, CameraRig(tuple(fits)))


def test_backbone_weights_initialise_the_trunk_and_a_bad_file_is_named(sequence, tmp_path):
    """``backbone_weights``: a ResNet state dict (here another backbone's) is the trunk before step 0."""
    from occ_ros.model.network import OccupancyNetwork
    from occ_training.trainer.loop import Trainer, TrainError

    weights = tmp_path / "resnet.pth"
    cfg = config(sequence, tmp_path / "run", f"backbone_weights={weights}")
    torch.manual_seed(cfg.seed + 1)  # not the run's initial weights
    source = OccupancyNetwork(cfg.model).backbone
    torch.save(source.state_dict(), weights)
    trainer = Trainer(cfg, progress=False)
    own = trainer.model.backbone.state_dict()
    assert all(torch.equal(own[k], v) for k, v in source.state_dict().items())
    missing = tmp_path / "absent.pth"
    with pytest.raises(TrainError, match=rf"backbone_weights: .*{missing.name}.*no such file"):
        Trainer(config(sequence, tmp_path / "run2", f"backbone_weights={missing}"), progress=False)
