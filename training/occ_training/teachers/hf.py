"""Hugging Face ``transformers`` teachers, loaded from local model directories only.

Nothing is downloaded here: every model and processor is read with ``local_files_only=True`` from a
directory the user fetched beforehand, e.g.::

    huggingface-cli download depth-anything/Depth-Anything-V2-Small-hf --local-dir models/da2-small

(``hf download`` in newer ``huggingface_hub``). The checkpoints these adapters are written for (their
model types and processors; the tests run tiny random-weight models of the same classes):

* :class:`GroundedSamTeacher` -- detector ``IDEA-Research/grounding-dino-tiny`` or
  ``IDEA-Research/grounding-dino-base``; masks ``facebook/sam-vit-base`` (or ``facebook/sam-vit-large`` /
  ``facebook/sam-vit-huge``).
* :class:`ClipSegTeacher` -- ``CIDAS/clipseg-rd64-refined``.
* :class:`DepthAnythingTeacher` -- relative (affine-invariant inverse depth):
  ``depth-anything/Depth-Anything-V2-Small-hf`` (also ``-Base-hf`` / ``-Large-hf``); metric, outdoor,
  ``max_depth`` 80 m: ``depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf`` / ``-Base-hf`` / ``-Large-hf``.
* :class:`MaskClipTeacher` -- ``openai/clip-vit-base-patch16`` (any ViT ``CLIPModel`` works).

All inference runs under ``torch.inference_mode()`` in float32, ``batch_size`` images at a time (images
of different shapes go in different batches), with the model in eval mode on ``device``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from occ_ros.core.rig import Camera
from occ_ros.core.vocabulary import Vocabulary
from occ_training.teachers.base import (
    DepthKind,
    DepthMap,
    FeatureMap,
    ImageDepthTeacher,
    ImageFeatureTeacher,
    ImageSegmentationTeacher,
    SemanticMap,
    TeacherError,
)

__all__ = [
    "ClipSegTeacher",
    "DepthAnythingTeacher",
    "Detections",
    "GroundedSamTeacher",
    "MaskClipTeacher",
    "check_model_dir",
    "dense_class_scores",
    "detector_texts",
    "load_local",
    "masks_to_probs",
    "normalize_prompt",
    "phrase_to_class",
]


# ---------------------------------------------------------------------------------------- loading
def check_model_dir(path: str | Path, what: str, model_types: Sequence[str] | None = None) -> Path:
    """Check that ``path`` is a saved Hugging Face checkpoint of one of ``model_types``.

    Raises:
        TeacherError: naming ``path`` and ``what`` when the directory is missing, is not a directory,
            has no (readable) config.json, or its ``model_type`` is not one of ``model_types``.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise TeacherError(f"{what} directory {p} does not exist (download the checkpoint there first)")
    if not p.is_dir():
        raise TeacherError(f"{what} directory {p} is not a directory")
    config_path = p / "config.json"
    if not config_path.is_file():
        raise TeacherError(
            f"{what} directory {p}: no config.json (expected a Hugging Face checkpoint directory, "
            "as written by save_pretrained or huggingface-cli download --local-dir)"
        )
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TeacherError(f"{what} directory {p}: cannot read config.json: {err}") from None
    if model_types:
        found = config.get("model_type") if isinstance(config, dict) else None
        if found not in model_types:
            expected = " or ".join(f"'{t}'" for t in model_types)
            raise TeacherError(f"{what} directory {p}: config.json has model_type {found!r}, expected {expected}")
    return p


def load_local(cls: Any, path: str | Path, what: str, model_types: Sequence[str] | None = None, **kwargs: Any) -> Any:
    """``cls.from_pretrained(path, local_files_only=True, **kwargs)`` with errors that name the directory.

    ``model_types`` defaults to ``cls.config_class.model_type`` when ``cls`` has one (concrete model
    classes); Auto classes and processors check only that the directory holds a config.json.

    Raises:
        TeacherError: see :func:`check_model_dir`; also when ``from_pretrained`` fails (OSError /
            ValueError, e.g. missing weights or processor files).
    """
    if model_types is None:
        own = getattr(getattr(cls, "config_class", None), "model_type", "")
        model_types = (own,) if isinstance(own, str) and own else None
    p = check_model_dir(path, what, model_types)
    try:
        return cls.from_pretrained(str(p), local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        raise TeacherError(f"{what} directory {p}: cannot load {cls.__name__}: {err}") from err


def _load_model(cls: Any, path: str | Path, what: str, model_types: Sequence[str] | None, device: str) -> Any:
    """A float32 model on ``device`` in eval mode."""
    model = load_local(cls, path, what, model_types, dtype=torch.float32)
    return model.to(device=torch.device(device), dtype=torch.float32).eval()


def _check_vocabulary(vocabulary: Vocabulary, who: str) -> list[tuple[str, ...]]:
    try:
        return vocabulary.prompts()
    except ValueError as err:
        raise TeacherError(f"{who}: {err}") from None


# ---------------------------------------------------------------------------------------- helpers
def _check_images(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for i, image in enumerate(images):
        a = np.asarray(image)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] < 1 or a.shape[1] < 1:
            raise TeacherError(f"image {i}: expected (H, W, 3) uint8 RGB, got {a.dtype} {a.shape}")
        out.append(np.ascontiguousarray(a))
    return out


def _shape_batches(images: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    """Indices of ``images`` in batches of at most ``batch_size``, each batch of one image shape."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(i)
    size = max(1, int(batch_size))
    return [idx[s : s + size] for idx in groups.values() for s in range(0, len(idx), size)]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _pooled(output: Any) -> torch.Tensor:
    """``get_text_features`` / ``get_image_features`` return a tensor (transformers 4) or a ModelOutput (5)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        pooled = output[0] if isinstance(output, tuple) else output["pooler_output"]
    return pooled


# ---------------------------------------------------------------------------------------- Grounded SAM
def normalize_prompt(text: str) -> str:
    """A prompt as Grounding DINO wants it: lower case, no periods, single spaces."""
    return " ".join(text.lower().replace(".", " ").split())


_SPECIAL_TOKEN = re.compile(r"\[[A-Za-z]+\]")


def _match_key(text: str) -> str:
    """Lower-case words only (punctuation and [CLS]/[SEP]-style tokens removed), for phrase matching."""
    text = _SPECIAL_TOKEN.sub(" ", text.lower())
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split())


def phrase_to_class(phrase: str, prompt_classes: Mapping[str, int]) -> int | None:
    """Vocabulary class of a phrase decoded by Grounding DINO's post-processing, or None.

    Args:
        phrase: e.g. ``"traffic cone"``, ``"car. truck"`` or ``"car [SEP]"`` (the tokens above the
            text threshold, decoded).
        prompt_classes: prompt -> class index.

    Rules, in order: a period-separated part equal to a prompt (the longest such prompt wins); else
    the longest prompt contained word-for-word in a part; else the prompt sharing most words with the
    phrase (ties: the longer, then the first); else None.
    """
    keys: dict[str, int] = {}
    for prompt, cls in prompt_classes.items():
        keys.setdefault(_match_key(prompt), cls)
    keys.pop("", None)
    parts = [k for k in (_match_key(part) for part in phrase.split(".")) if k]
    if not parts or not keys:
        return None
    exact = [p for p in parts if p in keys]
    if exact:
        return keys[max(exact, key=len)]
    contained = [k for k in keys if any(f" {k} " in f" {p} " for p in parts)]
    if contained:
        return keys[max(contained, key=len)]
    words = set(" ".join(parts).split())
    best, best_score = None, (0, 0)
    for k, cls in keys.items():
        score = (len(words & set(k.split())), len(k))
        if score[0] > 0 and score > best_score:
            best, best_score = cls, score
    return best


def detector_texts(prompts: Sequence[str], count_tokens: Callable[[str], int], max_tokens: int) -> list[str]:
    """Grounding DINO texts ``"a. b. c."`` covering ``prompts`` in order, each of at most ``max_tokens`` tokens.

    Args:
        prompts: normalised prompts (see :func:`normalize_prompt`), without duplicates.
        count_tokens: number of tokens of a text, special tokens included.
        max_tokens: the model's ``max_text_len``.
    """
    texts: list[str] = []
    current: list[str] = []
    for prompt in prompts:
        candidate = ". ".join([*current, prompt]) + "."
        if count_tokens(candidate) <= max_tokens:
            current.append(prompt)
            continue
        if not current:
            raise TeacherError(
                f"prompt {prompt!r} alone has {count_tokens(candidate)} tokens, more than the detector's "
                f"max_text_len {max_tokens}"
            )
        texts.append(". ".join(current) + ".")
        current = [prompt]
        if count_tokens(prompt + ".") > max_tokens:
            raise TeacherError(f"prompt {prompt!r} alone is longer than the detector's max_text_len {max_tokens}")
    if current:
        texts.append(". ".join(current) + ".")
    return texts


@dataclass(frozen=True)
class Detections:
    """Boxes found in one image.

    Attributes:
        boxes: (N, 4) float32 pixel boxes (x0, y0, x1, y1).
        scores: (N,) float32 detection scores in [0, 1].
        classes: (N,) int64 vocabulary class indices.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(len(self.scores))


def _accumulate_class_max(best: np.ndarray, masks: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """In place: ``best[..., c] = max(best[..., c], score)`` over the pixels of each mask of class c.

    best: (H, W, K) float32; masks: (N, H, W) bool; scores, classes: (N,).
    """
    for mask, score, cls in zip(masks, scores, classes, strict=True):
        channel = best[..., int(cls)]
        np.maximum(channel, np.where(mask, np.float32(score), np.float32(0.0)), out=channel)
    return best


def _resolve_overlaps(best: np.ndarray) -> np.ndarray:
    """(H, W, K) per-class scores -> only the best class of each pixel keeps its score (ties: lower index)."""
    if best.shape[-1] == 0:
        return best
    winner = np.argmax(best, axis=-1)
    out = np.zeros_like(best)
    np.put_along_axis(out, winner[..., None], np.take_along_axis(best, winner[..., None], axis=-1), axis=-1)
    return out


def masks_to_probs(
    masks: np.ndarray, scores: np.ndarray, classes: np.ndarray, num_classes: int, shape: tuple[int, int]
) -> np.ndarray:
    """Instance masks -> (H, W, K) float32 class probabilities.

    Each class's probability is the max detection score over its masks covering the pixel; where masks
    of different classes overlap the highest score wins and the others get 0; uncovered pixels get all
    zeros (so each pixel sums to at most 1).

    Args:
        masks: (N, H, W) bool; scores: (N,) in [0, 1]; classes: (N,) in 0..K-1.
    """
    masks = np.asarray(masks, dtype=bool).reshape(-1, *shape)
    scores = np.clip(np.asarray(scores, dtype=np.float32).reshape(-1), 0.0, 1.0)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if not len(masks) == len(scores) == len(classes):
        raise ValueError(f"masks_to_probs: {len(masks)} masks, {len(scores)} scores, {len(classes)} classes")
    if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"masks_to_probs: classes must be in 0..{num_classes - 1}")
    best = np.zeros((*shape, num_classes), dtype=np.float32)
    return _resolve_overlaps(_accumulate_class_max(best, masks, scores, classes))


class GroundedSamTeacher(ImageSegmentationTeacher):
    """Grounding DINO boxes for the class prompts, turned into masks by SAM.

    Per pixel and class: the max detection score over that class's masks; overlaps between classes
    go to the higher score; pixels no mask covers get all-zero probabilities ("none").
    """

    name = "grounded_sam"

    def __init__(
        self,
        vocabulary: Vocabulary,
        detector_dir: str | Path,
        sam_dir: str | Path,
        device: str = "cpu",
        batch_size: int = 2,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        max_boxes_per_call: int = 32,
    ) -> None:
        """
        Args:
            vocabulary: classes and their prompts (every non-free class needs one).
            detector_dir: local Grounding DINO checkpoint (``IDEA-Research/grounding-dino-tiny`` / ``-base``).
            sam_dir: local SAM checkpoint (``facebook/sam-vit-base`` / ``-huge``).
            device: torch device of both models.
            batch_size: images per detector / SAM-encoder call.
            box_threshold: minimum box score kept by the detector post-processing.
            text_threshold: minimum token score for a token to be part of a box's phrase.
            max_boxes_per_call: boxes per SAM mask-decoder call (bounds memory).
        """
        from transformers import AutoProcessor, GroundingDinoForObjectDetection, SamModel

        prompts = _check_vocabulary(vocabulary, f"{self.name} teacher")
        super().__init__(vocabulary)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        self.max_boxes_per_call = max(1, int(max_boxes_per_call))
        self.detector = _load_model(
            GroundingDinoForObjectDetection, detector_dir, "Grounding DINO detector", ("grounding-dino",), device
        )
        self.detector_processor = load_local(
            AutoProcessor, detector_dir, "Grounding DINO detector", ("grounding-dino",)
        )
        self.sam = _load_model(SamModel, sam_dir, "SAM model", ("sam",), device)
        self.sam_processor = load_local(AutoProcessor, sam_dir, "SAM model", ("sam",))

        #: normalised prompt -> class index (a prompt shared by two classes goes to the first).
        self.prompt_classes: dict[str, int] = {}
        for cls, class_prompts in enumerate(prompts):
            for prompt in class_prompts:
                key = normalize_prompt(prompt)
                if key:
                    self.prompt_classes.setdefault(key, cls)
        tokenizer = self.detector_processor.tokenizer
        max_len = int(getattr(self.detector.config, "max_text_len", 256))
        #: the detector texts, each within the detector's max_text_len; one detector pass each.
        self.texts = detector_texts(list(self.prompt_classes), lambda t: len(tokenizer(t)["input_ids"]), max_len)

    # ------------------------------------------------------------------ detection
    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Boxes, scores and vocabulary classes for each (H, W, 3) uint8 image; phrases that match no
        prompt are dropped."""
        images = _check_images(images)
        found: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in images]
        with torch.inference_mode():
            for idx in _shape_batches(images, self.batch_size):  # one shape per batch: no padding
                batch = [images[i] for i in idx]
                sizes = [(int(a.shape[0]), int(a.shape[1])) for a in batch]
                for text in self.texts:
                    inputs = self.detector_processor(images=batch, text=[text] * len(batch), return_tensors="pt")
                    inputs = inputs.to(self.device)
                    outputs = self.detector(**inputs)
                    results = self.detector_processor.post_process_grounded_object_detection(
                        outputs,
                        input_ids=inputs["input_ids"],
                        threshold=self.box_threshold,
                        text_threshold=self.text_threshold,
                        target_sizes=sizes,
                    )
                    for j, result in enumerate(results):
                        phrases = result["text_labels"] if "text_labels" in result else result["labels"]
                        classes = [phrase_to_class(str(p), self.prompt_classes) for p in phrases]
                        keep = np.array([c is not None for c in classes], dtype=bool)
                        if not keep.any():
                            continue
                        h, w = sizes[j]
                        boxes = result["boxes"].detach().float().cpu().numpy().reshape(-1, 4)[keep]
                        boxes = np.clip(boxes, 0.0, [w, h, w, h]).astype(np.float32)
                        scores = result["scores"].detach().float().cpu().numpy().reshape(-1)[keep]
                        cls = np.array([c for c in classes if c is not None], dtype=np.int64)
                        found[idx[j]].append((boxes, scores.astype(np.float32), cls))
        out = []
        for parts in found:
            if not parts:
                out.append(Detections.empty())
            else:
                out.append(Detections(*(np.concatenate(x) for x in zip(*parts, strict=True))))
        return out

    # ------------------------------------------------------------------ masks
    def class_scores(self, images: Sequence[np.ndarray], detections: Sequence[Detections]) -> list[np.ndarray]:
        """SAM masks of the boxes -> (H, W, K) per-class max score (overlaps not yet resolved)."""
        images = _check_images(images)
        if len(detections) != len(images):
            raise TeacherError(f"{len(images)} images but {len(detections)} detections")
        k = self.vocabulary.num_semantic
        out = [np.zeros((*a.shape[:2], k), dtype=np.float32) for a in images]
        todo = [i for i in range(len(images)) if len(detections[i])]
        with torch.inference_mode():
            for batch in _shape_batches([images[i] for i in todo], self.batch_size):
                idx = [todo[b] for b in batch]
                inputs = self.sam_processor(images=[images[i] for i in idx], return_tensors="pt")
                original = inputs["original_sizes"]
                reshaped = inputs["reshaped_input_sizes"]
                embeddings = self.sam.get_image_embeddings(inputs["pixel_values"].to(self.device, torch.float32))
                for j, i in enumerate(idx):
                    det = detections[i]
                    (oh, ow), (rh, rw) = original[j].tolist(), reshaped[j].tolist()
                    scale = np.array([rw / ow, rh / oh, rw / ow, rh / oh], dtype=np.float32)
                    boxes = torch.from_numpy(np.asarray(det.boxes, dtype=np.float32) * scale)
                    for s in range(0, len(det), self.max_boxes_per_call):
                        chunk = boxes[s : s + self.max_boxes_per_call][None].to(self.device)
                        result = self.sam(
                            image_embeddings=embeddings[j : j + 1], input_boxes=chunk, multimask_output=False
                        )
                        masks = self.sam_processor.post_process_masks(
                            result.pred_masks.float().cpu(), original[j : j + 1], reshaped[j : j + 1]
                        )[0]
                        masks = masks.reshape(-1, *images[i].shape[:2]).numpy().astype(bool)
                        sl = slice(s, s + self.max_boxes_per_call)
                        _accumulate_class_max(out[i], masks, det.scores[sl], det.classes[sl])
        return out

    def segment_images(self, images: Sequence[np.ndarray]) -> list[SemanticMap]:
        images = _check_images(images)
        detections = self.detect(images)
        return [SemanticMap(_resolve_overlaps(best)) for best in self.class_scores(images, detections)]


# ---------------------------------------------------------------------------------------- CLIPSeg
class ClipSegTeacher(ImageSegmentationTeacher):
    """CLIPSeg: one logit map per prompt; class logit = max over its prompts.

    Probabilities are a softmax over the classes plus a "none" channel of constant logit
    ``background_logit`` (dropped from the output, so each pixel sums to less than 1), computed on
    the class logits upsampled bilinearly to the image size.
    """

    name = "clipseg"

    def __init__(
        self,
        vocabulary: Vocabulary,
        model_dir: str | Path,
        device: str = "cpu",
        batch_size: int = 4,
        background_logit: float = 0.0,
        prompt_batch: int = 32,
    ) -> None:
        """
        Args:
            vocabulary: classes and their prompts.
            model_dir: local CLIPSeg checkpoint (``CIDAS/clipseg-rd64-refined``).
            device: torch device.
            batch_size: images per vision-encoder call.
            background_logit: logit of the "none of the classes" channel.
            prompt_batch: prompts per decoder call (bounds memory).
        """
        from transformers import AutoProcessor, CLIPSegForImageSegmentation

        prompts = _check_vocabulary(vocabulary, f"{self.name} teacher")
        super().__init__(vocabulary)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.background_logit = float(background_logit)
        self.prompt_batch = max(1, int(prompt_batch))
        self.model = _load_model(CLIPSegForImageSegmentation, model_dir, "CLIPSeg model", ("clipseg",), device)
        self.processor = load_local(AutoProcessor, model_dir, "CLIPSeg model", ("clipseg",))
        #: flat prompt list and the class of each.
        self.prompts: list[str] = [p for ps in prompts for p in ps]
        self.prompt_classes = np.array([c for c, ps in enumerate(prompts) for _ in ps], dtype=np.int64)
        self._groups = [torch.from_numpy(np.flatnonzero(self.prompt_classes == c)) for c in range(len(prompts))]
        self._text: torch.Tensor | None = None

    def _text_embeddings(self) -> torch.Tensor:
        """(P, projection_dim) conditional embeddings of the prompts (cached)."""
        if self._text is None:
            with torch.inference_mode():
                tokens = self.processor.tokenizer(self.prompts, padding=True, return_tensors="pt").to(self.device)
                self._text = _pooled(
                    self.model.clip.get_text_features(
                        input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                    )
                )
        return self._text

    def prompt_logits(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """(P, S, S) float32 CPU logits per image at the model's resolution, one map per prompt."""
        images = _check_images(images)
        text = self._text_embeddings()
        out: list[torch.Tensor] = [torch.empty(0)] * len(images)
        extract = list(self.model.extract_layers)
        with torch.inference_mode():
            for batch in _shape_batches(images, self.batch_size):
                pixels = self.processor(images=[images[i] for i in batch], return_tensors="pt")["pixel_values"]
                vision = self.model.clip.get_image_features(
                    pixel_values=pixels.to(self.device, torch.float32),
                    interpolate_pos_encoding=True,
                    output_hidden_states=True,
                )
                hidden = vision.hidden_states
                if len(hidden) <= max(extract) + 1:
                    raise TeacherError(f"CLIPSeg returned {len(hidden)} hidden states, need layers {extract}")
                activations = [hidden[i + 1] for i in extract]
                for j, i in enumerate(batch):
                    maps = []
                    for s in range(0, len(self.prompts), self.prompt_batch):
                        cond = text[s : s + self.prompt_batch]
                        acts = [a[j : j + 1].expand(len(cond), -1, -1) for a in activations]
                        logits = self.model.decoder(acts, cond).logits
                        maps.append(logits.reshape(len(cond), *logits.shape[-2:]))
                    out[i] = torch.cat(maps).float().cpu()
        return out

    def segment_images(self, images: Sequence[np.ndarray]) -> list[SemanticMap]:
        images = _check_images(images)
        k = self.vocabulary.num_semantic
        results = []
        for image, logits in zip(images, self.prompt_logits(images), strict=True):
            per_class = torch.stack([logits[g].amax(dim=0) for g in self._groups])
            up = F.interpolate(per_class[None], size=image.shape[:2], mode="bilinear", align_corners=False)[0]
            background = torch.full((1, *image.shape[:2]), self.background_logit)
            probs = torch.softmax(torch.cat([up, background]), dim=0)[:k]
            results.append(SemanticMap(probs.permute(1, 2, 0).contiguous().numpy()))
        return results


# ---------------------------------------------------------------------------------------- depth
class DepthAnythingTeacher(ImageDepthTeacher):
    """Depth Anything (V2) monocular depth.

    ``kind`` comes from the checkpoint: ``config.depth_estimation_type == "metric"`` gives metres
    (depth, up to ``config.max_depth``); otherwise the output is relative, an affine-invariant inverse
    depth (disparity-like, larger = nearer). Cameras are not used (no focal-length correction).
    """

    name = "depth_anything"

    def __init__(self, model_dir: str | Path, device: str = "cpu", batch_size: int = 4) -> None:
        """
        Args:
            model_dir: local Depth Anything checkpoint (see the module docstring).
            device: torch device.
            batch_size: images per call.
        """
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = _load_model(AutoModelForDepthEstimation, model_dir, "depth model", ("depth_anything",), device)
        self.processor = load_local(AutoImageProcessor, model_dir, "depth model", ("depth_anything",))
        metric = getattr(self.model.config, "depth_estimation_type", "relative") == "metric"
        self.kind: DepthKind = "metric" if metric else "relative"
        #: metres for metric checkpoints, None for relative ones.
        self.max_depth: float | None = float(self.model.config.max_depth) if metric else None

    def estimate_images(self, images: Sequence[np.ndarray], cameras: Sequence[Camera] | None = None) -> list[DepthMap]:
        images = _check_images(images)
        out: list[DepthMap | None] = [None] * len(images)
        with torch.inference_mode():
            for batch in _shape_batches(images, self.batch_size):
                inputs = self.processor(images=[images[i] for i in batch], return_tensors="pt")
                outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device, torch.float32))
                sizes = [tuple(int(s) for s in images[i].shape[:2]) for i in batch]
                if hasattr(self.processor, "post_process_depth_estimation"):
                    outputs.predicted_depth = outputs.predicted_depth.float().cpu()
                    pred = [
                        r["predicted_depth"]
                        for r in self.processor.post_process_depth_estimation(outputs, target_sizes=sizes)
                    ]
                else:  # older transformers: resize by hand (bicubic, as the post-processing does)
                    pred = [
                        F.interpolate(d[None, None].float().cpu(), size=s, mode="bicubic", align_corners=False)[0, 0]
                        for d, s in zip(outputs.predicted_depth, sizes, strict=True)
                    ]
                for i, values, size in zip(batch, pred, sizes, strict=True):
                    v = values.float().cpu().numpy().reshape(size)
                    valid = np.isfinite(v) & (v > 0) if self.kind == "metric" else np.isfinite(v)
                    out[i] = DepthMap(values=v, kind=self.kind, valid=valid)
        return [d for d in out if d is not None]


# ---------------------------------------------------------------------------------------- MaskCLIP
def dense_class_scores(features: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of (h, w, D) unit features with (K, D) unit text embeddings -> (h, w, K) float32."""
    return np.einsum("hwd,kd->hwk", np.asarray(features, np.float32), np.asarray(text_embeddings, np.float32))


class MaskClipTeacher(ImageFeatureTeacher):
    """MaskCLIP (Zhou et al. 2022) dense features from a ViT CLIP, with CLIP's text encoder.

    The last encoder layer is replaced by its value path, without query-key attention, for every
    patch token: with ``x`` the input of that layer,
    ``v = out_proj(v_proj(layer_norm1(x)))``; with ``residual=True`` (the MaskCLIP reference
    implementation) ``v = x + v`` then ``v = v + mlp(layer_norm2(v))``; with ``residual=False``
    the value path alone. Features = ``visual_projection(post_layernorm(v))`` of the patch tokens,
    L2-normalised, on the patch grid.
    """

    name = "maskclip"

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        batch_size: int = 4,
        input_size: int | tuple[int, int] | None = None,
        residual: bool = True,
    ) -> None:
        """
        Args:
            model_dir: local CLIP checkpoint with a ViT vision tower (``openai/clip-vit-base-patch16``).
            device: torch device.
            batch_size: images per call.
            input_size: network input size. None: the model's square ``image_size`` (224); an int: the
                shorter image side, aspect ratio kept; (height, width): exactly that. Rounded to whole
                patches; the whole image is resized (never cropped), positional embeddings are
                interpolated when the size differs from the model's.
            residual: keep the last layer's residual connection and MLP (MaskCLIP) or not.
        """
        from transformers import AutoProcessor, CLIPModel

        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.residual = bool(residual)
        self.model = _load_model(CLIPModel, model_dir, "CLIP model", ("clip",), device)
        self.processor = load_local(AutoProcessor, model_dir, "CLIP model", ("clip",))
        vision = self.model.config.vision_config
        self.patch_size = int(vision.patch_size)
        self.image_size = int(vision.image_size)
        self.input_size = input_size

    def _target_size(self, height: int, width: int) -> tuple[int, int]:
        """Network input (height, width) for an image of that size, in whole patches."""
        p = self.patch_size
        th: float
        tw: float
        if self.input_size is None:
            th = tw = self.image_size
        elif isinstance(self.input_size, int):
            s = int(self.input_size)
            th, tw = (s, width * s / height) if height <= width else (height * s / width, s)
        else:
            th, tw = self.input_size
        return max(p, int(round(th / p)) * p), max(p, int(round(tw / p)) * p)

    def dense_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, h*p, w*p) normalised pixels -> (B, h, w, D) unit-norm MaskCLIP features."""
        vm = self.model.vision_model
        b, _, height, width = pixel_values.shape
        out = vm(
            pixel_values=pixel_values,
            interpolate_pos_encoding=(height, width) != (self.image_size, self.image_size),
            output_hidden_states=True,
        )
        layers = vm.encoder.layers
        if out.hidden_states is None or len(out.hidden_states) != len(layers) + 1:
            raise TeacherError("CLIP vision model did not return one hidden state per layer plus the embeddings")
        x = out.hidden_states[-2]  # input of the last encoder layer
        last = layers[-1]
        v = last.self_attn.out_proj(last.self_attn.v_proj(last.layer_norm1(x)))
        if self.residual:
            v = x + v
            v = v + last.mlp(last.layer_norm2(v))
        feats = self.model.visual_projection(vm.post_layernorm(v[:, 1:]))
        return _unit(feats).reshape(b, height // self.patch_size, width // self.patch_size, -1)

    def features_images(self, images: Sequence[np.ndarray]) -> list[FeatureMap]:
        images = _check_images(images)
        out: list[FeatureMap | None] = [None] * len(images)
        with torch.inference_mode():
            for batch in _shape_batches(images, self.batch_size):
                th, tw = self._target_size(*images[batch[0]].shape[:2])
                pixels = self.processor.image_processor(
                    images=[images[i] for i in batch],
                    do_center_crop=False,
                    size={"height": th, "width": tw},
                    return_tensors="pt",
                )["pixel_values"]
                feats = self.dense_features(pixels.to(self.device, torch.float32)).float().cpu().numpy()
                for j, i in enumerate(batch):
                    out[i] = FeatureMap(feats[j])
        return [f for f in out if f is not None]

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        dim = int(self.model.config.projection_dim)
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        max_len = int(self.model.config.text_config.max_position_embeddings)
        with torch.inference_mode():
            tokens = self.processor.tokenizer(
                texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt"
            ).to(self.device)
            emb = _pooled(
                self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            )
        return _unit(emb.float()).cpu().numpy()
