"""Hugging Face teachers, on tiny random-weight models built here and saved to local directories.

Each model is built from a tiny config, saved with ``save_pretrained`` together with a processor and
an offline tokenizer, and loaded back through the same adapter constructors a user calls. Outputs are
checked against conventions (shapes, probability ranges, unit norms, depth kind) and against
independent computations (CLIPSeg called directly, MaskCLIP's value path by hand from the weights,
SAM masks by hand).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers", reason="transformers is not installed")

from tiny_hf import (  # noqa: E402
    bert_tokenizer,
    clip_text_config,
    clip_tokenizer,
    clip_vision_config,
    save_tiny_clipseg,
    save_tiny_depth_anything,
)

from occ_ros.core.vocabulary import SemanticClass, Vocabulary  # noqa: E402
from occ_training.teachers.base import TeacherError, class_text_embeddings  # noqa: E402
from occ_training.teachers.hf import (  # noqa: E402
    ClipSegTeacher,
    DepthAnythingTeacher,
    Detections,
    GroundedSamTeacher,
    MaskClipTeacher,
    check_model_dir,
    dense_class_scores,
    detector_texts,
    load_local,
    masks_to_probs,
    normalize_prompt,
    phrase_to_class,
)

for _name in (
    "GroundingDinoForObjectDetection",
    "SamModel",
    "CLIPSegForImageSegmentation",
    "DepthAnythingForDepthEstimation",
    "CLIPModel",
):
    if not hasattr(transformers, _name):
        pytest.skip(f"transformers {transformers.__version__} has no {_name}", allow_module_level=True)

VOCAB = Vocabulary(
    name="tiny",
    classes=(
        SemanticClass("car", (0, 0, 255), ("car", "sedan"), True),
        SemanticClass("road", (255, 0, 255), ("road", "street")),
        SemanticClass("traffic_cone", (255, 240, 150), ("traffic cone",)),
        SemanticClass("vegetation", (0, 175, 0), ("tree",)),
        SemanticClass("free", (255, 255, 255)),
    ),
)
K = VOCAB.num_semantic


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Two small RGB images of different shapes (so batching by shape is exercised)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), rng.integers(0, 256, (48, 36, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def clipseg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clipseg(tmp_path_factory.mktemp("clipseg"))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    tok = clip_tokenizer()
    config = transformers.CLIPConfig(
        text_config=clip_text_config(tok), vision_config=clip_vision_config(), projection_dim=16
    )
    path = tmp_path_factory.mktemp("clip")
    transformers.CLIPModel(config).save_pretrained(path)
    image_processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["relative", "metric"])
def depth_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_depth_anything(tmp_path_factory.mktemp(f"depth_{request.param}"), request.param)


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    tok = bert_tokenizer(["car", "sedan", "road", "street", "traffic", "cone", "tree"])
    config = transformers.GroundingDinoConfig(
        backbone_config=transformers.SwinConfig(
            image_size=64,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=2,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=transformers.BertConfig(
            vocab_size=len(tok.get_vocab()),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        ),
        num_queries=8,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        d_model=32,
        encoder_n_points=1,
        decoder_n_points=1,
        max_text_len=12,  # small, so that the tiny vocabulary's prompts need two detector texts
    )
    path = tmp_path_factory.mktemp("grounding_dino")
    transformers.GroundingDinoForObjectDetection(config).save_pretrained(path)
    image_processor = transformers.GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    transformers.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(4)
    config = transformers.SamConfig(
        vision_config=dict(
            hidden_size=16,
            output_channels=8,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=64,
            patch_size=8,
            window_size=4,
            global_attn_indexes=[1],
            mlp_dim=32,
            num_pos_feats=4,
        ),
        prompt_encoder_config=dict(hidden_size=8, image_size=64, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(
            hidden_size=8, mlp_dim=16, num_hidden_layers=1, num_attention_heads=1, iou_head_hidden_dim=8
        ),
    )
    path = tmp_path_factory.mktemp("sam")
    transformers.SamModel(config).save_pretrained(path)
    image_processor = transformers.SamImageProcessor(
        size={"longest_edge": 64},
        pad_size={"height": 64, "width": 64},
        mask_size={"longest_edge": 16},
        mask_pad_size={"height": 16, "width": 16},
    )
    transformers.SamProcessor(image_processor=image_processor).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def grounded_sam(detector_dir: Path, sam_dir: Path) -> GroundedSamTeacher:
    return GroundedSamTeacher(VOCAB, detector_dir, sam_dir, box_threshold=0.0, text_threshold=0.0)


def check_probs(maps: list, images: list[np.ndarray]) -> None:
    assert len(maps) == len(images)
    for m, image in zip(maps, images, strict=True):
        assert m.probs.shape == (*image.shape[:2], K) and m.probs.dtype == np.float32
        assert np.all(m.probs >= 0) and np.all(m.probs <= 1)
        assert np.all(m.probs.sum(axis=-1) <= 1 + 1e-5)


# ---------------------------------------------------------------------------------------- loading errors
def test_bad_model_directories_raise_teacher_errors_naming_the_path(
    tmp_path: Path, clipseg_dir: Path, depth_dir: Path
) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(TeacherError, match="does not exist") as err:
        DepthAnythingTeacher(missing)
    assert str(missing) in str(err.value) and "depth model" in str(err.value)

    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"x")
    with pytest.raises(TeacherError, match="is not a directory") as err:
        ClipSegTeacher(VOCAB, a_file)
    assert str(a_file) in str(err.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TeacherError, match="no config.json") as err:
        MaskClipTeacher(empty)
    assert str(empty) in str(err.value)

    with pytest.raises(TeacherError) as err:
        DepthAnythingTeacher(clipseg_dir)
    assert (
        f"depth model directory {clipseg_dir}: config.json has model_type 'clipseg', expected 'depth_anything'"
        == str(err.value)
    )
    with pytest.raises(TeacherError, match="expected 'clip'"):
        MaskClipTeacher(depth_dir)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(TeacherError, match="cannot read config.json") as err:
        check_model_dir(broken, "depth model", ("depth_anything",))
    assert str(broken) in str(err.value)

    # right config, no weights: from_pretrained's own error is wrapped, naming the directory
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(depth_dir / "config.json", no_weights / "config.json")
    with pytest.raises(TeacherError, match="cannot load") as err:
        DepthAnythingTeacher(no_weights)
    assert str(no_weights) in str(err.value)


def test_load_local_takes_the_expected_model_type_from_the_class(clip_dir: Path, clipseg_dir: Path) -> None:
    model = load_local(transformers.CLIPModel, clip_dir, "CLIP model")
    assert isinstance(model, transformers.CLIPModel)
    with pytest.raises(TeacherError, match="model_type 'clipseg', expected 'clip'"):
        load_local(transformers.CLIPModel, clipseg_dir, "CLIP model")


def test_vocabulary_without_prompts_is_rejected(clipseg_dir: Path, detector_dir: Path, sam_dir: Path) -> None:
    vocab = Vocabulary(name="bare", classes=(SemanticClass("thing", (1, 2, 3)), SemanticClass("free", (9, 9, 9))))
    with pytest.raises(TeacherError, match="thing"):
        ClipSegTeacher(vocab, clipseg_dir)
    with pytest.raises(TeacherError, match="thing"):
        GroundedSamTeacher(vocab, detector_dir, sam_dir)


def test_bad_images_are_rejected(clipseg_dir: Path) -> None:
    teacher = ClipSegTeacher(VOCAB, clipseg_dir)
    with pytest.raises(TeacherError, match="uint8"):
        teacher.segment_images([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(TeacherError, match="image 0"):
        teacher.segment_images([np.zeros((8, 8), np.uint8)])


# ---------------------------------------------------------------------------------------- CLIPSeg
def test_clipseg_probabilities_follow_the_model(clipseg_dir: Path, images: list[np.ndarray]) -> None:
    teacher = ClipSegTeacher(VOCAB, clipseg_dir, batch_size=2, prompt_batch=3)
    maps = teacher.segment_images(images)
    check_probs(maps, images)
    assert teacher.prompts == ["car", "sedan", "road", "street", "traffic cone", "tree"]

    # independent path: the model's own forward, one (image, prompt) pair per batch row
    model = transformers.CLIPSegForImageSegmentation.from_pretrained(clipseg_dir, local_files_only=True).eval()
    processor = transformers.AutoProcessor.from_pretrained(clipseg_dir, local_files_only=True)
    groups = [[0, 1], [2, 3], [4], [5]]
    for image, semantic in zip(images, maps, strict=True):
        inputs = processor(
            text=teacher.prompts, images=[image] * len(teacher.prompts), padding=True, return_tensors="pt"
        )
        with torch.inference_mode():
            logits = model(**inputs).logits  # (P, S, S)
        per_class = torch.stack([logits[g].amax(dim=0) for g in groups])
        up = F.interpolate(per_class[None], size=image.shape[:2], mode="bilinear", align_corners=False)[0]
        probs = torch.softmax(torch.cat([up, torch.zeros(1, *image.shape[:2])]), dim=0)[:K]
        np.testing.assert_allclose(semantic.probs, probs.permute(1, 2, 0).numpy(), atol=1e-5)

    # a batch of two same-shape images gives what one at a time gives
    pair = teacher.segment_images([images[0], images[0][::-1]])
    single = ClipSegTeacher(VOCAB, clipseg_dir, batch_size=1).segment_images(images[:1])
    np.testing.assert_allclose(single[0].probs, maps[0].probs, atol=1e-5)
    np.testing.assert_allclose(pair[0].probs, maps[0].probs, atol=1e-5)
    # a higher background logit leaves less to the classes
    shy = ClipSegTeacher(VOCAB, clipseg_dir, background_logit=5.0).segment_images(images[:1])
    assert np.all(shy[0].probs.sum(-1) < maps[0].probs.sum(-1))


# ---------------------------------------------------------------------------------------- depth
def test_depth_anything_kind_shape_and_values(depth_dir: Path, images: list[np.ndarray]) -> None:
    teacher = DepthAnythingTeacher(depth_dir, batch_size=2)
    expected = json.loads((depth_dir / "config.json").read_text())["depth_estimation_type"]
    assert teacher.kind == expected
    assert teacher.max_depth == (80.0 if expected == "metric" else None)
    maps = teacher.estimate_images(images, [])
    assert [m.shape for m in maps] == [im.shape[:2] for im in images]
    model = transformers.AutoModelForDepthEstimation.from_pretrained(depth_dir, local_files_only=True).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(depth_dir, local_files_only=True)
    for image, depth in zip(images, maps, strict=True):
        assert depth.kind == expected and depth.values.dtype == np.float32
        with torch.inference_mode():
            raw = model(**processor(images=[image], return_tensors="pt")).predicted_depth
        ref = F.interpolate(raw[None], size=image.shape[:2], mode="bicubic", align_corners=False)[0, 0].numpy()
        np.testing.assert_allclose(depth.values, ref, rtol=1e-5, atol=1e-5)
        if expected == "metric":
            assert np.array_equal(depth.valid, np.isfinite(ref) & (ref > 0))
            assert depth.valid.any() and np.all(depth.values[depth.valid] <= 80.0 + 1e-3)
        else:
            assert depth.valid.all()


# ---------------------------------------------------------------------------------------- MaskCLIP
def maskclip_by_hand(model: transformers.CLIPModel, pixels: torch.Tensor, residual: bool) -> np.ndarray:
    """MaskCLIP features from the weights with plain torch ops: (B, h, w, D)."""
    vm = model.vision_model
    cfg = model.config.vision_config
    with torch.inference_mode():
        x = vm.pre_layrnorm(vm.embeddings(pixels, interpolate_pos_encoding=pixels.shape[-1] != cfg.image_size))
        for layer in vm.encoder.layers[:-1]:
            x = layer(x, None)
        last = vm.encoder.layers[-1]
        sa = last.self_attn
        c = x.shape[-1]
        y = F.layer_norm(x, (c,), last.layer_norm1.weight, last.layer_norm1.bias, last.layer_norm1.eps)
        v = F.linear(F.linear(y, sa.v_proj.weight, sa.v_proj.bias), sa.out_proj.weight, sa.out_proj.bias)
        if residual:
            v = x + v
            z = F.layer_norm(v, (c,), last.layer_norm2.weight, last.layer_norm2.bias, last.layer_norm2.eps)
            z = F.linear(z, last.mlp.fc1.weight, last.mlp.fc1.bias)
            z = z * torch.sigmoid(1.702 * z)  # quick_gelu
            v = v + F.linear(z, last.mlp.fc2.weight, last.mlp.fc2.bias)
        ln = vm.post_layernorm
        f = F.linear(F.layer_norm(v[:, 1:], (c,), ln.weight, ln.bias, ln.eps), model.visual_projection.weight)
        f = f / f.norm(dim=-1, keepdim=True)
    p = cfg.patch_size
    return f.reshape(pixels.shape[0], pixels.shape[2] // p, pixels.shape[3] // p, -1).numpy()


@pytest.mark.parametrize("residual", [True, False])
def test_maskclip_features_match_the_value_path_by_hand(
    clip_dir: Path, images: list[np.ndarray], residual: bool
) -> None:
    teacher = MaskClipTeacher(clip_dir, batch_size=2, residual=residual)
    maps = teacher.features_images(images)
    model = transformers.CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval()
    processor = transformers.AutoProcessor.from_pretrained(clip_dir, local_files_only=True)
    for image, fmap in zip(images, maps, strict=True):
        assert fmap.features.shape == (32 // 8, 32 // 8, 16)  # image_size / patch_size, projection_dim
        np.testing.assert_allclose(np.linalg.norm(fmap.features, axis=-1), 1.0, atol=1e-5)
        pixels = processor.image_processor(
            images=[image], do_center_crop=False, size={"height": 32, "width": 32}, return_tensors="pt"
        )["pixel_values"]
        np.testing.assert_allclose(fmap.features, maskclip_by_hand(model, pixels, residual)[0], atol=1e-5)


def test_maskclip_keeps_the_aspect_ratio_and_embeds_text(clip_dir: Path, images: list[np.ndarray]) -> None:
    teacher = MaskClipTeacher(clip_dir, input_size=32)
    maps = teacher.features_images(images)
    assert [m.features.shape[:2] for m in maps] == [(4, 6), (5, 4)]  # 32 x 48 and 43 -> 40 x 32 pixels
    model = transformers.CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval()
    processor = transformers.AutoProcessor.from_pretrained(clip_dir, local_files_only=True)
    pixels = processor.image_processor(
        images=[images[0]], do_center_crop=False, size={"height": 32, "width": 48}, return_tensors="pt"
    )["pixel_values"]
    np.testing.assert_allclose(maps[0].features, maskclip_by_hand(model, pixels, True)[0], atol=1e-5)

    text = teacher.embed_text(["car", "traffic cone", "tree"])
    assert text.shape == (3, maps[0].dim) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=-1), 1.0, atol=1e-5)
    assert teacher.embed_text([]).shape == (0, maps[0].dim)
    per_class = class_text_embeddings(teacher, VOCAB)
    assert per_class.shape == (K, maps[0].dim)
    scores = dense_class_scores(maps[0].features, per_class)
    assert scores.shape == (4, 6, K) and np.all(np.abs(scores) <= 1 + 1e-5)


# ---------------------------------------------------------------------------------------- Grounded SAM: pure parts
def test_prompts_are_normalised_and_chunked_to_the_text_length() -> None:
    assert normalize_prompt("  Traffic  Cone. ") == "traffic cone"

    def words(text: str) -> int:  # [CLS] + words + periods + [SEP]
        return 2 + len(text.replace(".", " . ").split())

    prompts = ["car", "sedan", "traffic cone", "tree"]
    assert detector_texts(prompts, words, 64) == ["car. sedan. traffic cone. tree."]
    texts = detector_texts(prompts, words, 7)
    assert texts == ["car. sedan.", "traffic cone. tree."]
    assert all(words(t) <= 7 for t in texts)
    with pytest.raises(TeacherError, match="max_text_len"):
        detector_texts(["a very long prompt indeed"], words, 5)


def test_phrases_map_back_to_vocabulary_classes() -> None:
    prompts = {
        "car": 0,
        "sedan": 0,
        "road": 1,
        "street": 1,
        "traffic cone": 2,
        "tree": 3,
        "construction vehicle": 4,
        "vehicle": 5,
    }
    assert phrase_to_class("car", prompts) == 0
    assert phrase_to_class("Traffic Cone", prompts) == 2
    assert phrase_to_class("traffic cone [SEP]", prompts) == 2
    assert phrase_to_class("[CLS] street.", prompts) == 1
    assert phrase_to_class("construction vehicle", prompts) == 4  # the longer prompt, not "vehicle"
    assert phrase_to_class("tree. traffic cone", prompts) == 2  # longest exact part
    assert phrase_to_class("big sedan", prompts) == 0  # prompt contained in the phrase
    assert phrase_to_class("cone", prompts) == 2  # shares a word
    assert phrase_to_class("sky", prompts) is None
    assert phrase_to_class("[SEP]", prompts) is None
    assert phrase_to_class("", prompts) is None


def test_masks_become_probabilities_with_overlaps_resolved_by_score() -> None:
    shape = (4, 5)
    masks = np.zeros((4, *shape), dtype=bool)
    masks[0, :2, :3] = True  # class 0, 0.5
    masks[1, 1:3, 1:4] = True  # class 0, 0.8
    masks[2, :, 2:] = True  # class 2, 0.6
    masks[3, 3, 0] = True  # class 1, 0.9
    probs = masks_to_probs(masks, np.array([0.5, 0.8, 0.6, 0.9]), np.array([0, 0, 2, 1]), 3, shape)
    assert probs.shape == (*shape, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs[0, 0], [0.5, 0, 0])  # class 0 only
    np.testing.assert_allclose(probs[1, 1], [0.8, 0, 0])  # both class-0 masks: the max
    np.testing.assert_allclose(probs[1, 2], [0.8, 0, 0])  # class 0 (0.8) beats class 2 (0.6)
    np.testing.assert_allclose(probs[0, 2], [0, 0, 0.6])  # class 2 (0.6) beats class 0 (0.5)
    np.testing.assert_allclose(probs[3, 0], [0, 0.9, 0])
    np.testing.assert_allclose(probs[3, 1], [0, 0, 0])  # no mask: all zero
    assert np.all((probs > 0).sum(-1) <= 1)
    empty = masks_to_probs(np.zeros((0, *shape), bool), np.zeros(0), np.zeros(0, int), 3, shape)
    assert empty.shape == (*shape, 3) and not empty.any()
    with pytest.raises(ValueError, match="classes"):
        masks_to_probs(masks[:1], np.array([0.5]), np.array([3]), 3, shape)


# ---------------------------------------------------------------------------------------- Grounded SAM: models
def test_grounded_sam_runs_end_to_end(grounded_sam: GroundedSamTeacher, images: list[np.ndarray]) -> None:
    teacher = grounded_sam
    assert teacher.texts == ["car. sedan. road. street.", "traffic cone. tree."]  # max_text_len 12
    assert teacher.prompt_classes == {"car": 0, "sedan": 0, "road": 1, "street": 1, "traffic cone": 2, "tree": 3}
    detections = teacher.detect(images)
    assert sum(len(d) for d in detections) > 0  # thresholds 0: every query is kept
    for det, image in zip(detections, images, strict=True):
        h, w = image.shape[:2]
        assert det.boxes.shape == (len(det), 4) and np.all(det.boxes >= 0)
        assert np.all(det.boxes[:, [0, 2]] <= w) and np.all(det.boxes[:, [1, 3]] <= h)
        assert np.all((det.classes >= 0) & (det.classes < K)) and np.all((det.scores >= 0) & (det.scores <= 1))
    pair = teacher.detect([images[0], images[0][::-1]])  # one batch of two: same as alone
    np.testing.assert_allclose(pair[0].boxes, detections[0].boxes, atol=1e-4)
    np.testing.assert_allclose(pair[0].scores, detections[0].scores, atol=1e-5)
    assert np.array_equal(pair[0].classes, detections[0].classes)
    maps = teacher.segment_images(images)
    check_probs(maps, images)
    for m, det in zip(maps, detections, strict=True):
        assert np.all((m.probs > 0).sum(-1) <= 1)
        values = np.unique(m.probs[m.probs > 0])
        assert np.all(np.isin(values, det.scores))


def test_grounded_sam_puts_forced_detections_in_their_class_channel(
    grounded_sam: GroundedSamTeacher, sam_dir: Path, images: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    road = VOCAB.index("road")
    h, w = images[0].shape[:2]
    box = np.array([[5.0, 4.0, 50.0, 30.0]], dtype=np.float32)
    forced = [Detections(box, np.array([0.7], np.float32), np.array([road])), Detections.empty()]
    monkeypatch.setattr(grounded_sam, "detect", lambda imgs: forced)
    maps = grounded_sam.segment_images(images)

    # SAM by hand for that box
    model = transformers.SamModel.from_pretrained(sam_dir, local_files_only=True).eval()
    processor = transformers.AutoProcessor.from_pretrained(sam_dir, local_files_only=True)
    inputs = processor(images=[images[0]], input_boxes=[[box[0].tolist()]], return_tensors="pt")
    with torch.inference_mode():
        out = model(**inputs, multimask_output=False)
    mask = processor.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    mask = mask[0].reshape(h, w).numpy()
    assert mask.any()
    expected = np.zeros((h, w, K), np.float32)
    expected[..., road] = np.where(mask, 0.7, 0.0)
    np.testing.assert_allclose(maps[0].probs, expected, atol=1e-6)
    assert not maps[1].probs.any()  # no detection: "none" everywhere


def test_grounded_sam_overlaps_go_to_the_higher_score(
    grounded_sam: GroundedSamTeacher, images: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same box for two classes: the same SAM mask, so the higher score takes every pixel of it."""
    box = np.array([[0.0, 0.0, 60.0, 40.0]] * 2, dtype=np.float32)
    car, cone = VOCAB.index("car"), VOCAB.index("traffic_cone")
    forced = [Detections(box, np.array([0.4, 0.6], np.float32), np.array([car, cone])), Detections.empty()]
    monkeypatch.setattr(grounded_sam, "detect", lambda imgs: forced)
    probs = grounded_sam.segment_images(images)[0].probs
    assert probs[..., cone].max() == pytest.approx(0.6)
    assert not probs[..., car].any()
