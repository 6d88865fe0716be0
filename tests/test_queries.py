"""Open-vocabulary queries on the vehicle (issue 23): the prompt table in the model's metadata, the one numpy
matching rule, the ``~/query/voxels`` message, the session's ``on_query`` and ``occ replay --query``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from occ_ros.core.grid import GridSpec
from occ_ros.core.preprocess import PreprocessConfig
from occ_ros.core.prompts import Prompt, PromptError, PromptTable, decode_float16, encode_float16, mean_embedding
from occ_ros.core.resources import models_dir
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.inference.model_info import ModelInfo
from occ_ros.pipeline.messages import query_pointcloud2_msg, rosbags_message_types
from occ_ros.pipeline.outputs import occupied_voxels
from occ_ros.pipeline.pipeline import FrameResult
from occ_ros.pipeline.query import QueryCloud, query_scores
from occ_ros.session import OccupancySession, OutputSinks, SessionConfig
from occ_ros.session.config import CameraInput

CKPT = models_dir() / "demo.ckpt"
VOCAB = Vocabulary.occ3d()
CAR, ROAD, FREE = VOCAB.names.index("car"), VOCAB.names.index("driveable_surface"), VOCAB.free_index


# ---------------------------------------------------------------------- the rule, by hand
def test_query_rule_against_hand_computed_cosines() -> None:
    # four voxels along x of a 4x1x1 grid, 2-D features; query = car = (1, 0), the other class road = (0, 1)
    features = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [0.8, 0.6]]).T.reshape(2, 4, 1, 1)
    labels = np.array([CAR, ROAD, FREE, CAR], dtype=np.uint8).reshape(4, 1, 1)
    classes = np.array([[1.0, 0.0], [0.0, 1.0]])  # car, road
    indices = np.array([CAR, ROAD])
    query = np.array([2.0, 0.0])  # normalised by the rule
    score, match = query_scores(features, labels, FREE, query, classes)
    # cosines: (3,4)/5 -> 0.6; (1,0) -> 1; (0,2) -> 0; (0.8,0.6) -> 0.8; road's: 0.8, 0, 1, 0.6
    np.testing.assert_allclose(score.ravel(), [0.6, 1.0, 0.0, 0.8], atol=1e-6)
    # 0: 0.6 < road 0.8; 1: wins (features only); 2: free; 3: 0.8 >= 0.6
    assert match.ravel().tolist() == [False, True, False, True]
    # class consistency: voxel 1 is predicted road, the query is the car class
    _, consistent = query_scores(features, labels, FREE, query, classes, indices)
    assert consistent.ravel().tolist() == [False, False, False, True]
    # the threshold: 0.8 < 0.85
    _, strict = query_scores(features, labels, FREE, query, classes, indices, threshold=0.85)
    assert not strict.any()
    # a query outside the vocabulary (no class within cosine 0.9): decided by the features alone
    other = np.array([np.cos(0.5), np.sin(0.5)])  # 28.6 deg from car: cosine 0.878 < 0.9 to both classes
    s, m = query_scores(features, labels, FREE, other, classes, indices)
    expected = (np.array([[0.6, 0.8], [1, 0], [0, 1], [0.8, 0.6]]) @ other).round(6)
    np.testing.assert_allclose(s.ravel(), expected, atol=1e-6)
    # beats car (1,0)? voxel 3: cos(other)=0.8*0.878+0.6*0.479=0.990 vs car 0.8, road 0.6 -> match
    assert m.ravel().tolist() == [True, False, False, True]


def test_prompt_embedding_is_the_renormalised_mean_and_survives_float16() -> None:
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(mean_embedding(np.stack([a, b])), [2**-0.5, 2**-0.5, 0.0], atol=1e-7)
    v = np.array([0.1, -0.7, 0.3], dtype=np.float32)
    back = decode_float16(encode_float16(v), 3)
    np.testing.assert_allclose(back, v, rtol=1e-3)
    with pytest.raises(PromptError, match="6 bytes, expected 8"):
        decode_float16(encode_float16(v), 4, "x")
    table = PromptTable((Prompt("car", ("car",), mean_embedding(a[None]), "car", 0.5),))
    again = PromptTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.names == ["car"] and again.threshold("car") == 0.5 and again.get("car").class_name == "car"
    with pytest.raises(PromptError, match=r"unknown prompt 'bus'; this model knows \['car'\]"):
        again.get("bus")


# ---------------------------------------------------------------------- the message, decoded independently
def test_query_voxels_message_decodes_with_its_declared_fields() -> None:
    from occ_ros.io.rosbag import typestore

    store = typestore()
    cloud = QueryCloud(
        points=np.array([[1.0, 2.0, 3.0], [-4.5, 0.25, 1.5]], np.float32),
        score=np.array([0.75, 0.5], np.float32),
        labels=np.array([CAR, ROAD], np.uint8),
    )
    msg = query_pointcloud2_msg(rosbags_message_types(store), cloud, 5_000_000_123, "base_link")
    raw = store.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2")
    back = store.deserialize_cdr(raw, "sensor_msgs/msg/PointCloud2")
    assert (back.width, back.height, back.header.frame_id) == (2, 1, "base_link")
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (5, 123)
    fields = {f.name: (f.offset, f.datatype, f.count) for f in back.fields}
    assert fields == {"x": (0, 7, 1), "y": (4, 7, 1), "z": (8, 7, 1), "score": (12, 7, 1), "label": (16, 2, 1)}
    data = np.asarray(back.data, dtype=np.uint8).tobytes()
    assert len(data) == back.row_step == 2 * back.point_step
    for i, (x, y, z, s, label) in enumerate([(1.0, 2.0, 3.0, 0.75, CAR), (-4.5, 0.25, 1.5, 0.5, ROAD)]):
        base = i * back.point_step
        values = [np.frombuffer(data, "<f4", 1, base + fields[n][0])[0] for n in ("x", "y", "z", "score")]
        assert values == [x, y, z, s]
        assert data[base + fields["label"][0]] == label


# ---------------------------------------------------------------------- the session
GRID = GridSpec.named("demo")
DIM = 2


def prompt_info(prompts: bool = True) -> ModelInfo:
    table = PromptTable(
        (
            Prompt("car", ("car",), np.array([1.0, 0.0], np.float32), "car", 0.5),
            Prompt("driveable_surface", ("road",), np.array([0.0, 1.0], np.float32), "driveable_surface"),
        )
    )
    return ModelInfo(
        grid=GRID,
        vocabulary=VOCAB,
        cameras=("CAM_FRONT",),
        preprocess=PreprocessConfig(32, 48),
        outputs=("labels", "confidence", "features"),
        clip_dim=DIM,
        prompts=table if prompts else None,
    )


class _Backend:
    """Only what the session reads of a backend at construction and when publishing."""

    name, path, provider, settings = "onnxruntime", "models/fake.onnx", "Fake", {}

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    def close(self) -> None:
        pass


def _session(info: ModelInfo, **config: Any) -> tuple[OccupancySession, list[Any], list[tuple[str, str]]]:
    published: list[Any] = []
    log: list[tuple[str, str]] = []
    cfg = SessionConfig((CameraInput("CAM_FRONT", "/cam_front/image_raw", "/cam_front/camera_info"),), **config)
    sinks = OutputSinks(query=published.append)
    session = OccupancySession(
        cfg, _Backend(info), rosbags_message_types(), sinks, lambda *a: np.eye(4), lambda lv, t: log.append((lv, t))
    )  # type: ignore[arg-type]
    return session, published, log


def _frame() -> FrameResult:
    labels = np.full(GRID.shape, FREE, np.uint8)
    labels[10, 20, 3] = CAR  # feature (1, 0): score 1
    labels[11, 20, 3] = CAR  # feature (0.6, 0.8): loses to road
    labels[12, 20, 3] = ROAD  # feature (1, 0): predicted road, not a car
    features = np.zeros((DIM, *GRID.shape), np.float32)
    features[:, 10, 20, 3] = (1.0, 0.0)
    features[:, 11, 20, 3] = (0.6, 0.8)
    features[:, 12, 20, 3] = (1.0, 0.0)
    cloud = occupied_voxels(labels, None, GRID, VOCAB)
    return FrameResult(7, labels, np.ones(GRID.shape, np.float32), cloud, outputs={"features": features})


def test_session_answers_a_known_prompt_every_frame_with_score() -> None:
    session, published, log = _session(prompt_info())
    assert session.on_query("car")
    assert ("info", "query 'car' (threshold 0.5): ~/query/voxels from the next frame") in log
    for _ in range(2):
        assert "query/voxels" in session.publish(_frame())
    assert len(published) == 2
    msg = published[-1]
    assert msg.width == 1 and [f.name for f in msg.fields] == ["x", "y", "z", "score", "label"]
    x, y, z, score = np.frombuffer(np.asarray(msg.data, np.uint8).tobytes()[:16], "<f4")
    assert (x, y, z) == tuple(GRID.indices_to_centers(np.array([[10, 20, 3]]))[0].astype(np.float32))
    assert score == 1.0
    assert session.on_query("") is False  # cleared: nothing more
    session.publish(_frame())
    assert len(published) == 2


def test_unknown_prompt_is_a_clear_warning_counted_and_publishes_nothing() -> None:
    session, published, log = _session(prompt_info())
    assert session.on_query("car")
    assert session.on_query("ambulance") is False
    assert ("warn", "query 'ambulance' ignored: unknown prompt; this model knows: car, driveable_surface") in log
    session.publish(_frame())
    assert published == []
    assert dict(session.diagnostics().values)["queries rejected"] == "1"


def test_queries_are_off_without_prompts_and_the_session_says_why() -> None:
    session, published, log = _session(prompt_info(prompts=False))
    assert session.query_engine is None
    notes = dict((text, level) for level, text in session.startup_notes())
    assert any("queries are off: the model carries no prompt embeddings" in text for text in notes)
    assert session.on_query("car") is False
    session.publish(_frame())
    assert published == []
    off, _, _ = _session(prompt_info(), query=False)
    assert off.query_engine is None and "query.enabled is false" in off.query_off


def test_a_fixed_threshold_overrides_the_calibrated_one() -> None:
    session, _, _ = _session(prompt_info(), query_threshold=1.0)
    assert session.query_engine is not None and session.query_engine.threshold("car") == 1.0


# ---------------------------------------------------------------------- export: metadata round trip
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """models/demo.ckpt exported twice by the CLI (no parity frames): with --queries and a prompts YAML, and
    plain."""
    from occ_tools.cli import main

    folder = tmp_path_factory.mktemp("queries")
    prompts = folder / "prompts.yaml"
    prompts.write_text("vehicle: [car, truck, bus]\nambulance: ambulance\n")
    with_queries, plain = folder / "queries.onnx", folder / "plain.onnx"
    assert main(["export", "--checkpoint", str(CKPT), "--out", str(with_queries), "--prompts", str(prompts)]) == 0
    assert main(["export", "--checkpoint", str(CKPT), "--out", str(plain)]) == 0
    return {"queries": with_queries, "plain": plain}


def test_exported_prompts_are_the_text_encoders_embeddings(exported: dict[str, Path]) -> None:
    from occ_ros.inference.backend import open_backend
    from occ_tools.predict import text_embedding

    with open_backend(exported["queries"], warmup=False) as backend:
        info = backend.info
    assert "features" in info.outputs and info.queries and info.prompts is not None
    class_names = [c.name for c in info.vocabulary.classes[:-1]]
    assert info.prompts.names == [*class_names, "vehicle", "ambulance"]
    expected: dict[str, list[str]] = {c.name: list(c.prompts) for c in info.vocabulary.classes[:-1]}
    expected.update(vehicle=["car", "truck", "bus"], ambulance=["ambulance"])
    for name, texts in expected.items():
        unit = text_embedding(info, None, texts)  # the training-side text encoder
        mean = unit.mean(axis=0)
        np.testing.assert_allclose(info.prompts.get(name).embedding, mean / np.linalg.norm(mean), atol=2e-3)
    assert info.prompts.get("vehicle").class_name is None and info.prompts.get("car").class_name == "car"


def test_a_graph_exported_without_queries_has_no_features_output(exported: dict[str, Path]) -> None:
    from occ_ros.inference.model_info import METADATA_KEY

    proto = onnx.load(str(exported["plain"]))
    assert [o.name for o in proto.graph.output] == ["labels", "confidence"]
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    assert "prompt_embeddings" not in meta and "features" not in meta["outputs"]
    with_queries = onnx.load(str(exported["queries"]))
    assert [o.name for o in with_queries.graph.output] == ["labels", "confidence", "features"]


def test_occ_replay_query_writes_query_voxels_with_a_score(exported: dict[str, Path], synth_world: Path) -> None:
    from rosbags.highlevel import AnyReader

    from occ_ros.io.rosbag import typestore
    from occ_ros.replay import replay

    out = synth_world.parent.parent / "replay_query_out"
    summary = replay(synth_world / "bag", exported["queries"], out, query="car", progress=False)
    assert summary.query_published == summary.processed > 0
    store = typestore()
    with AnyReader([out], default_typestore=store) as reader:
        conns = [c for c in reader.connections if c.topic == "/occupancy_node/query/voxels"]
        assert conns
        msgs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    assert len(msgs) == summary.processed
    assert "score" in [f.name for f in msgs[0].fields]


def test_a_malformed_prompt_table_is_an_error_naming_the_field(tmp_path: Path) -> None:
    from occ_ros.inference.model_info import ModelInfoError
    from occ_tools.queries import load_prompts_yaml

    data = prompt_info().to_dict()
    data["prompt_embeddings"]["prompts"][1]["embedding"] = "AAAA"  # 3 bytes, not 2 float16
    with pytest.raises(ModelInfoError, match=r"m.onnx: prompt_embeddings: prompts\[1\].embedding: 3 bytes"):
        ModelInfo.from_dict(data, "m.onnx")
    assert ModelInfo.from_dict(prompt_info().to_dict()).prompts == prompt_info().prompts  # the round trip
    bad = tmp_path / "prompts.yaml"
    bad.write_text("ambulance: []\n")
    with pytest.raises(PromptError, match="prompt 'ambulance': expected a text or a non-empty list of texts"):
        load_prompts_yaml(bad)
