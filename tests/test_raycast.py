"""Tests for occ_ros.core.raycast against hand-computed cases and independent brute-force references.

The references never call the module under test: they sample rays densely (or intersect each voxel
box analytically) and derive visibility / first hits / free space from that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from occ_ros.core import raycast
from occ_ros.core.grid import GridSpec
from occ_ros.core.raycast import carve, carve_counts, first_hit, traversal_table, visibility_mask

# ---------------------------------------------------------------------------------------- helpers
# A 4 x 4 x 1 grid of 1 m voxels over [0, 4] x [0, 4] x [0, 1].
SMALL = GridSpec((0.0, 0.0, 0.0), (4.0, 4.0, 1.0), (1.0, 1.0, 1.0))
# An irregular grid for the randomised comparisons: 7 x 6 x 5 voxels, anisotropic, offset corner.
ODD = GridSpec((-1.5, -2.1, -0.8), (2.0, 2.1, 1.2), (0.5, 0.7, 0.4))


def mask_of(grid: GridSpec, voxels: list[tuple[int, int, int]]) -> np.ndarray:
    m = np.zeros(grid.shape, dtype=bool)
    for v in voxels:
        m[v] = True
    return m


def voxel_list(mask: np.ndarray) -> list[tuple[int, ...]]:
    return sorted(tuple(int(c) for c in v) for v in np.argwhere(mask))


def box_interval(lo: np.ndarray, hi: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    """Slab intersection [t_in, t_out] of the ray o + t d (any t) with the box [lo, hi]."""
    t_in, t_out = -math.inf, math.inf
    for a in range(3):
        if d[a] == 0.0:
            if not lo[a] <= o[a] <= hi[a]:
                return math.inf, -math.inf
            continue
        t_a, t_b = (lo[a] - o[a]) / d[a], (hi[a] - o[a]) / d[a]
        t_in, t_out = max(t_in, min(t_a, t_b)), min(t_out, max(t_a, t_b))
    return t_in, t_out


def sampled_path(grid: GridSpec, o: np.ndarray, d: np.ndarray, t_end: float, h: float):
    """Voxels met by samples o + t d, t = 0, h, 2h, ... < t_end, in order (consecutive duplicates removed).

    Returns (voxels (K, 3) int, first sample t in each (K,)).
    """
    lo, hi = np.asarray(grid.range_min), np.asarray(grid.range_max)
    t_in, t_out = box_interval(lo, hi, o, d)
    t_from = max(0.0, t_in)
    t_to = min(t_end, t_out)
    if not t_from < t_to:
        return np.zeros((0, 3), dtype=np.int64), np.zeros(0)
    # Samples on the fixed lattice (k + 1/2) h, k >= 0: never exactly at the origin, so an origin on a
    # voxel face counts in the voxel the ray moves into.
    k0 = max(math.floor(t_from / h) - 1, 0)
    t = (np.arange(k0, math.ceil(t_to / h) + 1) + 0.5) * h
    t = t[t < t_end]
    p = o + t[:, None] * d
    idx, inside = grid.points_to_indices(p)
    idx, t = idx[inside], t[inside]
    if len(idx) == 0:
        return idx, t
    new = np.ones(len(idx), dtype=bool)
    new[1:] = np.any(idx[1:] != idx[:-1], axis=1)
    return idx[new], t[new]


def well_separated(grid: GridSpec, o: np.ndarray, d: np.ndarray, t_end: float, gap: float, cut: bool = True) -> bool:
    """True when the voxel-face crossings in (0, t_end] (with 0, and t_end if ``cut``) are > gap apart:
    no grazing through edges/corners, no voxel chord short enough for the sampling to miss.

    A face crossed exactly at t = 0 (origin on a face) is fine: the sampling starts at h/2. Axes the
    ray is parallel to need no check: the sampled and the traversed coordinate are then the same float.
    """
    lo, size, shape = np.asarray(grid.range_min), np.asarray(grid.voxel_size), grid.shape
    times = [0.0, t_end] if cut else [0.0]
    for a in range(3):
        if d[a] == 0.0:
            continue
        planes = lo[a] + np.arange(shape[a] + 1) * size[a]
        ts = (planes - o[a]) / d[a]
        times.extend(ts[(ts > 0) & (ts <= t_end)].tolist())
    return bool(np.all(np.diff(np.sort(np.asarray(times))) > gap))


def random_rays(rng: np.random.Generator, n: int, grid: GridSpec):
    """Origins in a box 1 m larger than the grid (some outside), directions with some exact zeros."""
    lo, hi = np.asarray(grid.range_min) - 0.4, np.asarray(grid.range_max) + 0.4
    o = rng.uniform(lo, hi, size=(n, 3))
    d = rng.normal(size=(n, 3))
    zero = rng.random(n) < 0.25
    d[zero, rng.integers(0, 3, size=int(zero.sum()))] = 0.0
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    snap_origins_to_faces(rng, o, grid, 0.2)
    return o, d


def snap_origins_to_faces(rng: np.random.Generator, o: np.ndarray, grid: GridSpec, frac: float) -> None:
    """Move one coordinate of a fraction of the origins exactly onto a voxel face (in place)."""
    lo, size, shape = np.asarray(grid.range_min), np.asarray(grid.voxel_size), grid.shape
    for i in np.flatnonzero(rng.random(len(o)) < frac):
        a = int(rng.integers(0, 3))
        k = int(rng.integers(0, shape[a] + 1))
        x = lo[a] + k * size[a]
        if (x - lo[a]) / size[a] == k:  # exactly on the face in voxel units (as the traversal computes it)
            o[i, a] = x


# ---------------------------------------------------------------------------------------- hand cases
def test_ray_along_x_stops_at_occupied_voxel():
    occ = mask_of(SMALL, [(2, 0, 0)])
    o, d = np.array([[0.5, 0.5, 0.5]]), np.array([[1.0, 0.0, 0.0]])
    vis = visibility_mask(SMALL, o, d, occ)
    assert voxel_list(vis) == [(0, 0, 0), (1, 0, 0), (2, 0, 0)]
    dist, vox, hit = first_hit(SMALL, o, d, occ)
    assert hit.tolist() == [True]
    assert dist[0] == 1.5
    assert vox.tolist() == [[2, 0, 0]]
    # Unnormalised direction: same distance (metres along the unit direction).
    dist2, _, _ = first_hit(SMALL, o, np.array([[7.0, 0.0, 0.0]]), occ)
    assert dist2[0] == 1.5


def test_diagonal_ray_off_the_corners():
    # y = x + 0.3: crosses y=1 (t'=0.5), x=1 (0.8), y=2 (1.5), x=2 (1.8), y=3 (2.5), x=3 (2.8), exits at y=4.
    o, d = np.array([[0.2, 0.5, 0.5]]), np.array([[1.0, 1.0, 0.0]])
    free = np.zeros(SMALL.shape, dtype=bool)
    vis = visibility_mask(SMALL, o, d, free)
    expected = [(0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 2, 0), (2, 2, 0), (2, 3, 0), (3, 3, 0)]
    assert voxel_list(vis) == sorted(expected)
    occ = mask_of(SMALL, [(2, 3, 0), (3, 3, 0)])
    dist, vox, hit = first_hit(SMALL, o, d, occ)
    assert hit[0] and vox[0].tolist() == [2, 3, 0]
    assert dist[0] == pytest.approx(2.5 * math.sqrt(2.0), abs=1e-12)
    assert voxel_list(visibility_mask(SMALL, o, d, occ)) == sorted(expected[:-1])


def test_diagonal_through_corners_steps_x_first():
    # Exactly through the voxel corners (1,1), (2,2), (3,3): documented tie order x, y, z.
    o, d = np.array([[0.5, 0.5, 0.5]]), np.array([[1.0, 1.0, 0.0]])
    vis = visibility_mask(SMALL, o, d, np.zeros(SMALL.shape, dtype=bool))
    expected = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0), (2, 2, 0), (3, 2, 0), (3, 3, 0)]
    assert voxel_list(vis) == sorted(expected)
    # The zero-length corner neighbour blocks the ray (no diagonal leak between edge-touching voxels).
    occ = mask_of(SMALL, [(1, 0, 0), (0, 1, 0)])
    assert voxel_list(visibility_mask(SMALL, o, d, occ)) == [(0, 0, 0), (1, 0, 0)]
    dist, vox, hit = first_hit(SMALL, o, d, occ)
    assert hit[0] and vox[0].tolist() == [1, 0, 0]
    assert dist[0] == pytest.approx(0.5 * math.sqrt(2.0), abs=1e-12)


def test_ray_entering_from_outside():
    occ = np.zeros(SMALL.shape, dtype=bool)
    o = np.array([[-2.0, 1.5, 0.5], [-2.0, 5.0, 0.5], [-2.0, 1.5, 0.5], [6.0, 2.5, 0.5]])
    d = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    # Ray 0 crosses row y=1; ray 1 misses (y outside); ray 2 points away; ray 3 crosses row y=2 from +x.
    vis = visibility_mask(SMALL, o, d, occ)
    assert voxel_list(vis) == sorted([(i, 1, 0) for i in range(4)] + [(i, 2, 0) for i in range(4)])
    occ[0, 1, 0] = True
    occ[1, 2, 0] = True
    dist, vox, hit = first_hit(SMALL, o, d, occ)
    assert hit.tolist() == [True, False, False, True]
    assert dist[0] == 2.0 and dist[3] == 4.0
    assert np.isinf(dist[1]) and np.isinf(dist[2])
    assert vox.tolist() == [[0, 1, 0], [-1, -1, -1], [-1, -1, -1], [1, 2, 0]]
    # A diagonal entering through a face other than the first: enters at y=0 at t = 1 * sqrt(2).
    dist, vox, hit = first_hit(SMALL, [[1.2, -1.0, 0.5]], [[1.0, 1.0, 0.0]], np.ones(SMALL.shape, bool))
    assert hit[0] and vox[0].tolist() == [2, 0, 0]
    assert dist[0] == pytest.approx(math.sqrt(2.0), abs=1e-12)


def test_ray_grazing_the_grid_surface_misses():
    occ = np.ones(SMALL.shape, dtype=bool)
    # Along the top face z=1 and along the edge x=0,z=0: zero-length overlap with the grid.
    o = np.array([[-1.0, 0.5, 1.0], [0.0, -1.0, 0.0]])
    d = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    _, _, hit = first_hit(SMALL, o, d, occ)
    # The lower faces belong to the grid (half-open voxels): the second ray runs inside row x=0, z=0.
    assert hit.tolist() == [False, True]


def test_max_range():
    occ = np.zeros(SMALL.shape, dtype=bool)
    o, d = np.array([[0.5, 0.5, 0.5]] * 3), np.array([[1.0, 0.0, 0.0]] * 3)
    # Voxels are entered at t = 0, 0.5, 1.5, 2.5; a voxel counts when entered strictly before max_range.
    assert voxel_list(visibility_mask(SMALL, o[:1], d[:1], occ, max_range=1.5)) == [(0, 0, 0), (1, 0, 0)]
    assert len(voxel_list(visibility_mask(SMALL, o[:1], d[:1], occ, max_range=1.6))) == 3
    occ[3, 0, 0] = True
    dist, _, hit = first_hit(SMALL, o, d, occ, max_range=np.array([2.5, 2.6, np.inf]))
    assert hit.tolist() == [False, True, True] and dist[1] == 2.5


def test_origin_on_face_and_inside_occupied():
    occ = mask_of(SMALL, [(1, 0, 0)])
    # On the face x=1 heading -x: starts in voxel 0, never sees voxel 1.
    o, d = np.array([[1.0, 0.5, 0.5]]), np.array([[-1.0, 0.0, 0.0]])
    assert voxel_list(visibility_mask(SMALL, o, d, occ)) == [(0, 0, 0)]
    assert not first_hit(SMALL, o, d, occ)[2][0]
    # Heading +x from the same face: starts in voxel 1 (occupied) at distance 0.
    dist, vox, hit = first_hit(SMALL, o, -d, occ)
    assert hit[0] and dist[0] == 0.0 and vox[0].tolist() == [1, 0, 0]
    assert voxel_list(visibility_mask(SMALL, o, -d, occ)) == [(1, 0, 0)]
    # floor_start (SparseOcc's DVR kernel, RayIoU): heading -x it starts in floor(1.0) = voxel 1 and hits it.
    dist, vox, hit = first_hit(SMALL, o, d, occ, floor_start=True)
    assert hit[0] and dist[0] == 0.0 and vox[0].tolist() == [1, 0, 0]
    # ...and with voxel 1 free it goes on into voxel 0 (entered at 0 m).
    dist, vox, hit = first_hit(SMALL, o, d, mask_of(SMALL, [(0, 0, 0)]), floor_start=True)
    assert hit[0] and dist[0] == 0.0 and vox[0].tolist() == [0, 0, 0]


def test_zero_direction_components_raise_no_warnings():
    occ = mask_of(SMALL, [(3, 2, 0)])
    o = np.array([[0.5, 2.5, 0.5], [3.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    d = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    with np.errstate(all="raise"):
        vis = visibility_mask(SMALL, o, d, occ)
        dist, vox, hit = first_hit(SMALL, o, d, occ)
        free, end = carve(SMALL, o, o + d)
    expected = {(i, 2, 0) for i in range(4)} | {(3, j, 0) for j in range(3)} | {(0, 0, 0)}
    assert voxel_list(vis) == sorted(expected)  # the zero direction (ray 3) marks nothing itself
    assert hit.tolist() == [True, True, False, False]
    assert dist[:2].tolist() == [2.5, 1.5]
    assert vox[:2].tolist() == [[3, 2, 0], [3, 2, 0]]
    # Segments of length 1 along the axes; the zero one is a point: nothing free, end voxel only.
    assert voxel_list(free) == [(0, 0, 0), (0, 2, 0), (3, 0, 0)]
    assert voxel_list(end) == [(0, 0, 0), (1, 2, 0), (3, 1, 0)]


def test_no_rays():
    occ = np.ones(SMALL.shape, dtype=bool)
    empty = np.zeros((0, 3))
    assert not visibility_mask(SMALL, empty, empty, occ).any()
    assert not visibility_mask(SMALL, np.array([0.5, 0.5, 0.5]), empty, occ).any()
    dist, vox, hit = first_hit(SMALL, empty, empty, occ)
    assert dist.shape == (0,) and vox.shape == (0, 3) and hit.shape == (0,)
    assert dist.dtype == np.float64 and vox.dtype == np.int64 and hit.dtype == bool
    free, end = carve(SMALL, empty, empty)
    assert free.shape == SMALL.shape and not free.any() and not end.any()
    fc, ec = carve_counts(SMALL, empty, empty)
    assert fc.dtype == np.int32 and not fc.any() and not ec.any()


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        visibility_mask(SMALL, np.zeros((2, 3)), np.zeros((3, 3)), np.zeros(SMALL.shape, bool))
    with pytest.raises(ValueError):
        visibility_mask(SMALL, np.zeros(3), np.ones((1, 3)), np.zeros((4, 4, 2), bool))
    with pytest.raises(ValueError):
        first_hit(SMALL, np.zeros((1, 2)), np.ones((1, 3)), np.zeros(SMALL.shape, bool))


# ---------------------------------------------------------------------------------------- carve
def test_carve_hand_cases():
    o = np.array([[0.5, 0.5, 0.5], [0.5, 1.5, 0.5], [1.5, 2.5, 0.5], [-3.0, 3.5, 0.5]])
    e = np.array([[3.5, 0.5, 0.5], [2.0, 1.5, 0.5], [1.5, 2.5, 0.5], [2.5, 3.5, 0.5]])
    free, end = carve(SMALL, o, e)
    # Ray 0: free x=0..2, end x=3. Ray 1 ends exactly on the face x=2: free x=0,1, end voxel x=2.
    # Ray 2 has zero length: end voxel only. Ray 3 starts outside: free x=0,1, end x=2.
    assert voxel_list(free) == sorted([(0, 0, 0), (1, 0, 0), (2, 0, 0), (0, 1, 0), (1, 1, 0), (0, 3, 0), (1, 3, 0)])
    assert voxel_list(end) == sorted([(3, 0, 0), (2, 1, 0), (1, 2, 0), (2, 3, 0)])
    # The same face endpoint approached from +x: the end voxel (x=2, half-open) is entered first, nothing free.
    free, end = carve(SMALL, [[2.5, 1.5, 0.5]], [[2.0, 1.5, 0.5]])
    assert not free.any() and voxel_list(end) == [(2, 1, 0)]
    # Endpoint outside the grid: the whole traversed row is free, no end voxel.
    free, end = carve(SMALL, [0.5, 0.5, 0.5], [[10.0, 0.5, 0.5]])
    assert voxel_list(free) == [(i, 0, 0) for i in range(4)] and not end.any()


def test_carve_counts():
    o = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [3.5, 0.5, 0.5]])
    e = np.array([[3.5, 0.5, 0.5], [2.5, 0.5, 0.5], [1.5, 0.5, 0.5]])
    fc, ec = carve_counts(SMALL, o, e)
    # Free: beam 0 x=0,1,2; beam 1 x=0,1; beam 2 (towards -x) x=3,2.
    assert fc[:, 0, 0].tolist() == [2, 2, 2, 1] and fc.sum() == 7
    assert ec[:, 0, 0].tolist() == [0, 1, 1, 1] and ec.sum() == 3
    free, end = carve(SMALL, o, e)
    assert np.array_equal(free, fc > 0) and np.array_equal(end, ec > 0)


# ---------------------------------------------------------------------------------------- wall
def test_wall_blocks_everything_behind_it():
    grid = GridSpec((0.0, 0.0, 0.0), (24.0, 16.0, 6.0), (1.0, 1.0, 1.0))
    occ = np.zeros(grid.shape, dtype=bool)
    occ[10] = True
    rng = np.random.default_rng(1)
    n = 400
    o = np.array([3.3, 8.1, 2.7])
    d = rng.normal(size=(n, 3))
    d[: n // 2, 0] = np.abs(d[: n // 2, 0]) + 0.2  # half of them towards the wall
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    vis = visibility_mask(grid, o, d, occ)
    assert not vis[11:].any()
    dist, vox, hit = first_hit(grid, o, d, occ)
    # Independent: where the ray meets the plane x=10 inside the grid, it hits the wall there.
    t_wall = np.where(d[:, 0] > 0, (10.0 - o[0]) / np.where(d[:, 0] > 0, d[:, 0], 1.0), np.inf)
    p_wall = o + np.where(np.isfinite(t_wall), t_wall, 0.0)[:, None] * d
    reaches = np.isfinite(t_wall) & np.all((p_wall[:, 1:] >= 0) & (p_wall[:, 1:] < [16.0, 6.0]), axis=1)
    assert reaches.sum() > 50
    assert np.array_equal(hit, reaches)
    np.testing.assert_allclose(dist[reaches], t_wall[reaches], rtol=0, atol=1e-9)
    assert np.all(vox[reaches, 0] == 10)
    assert np.array_equal(vox[reaches], grid.points_to_indices(p_wall[reaches] + 1e-9 * d[reaches])[0])
    # Everything in front of the wall along every ray is visible (samples stay clear of x=10).
    for i in range(n):
        t_stop = min(t_wall[i], 40.0) - 1e-6
        t = np.linspace(0.0, t_stop, 400)
        idx, inside = grid.points_to_indices(o + t[:, None] * d[i])
        idx = idx[inside]
        assert vis[idx[:, 0], idx[:, 1], idx[:, 2]].all()
        assert np.all(idx[:, 0] <= 10)


# ---------------------------------------------------------------------------------------- brute force
def _reference_case(seed: int, n: int, with_range: bool):
    rng = np.random.default_rng(seed)
    grid = ODD
    h = 1e-3 * min(grid.voxel_size)
    occ = rng.random(grid.shape) < 0.08
    o, d = random_rays(rng, n, grid)
    t_lim = rng.uniform(0.3, 6.0, size=n) if with_range else np.full(n, np.inf)
    keep = []
    for i in range(n):
        t_in, t_out = box_interval(np.asarray(grid.range_min), np.asarray(grid.range_max), o[i], d[i])
        if not max(t_in, 0.0) < t_out:  # misses the grid (or only behind the origin): nothing ambiguous
            keep.append(i)
        elif well_separated(grid, o[i], d[i], min(t_lim[i], t_out), 3 * h, cut=t_lim[i] < t_out):
            keep.append(i)
    keep_a = np.asarray(keep)
    assert len(keep_a) > 0.5 * n  # the filter keeps most rays
    return grid, h, occ, o[keep_a], d[keep_a], t_lim[keep_a]


@pytest.mark.parametrize("with_range", [False, True])
def test_visibility_and_first_hit_match_dense_sampling(with_range: bool, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(raycast, "DEFAULT_CHUNK", 37)  # exercise chunking
    grid, h, occ, o, d, t_lim = _reference_case(7 + with_range, 500, with_range)
    lo, size = np.asarray(grid.range_min), np.asarray(grid.voxel_size)
    max_range: np.ndarray | None = t_lim if with_range else None
    scale = np.random.default_rng(3).uniform(0.1, 10.0, size=(len(d), 1))  # unnormalised directions
    vis = visibility_mask(grid, o, d * scale, occ, max_range=max_range)
    dist, vox, hit = first_hit(grid, o, d * scale, occ, max_range=max_range)

    ref_vis = np.zeros(grid.shape, dtype=bool)
    for i in range(len(o)):
        t_end = min(t_lim[i], 1e3)
        path, t_first = sampled_path(grid, o[i], d[i], t_end, h)
        hits = np.flatnonzero(occ[path[:, 0], path[:, 1], path[:, 2]]) if len(path) else np.zeros(0, int)
        upto = hits[0] + 1 if hits.size else len(path)
        ref_vis[tuple(path[:upto].T)] = True
        assert hit[i] == bool(hits.size), i
        if hits.size:
            k = hits[0]
            assert vox[i].tolist() == path[k].tolist(), i
            # The sample is at most one step past the true entry point.
            assert t_first[k] - h - 1e-9 <= dist[i] <= t_first[k] + 1e-9, i
            # Exact: slab entry of the hit voxel's box (clamped at the origin).
            box_lo = lo + path[k] * size
            t_box, _ = box_interval(box_lo, box_lo + size, o[i], d[i])
            assert dist[i] == pytest.approx(max(t_box, 0.0), abs=1e-9), i
        else:
            assert np.isinf(dist[i]) and vox[i].tolist() == [-1, -1, -1]
    assert ref_vis.any()
    assert np.array_equal(vis, ref_vis), (voxel_list(vis & ~ref_vis), voxel_list(ref_vis & ~vis))
    # Each ray alone too (the union covers most of this small grid and could hide a per-ray error).
    for i in range(len(o)):
        single = visibility_mask(grid, o[i], d[i : i + 1], occ, max_range=None if max_range is None else t_lim[i])
        path, _ = sampled_path(grid, o[i], d[i], min(t_lim[i], 1e3), h)
        hits = np.flatnonzero(occ[tuple(path.T)]) if len(path) else np.zeros(0, int)
        upto = hits[0] + 1 if hits.size else len(path)
        assert voxel_list(single) == sorted(set(tuple(int(c) for c in v) for v in path[:upto]))


def test_carve_matches_dense_sampling(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(raycast, "DEFAULT_CHUNK", 64)
    rng = np.random.default_rng(11)
    grid = ODD
    h = 1e-3 * min(grid.voxel_size)
    lo, hi = np.asarray(grid.range_min), np.asarray(grid.range_max)
    o_all = rng.uniform(lo - 1.0, hi + 1.0, size=(400, 3))
    e_all = rng.uniform(lo - 0.5, hi + 0.5, size=(400, 3))
    snap_origins_to_faces(rng, o_all, grid, 0.2)
    e_all[:20] = o_all[:20]  # zero-length segments
    keep = []
    for i in range(len(o_all)):
        seg = e_all[i] - o_all[i]
        length = float(np.linalg.norm(seg))
        if length == 0.0 or well_separated(grid, o_all[i], seg / length, length, 3 * h):
            keep.append(i)
    o, e = o_all[keep], e_all[keep]
    assert len(o) > 200
    free, end = carve(grid, o, e)
    free_c, end_c = carve_counts(grid, o, e)

    ref_free = np.zeros(grid.shape, dtype=np.int32)
    ref_end = np.zeros(grid.shape, dtype=np.int32)
    for i in range(len(o)):
        end_idx, end_in = grid.points_to_indices(e[i])
        if end_in:
            ref_end[tuple(end_idx)] += 1
        seg = e[i] - o[i]
        length = float(np.linalg.norm(seg))
        if length == 0.0:
            continue
        path, _ = sampled_path(grid, o[i], seg / length, length, h)
        for v in path:
            if end_in and np.array_equal(v, end_idx):
                break
            ref_free[tuple(v)] += 1
    assert ref_free.any() and ref_end.any()
    assert np.array_equal(free, ref_free > 0)
    assert np.array_equal(end, ref_end > 0)
    assert np.array_equal(free_c, ref_free)
    assert np.array_equal(end_c, ref_end)


def test_non_finite_and_extreme_inputs():
    occ = np.ones(SMALL.shape, dtype=bool)
    nan, inf = math.nan, math.inf
    o = np.array([[0.5, 0.5, 0.5], [nan, 0.5, 0.5], [0.5, 0.5, 0.5], [inf, 0.5, 0.5], [0.5, 1.5, 0.5]])
    d = np.array([[nan, 1.0, 0.0], [1.0, 0.0, 0.0], [inf, 0.0, 0.0], [-1.0, 0.0, 0.0], [1e-300, 0.0, 0.0]])
    with np.errstate(all="raise"):
        vis = visibility_mask(SMALL, o, d, occ)
        dist, _, hit = first_hit(SMALL, o, d, occ)
        free, end = carve(
            SMALL, o, np.array([[3.5, 0.5, 0.5], [1.5, 0.5, 0.5], [inf, 0.5, 0.5], [nan] * 3, [1e300, 1.5, 0.5]])
        )
    # Only the last ray (tiny but valid direction) sees anything: its own occupied voxel at distance 0.
    assert voxel_list(vis) == [(0, 1, 0)]
    assert hit.tolist() == [False, False, False, False, True] and dist[4] == 0.0
    # Far origins: exact at 1e9 m; at 1e300 m the grid is below float resolution (a miss, but no
    # overflow or warning).
    with np.errstate(all="raise"):
        dist, vox, hit = first_hit(SMALL, [[1e9, 2.5, 0.5], [1e300, 2.5, 0.5]], [[-1.0, 0.0, 0.0]] * 2, occ)
    assert hit.tolist() == [True, False] and vox[0].tolist() == [3, 2, 0] and dist[0] == 1e9 - 4.0
    # Segment 0 is fine; 1 has a NaN origin (its endpoint still counts); 2-3 have non-finite ends;
    # 4 is huge but finite: it crosses the whole row y=1.
    assert voxel_list(free) == sorted([(0, 0, 0), (1, 0, 0), (2, 0, 0)] + [(i, 1, 0) for i in range(4)])
    assert voxel_list(end) == [(1, 0, 0), (3, 0, 0)]


# ---------------------------------------------------------------------------------------- traversal_table
def test_the_traversal_table_lists_each_rays_voxels_in_order_padded_with_minus_one():
    # SMALL: flat index = 4 * i + j (Z = 1). From (0.5, 1.5): along +x through i = 0..3 at j = 1, then along -y
    # through j = 1, 0; a zero direction traverses nothing.
    origin = np.array([0.5, 1.5, 0.5])
    table = traversal_table(SMALL, origin, np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 0.0]]))
    assert table.tolist() == [[1, 5, 9, 13], [1, 0, -1, -1], [-1, -1, -1, -1]]
    # a 2.2 m limit stops the +x ray before it enters the voxel at x = 3 (entered at t = 2.5)
    assert traversal_table(SMALL, origin, np.array([[1.0, 0.0, 0.0]]), max_range=2.2).tolist() == [[1, 5, 9]]


def test_the_traversal_table_covers_what_visibility_marks_without_obstacles():
    rng = np.random.default_rng(4)
    origins = rng.uniform([-1.5, -2.1, -0.8], [2.0, 2.1, 1.2], size=(300, 3))
    directions = rng.normal(size=(300, 3))
    table = traversal_table(ODD, origins, directions)
    marked = np.zeros(ODD.num_voxels, dtype=bool)
    marked[table[table >= 0]] = True
    empty = np.zeros(ODD.shape, dtype=bool)
    np.testing.assert_array_equal(marked.reshape(ODD.shape), visibility_mask(ODD, origins, directions, empty))
    for row in table:  # each ray visits a voxel once, and its -1 padding only trails
        visited = row[row >= 0]
        assert len(set(visited.tolist())) == visited.size
        assert (row[visited.size :] == -1).all()
