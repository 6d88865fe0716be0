"""ESPNetv2 (s = 2.0) + EdgeNets decoder: strict load of the real Cityscapes weights, shapes, parameter count,
quality on one real KITTI frame against projected LiDAR labels, and ONNX Runtime parity.

The weights and the KITTI fixture live in ``../shared`` (next to the repository); tests that need them skip
when they are absent. The fixture is read in place (its licence forbids copies).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from occ_training.teachers.espnetv2 import (
    CITYSCAPES_CLASSES,
    NUM_CLASSES,
    ESPNetv2Segmentation,
    adaptive_avg_pool,
    default_weights_path,
    export_espnetv2_onnx,
    load_espnetv2,
    preprocess,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = default_weights_path(ROOT)
KITTI = SHARED / "fixtures" / "kitti_mini"
STATE_NUMEL = 814_351  # parameters + BN buffers of the released state_dict (526 tensors)

needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"{WEIGHTS} (../shared/models) not present")
needs_kitti = pytest.mark.skipif(
    not (WEIGHTS.is_file() and (KITTI / "sequences" / "04" / "image_2" / "000000.jpg").is_file()),
    reason="../shared/models/espnetv2_cityscapes or ../shared/fixtures/kitti_mini not present",
)


@pytest.fixture(scope="module")
def model() -> ESPNetv2Segmentation:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return load_espnetv2(WEIGHTS)


def _script():
    spec = importlib.util.spec_from_file_location("espnetv2_kitti_iou", ROOT / "scripts" / "espnetv2_kitti_iou.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_random_init_matches_state_dict_layout() -> None:
    net = ESPNetv2Segmentation()
    state = net.state_dict()
    assert len(state) == 526
    assert sum(v.numel() for v in state.values()) == STATE_NUMEL
    assert sum(p.numel() for p in net.parameters()) == STATE_NUMEL - sum(
        v.numel() for k, v in state.items() if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert len(CITYSCAPES_CLASSES) == NUM_CLASSES == 20


def test_output_shape_small_input() -> None:
    net = ESPNetv2Segmentation().eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 128))
    assert out.shape == (1, 20, 64, 128)
    assert torch.isfinite(out).all()


def test_export_pooling_equals_adaptive_avg_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """The matrix form used while exporting is PyTorch's adaptive pooling (bins that overlap, grow, shrink)."""
    x = torch.randn(2, 3, 36, 117)
    refs = {size: torch.nn.functional.adaptive_avg_pool2d(x, size) for size in [(24, 78), (5, 8), (4, 12), (40, 120)]}
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)  # the export path
    for size, ref in refs.items():
        torch.testing.assert_close(adaptive_avg_pool(x, size), ref, rtol=1e-5, atol=1e-6)


@needs_weights
def test_strict_load_of_shared_weights(model: ESPNetv2Segmentation) -> None:
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert len(state) == 526 and sum(v.numel() for v in state.values()) == STATE_NUMEL
    fresh = ESPNetv2Segmentation()
    result = fresh.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in model.state_dict().items():
        assert value.shape == state[key].shape, key


@needs_kitti
def test_point_accuracy_on_real_kitti_frame(model: ESPNetv2Segmentation) -> None:
    """Sequence 04 frame 0 at 256x832: the segmentation agrees with the projected SemanticKITTI labels (README:
    0.726 over 32 frames at this size)."""
    script = _script()
    frame = script.load_frame(KITTI, "04", 0)
    assert len(frame.labels) > 10_000
    with torch.inference_mode():
        logits = model(preprocess(frame.image, (256, 832)))
    assert logits.shape == (1, 20, 256, 832)
    label_map = logits[0].argmax(0).numpy().astype(np.uint8)
    pred = script.cityscapes_to_learning()[script.point_predictions(label_map, frame)]
    accuracy = float(np.mean(pred == frame.labels))
    assert accuracy > 0.65, accuracy


@needs_weights
def test_onnx_export_parity(tmp_path: Path, model: ESPNetv2Segmentation) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    h, w = 96, 320
    path = export_espnetv2_onnx(WEIGHTS, tmp_path / "espnetv2.onnx", height=h, width=w)
    if (KITTI / "sequences" / "04" / "image_2" / "000000.jpg").is_file():
        from PIL import Image

        with Image.open(KITTI / "sequences" / "04" / "image_2" / "000000.jpg") as im:
            x = preprocess(np.asarray(im.convert("RGB")), (h, w))
    else:
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"image": x.numpy()})
    with torch.inference_mode():
        ref = model(x).numpy()
    assert got.shape == ref.shape == (1, 20, h, w)
    agreement = float(np.mean(got.argmax(1) == ref.argmax(1)))
    assert agreement > 0.999, agreement
    assert float(np.abs(got - ref).max()) < 1e-2
