"""ONNX teachers (occ_training.teachers.onnx_teacher): model cards, preprocessing, class mapping, depth kinds.

Tiny ONNX models are built here with ``onnx.helper``; the expected tensors and maps are worked out by hand
in the comments. The real PyDNet model (shared/models/pydnet_kitti) is run on one KITTI frame when present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from occ_ros.core.rig import Camera  # noqa: E402
from occ_ros.core.vocabulary import OCC3D, Vocabulary  # noqa: E402
from occ_ros.datasets.sample import IGNORE_LABEL  # noqa: E402
from occ_tools.cli import main  # noqa: E402
from occ_training.teachers.base import TeacherError  # noqa: E402
from occ_training.teachers.factory import TeacherSpec, build_teachers  # noqa: E402
from occ_training.teachers.onnx_teacher import (  # noqa: E402
    OnnxDepthTeacher,
    OnnxSegmentationTeacher,
    card_dir,
    load_card,
    resize_bilinear,
    shared_models_dir,
)

REPO = Path(__file__).resolve().parents[1]
PYDNET = shared_models_dir() / "pydnet_kitti" / "model.onnx"
KITTI_FRAME = REPO.parent / "shared" / "fixtures" / "kitti_mini" / "sequences" / "00" / "image_2" / "000000.jpg"


# ---------------------------------------------------------------------------------------- tiny models
def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def identity_model(path: Path, shape: list, out_shape: list | None = None) -> Path:
    """``scores = image`` (optionally reshaped): the scores are the preprocessed pixels."""
    nodes = [helper.make_node("Identity", ["image"], ["scores"])]
    inits = []
    if out_shape is not None:
        nodes = [helper.make_node("Reshape", ["image", "shape"], ["scores"])]
        inits = [helper.make_tensor("shape", TensorProto.INT64, [len(out_shape)], out_shape)]
    graph = helper.make_graph(
        nodes,
        "identity",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, out_shape or shape)],
        initializer=inits,
    )
    return _save(graph, path)


def depth_model(path: Path, size: tuple[int, int] = (2, 4), negate: bool = True, offset: float = 0.0) -> Path:
    """``out = -(avgpool2x2(mean over channels) - offset)`` (no minus when not ``negate``): (N, 1, H/2, W/2)."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["gray"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["gray"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Sub", ["pooled", "offset"], ["shifted"]),
        helper.make_node("Neg" if negate else "Identity", ["shifted"], ["depth"]),
    ]
    graph = helper.make_graph(
        nodes,
        "depth",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, *size])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["N", 1, size[0] // 2, size[1] // 2])],
        initializer=[helper.make_tensor("offset", TensorProto.FLOAT, [], [offset])],
    )
    return _save(graph, path)


def write_card(path: Path, card: dict) -> Path:
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return path


SEG_MAPPINGS = {
    "occ3d": {"road": "driveable_surface", "car": "car", "sky": None},
    "semantickitti": {"road": "road", "car": "car", "sky": None},
}


def seg_card(tmp_path: Path, model: Path, **changes) -> Path:
    card = {
        "name": "tiny_seg",
        "model": model.name,  # relative: found next to the card
        "input": {"name": "image", "size": [2, 3], "layout": "NCHW", "channels": "RGB", "scale": 1},
        "segmentation": {
            "output": "scores",
            "layout": "NCHW",
            "scores": "logits",
            "classes": ["road", "car", "sky"],
            "mappings": SEG_MAPPINGS,
        },
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            card[section][field] = value
        else:
            card[section] = value
    return write_card(tmp_path / "seg.yaml", card)


def depth_card(tmp_path: Path, model: Path, kind: str = "negative_disparity", size=(2, 4), **depth) -> Path:
    card = {
        "name": "tiny_depth",
        "model": str(model),
        "input": {"size": list(size), "scale": "1/255"},
        "depth": {"output": 0, "kind": kind, **depth},
    }
    return write_card(tmp_path / "depth.yaml", card)


# ---------------------------------------------------------------------------------------- preprocessing
def test_preprocessing_feeds_the_exact_tensor(tmp_path):
    model = identity_model(tmp_path / "id.onnx", ["N", 3, 4, 6])
    card = seg_card(
        tmp_path,
        model,
        input={"size": [4, 6], "scale": "1/4", "mean": [1, 2, 3], "std": [2, 4, 8]},
    )
    teacher = OnnxSegmentationTeacher(OCC3D, card)
    # R = 120 y + 40 x, G = 8, B = 100 + 20 x.
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0] = [[0, 40, 80], [120, 160, 200]]
    image[..., 1] = 8
    image[..., 2] = [[100, 120, 140], [100, 120, 140]]
    x, place = teacher.model.preprocess(image)
    assert x.shape == (1, 3, 4, 6) and x.dtype == np.float32
    assert (place.top, place.left, place.height, place.width) == (0, 0, 4, 6)
    # Bilinear 2x3 -> 4x6, half-pixel centres, edges replicated: source rows 0, .25, .75, 1 and source
    # columns 0, .25, .75, 1.25, 1.75, 2, so R = 120 * row + 40 * col; then (R / 4 - 1) / 2.
    red = np.array(
        [
            [0, 10, 30, 50, 70, 80],
            [30, 40, 60, 80, 100, 110],
            [90, 100, 120, 140, 160, 170],
            [120, 130, 150, 170, 190, 200],
        ],
        np.float32,
    )
    np.testing.assert_allclose(x[0, 0], (red / 4 - 1) / 2, atol=1e-5)
    np.testing.assert_allclose(x[0, 1], np.full((4, 6), (8 / 4 - 2) / 4), atol=1e-6)  # 0
    blue_row = np.array([100, 105, 115, 125, 135, 140], np.float32)  # 100 + 20 * col
    np.testing.assert_allclose(x[0, 2], np.tile((blue_row / 4 - 3) / 8, (4, 1)), atol=1e-5)


def test_preprocessing_bgr_nhwc_and_letterbox(tmp_path):
    model = identity_model(tmp_path / "id.onnx", [1, 2, 3, 3], out_shape=[1, 3, 2, 3])
    card = seg_card(tmp_path, model, input={"size": [2, 3], "layout": "NHWC", "channels": "BGR", "scale": 1})
    teacher = OnnxSegmentationTeacher(OCC3D, card)
    image = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    x, _ = teacher.model.preprocess(image)
    assert x.shape == (1, 2, 3, 3)
    np.testing.assert_array_equal(x[0], image[..., ::-1].astype(np.float32))  # same pixels, channels B, G, R

    # Letterbox a 2x4 image into 4x4: scale 1, rows 1-2 hold the image, rows 0 and 3 the pad value (in pixels,
    # normalised like the image).
    model = identity_model(tmp_path / "id4.onnx", ["N", 3, 4, 4])
    card = seg_card(
        tmp_path,
        model,
        input={"size": [4, 4], "scale": 1, "mean": 10, "resize": "letterbox", "pad_value": [50, 60, 70]},
    )
    teacher = OnnxSegmentationTeacher(OCC3D, card)
    image = np.zeros((2, 4, 3), np.uint8)
    image[..., 0] = [[12, 11, 10, 10], [10, 10, 10, 10]]
    x, place = teacher.model.preprocess(image)
    assert (place.top, place.left, place.height, place.width) == (1, 0, 2, 4)
    np.testing.assert_allclose(x[0, :, 0, 0], [40, 50, 60])
    np.testing.assert_allclose(x[0, :, 3, 2], [40, 50, 60])
    np.testing.assert_allclose(x[0, 0, 1:3], image[..., 0].astype(np.float32) - 10)
    # The output's image rows are cut back out: pixel (0, 0) has logits (2, -10, -10).
    probs = teacher.class_probabilities([image])[0]
    assert probs.shape == (2, 4, 3)
    e = np.exp(np.array([2.0, -10.0, -10.0]))
    np.testing.assert_allclose(probs[0, 0], e / e.sum(), rtol=1e-5)


# ---------------------------------------------------------------------------------------- segmentation
def test_segmentation_maps_card_classes_to_the_vocabulary(tmp_path):
    model = identity_model(tmp_path / "id.onnx", ["N", 3, 2, 3])
    card = seg_card(tmp_path, model)
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = (2, 0, 0)  # road wins
    image[0, 1] = (0, 3, 0)  # car wins
    image[0, 2] = (0, 0, 5)  # sky: "none of the classes"
    image[1, :] = (1, 1, 1)  # a tie
    teacher = OnnxSegmentationTeacher(OCC3D, card)
    assert teacher.name == "onnx:tiny_seg"
    (result,) = teacher.segment_images([image])
    assert result.probs.shape == (2, 3, OCC3D.num_semantic)
    road, car = OCC3D.index("driveable_surface"), OCC3D.index("car")
    # logits = pixel values (scale 1, no mean / std); softmax over (road, car, sky).
    e2 = np.exp(2.0)
    np.testing.assert_allclose(result.probs[0, 0, road], e2 / (e2 + 2), rtol=1e-5)
    np.testing.assert_allclose(result.probs[0, 0, car], 1 / (e2 + 2), rtol=1e-5)
    e5 = np.exp(5.0)
    np.testing.assert_allclose(result.probs[0, 2].sum(), 2 / (e5 + 2), rtol=1e-5)  # sky is left out
    np.testing.assert_allclose(result.probs[1, 0, [road, car]], [1 / 3, 1 / 3], rtol=1e-5)
    others = np.ones(OCC3D.num_semantic, bool)
    others[[road, car]] = False
    assert not result.probs[..., others].any()
    labels, _ = result.labels()
    assert labels[0, 0] == road and labels[0, 1] == car and labels[0, 2] == IGNORE_LABEL

    kitti = Vocabulary.from_yaml(REPO / "config" / "vocabularies" / "semantickitti.yaml")
    (kitti_map,) = OnnxSegmentationTeacher(kitti, card).segment_images([image])
    assert kitti_map.probs.shape[-1] == kitti.num_semantic
    np.testing.assert_allclose(kitti_map.probs[0, 0, kitti.index("road")], e2 / (e2 + 2), rtol=1e-5)


def test_graph_optimization_level_comes_from_the_card(tmp_path):
    model = identity_model(tmp_path / "id.onnx", ["N", 3, 2, 3])
    card = seg_card(tmp_path, model)
    data = yaml.safe_load(card.read_text())
    write_card(card, {**data, "graph_optimization": "disabled"})
    teacher = OnnxSegmentationTeacher(OCC3D, card)
    assert teacher.card.graph_optimization == "disabled"
    write_card(card, {**data, "graph_optimization": "max"})
    with pytest.raises(TeacherError, match="graph_optimization must be one of"):
        load_card(card)


def test_segmentation_output_is_upsampled_to_the_image(tmp_path):
    model = identity_model(tmp_path / "id.onnx", ["N", 3, 2, 3])
    card = seg_card(tmp_path, model, input={"size": [2, 3], "scale": 1}, segmentation__scores="probabilities")
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, :3, 0] = 1  # left half: road probability 1
    probs = OnnxSegmentationTeacher(OCC3D, card).class_probabilities([image])[0]
    assert probs.shape == (4, 6, 3)
    # 4x6 -> 2x3 (columns 0.5, 2.5, 4.5: road 1, 0.5, 0) -> 4x6 (columns 0, .25, .75, 1.25, 1.75, 2).
    np.testing.assert_allclose(probs[0, :, 0], [1, 0.875, 0.625, 0.375, 0.125, 0], atol=1e-6)


# ---------------------------------------------------------------------------------------- depth
def test_negative_disparity_becomes_relative_inverse_depth(tmp_path):
    model = depth_model(tmp_path / "depth.onnx")
    teacher = OnnxDepthTeacher(depth_card(tmp_path, model))
    assert teacher.kind == "relative"
    image = np.zeros((2, 4, 3), np.uint8)
    image[:, :2] = 51  # 0.2 after / 255
    image[:, 2:] = 204  # 0.8
    (depth,) = teacher.estimate_images([image])
    # Output (1, 1, 1, 2) = (-0.2, -0.8); disp = -output; bilinear to 4 columns at source 0, .25, .75, 1.
    assert depth.kind == "relative" and depth.shape == (2, 4) and depth.valid.all()
    np.testing.assert_allclose(depth.values, [[0.2, 0.35, 0.65, 0.8]] * 2, atol=1e-6)


def test_other_depth_kinds(tmp_path):
    image = np.zeros((2, 4, 3), np.uint8)
    image[:, :2] = 51
    image[:, 2:] = 204
    model = depth_model(tmp_path / "plain.onnx", negate=False)  # output (0.2, 0.8)
    (d,) = OnnxDepthTeacher(depth_card(tmp_path, model, "relative_inverse_depth")).estimate_images([image])
    np.testing.assert_allclose(d.values[0], [0.2, 0.35, 0.65, 0.8], atol=1e-6)
    (d,) = OnnxDepthTeacher(depth_card(tmp_path, model, "relative_depth")).estimate_images([image])
    assert d.kind == "relative"  # 1 / output = (5, 1.25), then interpolated
    np.testing.assert_allclose(d.values[0], [5, 4.0625, 2.1875, 1.25], rtol=1e-5)
    metric = OnnxDepthTeacher(depth_card(tmp_path, model, "metric_depth", scale=10))
    assert metric.kind == "metric"
    (d,) = metric.estimate_images([image])
    np.testing.assert_allclose(d.values[0], [2, 3.5, 6.5, 8], rtol=1e-5)
    np.testing.assert_allclose(d.to_metric(), d.values)
    # Metric3D-style canonical camera: depth * fx_input / canonical_focal; fx 500 at width 4 -> 4: x 0.5.
    camera = Camera("cam", "cam", 4, 2, np.array([[500.0, 0, 2], [0, 500, 1], [0, 0, 1]]), np.eye(4))
    focal = OnnxDepthTeacher(depth_card(tmp_path, model, "metric_depth", scale=10, canonical_focal=1000))
    (d,) = focal.estimate_images([image], [camera])
    np.testing.assert_allclose(d.values[0], [1, 1.75, 3.25, 4], rtol=1e-5)
    with pytest.raises(TeacherError, match="canonical_focal needs the camera"):
        focal.estimate_images([image])
    # relative_depth is unknown where the output is not positive: (−0.3, 0.3); only column 3 reads the right
    # sample alone.
    shifted = depth_model(tmp_path / "shifted.onnx", negate=False, offset=0.5)
    (d,) = OnnxDepthTeacher(depth_card(tmp_path, shifted, "relative_depth")).estimate_images([image])
    np.testing.assert_array_equal(d.valid, [[False, False, False, True]] * 2)
    np.testing.assert_allclose(d.values[:, 3], 1 / 0.3, rtol=1e-5)


# ---------------------------------------------------------------------------------------- card errors
def _card_errors(tmp_path: Path) -> dict[str, tuple[Path, str, str]]:
    """name -> (card, what the message must name besides the card, how it is built)."""
    seg = identity_model(tmp_path / "id.onnx", ["N", 3, 2, 3])
    rank3 = identity_model(tmp_path / "rank3.onnx", ["N", 2, 3])
    depth = depth_model(tmp_path / "depth.onnx")
    cases = {}

    def case(name, card, needle, kind="seg"):
        target = tmp_path / f"{name}.yaml"
        card.rename(target)
        cases[name] = (target, needle, kind)

    case("input_size", seg_card(tmp_path, seg, input={"name": "image", "size": [4, 6]}), "'image'")
    case("input_rank", seg_card(tmp_path, rank3, input={"size": [2, 3]}), "'image'")
    case("input_name", seg_card(tmp_path, seg, input={"name": "pixels", "size": [2, 3]}), "'pixels'")
    case("input_dtype", seg_card(tmp_path, seg, input={"size": [2, 3], "dtype": "uint8"}), "'image'")
    four = {"road": "driveable_surface", "car": "car", "sky": None, "bus": "bus"}
    case(
        "class_count",
        seg_card(
            tmp_path, seg, segmentation__classes=["road", "car", "sky", "bus"], segmentation__mappings={"occ3d": four}
        ),
        "'scores'",
    )
    case("output_name", seg_card(tmp_path, seg, segmentation__output="logits"), "'logits'")
    case("output_index", seg_card(tmp_path, seg, segmentation__output=3), "index 3")
    bad_map = {"occ3d": {"road": "driveable_surface", "car": "automobile", "sky": None}}
    case("unknown_class", seg_card(tmp_path, seg, segmentation__mappings=bad_map), "'automobile'")
    case("no_mapping", seg_card(tmp_path, seg, segmentation__mappings={}), "'occ3d'")
    incomplete = {"occ3d": {"road": "driveable_surface", "car": "car"}}
    case("mapping_incomplete", seg_card(tmp_path, seg, segmentation__mappings=incomplete), "'sky'")
    case("unknown_key", seg_card(tmp_path, seg, input={"size": [2, 3], "sclae": 1}), "'sclae'")
    case("missing_model", seg_card(tmp_path, tmp_path / "nowhere.onnx"), "nowhere.onnx")
    case("depth_kind", depth_card(tmp_path, depth, "disparity"), "'disparity'", "depth")
    case("depth_shape", depth_card(tmp_path, seg, "relative_inverse_depth", size=(2, 3)), "'scores'", "depth")
    case("depth_on_seg_card", seg_card(tmp_path, seg), "'depth'", "depth")
    return cases


ERRORS = [
    "input_size",
    "input_rank",
    "input_name",
    "input_dtype",
    "class_count",
    "output_name",
    "output_index",
    "unknown_class",
    "no_mapping",
    "mapping_incomplete",
    "unknown_key",
    "missing_model",
    "depth_kind",
    "depth_shape",
    "depth_on_seg_card",
]


@pytest.mark.parametrize("name", ERRORS)
def test_card_errors_name_the_card_and_the_tensor(tmp_path, name):
    card, needle, kind = _card_errors(tmp_path)[name]
    with pytest.raises(TeacherError) as info:
        if kind == "seg":
            OnnxSegmentationTeacher(OCC3D, card)
        else:
            OnnxDepthTeacher(card)
    message = str(info.value)
    assert str(card) in message and needle in message, message


def test_error_messages_say_what_is_wrong(tmp_path):
    cases = _card_errors(tmp_path)

    def message(name: str) -> str:
        card, _, kind = cases[name]
        with pytest.raises(TeacherError) as info:
            OnnxSegmentationTeacher(OCC3D, card) if kind == "seg" else OnnxDepthTeacher(card)
        return str(info.value)

    assert "height 2 but input.size is [4, 6]" in message("input_size")
    assert "rank 3" in message("input_rank")
    assert "3 classes in layout NCHW, but the card lists 4 classes" in message("class_count")
    assert "vocabulary 'occ3d' lacks" in message("unknown_class")
    assert "relative_inverse_depth" in message("depth_kind")  # lists the known kinds


# ---------------------------------------------------------------------------------------- shipped cards
def test_shipped_cards_parse_and_map_to_both_vocabularies(tmp_path, monkeypatch):
    assert sorted(p.name for p in card_dir().glob("*.yaml")) >= ["espnetv2_cityscapes.yaml", "pydnet_kitti.yaml"]
    seg = load_card("espnetv2_cityscapes")
    assert seg.segmentation is not None and len(seg.segmentation.classes) == 20
    assert seg.input.size == (384, 1248) and seg.input.scale == pytest.approx(1 / 255)
    kitti = Vocabulary.from_yaml(REPO / "config" / "vocabularies" / "semantickitti.yaml")
    for vocabulary in (OCC3D, kitti):
        matrix = seg.segmentation.class_matrix(vocabulary, seg.where)
        assert matrix.shape == (20, vocabulary.num_semantic)
        classes = list(seg.segmentation.classes)
        assert matrix[[classes.index("sky"), classes.index("background")]].sum() == 0
        assert (matrix.sum(axis=1) == 1).sum() == 18  # every other class maps somewhere
    depth = load_card("pydnet_kitti")
    assert depth.depth is not None and depth.depth.kind == "negative_disparity" and depth.input.size == (192, 640)
    assert seg.build is not None and seg.build.recipe == "espnetv2_onnx" and seg.build.size == (384, 1248)
    # The ESPNetv2 export lives in a cache folder, built on first use from the weights. Without the weights, the
    # error names the card, the model path, the weights and every place they were looked for.
    monkeypatch.setenv("HOME", str(tmp_path))
    card = yaml.safe_load(seg.path.read_text())
    card["build"]["weights"] = "nowhere/espnetv2.pth"
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(TeacherError) as info:
        OnnxSegmentationTeacher(OCC3D, tmp_path / "card.yaml")
    message = str(info.value)
    assert "card.yaml" in message and "nowhere/espnetv2.pth" in message
    assert str(tmp_path / ".cache" / "occ_ros" / "teachers" / "espnetv2_cityscapes_384x1248.onnx") in message
    assert str(shared_models_dir() / "nowhere" / "espnetv2.pth") in message
    for bad, match in (
        ({"recipe": "make_it", "weights": "w.pth", "size": [64, 64]}, "build.recipe must be one of"),
        ({"recipe": "espnetv2_onnx", "weights": "w.pth", "size": [64]}, r"build.size must be \[H, W\]"),
        ({"recipe": "espnetv2_onnx", "size": [64, 64]}, "build.weights must give"),
    ):
        card["build"] = bad
        (tmp_path / "card.yaml").write_text(yaml.safe_dump(card))
        with pytest.raises(TeacherError, match=match):
            load_card(tmp_path / "card.yaml")


ESPNET_WEIGHTS = shared_models_dir() / "espnetv2_cityscapes" / "espnetv2_s_2.0_city_1024x512.pth"


@pytest.mark.skipif(not ESPNET_WEIGHTS.is_file(), reason=f"ESPNetv2 weights not present ({ESPNET_WEIGHTS})")
def test_card_builds_its_model_on_first_use(tmp_path):
    """The shipped ESPNetv2 card's recipe (at a small size) exports the shared weights into the card's cache path
    once; the teacher then runs on it and agrees with the PyTorch network."""
    pytest.importorskip("torch")
    from occ_training.teachers.espnetv2 import load_espnetv2, preprocess

    card = yaml.safe_load((card_dir() / "espnetv2_cityscapes.yaml").read_text())
    card["model"] = str(tmp_path / "cache" / "espnetv2_64x192.onnx")
    card["build"]["size"] = card["input"]["size"] = [64, 192]
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(card))
    teacher = OnnxSegmentationTeacher(OCC3D, tmp_path / "card.yaml")
    built = tmp_path / "cache" / "espnetv2_64x192.onnx"
    assert teacher.model.model_path == built and built.is_file()
    assert [p.name for p in built.parent.iterdir()] == [built.name]  # no temporary file left behind
    stamp = built.stat().st_mtime_ns
    assert load_card(tmp_path / "card.yaml").resolve_model() == built and built.stat().st_mtime_ns == stamp
    image = np.random.default_rng(0).integers(0, 256, (64, 192, 3), dtype=np.uint8)
    import torch

    with torch.inference_mode():
        ref = load_espnetv2(ESPNET_WEIGHTS)(preprocess(image, (64, 192))).numpy()[0]
    ((got, _, _),) = teacher.model.infer([image])
    assert got.shape == ref.shape == (20, 64, 192)
    assert float(np.mean(got.argmax(0) == ref.argmax(0))) > 0.99


@pytest.mark.skipif(not PYDNET.is_file(), reason=f"PyDNet model not present ({PYDNET})")
@pytest.mark.skipif(not KITTI_FRAME.is_file(), reason=f"KITTI fixture frame not present ({KITTI_FRAME})")
def test_real_pydnet_on_a_kitti_frame():
    cv2 = pytest.importorskip("cv2")
    image = np.ascontiguousarray(cv2.imread(str(KITTI_FRAME), cv2.IMREAD_COLOR)[..., ::-1])
    teacher = OnnxDepthTeacher("pydnet_kitti", threads=2)
    assert teacher.model.model_path == PYDNET
    (depth,) = teacher.estimate_images([image])
    assert depth.kind == "relative" and depth.shape == image.shape[:2] and depth.valid.all()
    assert 0 < depth.values.min() and depth.values.max() < 1
    # Larger = nearer: the road at the bottom is nearer than the middle of the image.
    h = image.shape[0]
    assert np.median(depth.values[-20:]) > np.median(depth.values[h // 2 - 10 : h // 2 + 10])


# ---------------------------------------------------------------------------------------- resampling
@pytest.mark.parametrize("antialias", [False, True])
def test_resize_matches_torch_interpolate(antialias):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a = rng.random((13, 17, 2)).astype(np.float32)
    for size in [(26, 40), (5, 7), (13, 9)]:
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(a).permute(2, 0, 1)[None],
            size=size,
            mode="bilinear",
            align_corners=False,
            antialias=antialias,
        )[0].permute(1, 2, 0)
        np.testing.assert_allclose(resize_bilinear(a, size, antialias=antialias), ref.numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------- factory and CLI
def test_factory_builds_onnx_teachers_and_checks_the_depth_kind(tmp_path):
    seg = seg_card(tmp_path, identity_model(tmp_path / "id.onnx", ["N", 3, 2, 3]))
    depth = depth_card(tmp_path, depth_model(tmp_path / "depth.onnx"))
    spec = TeacherSpec(kind="onnx", seg_card=str(seg), depth_card=str(depth))
    segmentation, depth_teacher = build_teachers(spec, tmp_path, OCC3D)
    assert isinstance(segmentation, OnnxSegmentationTeacher) and isinstance(depth_teacher, OnnxDepthTeacher)
    described = spec.describe()
    assert described["kind"] == "onnx" and described["seg_card"]["card"] == str(seg)
    assert described["depth_card"]["model"] == str(tmp_path / "depth.onnx")
    with pytest.raises(TeacherError, match="--depth metric"):
        build_teachers(
            TeacherSpec(kind="onnx", depth="metric", seg_card=str(seg), depth_card=str(depth)), tmp_path, OCC3D
        )


def test_cli_labels_with_onnx_teachers(tmp_path, capsys):
    from occ_training.synth.sequence import generate

    seq = generate(tmp_path / "seq", frames=2, seed=3, progress=False)
    seg = seg_card(tmp_path, identity_model(tmp_path / "id.onnx", ["N", 3, 2, 3]))
    depth = depth_card(tmp_path, depth_model(tmp_path / "depth.onnx", negate=False), "metric_depth", scale=20)
    out = tmp_path / "labels"
    args = ["labels", "--data", str(seq), "--out", str(out), "--window", "0", "--quiet", "--teacher", "onnx"]
    assert main([*args, "--seg-card", str(seg), "--depth-card", str(depth)]) == 0
    assert "2 frames written" in capsys.readouterr().out
    assert main([*args, "--seg-card", str(tmp_path / "missing.yaml"), "--depth-card", str(depth)]) == 1
    assert str(tmp_path / "missing.yaml") in capsys.readouterr().err


def test_cli_labels_on_a_semantickitti_folder_writes_official_predictions(tmp_path, capsys):
    """`occ labels` on an official-layout folder (two sequences, labelling one) writes labels.npz and
    OUT/sequences/NN/predictions/F.label: raw uint16 ids of semantic-kitti.yaml (road = 40, empty = 0)."""
    from test_semantickitti import IDENTITY_POSE, SIMPLE_P, write_sequence

    from occ_ros.datasets.sample import LABELS_FILE, load_labels
    from occ_ros.datasets.semantickitti import semantickitti_vocabulary

    for name in ("03", "04"):
        write_sequence(tmp_path / "kitti", name, SIMPLE_P, [IDENTITY_POSE] * 2, [0.0, 0.1], 2, (16, 8), {})
    seg = seg_card(tmp_path, identity_model(tmp_path / "id.onnx", ["N", 3, 2, 3]))  # red image: road
    depth = depth_card(tmp_path, depth_model(tmp_path / "depth.onnx", negate=False), "metric_depth", scale=20)
    out = tmp_path / "labels"
    args = ["labels", "--data", str(tmp_path / "kitti"), "--out", str(out), "--teacher", "onnx", "--quiet"]
    args += ["--seg-card", str(seg), "--depth-card", str(depth), "--window", "0", "--sequences", "4"]
    assert main(args) == 0
    assert "2 frames written" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "sequences").iterdir()) == ["04"]
    road = semantickitti_vocabulary().index("road")
    for frame in ("000000", "000001"):
        raw = np.fromfile(out / "sequences" / "04" / "predictions" / f"{frame}.label", dtype="<u2")
        assert raw.size == 256 * 256 * 32 and set(np.unique(raw).tolist()) == {0, 40}
        semantics = load_labels(out / "04" / frame / LABELS_FILE).semantics
        np.testing.assert_array_equal(raw.reshape(256, 256, 32) == 40, semantics == road)
    wrong = ["labels", "--data", str(tmp_path / "kitti"), "--out", str(out), "--sequences", "4"]
    assert main([*wrong, "--kind", "synth"]) == 1
    assert "--sequences needs a SemanticKITTI root" in capsys.readouterr().err
