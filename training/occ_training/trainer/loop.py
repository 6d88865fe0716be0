"""``occ train``: the training loop (DDP, AMP, gradient accumulation, atomic checkpoints, exact resume).

Determinism is by construction, so that a killed-and-resumed run and a run split over processes follow the
uninterrupted single-process run:

* the data stream is a function of the position: position ``p`` is frame ``perm_e[p mod n]`` of epoch
  ``e = p div n``, ``perm_e`` a permutation seeded by ``(seed, e)``; step ``t``, micro-batch ``m``, process ``r``
  reads positions ``((t * accum + m) * world + r) * batch + j``;
* each frame's ray pixels and sample jitter come from generators seeded by ``(seed, position)``;
* losses are means over frames (:mod:`.objective`), DDP averages gradients, batch norm is synchronized;
* ``last.ckpt`` holds weights, optimizer, scheduler, AMP scaler and the step; it is written atomically.

Outputs in ``config.out``: ``config.yaml`` (resolved), ``last.ckpt`` (resumable), ``model.ckpt`` (weights and
metadata only, for ``occ predict``), ``metrics.jsonl`` (one JSON line per logged step / validation) and
``tb/`` (TensorBoard).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import default_collate

from occ_ros.core.config import ConfigError, flatten_keys
from occ_ros.eval.occ3d import Occ3DMetric, Occ3DResult
from occ_ros.inference.model_info import config_hash
from occ_ros.io.atomic import atomic_write_text
from occ_ros.model.backbone import PretrainedError
from occ_ros.model.checkpoint import CheckpointError, checkpoint_dict, load_checkpoint, read_checkpoint, save_checkpoint
from occ_ros.model.network import OccupancyNetwork, predict_labels
from occ_training.rendering.losses import class_weights_from_frequencies

from .config import TrainConfig, config_from_mapping
from .data import FrameDataset, mirror_item
from .distributed import (
    DistributedContext,
    barrier,
    convert_sync_batchnorm,
    init_distributed,
    mean_over_processes,
    shutdown_distributed,
)
from .logit_adjustment import AdjustmentChoice, choose_adjustment
from .objective import FrameGenerators, Objective, label_volume_teacher

#: Settings that may differ between a run and its resumption. All but ``steps`` leave the trajectory unchanged;
#: a new ``steps`` extends (or shortens) the run and re-plans the cosine decay from the resume point on.
RESUMABLE_CHANGES = ("steps", "log_every", "val_every", "ckpt_every", "threads", "data.cache")


class TrainError(RuntimeError):
    """A run that cannot start or resume (names the folder / file and what to do)."""


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    out: Path
    step: int
    losses: list[float] = field(default_factory=list)
    validation: Occ3DResult | None = None
    seconds: float = 0.0
    seconds_per_step: float = 0.0
    peak_memory_mb: float = 0.0


def frame_position(step: int, micro: int, rank: int, j: int, config: TrainConfig, world: int) -> int:
    """Position in the data stream of frame ``j`` of micro-batch ``micro`` of ``step`` on process ``rank``."""
    return ((step * config.grad_accum + micro) * world + rank) * config.batch_size + j


def frame_at(position: int, num_frames: int, seed: int) -> int:
    """Dataset index at a stream position: a fresh seeded permutation per epoch."""
    epoch, offset = divmod(position, num_frames)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return int(torch.randperm(num_frames, generator=gen)[offset])


def frame_seed(seed: int, position: int) -> int:
    return (seed * 2_654_435_761 + position * 40_503 + 17) % (2**62)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of ``optim.lr`` at ``step``: linear warm-up, then cosine to ``min_lr_ratio`` (or constant)."""
    opt = config.optim
    if opt.warmup_steps and step < opt.warmup_steps:
        return (step + 1) / opt.warmup_steps
    if opt.schedule == "constant":
        return 1.0
    span = max(1, config.steps - opt.warmup_steps)
    progress = min(1.0, (step - opt.warmup_steps) / span)
    return opt.min_lr_ratio + (1 - opt.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class Trainer:
    """One training run (one process of it under torchrun). Use :func:`train`."""

    def __init__(self, config: TrainConfig, resume: bool = False, progress: bool = True) -> None:
        self.config = config
        self.resume = resume
        self.progress = progress
        self.out = Path(config.out)
        if resume and not (self.out / "last.ckpt").is_file():
            raise TrainError(
                f"--resume: {self.out} holds no checkpoint to resume (no last.ckpt); run without --resume to "
                "start a new run there, or set out=... to the folder of the run to continue"
            )
        self.ctx: DistributedContext = init_distributed(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.vocabulary = config.load_vocabulary()
        self.preprocess = config.preprocess()
        self.dataset = FrameDataset(config, self.vocabulary, "train")
        self.val_dataset = FrameDataset(config, self.vocabulary, "val") if config.data.val else None
        self._check_run_folder()

        torch.manual_seed(config.seed)  # the same initial weights in every process
        self.model = OccupancyNetwork(config.model)
        if config.backbone_weights and not resume:  # a resumed run reads every weight from its checkpoint
            try:
                self.model.backbone.load_pretrained(config.backbone_weights)
            except PretrainedError as err:
                raise TrainError(f"backbone_weights: {err}") from None
        self.model = self.model.to(self.ctx.device)
        self.net: nn.Module = self.model
        if self.ctx.distributed:
            self.net = convert_sync_batchnorm(self.model, self.ctx.device)
            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            # a head whose loss terms are all off (density, features) gets no gradient: DDP must not wait for it
            self.net = nn.parallel.DistributedDataParallel(self.net, device_ids=device_ids, find_unused_parameters=True)
        opt = config.optim
        self.optimizer = torch.optim.AdamW(
            self.model.parameters() if not self.ctx.distributed else self.net.parameters(),
            lr=opt.lr,
            betas=opt.betas,
            weight_decay=opt.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, config))
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.class_weights: torch.Tensor | None = None
        self.decision: dict[str, Any] | None = None  # the logit adjustment's choice, once made
        self.step = 0
        if resume:
            self._load_state(self.out / "last.ckpt")
        elif config.loss.class_weighting == "enet" and config.loss.enabled("voxel_ce"):
            counts = torch.from_numpy(self.dataset.label_class_counts())
            self.class_weights = class_weights_from_frequencies(counts)
        if self.class_weights is not None:
            self.class_weights = self.class_weights.to(self.ctx.device)
        self.objective = Objective(config, len(self.vocabulary), self.vocabulary.free_index, self.class_weights)
        self.teacher = self._load_teacher()
        self.writer: Any = None

    # ------------------------------------------------------------------ set-up
    def _amp_dtype(self) -> torch.dtype | None:
        if self.ctx.device.type != "cuda" or self.config.amp == "off":
            return None
        if self.config.amp == "fp16":
            return torch.float16
        if self.config.amp == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    def _check_run_folder(self) -> None:
        """A fresh run must not overwrite another; a resumed one must have the same settings."""
        saved = self.out / "config.yaml"
        if not saved.exists():
            return
        if not self.resume and not any((self.out / name).exists() for name in ("last.ckpt", "model.ckpt")):
            return  # a run stopped before its first checkpoint: nothing to resume, nothing to lose
        if not self.resume:
            raise TrainError(
                f"{self.out} already holds a run ({saved}); pass --resume to continue it or set out=... to start anew"
            )
        import yaml

        before = config_from_mapping(yaml.safe_load(saved.read_text()), where=str(saved)).to_dict()
        now = self.config.to_dict()
        now_flat, before_flat = flatten_keys(now), flatten_keys(before)
        diff = sorted(k for k, v in now_flat.items() if v != before_flat.get(k) and k not in RESUMABLE_CHANGES)
        if diff:
            raise TrainError(
                f"--resume: {self.out} was trained with different settings for {diff}; resume with the "
                f"same config (only {list(RESUMABLE_CHANGES)} may change) or start a new run"
            )

    def _load_state(self, path: Path) -> None:
        data = read_checkpoint(path)
        state = data.get("train")
        if state is None:
            raise CheckpointError(f"{path}: has no training state (a model-only checkpoint cannot be resumed)")
        self.model.load_state_dict(data["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        weights = state.get("class_weights")
        self.class_weights = None if weights is None else torch.as_tensor(weights)
        self.step = int(data["step"])

    def _load_teacher(self) -> nn.Module | None:
        cfg = self.config
        if not cfg.uses_distillation or cfg.distill.teacher != "checkpoint":
            return None
        assert cfg.distill.checkpoint is not None
        bundle = load_checkpoint(cfg.distill.checkpoint, self.ctx.device)
        if bundle.config.grid_spec != cfg.model.grid_spec or bundle.config.image_size != cfg.model.image_size:
            raise ConfigError(
                f"distill.checkpoint {cfg.distill.checkpoint}: its grid / image size ({bundle.config.grid_spec}, "
                f"{bundle.config.image_size}) differ from the student's ({cfg.model.grid_spec}, {cfg.model.image_size})"
            )
        for p in bundle.model.parameters():
            p.requires_grad_(False)
        return bundle.model

    def text_encoder(self) -> dict[str, Any]:
        """What ``occ query`` needs to embed text in the space the CLIP head learned."""
        if not self.config.model.clip_dim:
            return {}
        spec = self.config.data.teachers
        if spec.kind == "sim":
            import dataclasses

            return {"kind": "sim", "features": dataclasses.asdict(spec.sim.features)}
        return {"kind": "hf", "feature_model": spec.feature_model}

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        if not self.ctx.is_main:
            return
        train_state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "class_weights": None if self.class_weights is None else self.class_weights.cpu(),
            "config": self.config.to_dict(),
        }
        identity = self._identity()
        full = checkpoint_dict(
            self.model, self.vocabulary, self.preprocess, self.step, self.text_encoder(), train_state, **identity
        )
        save_checkpoint(self.out / "last.ckpt", full)

    def save_model(self) -> Path:
        path = self.out / "model.ckpt"
        if self.ctx.is_main:
            data = checkpoint_dict(
                self.model,
                self.vocabulary,
                self.preprocess,
                self.step,
                self.text_encoder(),
                decision=self.decision,
                **self._identity(),
            )
            save_checkpoint(path, data)
        return path

    def _identity(self) -> dict[str, Any]:
        """What a checkpoint records of where it came from: the camera order and the training config's hash."""
        return {"cameras": self.dataset.camera_names, "config_hash": config_hash(self.config.to_dict())}

    # ------------------------------------------------------------------ steps
    def _micro_batch(self, micro: int) -> tuple[dict[str, Any], list[int]]:
        cfg, ctx = self.config, self.ctx
        positions = [frame_position(self.step, micro, ctx.rank, j, cfg, ctx.world_size) for j in range(cfg.batch_size)]
        items = [self.dataset[frame_at(p, len(self.dataset), cfg.seed)] for p in positions]
        if cfg.data.mirror:
            flips = [frame_seed(cfg.seed, p) >> 11 & 1 for p in positions]
            items = [mirror_item(it) if flip else it for it, flip in zip(items, flips, strict=True)]
        return to_device(default_collate(items), ctx.device), positions

    def _teacher_volumes(self, batch: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        cfg = self.config
        if not cfg.uses_distillation:
            return None
        if self.teacher is None:
            d = cfg.distill
            return label_volume_teacher(
                batch["labels"], len(self.vocabulary), self.vocabulary.free_index, d.label_density, d.unknown_density
            )
        with torch.no_grad():
            return dict(self.teacher(batch["images"], batch["K"], batch["cam_from_ego"]))

    def train_step(self) -> dict[str, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns the process-averaged loss terms."""
        cfg, ctx = self.config, self.ctx
        self.net.train()
        logs: dict[str, float] = {}
        total = 0.0
        for micro in range(cfg.grad_accum):
            batch, positions = self._micro_batch(micro)
            gens = [FrameGenerators.seeded(frame_seed(cfg.seed, p), ctx.device) for p in positions]
            sync = micro == cfg.grad_accum - 1 or not ctx.distributed
            context = self.net.no_sync() if not sync else contextlib.nullcontext()  # type: ignore[operator]
            with context:
                with torch.autocast(
                    ctx.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
                ):
                    outputs = self.net(batch["images"], batch["K"], batch["cam_from_ego"])
                loss, terms = self.objective(outputs, batch, gens, self._teacher_volumes(batch))
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total += float(loss.detach()) / cfg.grad_accum
            for k, v in terms.items():
                logs[k] = logs.get(k, 0.0) + v / cfg.grad_accum
        self.scaler.unscale_(self.optimizer)
        if cfg.optim.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.optim.grad_clip)
            logs["grad_norm"] = float(grad_norm)
        lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this step's update uses
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        logs["loss"] = total
        logs = mean_over_processes(logs, ctx)
        logs["lr"] = lr
        return logs

    # ------------------------------------------------------------------ validation
    def _val_outputs(self) -> Iterator[tuple[dict[str, Any], dict[str, torch.Tensor]]]:
        """Each ``data.val`` item with the network's outputs on it (eval mode, no gradients; train mode after)."""
        assert self.val_dataset is not None
        self.model.eval()
        try:
            for i in range(len(self.val_dataset)):
                item = self.val_dataset[i]
                batch = to_device(default_collate([item]), self.ctx.device)
                with torch.no_grad():
                    outputs = self.model(batch["images"], batch["K"], batch["cam_from_ego"])
                yield item, outputs
        finally:
            self.model.train()

    def validate(self) -> Occ3DResult | None:
        """Occ3D mIoU / IoU of the current weights on ``data.val`` (camera mask) against ``data.val_target``, on the
        main process."""
        if self.val_dataset is None or not self.ctx.is_main:
            return None
        metric = Occ3DMetric(self.vocabulary, mask="camera")
        target, mask = ("gt", "gt_mask") if self.config.data.val_target == "gt" else ("labels", "label_mask")
        for item, outputs in self._val_outputs():
            pred = predict_labels(outputs, self.model.decision_bias)[0].cpu().numpy()
            metric.update(pred, item[target], mask_camera=item[mask])
        return metric.compute()

    @torch.no_grad()
    def choose_decision_bias(self) -> AdjustmentChoice | None:
        """Logit adjustment (``decision.logit_adjustment: val``): set ``model.decision_bias`` to the ``tau`` whose
        labels best match the pseudo-labels of ``data.val``; on the main process, logged as ``kind: decision``."""
        cfg = self.config
        if cfg.decision.logit_adjustment != "val" or self.val_dataset is None or not self.ctx.is_main:
            return None
        if self.class_weights is None:
            raise TrainError(
                "decision.logit_adjustment is 'val' but the run has no class weights (resumed from a "
                "checkpoint without them?)"
            )
        frames = (
            (outputs["semantics"][0].float(), item["labels"], item["label_mask"])
            for item, outputs in self._val_outputs()
        )
        choice = choose_adjustment(frames, self.class_weights, self.vocabulary, cfg.decision.taus)
        self.model.decision_bias.copy_(choice.bias.to(self.model.decision_bias))
        self.decision = {
            "logit_adjustment": cfg.decision.logit_adjustment,
            "tau": choice.tau,
            "frames": choice.frames,
            "pseudo_label_miou": choice.miou[choice.tau],
            "pseudo_label_miou_by_tau": {str(t): v for t, v in choice.miou.items()},
        }
        self.log({"kind": "decision", "step": self.step, **self.decision})
        return choice

    # ------------------------------------------------------------------ the run
    def log(self, record: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        with (self.out / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            step = record["step"]
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.writer.add_scalar(f"{record.get('kind', 'train')}/{k}", v, step)

    def run(self) -> TrainResult:
        cfg, ctx = self.config, self.ctx
        if ctx.is_main:
            import yaml

            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out / "tb"), purge_step=self.step)
            except ImportError:  # tensorboard is in the train extra; logging still goes to metrics.jsonl
                self.writer = None
        barrier(ctx)
        result = TrainResult(self.out, self.step)
        bar = None
        if ctx.is_main and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        start, first = time.perf_counter(), self.step
        if ctx.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(ctx.device)
        try:
            while self.step < cfg.steps:
                logs = self.train_step()
                result.losses.append(logs["loss"])
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{logs['loss']:.3f}")
                if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    self.log({"kind": "train", "step": self.step, **logs, "seconds": time.perf_counter() - start})
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                    self.save()
                if cfg.val_every and self.step % cfg.val_every == 0 and self.step < cfg.steps:
                    self._validate_and_log()
                barrier(ctx)
            self.choose_decision_bias()
            result.validation = self._validate_and_log()
            self.save_model()
            barrier(ctx)
        finally:
            if bar is not None:
                bar.close()
            if self.writer is not None:
                self.writer.close()
        result.step = self.step
        result.seconds = time.perf_counter() - start
        result.seconds_per_step = result.seconds / (self.step - first) if self.step > first else 0.0
        if ctx.device.type == "cuda":
            result.peak_memory_mb = torch.cuda.max_memory_allocated(ctx.device) / 2**20
        return result

    def _validate_and_log(self) -> Occ3DResult | None:
        res = self.validate()
        if res is not None:
            self.log({"kind": "val", "step": self.step, "miou": res.miou, "iou": res.iou})
        return res


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Run (or resume) training; under torchrun every process calls this."""
    try:
        return Trainer(config, resume, progress).run()
    finally:
        shutdown_distributed()
