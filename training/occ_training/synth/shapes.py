"""Triangle meshes with per-face semantics and appearance, and the primitives the world is built from.

A :class:`Shape` is a mesh in its object's own frame (x forward, y left, z up, metres; origin
on the ground under the object's centre). Each face carries its Occ3D class, its material,
a base colour and a texture seed, and whether ground-truth sampling should see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from occ_ros.core.transforms import transform_points
from occ_training.synth.textures import Material


@dataclass(frozen=True)
class Shape:
    """A triangle mesh with per-face attributes.

    Attributes:
        vertices: (V, 3) float64, object frame.
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside.
        face_class: (F,) uint8 vocabulary labels.
        face_material: (F,) uint8 Material ids.
        face_color: (F, 3) float64 base colours in [0, 1].
        face_seed: (F,) int64 texture seeds.
        face_in_gt: (F,) bool; False for faces that are never a visible surface (e.g. slab bottoms).
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_class: np.ndarray
    face_material: np.ndarray
    face_color: np.ndarray
    face_seed: np.ndarray
    face_in_gt: np.ndarray

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def transformed(self, transform: np.ndarray) -> Shape:
        return Shape(
            transform_points(transform, self.vertices),
            self.faces,
            self.face_class,
            self.face_material,
            self.face_color,
            self.face_seed,
            self.face_in_gt,
        )

    def face_normals(self) -> np.ndarray:
        """(F, 3) unit normals (zero for degenerate faces)."""
        tri = self.vertices[self.faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)

    @staticmethod
    def concat(shapes: Sequence[Shape]) -> Shape:
        shapes = [s for s in shapes if s.num_faces]
        if not shapes:
            return empty_shape()
        offsets = np.cumsum([0] + [s.vertices.shape[0] for s in shapes[:-1]])
        return Shape(
            np.concatenate([s.vertices for s in shapes]),
            np.concatenate([s.faces + o for s, o in zip(shapes, offsets, strict=False)]),
            np.concatenate([s.face_class for s in shapes]),
            np.concatenate([s.face_material for s in shapes]),
            np.concatenate([s.face_color for s in shapes]),
            np.concatenate([s.face_seed for s in shapes]),
            np.concatenate([s.face_in_gt for s in shapes]),
        )


def empty_shape() -> Shape:
    return Shape(
        np.zeros((0, 3)),
        np.zeros((0, 3), np.int64),
        np.zeros(0, np.uint8),
        np.zeros(0, np.uint8),
        np.zeros((0, 3)),
        np.zeros(0, np.int64),
        np.zeros(0, bool),
    )


def _from_trimesh(
    mesh: trimesh.Trimesh, cls: int, material: Material, color: Sequence[float], seed: int, in_gt: bool = True
) -> Shape:
    f = len(mesh.faces)
    return Shape(
        np.asarray(mesh.vertices, dtype=np.float64),
        np.asarray(mesh.faces, dtype=np.int64),
        np.full(f, cls, np.uint8),
        np.full(f, int(material), np.uint8),
        np.tile(np.asarray(color, dtype=np.float64), (f, 1)),
        np.full(f, seed, np.int64),
        np.full(f, in_gt, bool),
    )


def box(
    size: tuple[float, float, float],
    center: tuple[float, float, float],
    cls: int,
    material: Material,
    color: Sequence[float] = (0.5, 0.5, 0.5),
    seed: int = 0,
    bottom_in_gt: bool = True,
) -> Shape:
    """Axis-aligned box of edge lengths ``size`` centred at ``center``.

    ``bottom_in_gt=False`` hides the downward face from ground truth (slabs lying on the ground).
    """
    mesh = trimesh.creation.box(extents=size)
    mesh.apply_translation(center)
    shape = _from_trimesh(mesh, cls, material, color, seed)
    if not bottom_in_gt:
        down = shape.face_normals()[:, 2] < -0.99
        shape.face_in_gt[down] = False
    return shape


def cylinder(
    radius: float,
    height: float,
    center: tuple[float, float, float],
    cls: int,
    material: Material,
    color: Sequence[float] = (0.5, 0.5, 0.5),
    seed: int = 0,
    axis: str = "z",
    sections: int = 12,
) -> Shape:
    """Cylinder along ``axis`` (x, y or z) centred at ``center``."""
    mesh = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
    if axis == "x":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    elif axis == "y":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    mesh.apply_translation(center)
    return _from_trimesh(mesh, cls, material, color, seed)


def sphere(
    radius: float,
    center: tuple[float, float, float],
    cls: int,
    material: Material,
    color: Sequence[float] = (0.5, 0.5, 0.5),
    seed: int = 0,
    subdivisions: int = 2,
    squash: float = 1.0,
) -> Shape:
    """Icosphere, optionally squashed vertically by ``squash``."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    mesh.vertices[:, 2] *= squash
    mesh.apply_translation(center)
    return _from_trimesh(mesh, cls, material, color, seed)


def cone(
    radius: float,
    height: float,
    base: tuple[float, float, float],
    cls: int,
    material: Material,
    color: Sequence[float] = (0.9, 0.4, 0.1),
    seed: int = 0,
) -> Shape:
    """Cone standing on ``base`` (apex up)."""
    mesh = trimesh.creation.cone(radius=radius, height=height, sections=16)
    mesh.apply_translation(base)
    return _from_trimesh(mesh, cls, material, color, seed)


def ground_rect(
    x0: float,
    x1: float,
    y0: float,
    y1: float,
    z: float,
    cls: int,
    material: Material,
    color: Sequence[float] = (0.5, 0.5, 0.5),
    seed: int = 0,
    tile: float = 4.0,
) -> Shape:
    """Upward-facing rectangle [x0,x1] x [y0,y1] at height z, split into tiles of at most ``tile`` metres.

    Tiling keeps triangles small, which keeps ray casting robust and surface sampling even.
    """
    # Tiles start at x0 / y0 with a fixed pitch, so a longer rectangle only adds tiles at its far end:
    # everything near the start, surface samples included, stays identical.
    xs = _pitch_edges(x0, x1, tile)
    ys = _pitch_edges(y0, y1, tile)
    nx, ny = len(xs) - 1, len(ys) - 1
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    vertices = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, z)], axis=1)
    idx = np.arange(gx.size).reshape(nx + 1, ny + 1)
    a, b = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel()
    c, d = idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    f = faces.shape[0]
    return Shape(
        vertices,
        faces.astype(np.int64),
        np.full(f, cls, np.uint8),
        np.full(f, int(material), np.uint8),
        np.tile(np.asarray(color, dtype=np.float64), (f, 1)),
        np.full(f, seed, np.int64),
        np.ones(f, bool),
    )


def _pitch_edges(lo: float, hi: float, pitch: float) -> np.ndarray:
    edges = lo + pitch * np.arange(int(np.floor((hi - lo) / pitch)) + 1)
    if hi - edges[-1] > 1e-9:
        edges = np.append(edges, hi)
    return edges


def slab(
    x0: float,
    x1: float,
    y0: float,
    y1: float,
    height: float,
    cls: int,
    material: Material,
    color: Sequence[float] = (0.5, 0.5, 0.5),
    seed: int = 0,
    pitch: float = 4.0,
) -> Shape:
    """A raised slab (kerbed sidewalk) on the ground: boxes of at most ``pitch`` metres along x from x0."""
    xs = _pitch_edges(x0, x1, pitch)
    return Shape.concat(
        [
            box(
                (b - a, y1 - y0, height),
                ((a + b) / 2, (y0 + y1) / 2, height / 2),
                cls,
                material,
                color,
                seed,
                bottom_in_gt=False,
            )
            for a, b in zip(xs[:-1], xs[1:], strict=False)
        ]
    )


def surface_samples(shape: Shape, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Points covering every ground-truth face at roughly ``spacing`` metres apart.

    Deterministic: each triangle gets ``ceil(2 * area / spacing**2)`` points from the R2
    low-discrepancy sequence, mapped uniformly onto it, plus its three vertices and edge midpoints.

    Returns:
        points: (P, 3) float64, object frame.
        classes: (P,) uint8 labels of the faces the points lie on.
    """
    keep = shape.face_in_gt
    tri = shape.vertices[shape.faces[keep]]
    cls = shape.face_class[keep]
    if tri.shape[0] == 0:
        return np.zeros((0, 3)), np.zeros(0, np.uint8)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    counts = np.ceil(2.0 * area / spacing**2).astype(np.int64) + 1
    face_of = np.repeat(np.arange(tri.shape[0]), counts)
    # rank of each sample within its face -> R2 sequence (plastic-number additive recurrence)
    starts = np.cumsum(counts) - counts
    k = np.arange(face_of.shape[0]) - starts[face_of] + 1
    g = 1.32471795724474602596
    r1 = np.mod(0.5 + k / g, 1.0)
    r2 = np.mod(0.5 + k / (g * g), 1.0)
    s = np.sqrt(r1)
    w0, w1, w2 = 1.0 - s, s * (1.0 - r2), s * r2
    t = tri[face_of]
    pts = w0[:, None] * t[:, 0] + w1[:, None] * t[:, 1] + w2[:, None] * t[:, 2]
    corners = np.concatenate([tri.reshape(-1, 3), 0.5 * (tri + np.roll(tri, 1, axis=1)).reshape(-1, 3)])
    corner_cls = np.tile(np.repeat(cls, 3), 2)
    return np.concatenate([pts, corners]), np.concatenate([cls[face_of], corner_cls])
