"""Ray-cast rendering of the synthetic world: RGB, metric depth and per-pixel class.

Ray casting uses Embree through trimesh's ``RayMeshIntersector`` (embreex): a well-kept,
multi-threaded BVH tracer that casts about a million rays a second on two cores, so the
nuScenes preset (6 x 900 x 1600 pixels) renders in seconds and the demo preset in a fraction
of one. We chose it over Open3D's RaycastingScene because embreex is a small wheel with no
GUI or CUDA dependencies, and over a hand-written tracer because Embree is watertight and fast.
Embree reports which triangle each ray hits; the hit distance is then computed in float64
from that triangle's plane, so depth is exact to double precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from trimesh.ray.ray_pyembree import RayMeshIntersector

from occ_ros.core.rig import Camera
from occ_ros.core.transforms import invert_transform
from occ_training.synth.shapes import Shape
from occ_training.synth.textures import albedo, shade, sky
from occ_training.synth.world import World

NO_SURFACE = 255
"""Per-pixel class of rays that hit nothing (sky)."""


@dataclass
class FrozenScene:
    """The world at one instant, in world coordinates, ready for ray casting.

    Attributes:
        shape: all faces, world frame.
        face_object: (F,) index of the object each face belongs to.
        object_from_world: (O, 4, 4) per-object inverse poses (texture coordinates).
        normals: (F, 3) unit face normals, world frame.
    """

    shape: Shape
    face_object: np.ndarray
    object_from_world: np.ndarray
    normals: np.ndarray
    sun: np.ndarray

    def __post_init__(self) -> None:
        mesh = trimesh.Trimesh(self.shape.vertices, self.shape.faces, process=False)
        self._intersector = RayMeshIntersector(mesh)

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First hits of rays.

        Args:
            origins: (N, 3) world frame; directions: (N, 3) unit vectors.
        Returns:
            face: (N,) int64 face index, -1 for a miss.
            distance: (N,) float64 metres along the ray, inf for a miss.
        """
        origins = np.broadcast_to(origins, directions.shape)
        face = np.full(directions.shape[0], -1, np.int64)
        distance = np.full(directions.shape[0], np.inf)
        if directions.shape[0] == 0 or self.shape.num_faces == 0:
            return face, distance
        face[:] = self._intersector.intersects_first(origins, directions)
        hit = face >= 0
        v0 = self.shape.vertices[self.shape.faces[face[hit], 0]]
        n = self.normals[face[hit]]
        denom = np.einsum("ij,ij->i", directions[hit], n)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.einsum("ij,ij->i", v0 - origins[hit], n) / denom
        ok = np.isfinite(t) & (t > 0)
        idx = np.flatnonzero(hit)
        face[idx[~ok]] = -1
        distance[idx[ok]] = t[ok]
        return face, distance

    def color(self, face: np.ndarray, points: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Shaded RGB (N, 3) in [0, 1] of hits (face >= 0) or sky (face < 0)."""
        out = sky(directions)
        hit = face >= 0
        if not np.any(hit):
            return out
        f = face[hit]
        obj = self.face_object[f]
        inv = self.object_from_world[obj]
        local = np.einsum("nij,nj->ni", inv[:, :3, :3], points[hit]) + inv[:, :3, 3]
        base = albedo(self.shape.face_material[f], local, self.shape.face_color[f], self.shape.face_seed[f])
        normals = self.normals[f]
        # Thin surfaces are seen from both sides: shade the side facing the viewer.
        facing = np.sign(-np.einsum("ij,ij->i", normals, directions[hit]))
        facing[facing == 0] = 1.0
        out[hit] = shade(base, normals * facing[:, None], self.sun)
        return out


def freeze(world: World, t: float) -> FrozenScene:
    """Pose every object at time t (seconds) and merge them into one mesh."""
    shapes, face_object, inverses = [], [], []
    for i, obj in enumerate(world.objects):
        pose = obj.pose(t)
        shapes.append(obj.shape.transformed(pose))
        face_object.append(np.full(obj.shape.num_faces, i, np.int64))
        inverses.append(invert_transform(pose))
    merged = Shape.concat(shapes)
    return FrozenScene(
        shape=merged,
        face_object=np.concatenate(face_object) if face_object else np.zeros(0, np.int64),
        object_from_world=np.stack(inverses) if inverses else np.zeros((0, 4, 4)),
        normals=merged.face_normals(),
        sun=world.sun,
    )


@dataclass
class CameraImage:
    """One rendered view.

    Attributes:
        rgb: (H, W, 3) uint8.
        depth: (H, W) float32 optical-axis depth (z in the optical frame), metres; 0 where no surface.
        semantics: (H, W) uint8 class of the surface seen, NO_SURFACE (255) for sky.
    """

    rgb: np.ndarray
    depth: np.ndarray
    semantics: np.ndarray


def render_camera(scene: FrozenScene, camera: Camera, world_from_ego: np.ndarray) -> CameraImage:
    """Render one camera of the rig with the ego at ``world_from_ego``."""
    dirs_cam, z_per_unit = camera.pixel_rays()
    h, w = z_per_unit.shape
    world_from_cam = world_from_ego @ camera.ego_from_cam
    dirs = dirs_cam.reshape(-1, 3) @ world_from_cam[:3, :3].T
    origin = world_from_cam[:3, 3]
    face, dist = scene.cast(origin[None, :], dirs)
    hit = face >= 0
    points = origin + dirs * np.where(hit, dist, 0.0)[:, None]
    rgb = scene.color(face, points, dirs)
    depth = np.where(hit, dist * z_per_unit.reshape(-1), 0.0)
    semantics = np.full(face.shape[0], NO_SURFACE, np.uint8)
    semantics[hit] = scene.shape.face_class[face[hit]]
    return CameraImage(
        rgb=np.round(rgb * 255).astype(np.uint8).reshape(h, w, 3),
        depth=depth.astype(np.float32).reshape(h, w),
        semantics=semantics.reshape(h, w),
    )
