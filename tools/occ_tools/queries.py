"""The training side of open-vocabulary queries on the vehicle: prompt tables, threshold calibration, scoring.

* :func:`prompt_table` encodes the vocabulary's class prompts and the user's prompts (``--prompts FILE.yaml``)
  with the model's text encoder (:func:`occ_tools.predict.text_embedding`) into the
  :class:`~occ_ros.core.prompts.PromptTable` that ``occ export --queries`` stores in the model's metadata;
* :func:`calibrate` chooses each class prompt's decision threshold on a validation sequence (F1 against the ground
  truth), and a default threshold for the other prompts;
* :func:`query_counts` scores a query rule against ground truth (``scripts/results.py --section queries``).

Every match goes through :func:`occ_ros.pipeline.query.query_scores`, the rule the node runs.

The prompts YAML maps a prompt name to one text or a list of texts::

    ambulance: [ambulance, emergency vehicle]
    vehicle: [car, truck, bus, van]
    cone: traffic cone

A prompt's embedding is the mean of its texts' unit embeddings, renormalised to unit length. A name equal to a
class name replaces that class' texts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.core.prompts import NO_THRESHOLD, PromptError, PromptTable, prompts_from_texts
from occ_ros.inference.model_info import ModelInfo
from occ_ros.pipeline.query import query_scores

THRESHOLDS = (NO_THRESHOLD, *np.round(np.arange(0.0, 0.96, 0.05), 2).tolist())
"""The decision thresholds :func:`calibrate` tries (cosine; -1 = none)."""


def load_prompts_yaml(path: str | Path) -> list[tuple[str, list[str]]]:
    """``(name, texts)`` of a prompts YAML (module docstring), in file order.

    Raises:
        PromptError: not a mapping of names to a text or a list of texts (naming the entry and the file).
    """
    from occ_ros.core.config import load_yaml_mapping

    data = load_yaml_mapping(Path(path))
    out = []
    for name, texts in data.items():
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise PromptError(f"{path}: prompt {name!r}: expected a text or a non-empty list of texts, got {texts!r}")
        out.append((str(name), [t.strip() for t in texts]))
    return out


def prompt_table(info: ModelInfo, extra: Sequence[tuple[str, Sequence[str]]] = (), where: str = "model") -> PromptTable:
    """The vocabulary's class prompts (name = class name, texts = its prompts), then ``extra`` user prompts, encoded
    with the model's text encoder; no thresholds yet (:func:`calibrate`)."""
    from occ_tools.predict import text_embedding

    override = {name: list(texts) for name, texts in extra}
    classes = [(c.name, override.get(c.name, list(c.prompts)), c.name) for c in info.vocabulary.classes[:-1]]
    missing = [name for name, texts, _ in classes if not texts]
    if missing:
        raise PromptError(f"{where}: classes {missing} have no prompts in the vocabulary; name them in --prompts")
    class_names = {c.name for c in info.vocabulary.classes}
    users = [(name, list(texts), None) for name, texts in extra if name not in class_names]
    return PromptTable(prompts_from_texts([*classes, *users], lambda texts: text_embedding(info, None, texts, where)))


def class_prompt_table(info: ModelInfo) -> PromptTable:
    """:func:`prompt_table` of the vocabulary's classes only (``occ query`` on a model without a stored table)."""
    return prompt_table(info)


def query_embedding(info: ModelInfo, table: PromptTable, text: str, where: str = "model") -> tuple[np.ndarray, float]:
    """The query's unit embedding and decision threshold: a prompt of ``table`` by name (its stored embedding and
    threshold), else ``text`` encoded by the text encoder, without a threshold."""
    from occ_tools.predict import text_embedding

    if text in table:
        return table.get(text).embedding, table.threshold(text)
    return text_embedding(info, None, [text], where)[0], NO_THRESHOLD


# ---------------------------------------------------------------------------------------- scoring
@dataclass
class Counts:
    """Voxel counts of one prompt over frames, inside the camera-visible voxels of the ground truth.

    Attributes:
        true_positive: matched voxels of the prompt's class, per threshold of :data:`THRESHOLDS`.
        matched: matched voxels, per threshold.
        positive: ground-truth voxels of the class.
    """

    true_positive: np.ndarray = field(default_factory=lambda: np.zeros(len(THRESHOLDS), dtype=np.int64))
    matched: np.ndarray = field(default_factory=lambda: np.zeros(len(THRESHOLDS), dtype=np.int64))
    positive: int = 0

    def add(self, score: np.ndarray, match: np.ndarray, truth: np.ndarray) -> None:
        """One frame: ``score``, ``match`` and ``truth`` (voxel of the class) over the camera-visible voxels."""
        s_match, s_true = score[match], score[match & truth]
        for i, t in enumerate(THRESHOLDS):
            self.matched[i] += int((s_match >= t).sum())
            self.true_positive[i] += int((s_true >= t).sum())
        self.positive += int(truth.sum())

    def merge(self, other: Counts) -> None:
        """Add another set of frames' counts."""
        self.true_positive += other.true_positive
        self.matched += other.matched
        self.positive += other.positive

    def at(self, threshold: float) -> tuple[float, float, int]:
        """(precision, recall, matched voxels) at a threshold of :data:`THRESHOLDS`."""
        i = THRESHOLDS.index(threshold)
        tp, n = int(self.true_positive[i]), int(self.matched[i])
        return (tp / n if n else 0.0), (tp / self.positive if self.positive else 0.0), n

    def f1(self) -> np.ndarray:
        """F1 per threshold."""
        p = self.true_positive / np.maximum(self.matched, 1)
        r = self.true_positive / max(self.positive, 1)
        return np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)


@dataclass(frozen=True)
class Rule:
    """A query rule's arguments to :func:`query_scores`: ``legacy`` = the rule before issue 23 (the single first
    text of the class, every vocabulary text as an alternative, no class consistency); otherwise the stored prompt
    with the class prompts as alternatives, with or without class consistency."""

    name: str
    legacy: bool = False
    consistent: bool = True


RULES = (
    Rule("before (issue 23): first text, every vocabulary text an alternative", legacy=True, consistent=False),
    Rule("class prompts (mean of the texts) as alternatives", consistent=False),
    Rule("+ predicted class consistent with the prompt", consistent=True),
)


def query_counts(
    info: ModelInfo,
    table: PromptTable,
    frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    rules: Sequence[Rule] = RULES,
    prompts: Sequence[str] | None = None,
) -> dict[str, dict[str, Counts]]:
    """``rule name -> class prompt name -> Counts`` over ``frames``.

    Args:
        frames: ``(features (D, X, Y, Z), labels (X, Y, Z), gt semantics (X, Y, Z), camera mask (X, Y, Z))``;
            only the voxels of the mask are scored.
        prompts: score only these class prompts (default all; the alternatives are always every class prompt).
    """
    from occ_tools.predict import text_embedding

    vocab = info.vocabulary
    classes = [p for p in table.prompts if p.class_name is not None and (prompts is None or p.name in prompts)]
    class_emb, class_idx = table.class_embeddings(), table.class_indices(vocab.names)
    texts = [t for c in vocab.classes[:-1] for t in c.prompts]
    legacy_alternatives = text_embedding(info, None, texts)
    legacy_query = {p.name: text_embedding(info, None, [p.texts[0]])[0] for p in classes}
    counts = {rule.name: {p.name: Counts() for p in classes} for rule in rules}
    for features, labels, gt, mask in frames:
        # the rule is per voxel: scoring only the camera-visible ones gives the same matches there, 3x faster
        features = np.asarray(features)[:, mask][:, :, None, None]
        labels, gt = np.asarray(labels)[mask][:, None, None], np.asarray(gt)[mask][:, None, None]
        for prompt in classes:
            truth = gt == vocab.names.index(str(prompt.class_name))
            for rule in rules:
                if rule.legacy:
                    score, match = query_scores(
                        features, labels, vocab.free_index, legacy_query[prompt.name], legacy_alternatives
                    )
                else:
                    indices = class_idx if rule.consistent else None
                    score, match = query_scores(
                        features, labels, vocab.free_index, prompt.embedding, class_emb, indices
                    )
                counts[rule.name][prompt.name].add(score, match, truth)
    return counts


def model_frames(
    model: str | Path, data: str | Path, limit: int | None = None
) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(features, labels, gt semantics, camera mask)`` of each frame of ``data`` through ``model``."""
    from occ_tools.predict import open_model_and_data, prepare

    predictor, reader = open_model_and_data(model, data, load_gt=True, features=True)
    try:
        count = len(reader) if not limit else min(limit, len(reader))
        for i in range(count):
            sample = reader.load(i)
            if sample.gt is None or sample.gt.mask_camera is None:
                raise PromptError(f"{data}: frame {i} has no ground truth with a camera mask")
            result = predictor(prepare(predictor, sample))
            yield result["features"], result["labels"], sample.gt.semantics, sample.gt.mask_camera
    finally:
        predictor.close()


def calibrate(table: PromptTable, counts: dict[str, Counts], note: dict[str, Any]) -> PromptTable:
    """Each class prompt's threshold: the one of :data:`THRESHOLDS` with the best F1 in ``counts`` (the rule the
    node runs, on a validation sequence), the lowest of equals; a prompt whose class is absent from the data, or
    never found, keeps none (-1). The default threshold (user prompts): the best mean F1 over the class prompts
    present."""
    thresholds: dict[str, float] = {}
    present = [c for c in counts.values() if c.positive]
    for name, c in counts.items():
        f1 = c.f1()
        thresholds[name] = THRESHOLDS[int(np.argmax(f1))] if c.positive and f1.max() > 0 else NO_THRESHOLD
    mean_f1 = np.mean([c.f1() for c in present], axis=0) if present else np.zeros(len(THRESHOLDS))
    default = THRESHOLDS[int(np.argmax(mean_f1))]
    voxels = {name: c.positive for name, c in counts.items()}
    note = {**note, "criterion": "max F1, camera-visible voxels", "class_voxels": voxels}
    return table.with_thresholds(thresholds, default, note)


def calibrated_table(
    model: str | Path, info: ModelInfo, table: PromptTable, data: str | Path, limit: int | None = None
) -> PromptTable:
    """``table`` with thresholds chosen on ``data`` (a validation sequence with ground truth) through ``model``."""
    consistent = RULES[-1]
    counts = query_counts(info, table, model_frames(model, data, limit), [consistent])[consistent.name]
    frames = limit or "all"
    return calibrate(table, counts, {"data": Path(data).name, "frames": frames, "rule": "occ_ros.pipeline.query"})
