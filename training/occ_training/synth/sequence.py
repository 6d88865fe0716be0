"""``occ synth``: render a synthetic driving sequence with exact ground truth and a rosbag2 recording.

Output layout (DIR is written under a temporary name and renamed when complete)::

    DIR/meta.json                                  scene, preset, seed, grid, vocabulary, rig, ego poses
    DIR/images/<scene>/<frame>/<CAM>.png           RGB, 8 bit
    DIR/depth/<scene>/<frame>/<CAM>.png            uint16, metres * 256 (0 = no surface), optical-axis depth
    DIR/semantics/<scene>/<frame>/<CAM>.png        uint8 Occ3D label of the surface seen (255 = sky)
    DIR/gts/<scene>/<frame>/labels.npz             Occ3D: semantics, mask_lidar, mask_camera, uint8 [x, y, z]; grid
    DIR/bag/                                       rosbag2 (MCAP): images, camera_info, /tf, /tf_static
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import CameraRig
from occ_ros.core.vocabulary import OCC3D
from occ_ros.datasets.synth import BASE_FRAME, DEPTH_SCALE, FORMAT, FORMAT_VERSION, ODOM_FRAME, encode_depth
from occ_ros.io.atomic import atomic_directory, atomic_write_text
from occ_ros.io.labels import LABELS_FILE, save_labels
from occ_training.synth.ground_truth import LIDAR_EGO_POSITION, frame_ground_truth
from occ_training.synth.render import CameraImage, freeze, render_camera
from occ_training.synth.world import FRAME_RATE_HZ, World, urban_world

START_STAMP_NS = 1_700_000_000 * 1_000_000_000


@dataclass(frozen=True)
class SynthPreset:
    """Image size and grid of a synthetic sequence; the rig is nuScenes' six cameras, resized."""

    name: str
    width: int
    height: int
    grid: str

    def rig(self) -> CameraRig:
        return CameraRig.nuscenes().resized(self.width, self.height)

    def grid_spec(self) -> GridSpec:
        return GridSpec.named(self.grid)


PRESETS: dict[str, SynthPreset] = {
    "demo": SynthPreset("demo", width=200, height=112, grid="demo"),
    "nuscenes": SynthPreset("nuscenes", width=1600, height=900, grid="occ3d"),
}


def get_preset(name: str) -> SynthPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]


def scene_name(seed: int) -> str:
    return f"synth_{seed:04d}"


def frame_name(index: int) -> str:
    return f"{index:06d}"


def frame_time(index: int) -> float:
    """Seconds since the start of the sequence of frame ``index`` (12 Hz)."""
    return index / FRAME_RATE_HZ


def frame_stamp_ns(index: int) -> int:
    return START_STAMP_NS + int(round(index * 1e9 / FRAME_RATE_HZ))


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())


def generate(
    out: Path,
    frames: int = 20,
    seed: int = 0,
    preset: str = "demo",
    compressed: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    world: World | None = None,
    on_frame: Callable[[int, float], None] | None = None,
) -> Path:
    """Render a sequence into ``out`` atomically and return it.

    Args:
        frames: number of frames at 12 Hz (>= 1).
        compressed: also record ``/<camera>/image_raw/compressed`` (JPEG) in the bag.
        world: a prepared world (tests); by default ``urban_world(seed, ...)``.
        on_frame: called with (frame index, seconds spent) after each frame (benchmarks).
    """
    from tqdm import tqdm

    from occ_ros.io import rosbag as bagio

    if int(frames) < 1:
        raise ValueError(f"--frames must be at least 1, got {frames}")
    spec = get_preset(preset)
    rig, grid = spec.rig(), spec.grid_spec()
    duration = (frames - 1) / FRAME_RATE_HZ
    world = world if world is not None else urban_world(seed, duration)
    scene = scene_name(seed)
    vocab = OCC3D

    with atomic_directory(out, overwrite=overwrite) as tmp:
        frame_meta: list[dict[str, object]] = []
        gt_classes: set = set()
        with bagio.BagWriter(tmp / "bag") as bag:
            first_stamp = frame_stamp_ns(0)
            static_tf = [
                bagio.transform_stamped(cam.ego_from_cam, first_stamp, BASE_FRAME, cam.frame_id) for cam in rig
            ]
            bag.write("/tf_static", bagio.tf_message(static_tf), first_stamp)
            for i in tqdm(range(frames), desc=f"synth {scene}", unit="frame", disable=not progress):
                t0 = time.perf_counter()
                t, stamp, name = frame_time(i), frame_stamp_ns(i), frame_name(i)
                world_from_ego = world.ego.pose(t)
                frozen = freeze(world, t)
                views: list[CameraImage] = [render_camera(frozen, cam, world_from_ego) for cam in rig]
                gt = frame_ground_truth(world, frozen, t, grid, rig, vocab.free_index)
                save_labels(tmp / "gts" / scene / name / LABELS_FILE, gt.labels(grid))
                gt_classes.update(int(c) for c in np.unique(gt.semantics) if c != vocab.free_index)
                bag.write(
                    "/tf",
                    bagio.tf_message([bagio.transform_stamped(world_from_ego, stamp, ODOM_FRAME, BASE_FRAME)]),
                    stamp,
                )
                for cam, view in zip(rig, views, strict=False):
                    _write_png(
                        tmp / "images" / scene / name / f"{cam.name}.png", cv2.cvtColor(view.rgb, cv2.COLOR_RGB2BGR)
                    )
                    _write_png(tmp / "depth" / scene / name / f"{cam.name}.png", encode_depth(view.depth))
                    _write_png(tmp / "semantics" / scene / name / f"{cam.name}.png", view.semantics)
                    prefix = f"/{cam.name.lower()}"
                    bag.write(f"{prefix}/image_raw", bagio.image_msg(view.rgb, stamp, cam.frame_id), stamp)
                    if compressed:
                        bag.write(
                            f"{prefix}/image_raw/compressed",
                            bagio.compressed_image_msg(view.rgb, stamp, cam.frame_id),
                            stamp,
                        )
                    bag.write(f"{prefix}/camera_info", bagio.camera_info_msg(cam, stamp), stamp)
                frame_meta.append({"name": name, "stamp_ns": stamp, "odom_from_base_link": world_from_ego.tolist()})
                if on_frame is not None:
                    on_frame(i, time.perf_counter() - t0)
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "scene": scene,
            "preset": spec.name,
            "seed": seed,
            "frame_rate_hz": FRAME_RATE_HZ,
            "odom_frame": ODOM_FRAME,
            "base_frame": BASE_FRAME,
            "grid": grid.to_dict(),
            "vocabulary": vocab.to_dict(),
            "rig": rig.to_dict(),
            "lidar_ego_position": list(LIDAR_EGO_POSITION),
            "classes_present": [vocab.names[c] for c in sorted(gt_classes)],
            "encodings": {
                "images": "PNG, 8-bit RGB",
                "depth": f"PNG, uint16, metres * {DEPTH_SCALE:g}, 0 = no surface; z in the optical frame",
                "semantics": "PNG, uint8 label of the vocabulary, 255 = sky (no surface)",
                "gts": "Occ3D labels.npz: semantics, mask_lidar, mask_camera; uint8 [x, y, z]",
            },
            "frames": frame_meta,
        }
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=1))
    return Path(out)
