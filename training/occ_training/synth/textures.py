"""Procedural surface appearance for the synthetic world.

Every surface point gets an albedo from its material, evaluated in the coordinates of the
part it belongs to (so texture moves with a moving car), then Lambertian shading under a
fixed sun. Appearance is view-independent, so photometric consistency between frames and
cameras holds exactly, up to occlusion and pixel sampling.

Noise is hash-based value noise: deterministic, with no state, and vectorised over points.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

import numpy as np


class Material(IntEnum):
    ASPHALT = 0
    SIDEWALK = 1
    GRASS = 2
    PARKING = 3
    FACADE = 4
    CONCRETE = 5
    FOLIAGE = 6
    BARK = 7
    PAINT = 8
    GLASS = 9
    TYRE = 10
    CLOTH = 11
    SKIN = 12
    CONE = 13
    METAL = 14
    ROOF = 15


def _hash01(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) per integer lattice point (a 32-bit integer hash, wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        h = (
            ix.astype(np.uint32) * np.uint32(0x8DA6B343)
            ^ iy.astype(np.uint32) * np.uint32(0xD8163841)
            ^ iz.astype(np.uint32) * np.uint32(0xCB1AB31F)
            ^ seed.astype(np.uint32) * np.uint32(0x165667B1)
        )
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x2C1B3C6D)
        h ^= h >> np.uint32(12)
        h *= np.uint32(0x297A2D39)
        h ^= h >> np.uint32(15)
    return h.astype(np.float64) / 4294967296.0


def value_noise(points: np.ndarray, scale: float, seed: np.ndarray) -> np.ndarray:
    """Smooth noise in [0, 1) with feature size ``scale`` metres.

    Args:
        points: (N, 3) coordinates, metres.
        seed: (N,) integer seed per point (per part), or a scalar.
    """
    p = points / scale
    base = np.floor(p)
    frac = p - base
    w = frac * frac * (3.0 - 2.0 * frac)  # smoothstep
    b = base.astype(np.int64)
    seed = np.broadcast_to(np.asarray(seed, dtype=np.int64), (points.shape[0],))
    out = np.zeros(points.shape[0])
    for dx in (0, 1):
        wx = w[:, 0] if dx else 1.0 - w[:, 0]
        for dy in (0, 1):
            wy = w[:, 1] if dy else 1.0 - w[:, 1]
            for dz in (0, 1):
                wz = w[:, 2] if dz else 1.0 - w[:, 2]
                out += wx * wy * wz * _hash01(b[:, 0] + dx, b[:, 1] + dy, b[:, 2] + dz, seed)
    return out


def fbm(points: np.ndarray, scale: float, seed: np.ndarray, octaves: int = 3) -> np.ndarray:
    """Fractal value noise in [0, 1): octaves at scale, scale/2.3, ..."""
    total, norm, amp = np.zeros(points.shape[0]), 0.0, 1.0
    for o in range(octaves):
        total += amp * value_noise(points, scale / (2.3**o), np.asarray(seed) + 101 * o)
        norm += amp
        amp *= 0.55
    return total / norm


def _stripes(coord: np.ndarray, period: float, width: float, offset: float = 0.0) -> np.ndarray:
    """True where ``coord`` lies within ``width`` of a multiple of ``period`` (shifted by offset)."""
    r = np.mod(coord - offset + width / 2, period)
    return r < width


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a * (1.0 - t[:, None]) + b * t[:, None]


Albedo = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _asphalt(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Road in its part frame: x along the road, y across, centred; lane lines every 3.5 m."""
    n = fbm(p, 0.6, seed)
    rgb = np.repeat((0.20 + 0.16 * n)[:, None], 3, axis=1)
    y, x = p[:, 1], p[:, 0]
    half = np.abs(y)
    dashed = _stripes(half, 3.5, 0.15, 3.5) & (np.mod(x, 9.0) < 4.5) & (half < 6.0)
    centre = half < 0.2
    edge = np.abs(half - 6.7) < 0.1
    rgb[dashed | edge] = [0.85, 0.85, 0.82]
    rgb[centre] = [0.85, 0.72, 0.15]
    return rgb


def _sidewalk(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    n = fbm(p, 0.5, seed)
    rgb = np.repeat((0.55 + 0.15 * n)[:, None], 3, axis=1) * np.array([1.0, 0.98, 0.94])
    grout = _stripes(p[:, 0], 1.2, 0.05) | _stripes(p[:, 1], 1.2, 0.05)
    rgb[grout] *= 0.6
    return rgb


def _grass(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    n1, n2 = fbm(p, 1.5, seed), fbm(p, 0.35, seed + 7)
    green = np.array([0.22, 0.45, 0.12])
    soil = np.array([0.42, 0.34, 0.2])
    return (
        _mix(np.broadcast_to(green, p.shape), np.broadcast_to(soil, p.shape), np.clip(n1 * 1.4 - 0.5, 0, 1))
        * (0.75 + 0.5 * n2)[:, None]
    )


def _parking(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    n = fbm(p, 0.5, seed)
    rgb = np.repeat((0.32 + 0.2 * n)[:, None], 3, axis=1) * np.array([1.0, 0.95, 0.88])
    rgb[_stripes(p[:, 0], 2.7, 0.12) & (np.mod(p[:, 1], 12.0) < 5.0)] = [0.9, 0.9, 0.9]
    return rgb


def _facade(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Walls with a window grid; for a box facade one of x/y is constant, so x + y runs along it."""
    along = p[:, 0] + p[:, 1]
    n = fbm(p, 0.8, seed)
    rgb = color * (0.8 + 0.35 * n)[:, None]
    window = (np.mod(along, 3.0) > 1.0) & (np.mod(along, 3.0) < 2.3) & (np.mod(p[:, 2], 3.2) > 1.0)
    window &= np.mod(p[:, 2], 3.2) < 2.5
    window &= p[:, 2] > 0.8
    glass = np.array([0.16, 0.22, 0.30]) * (0.7 + 0.6 * value_noise(p, 2.0, seed + 3))[:, None]
    rgb[window] = glass[window]
    return rgb


def _concrete(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    n = fbm(p, 0.4, seed)
    rgb = color * (0.75 + 0.4 * n)[:, None]
    rgb[_stripes(p[:, 0] + p[:, 1], 2.5, 0.06)] *= 0.55
    return rgb


def _foliage(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    n1, n2 = fbm(p, 0.9, seed), value_noise(p, 0.25, seed + 5)
    return color * (0.45 + 0.7 * n1 + 0.35 * (n2 - 0.5))[:, None]


def _bark(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    stretched = p * np.array([4.0, 4.0, 0.5])
    return color * (0.6 + 0.6 * value_noise(stretched, 0.5, seed))[:, None]


def _paint(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    rgb = color * (0.85 + 0.25 * value_noise(p, 0.7, seed))[:, None]
    rgb[_stripes(p[:, 0], 1.1, 0.04)] *= 0.5  # panel seams give texture along the body
    return rgb


def _glass(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    n = value_noise(p, 0.5, seed)
    return np.array([0.10, 0.13, 0.17]) + 0.25 * n[:, None] * np.array([0.8, 0.9, 1.0])


def _tyre(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    return np.repeat((0.06 + 0.06 * value_noise(p, 0.1, seed))[:, None], 3, axis=1)


def _cloth(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Two colours split at hip height: ``color`` above, a darker one below."""
    upper = p[:, 2] > 0.9
    rgb = np.where(upper[:, None], color, color[:, ::-1] * 0.5)
    return rgb * (0.8 + 0.3 * value_noise(p, 0.15, seed))[:, None]


def _skin(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    return color * (0.9 + 0.15 * value_noise(p, 0.05, seed))[:, None]


def _cone(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    rgb = np.broadcast_to(np.array([0.95, 0.35, 0.05]), p.shape).copy()
    band = (p[:, 2] > 0.3) & (p[:, 2] < 0.45)
    rgb[band] = [0.95, 0.95, 0.95]
    return rgb


def _metal(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    return color * (0.7 + 0.5 * value_noise(p, 0.2, seed))[:, None]


def _roof(p: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    return color * 0.5 * (0.7 + 0.6 * fbm(p, 1.0, seed))[:, None]


ALBEDO: dict[Material, Albedo] = {
    Material.ASPHALT: _asphalt,
    Material.SIDEWALK: _sidewalk,
    Material.GRASS: _grass,
    Material.PARKING: _parking,
    Material.FACADE: _facade,
    Material.CONCRETE: _concrete,
    Material.FOLIAGE: _foliage,
    Material.BARK: _bark,
    Material.PAINT: _paint,
    Material.GLASS: _glass,
    Material.TYRE: _tyre,
    Material.CLOTH: _cloth,
    Material.SKIN: _skin,
    Material.CONE: _cone,
    Material.METAL: _metal,
    Material.ROOF: _roof,
}


def albedo(material: np.ndarray, local: np.ndarray, color: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Albedo (N, 3) in [0, 1] of surface points.

    Args:
        material: (N,) Material ids.
        local: (N, 3) points in their part's own frame, metres.
        color: (N, 3) the part's base colour.
        seed: (N,) the part's texture seed.
    """
    out = np.zeros((material.shape[0], 3))
    for mat in np.unique(material):
        sel = material == mat
        out[sel] = ALBEDO[Material(int(mat))](local[sel], color[sel], seed[sel])
    return np.clip(out, 0.0, 1.0)


def sky(directions: np.ndarray) -> np.ndarray:
    """(N, 3) sky colour for world-frame unit directions: haze at the horizon, blue above."""
    up = np.clip(directions[:, 2], 0.0, 1.0)[:, None]
    return np.array([0.78, 0.84, 0.90]) * (1 - up) + np.array([0.35, 0.55, 0.85]) * up


def shade(albedo_rgb: np.ndarray, normals: np.ndarray, sun: np.ndarray, ambient: float = 0.4) -> np.ndarray:
    """Lambertian shading of (N, 3) albedo with (N, 3) unit normals and a unit sun direction."""
    lambert = np.clip(normals @ sun, 0.0, 1.0)
    return np.clip(albedo_rgb * (ambient + (1.0 - ambient) * lambert)[:, None], 0.0, 1.0)
