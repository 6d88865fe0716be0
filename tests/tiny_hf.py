"""Tiny random-weight Hugging Face models saved like real checkpoints, for tests (no download).

Each builder makes a model from a tiny config, saves it with ``save_pretrained`` together with its
processor and an offline tokenizer, so it loads through the same adapter constructors a user calls.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
import transformers


def clip_tokenizer() -> transformers.CLIPTokenizer:
    """Character-level CLIP BPE tokenizer (lower-case letters, no merges)."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in string.ascii_lowercase:
            vocab[c + suffix] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=[])


def clip_text_config(tokenizer: transformers.CLIPTokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def clip_vision_config() -> dict:
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        hidden_act="quick_gelu",
    )


def bert_tokenizer(words: list[str]) -> transformers.BertTokenizer:
    """WordPiece vocabulary with BERT's ids for [CLS]/[SEP]/./? (Grounding DINO hard-codes them)."""
    ids = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
    vocab = {ids.get(i, f"[unused{i}]"): i for i in range(1030)}
    for w in words:
        vocab[w] = len(vocab)
    return transformers.BertTokenizer(vocab=vocab)


def save_tiny_clipseg(path: Path) -> Path:
    """A CLIPSeg checkpoint (32x32 input) with its processor, in ``path``."""
    torch.manual_seed(0)
    tok = clip_tokenizer()
    config = transformers.CLIPSegConfig(
        text_config=clip_text_config(tok),
        vision_config=clip_vision_config(),
        projection_dim=16,
        extract_layers=[0, 1],
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )
    transformers.CLIPSegForImageSegmentation(config).save_pretrained(path)
    image_processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    transformers.CLIPSegProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(path)
    return path


def save_tiny_depth_anything(path: Path, kind: str) -> Path:
    """A Depth Anything V2 checkpoint (28x28 input), ``kind`` "relative" or "metric", in ``path``."""
    torch.manual_seed(2)
    backbone = transformers.Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=28,
        patch_size=14,
        out_indices=[1, 2],
        reshape_hidden_states=False,
    )
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16],
        reassemble_factors=[2, 1],
        fusion_hidden_size=8,
        head_hidden_size=8,
        depth_estimation_type=kind,
        max_depth=80 if kind == "metric" else 1,
    )
    transformers.DepthAnythingForDepthEstimation(config).save_pretrained(path)
    transformers.DPTImageProcessor(
        size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14, do_pad=False
    ).save_pretrained(path)
    return path
