"""The prompt table an exported model carries for open-vocabulary queries on the vehicle (numpy only).

There is no text encoder on the vehicle. ``occ export --queries`` encodes a vocabulary of prompts with the text
encoder the model's CLIP head was distilled from (training side: :func:`occ_tools.queries.prompt_table`) and
stores their unit embeddings in the model's metadata (:class:`~occ_ros.inference.model_info.ModelInfo`, field
``prompt_embeddings``); the runtime reads them back from there (:meth:`PromptTable.from_dict`) and never encodes
text.

Stored format (JSON, inside the ``occ_ros`` metadata of the ONNX file and the engine sidecar)::

    {"format": "occ_ros.prompts", "version": 1, "dim": D, "dtype": "float16", "byte_order": "little",
     "near_duplicate": 0.9, "default_threshold": t,
     "calibration": {...how the thresholds were chosen...},
     "prompts": [{"name": "car", "texts": ["car", "sedan", ...], "class": "car", "threshold": 0.5,
                  "embedding": "<base64 of D little-endian float16>"}, ...]}

* one entry per prompt name, in order: first the vocabulary's classes (``class`` = the class name; texts = its
  prompts), then the user's prompts (``class`` = null);
* ``embedding``: the mean of the unit embeddings of the entry's texts, renormalised to unit length, stored as
  float16 (base64); read back as float32 and renormalised;
* ``threshold``: the decision threshold on the cosine score of that prompt (chosen on a validation sequence by
  ``occ export --calibrate``; -1 = none), ``default_threshold`` the one for prompts without their own.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROMPTS_FORMAT = "occ_ros.prompts"
PROMPTS_VERSION = 1
NEAR_DUPLICATE = 0.9
"""Two prompts whose embeddings have a cosine >= this are the same concept: neither is the other's alternative."""
NO_THRESHOLD = -1.0
"""A cosine threshold that every score passes."""


class PromptError(ValueError):
    """A prompt table that is malformed (names the field), or an unknown prompt name (names the known ones)."""


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """(..., D) float32 rows scaled to unit length (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), np.float32(1e-12))).astype(np.float32)


def mean_embedding(unit_embeddings: np.ndarray) -> np.ndarray:
    """(D,) the mean of (T, D) unit text embeddings, renormalised to unit length (one prompt of several texts)."""
    e = np.asarray(unit_embeddings, dtype=np.float32)
    if e.ndim != 2 or e.shape[0] == 0:
        raise PromptError(f"a prompt needs at least one text embedding, got shape {e.shape}")
    return unit_rows(unit_rows(e).mean(axis=0))


def encode_float16(vector: np.ndarray) -> str:
    """base64 of the little-endian float16 bytes of a 1-D vector."""
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def decode_float16(text: str, dim: int, where: str = "embedding") -> np.ndarray:
    """(dim,) float32 from :func:`encode_float16`'s text.

    Raises:
        PromptError: not base64, or not ``dim`` float16 values (naming ``where``).
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, AttributeError) as err:
        raise PromptError(f"{where}: not base64: {err}") from None
    if len(raw) != 2 * dim:
        raise PromptError(f"{where}: {len(raw)} bytes, expected {2 * dim} ({dim} float16 values)")
    return np.frombuffer(raw, dtype="<f2").astype(np.float32)


@dataclass(frozen=True, eq=False)
class Prompt:
    """One named prompt.

    Attributes:
        name: what ``~/query`` is given (``car``, ``ambulance``).
        texts: the texts whose mean unit embedding it is.
        embedding: (D,) float32 unit embedding.
        class_name: the vocabulary class it stands for, or None (a user prompt).
        threshold: decision threshold on the cosine score (:data:`NO_THRESHOLD` = none); None = the table's
            ``default_threshold``.
    """

    name: str
    texts: tuple[str, ...]
    embedding: np.ndarray
    class_name: str | None = None
    threshold: float | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prompt):
            return NotImplemented
        return (self.name, self.texts, self.class_name, self.threshold) == (
            other.name,
            other.texts,
            other.class_name,
            other.threshold,
        ) and np.array_equal(self.embedding, other.embedding)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class PromptTable:
    """The prompts of a model, in order: the vocabulary's classes first, then the user's.

    Attributes:
        prompts: every prompt (unique names).
        default_threshold: the threshold of prompts without their own.
        calibration: how the thresholds were chosen (data, frames, rule), as stored.
    """

    prompts: tuple[Prompt, ...]
    default_threshold: float = NO_THRESHOLD
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [p.name for p in self.prompts]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise PromptError(f"prompt names must be unique, repeated: {repeated}")
        dims = {int(np.asarray(p.embedding).shape[-1]) for p in self.prompts}
        if len(dims) > 1:
            raise PromptError(f"prompt embeddings of different sizes: {sorted(dims)}")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.prompts]

    @property
    def dim(self) -> int:
        return int(np.asarray(self.prompts[0].embedding).shape[-1]) if self.prompts else 0

    def __len__(self) -> int:
        return len(self.prompts)

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.prompts)

    def get(self, name: str) -> Prompt:
        """The prompt called ``name``.

        Raises:
            PromptError: an unknown name; the message lists the known ones.
        """
        for p in self.prompts:
            if p.name == name:
                return p
        raise PromptError(f"unknown prompt {name!r}; this model knows {self.names}")

    def threshold(self, name: str) -> float:
        """The decision threshold of prompt ``name`` (its own, else :attr:`default_threshold`)."""
        own = self.get(name).threshold
        return float(self.default_threshold if own is None else own)

    def class_embeddings(self) -> np.ndarray:
        """(K, D) unit embeddings of the class prompts (the alternatives a query competes with)."""
        rows = [p.embedding for p in self.prompts if p.class_name is not None]
        return unit_rows(np.stack(rows)) if rows else np.zeros((0, self.dim), dtype=np.float32)

    def class_indices(self, class_names: Sequence[str]) -> np.ndarray:
        """(K,) vocabulary index of each class prompt (``class_names``: the vocabulary's names in label order).

        Raises:
            PromptError: a class prompt whose class is not in ``class_names``.
        """
        out = []
        for p in self.prompts:
            if p.class_name is None:
                continue
            if p.class_name not in class_names:
                raise PromptError(f"prompt {p.name!r}: class {p.class_name!r} is not in the vocabulary {class_names}")
            out.append(list(class_names).index(p.class_name))
        return np.asarray(out, dtype=np.int64)

    def with_thresholds(
        self, thresholds: Mapping[str, float], default: float, calibration: Mapping[str, Any]
    ) -> PromptTable:
        """A copy with these per-prompt thresholds (others keep theirs), this default and calibration note."""
        prompts = tuple(
            Prompt(p.name, p.texts, p.embedding, p.class_name, thresholds.get(p.name, p.threshold))
            for p in self.prompts
        )
        return PromptTable(prompts, float(default), dict(calibration))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROMPTS_FORMAT,
            "version": PROMPTS_VERSION,
            "dim": self.dim,
            "dtype": "float16",
            "byte_order": "little",
            "near_duplicate": NEAR_DUPLICATE,
            "default_threshold": float(self.default_threshold),
            "calibration": dict(self.calibration),
            "prompts": [
                {
                    "name": p.name,
                    "texts": list(p.texts),
                    "class": p.class_name,
                    "threshold": None if p.threshold is None else float(p.threshold),
                    "embedding": encode_float16(p.embedding),
                }
                for p in self.prompts
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "prompt_embeddings") -> PromptTable:
        """Inverse of :meth:`to_dict` (embeddings renormalised after the float16 round trip).

        Raises:
            PromptError: another format or version, or a malformed field (named).
        """
        if not isinstance(data, Mapping) or data.get("format") != PROMPTS_FORMAT:
            raise PromptError(f"{source}: not an occ_ros prompt table (format {PROMPTS_FORMAT!r} expected)")
        if int(data.get("version", -1)) > PROMPTS_VERSION:
            raise PromptError(f"{source}: prompt table version {data.get('version')} is newer than this occ_ros reads")
        try:
            dim = int(data["dim"])
            prompts = []
            for i, entry in enumerate(data["prompts"]):
                where = f"{source}: prompts[{i}]"
                vector = decode_float16(entry["embedding"], dim, f"{where}.embedding")
                threshold = entry.get("threshold")
                if threshold is not None and not math.isfinite(float(threshold)):
                    raise PromptError(f"{where}.threshold: expected a finite number, got {threshold!r}")
                prompts.append(
                    Prompt(
                        name=str(entry["name"]),
                        texts=tuple(str(t) for t in entry.get("texts", ())),
                        embedding=unit_rows(vector),
                        class_name=None if entry.get("class") is None else str(entry["class"]),
                        threshold=None if threshold is None else float(threshold),
                    )
                )
            return cls(
                tuple(prompts), float(data.get("default_threshold", NO_THRESHOLD)), dict(data.get("calibration", {}))
            )
        except KeyError as err:
            raise PromptError(f"{source}: no field {err.args[0]!r}") from None
        except (TypeError, ValueError) as err:
            if isinstance(err, PromptError):
                raise
            raise PromptError(f"{source}: bad prompt table: {err}") from None


def prompts_from_texts(
    names_and_texts: Iterable[tuple[str, Sequence[str], str | None]], embed: Any
) -> tuple[Prompt, ...]:
    """Prompts from ``(name, texts, class name or None)`` and a text encoder ``embed(texts) -> (T, D)`` unit rows:
    each embedding the renormalised mean of its texts' (:func:`mean_embedding`)."""
    out = []
    for name, texts, class_name in names_and_texts:
        if not texts:
            raise PromptError(f"prompt {name!r} has no texts")
        out.append(Prompt(str(name), tuple(texts), mean_embedding(embed(list(texts))), class_name))
    return tuple(out)
