"""A procedural urban street scene: static layout, moving agents and the ego trajectory.

World frame: the main road runs along +x, its centre line at y = 0, ground at z = 0.
Traffic drives on the right: lanes for +x at y = -1.75 and -5.25, for -x at +1.75 and +5.25.
Every object moves at constant velocity along its heading (static objects have speed 0), and
moving objects in one lane share a speed, so nothing ever collides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from occ_ros.core.transforms import yaw_transform
from occ_ros.core.vocabulary import OCC3D
from occ_training.synth.shapes import Shape, box, cone, cylinder, ground_rect, slab, sphere, surface_samples
from occ_training.synth.textures import Material as M

C = {name: OCC3D.index(name) for name in OCC3D.names}
LANE_WIDTH = 3.5
ROAD_HALF_WIDTH = 2 * LANE_WIDTH
FRAME_RATE_HZ = 12.0


@dataclass
class SceneObject:
    """A shape placed in the world, moving at constant speed along its heading.

    The pose at time t (seconds) is a translation to (x + speed*t*cos(yaw), y + speed*t*sin(yaw), 0)
    and a rotation by yaw about +z.
    """

    shape: Shape
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    speed: float = 0.0
    kind: str = "static"

    @property
    def is_static(self) -> bool:
        return self.speed == 0.0

    def pose(self, t: float) -> np.ndarray:
        """4x4 world_from_object at time t."""
        d = self.speed * t
        return yaw_transform(self.x + d * np.cos(self.yaw), self.y + d * np.sin(self.yaw), 0.0, self.yaw)


@dataclass
class EgoTrajectory:
    """The ego vehicle drives along +x at ``speed`` in lane ``y0``, weaving gently within its lane."""

    x0: float
    y0: float
    speed: float
    weave_amplitude: float = 0.25
    weave_period: float = 6.0

    def pose(self, t: float) -> np.ndarray:
        """4x4 world_from_ego (odom <- base_link) at time t."""
        w = 2 * np.pi / self.weave_period
        y = self.y0 + self.weave_amplitude * np.sin(w * t)
        dy = self.weave_amplitude * w * np.cos(w * t)
        return yaw_transform(self.x0 + self.speed * t, y, 0.0, float(np.arctan2(dy, self.speed)))


@dataclass
class World:
    """Everything the renderer and the ground truth need."""

    objects: list[SceneObject]
    ego: EgoTrajectory
    sun: np.ndarray
    seed: int
    _static_cache: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def static_objects(self) -> list[SceneObject]:
        return [o for o in self.objects if o.is_static]

    @property
    def moving_objects(self) -> list[SceneObject]:
        return [o for o in self.objects if not o.is_static]

    def static_samples(self, spacing: float) -> tuple[np.ndarray, np.ndarray]:
        """World-frame surface samples of all static objects (cached per spacing)."""
        key = f"samples@{spacing}"
        if key not in self._static_cache:
            pts, cls = [], []
            for obj in self.static_objects:
                p, c = surface_samples(obj.shape, spacing)
                pose = obj.pose(0.0)
                pts.append(p @ pose[:3, :3].T + pose[:3, 3])
                cls.append(c)
            self._static_cache[key] = (np.concatenate(pts), np.concatenate(cls))
        return self._static_cache[key]  # type: ignore[return-value]

    def moving_samples(self, spacing: float, t: float) -> tuple[np.ndarray, np.ndarray]:
        """World-frame surface samples of moving objects at time t."""
        key = f"moving@{spacing}"
        if key not in self._static_cache:
            self._static_cache[key] = [surface_samples(o.shape, spacing) for o in self.moving_objects]
        local: list[tuple[np.ndarray, np.ndarray]] = self._static_cache[key]  # type: ignore[assignment]
        pts, cls = [np.zeros((0, 3))], [np.zeros(0, np.uint8)]
        for obj, (p, c) in zip(self.moving_objects, local, strict=False):
            pose = obj.pose(t)
            pts.append(p @ pose[:3, :3].T + pose[:3, 3])
            cls.append(c)
        return np.concatenate(pts), np.concatenate(cls)


# ---------------------------------------------------------------------------- object builders
def _wheels(length: float, width: float, radius: float, color_seed: int, cls: int) -> list[Shape]:
    out = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            out.append(
                cylinder(
                    radius,
                    0.24,
                    (sx * (length / 2 - radius - 0.35), sy * (width / 2 - 0.12), radius),
                    cls,
                    M.TYRE,
                    seed=color_seed,
                    axis="y",
                )
            )
    return out


def car(rng: np.random.Generator, seed: int) -> Shape:
    length, width, height = rng.uniform(4.0, 4.9), rng.uniform(1.75, 1.95), rng.uniform(1.4, 1.7)
    color = _vehicle_color(rng)
    c = C["car"]
    body = box((length, width, 0.7), (0, 0, 0.3 + 0.35), c, M.PAINT, color, seed)
    cab_len = length * rng.uniform(0.45, 0.6)
    cabin = box(
        (cab_len, width * 0.9, height - 1.0), (-0.1 * length, 0, 1.0 + (height - 1.0) / 2), c, M.GLASS, color, seed
    )
    return Shape.concat([body, cabin, *_wheels(length, width, 0.33, seed, c)])


def bus(rng: np.random.Generator, seed: int) -> Shape:
    length, width, height = rng.uniform(10.0, 12.5), 2.55, rng.uniform(3.0, 3.4)
    color = (
        np.array([rng.uniform(0.6, 0.9), rng.uniform(0.1, 0.3), 0.1])
        if rng.random() < 0.5
        else np.array([0.9, 0.85, 0.2])
    )
    c = C["bus"]
    body = box((length, width, height - 0.35), (0, 0, 0.35 + (height - 0.35) / 2), c, M.FACADE, color, seed)
    return Shape.concat([body, *_wheels(length, width, 0.5, seed, c)])


def truck_with_trailer(rng: np.random.Generator, seed: int) -> Shape:
    """A tractor unit (truck) towing a box trailer (trailer); the origin is the tractor's centre."""
    color = _vehicle_color(rng)
    t, tr = C["truck"], C["trailer"]
    cab = box((2.4, 2.5, 3.0), (0, 0, 0.5 + 1.5), t, M.PAINT, color, seed)
    chassis = box((1.8, 2.2, 0.5), (-2.0, 0, 0.75), t, M.METAL, (0.25, 0.25, 0.25), seed)
    trail_len = rng.uniform(8.0, 11.0)
    trailer = box(
        (trail_len, 2.55, 3.0), (-1.3 - trail_len / 2, 0, 1.0 + 1.5), tr, M.CONCRETE, (0.85, 0.85, 0.85), seed + 1
    )
    wheels = _wheels(2.4, 2.5, 0.5, seed, t) + [
        w.transformed(yaw_transform(-1.3 - trail_len + 2.0, 0, 0, 0)) for w in _wheels(2.5, 2.5, 0.5, seed, tr)
    ]
    return Shape.concat([cab, chassis, trailer, *wheels])


def box_truck(rng: np.random.Generator, seed: int) -> Shape:
    length = rng.uniform(6.0, 8.0)
    c = C["truck"]
    cab = box((2.0, 2.3, 2.6), (length / 2 - 1.0, 0, 0.45 + 1.3), c, M.PAINT, _vehicle_color(rng), seed)
    cargo = box((length - 2.2, 2.45, 3.0), (-1.1, 0, 0.6 + 1.5), c, M.CONCRETE, (0.8, 0.8, 0.75), seed + 1)
    return Shape.concat([cab, cargo, *_wheels(length, 2.3, 0.45, seed, c)])


def construction_vehicle(rng: np.random.Generator, seed: int) -> Shape:
    c = C["construction_vehicle"]
    yellow = (0.95, 0.75, 0.1)
    base = box((4.0, 2.6, 1.2), (0, 0, 0.9), c, M.PAINT, (0.2, 0.2, 0.2), seed)
    house = box((2.5, 2.4, 1.8), (-0.5, 0, 1.5 + 0.9), c, M.PAINT, yellow, seed)
    boom = box((4.0, 0.5, 0.5), (2.5, 0, 3.2), c, M.PAINT, yellow, seed)
    arm = box((0.5, 0.5, 2.5), (4.3, 0, 2.0), c, M.PAINT, yellow, seed)
    return Shape.concat([base, house, boom, arm])


def motorcycle(rng: np.random.Generator, seed: int) -> Shape:
    c = C["motorcycle"]
    frame = box((1.6, 0.35, 0.5), (0, 0, 0.65), c, M.PAINT, _vehicle_color(rng), seed)
    wheels = [cylinder(0.32, 0.15, (sx * 0.7, 0, 0.32), c, M.TYRE, seed=seed, axis="y") for sx in (-1, 1)]
    rider = box((0.5, 0.45, 0.75), (-0.15, 0, 1.25), c, M.CLOTH, _cloth_color(rng), seed)
    helmet = sphere(0.16, (-0.05, 0, 1.78), c, M.PAINT, (0.1, 0.1, 0.1), seed)
    return Shape.concat([frame, *wheels, rider, helmet])


def bicycle(rng: np.random.Generator, seed: int) -> Shape:
    c = C["bicycle"]
    frame = box((1.0, 0.08, 0.08), (0, 0, 0.7), c, M.METAL, _vehicle_color(rng), seed)
    seat_post = box((0.06, 0.06, 0.45), (-0.25, 0, 0.9), c, M.METAL, (0.2, 0.2, 0.2), seed)
    wheels = [cylinder(0.34, 0.05, (sx * 0.55, 0, 0.34), c, M.TYRE, seed=seed, axis="y") for sx in (-1, 1)]
    rider = box((0.35, 0.4, 0.7), (-0.1, 0, 1.45), c, M.CLOTH, _cloth_color(rng), seed)
    legs = box((0.25, 0.3, 0.5), (0, 0, 0.95), c, M.CLOTH, _cloth_color(rng) * 0.5, seed)
    head = sphere(0.12, (-0.05, 0, 1.95), c, M.SKIN, _skin_color(rng), seed)
    return Shape.concat([frame, seat_post, *wheels, rider, legs, head])


def pedestrian(rng: np.random.Generator, seed: int) -> Shape:
    c = C["pedestrian"]
    h = rng.uniform(1.55, 1.9)
    cloth = _cloth_color(rng)
    legs = box((0.25, 0.38, h * 0.47), (0, 0, h * 0.235), c, M.CLOTH, cloth, seed)
    torso = box((0.28, 0.46, h * 0.35), (0, 0, h * 0.47 + h * 0.175), c, M.CLOTH, cloth, seed)
    head = sphere(h * 0.065, (0, 0, h * 0.82 + h * 0.065), c, M.SKIN, _skin_color(rng), seed)
    return Shape.concat([legs, torso, head])


def barrier(rng: np.random.Generator, seed: int) -> Shape:
    c = C["barrier"]
    base = box((2.0, 0.6, 0.35), (0, 0, 0.175), c, M.CONCRETE, (0.75, 0.74, 0.7), seed)
    top = box((2.0, 0.25, 0.55), (0, 0, 0.35 + 0.275), c, M.CONCRETE, (0.8, 0.3, 0.25), seed)
    return Shape.concat([base, top])


def traffic_cone(rng: np.random.Generator, seed: int) -> Shape:
    c = C["traffic_cone"]
    base = box((0.4, 0.4, 0.04), (0, 0, 0.02), c, M.CONE, (0.9, 0.4, 0.1), seed)
    return Shape.concat([base, cone(0.16, 0.7, (0, 0, 0.04), c, M.CONE, seed=seed)])


def trash_bin(rng: np.random.Generator, seed: int) -> Shape:
    return cylinder(0.3, 1.0, (0, 0, 0.5), C["others"], M.METAL, (0.15, 0.35, 0.2), seed, sections=10)


def tree(rng: np.random.Generator, seed: int) -> Shape:
    c = C["vegetation"]
    trunk_h = rng.uniform(1.8, 3.0)
    crown_r = rng.uniform(1.4, 2.8)
    trunk = cylinder(
        rng.uniform(0.12, 0.25), trunk_h, (0, 0, trunk_h / 2), c, M.BARK, (0.4, 0.28, 0.18), seed, sections=8
    )
    green = np.array([rng.uniform(0.15, 0.3), rng.uniform(0.4, 0.6), rng.uniform(0.1, 0.2)])
    crown = sphere(crown_r, (0, 0, trunk_h + crown_r * 0.7), c, M.FOLIAGE, green, seed, squash=rng.uniform(0.8, 1.2))
    return Shape.concat([trunk, crown])


def street_pole(rng: np.random.Generator, seed: int, facing: float) -> Shape:
    """Lamp post or sign (manmade); ``facing`` = +1/-1 is the side of the road it leans towards."""
    c = C["manmade"]
    grey = (0.45, 0.47, 0.5)
    pole = cylinder(0.08, 6.0, (0, 0, 3.0), c, M.METAL, grey, seed, sections=8)
    if rng.random() < 0.5:
        arm = box((0.15, 1.8, 0.12), (0, facing * 0.9, 5.9), c, M.METAL, grey, seed)
        return Shape.concat([pole, arm])
    sign = box((0.06, 0.8, 0.8), (0, 0, 2.6), c, M.PAINT, (0.1, 0.3, 0.8), seed)
    return Shape.concat([cylinder(0.05, 2.6, (0, 0, 1.3), c, M.METAL, grey, seed, sections=8), sign])


def _vehicle_color(rng: np.random.Generator) -> np.ndarray:
    palette = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.1, 0.2, 0.6],
            [0.9, 0.9, 0.9],
            [0.1, 0.1, 0.1],
            [0.5, 0.5, 0.55],
            [0.2, 0.5, 0.3],
            [0.85, 0.6, 0.1],
        ]
    )
    return palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1)


def _cloth_color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.1, 0.9, 3)


def _skin_color(rng: np.random.Generator) -> np.ndarray:
    return np.array([0.9, 0.7, 0.55]) * rng.uniform(0.5, 1.05)


# ---------------------------------------------------------------------------- the street
@dataclass
class StreetLayout:
    """Cross-section and extent of the generated street."""

    x_min: float
    x_max: float
    sidewalk_width: float
    verge_width: float
    setback: float
    cross_streets: Sequence[float]


def urban_world(seed: int, duration_s: float, margin: float = 100.0) -> World:
    """A street scene long enough for ``duration_s`` seconds of ego driving plus ``margin`` metres of view.

    Deterministic for a given seed, and prefix-stable: each part of the layout draws from its own
    random stream and is laid out from the start of the street onwards, so a longer sequence of the
    same seed shows the same world (and the same ground truth) in its first frames.
    """
    streams = iter(np.random.SeedSequence([seed, 0x0CC]).spawn(64))

    def rng() -> np.random.Generator:
        return np.random.default_rng(next(streams))

    top = rng()
    ego_speed = float(top.uniform(6.0, 9.0))
    ego = EgoTrajectory(x0=0.0, y0=-LANE_WIDTH / 2, speed=ego_speed, weave_amplitude=float(top.uniform(0.1, 0.3)))
    travel = ego_speed * duration_s
    layout = StreetLayout(
        x_min=-margin,
        x_max=travel + margin,
        sidewalk_width=float(top.uniform(2.8, 4.0)),
        verge_width=float(top.uniform(2.0, 5.0)),
        setback=float(top.uniform(3.0, 8.0)),
        cross_streets=[float(top.uniform(25.0, 60.0))],
    )
    zone_start = float(top.uniform(-10.0, 50.0))
    sun = np.array([top.uniform(-0.6, 0.6), top.uniform(-0.6, 0.6), 1.0])
    objects: list[SceneObject] = []
    objects += _ground(layout, rng)
    objects += _roadside(layout, rng)
    objects += _traffic(layout, ego, duration_s, zone_start, rng)
    return World(objects=objects, ego=ego, sun=sun / np.linalg.norm(sun), seed=seed)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(1 << 30))


def _ground(layout: StreetLayout, rng: Callable[[], np.random.Generator]) -> list[SceneObject]:
    """Road, sidewalks, verges and the land behind them, partitioning the ground with no overlap."""
    x0, x1 = layout.x_min, layout.x_max
    sw, vw = layout.sidewalk_width, layout.verge_width
    far = ROAD_HALF_WIDTH + sw + vw + layout.setback + 40.0
    r = rng()
    shapes: list[Shape] = [
        ground_rect(x0, x1, -ROAD_HALF_WIDTH, ROAD_HALF_WIDTH, 0.0, C["driveable_surface"], M.ASPHALT, seed=_seed(r))
    ]
    cuts = sorted((xc - ROAD_HALF_WIDTH, xc + ROAD_HALF_WIDTH) for xc in layout.cross_streets)
    spans = _complement(x0, x1, cuts)
    cross: list[SceneObject] = []
    for side in (-1, 1):
        r = rng()
        for xc in layout.cross_streets:  # the cross street, built along its own x and turned to run along y
            lo, hi = sorted((side * ROAD_HALF_WIDTH, side * far))
            road = ground_rect(
                lo, hi, -ROAD_HALF_WIDTH, ROAD_HALF_WIDTH, 0.0, C["driveable_surface"], M.ASPHALT, seed=_seed(r)
            )
            cross.append(SceneObject(road, x=xc, y=0.0, yaw=np.pi / 2, kind="cross_street"))
        y_sw = (side * ROAD_HALF_WIDTH, side * (ROAD_HALF_WIDTH + sw))
        y_verge = (side * (ROAD_HALF_WIDTH + sw), side * (ROAD_HALF_WIDTH + sw + vw))
        y_land = (side * (ROAD_HALF_WIDTH + sw + vw), side * far)
        for a, b in spans:
            lo, hi = sorted(y_sw)
            shapes.append(slab(a, b, lo, hi, 0.15, C["sidewalk"], M.SIDEWALK, seed=_seed(r)))
            # verge: alternating grass (terrain) and parking lots / islands (other_flat)
            x = a
            while x < b:
                seg = min(b, x + float(r.uniform(10.0, 30.0)))
                lo, hi = sorted(y_verge)
                if r.random() < 0.65:
                    shapes.append(ground_rect(x, seg, lo, hi, 0.0, C["terrain"], M.GRASS, seed=_seed(r)))
                else:
                    shapes.append(ground_rect(x, seg, lo, hi, 0.0, C["other_flat"], M.PARKING, seed=_seed(r)))
                x = seg
            lo, hi = sorted(y_land)
            shapes.append(ground_rect(a, b, lo, hi, 0.0, C["terrain"], M.GRASS, (0.5, 0.5, 0.5), _seed(r), tile=6.0))
    return [SceneObject(Shape.concat(shapes), kind="ground"), *cross]


def _roadside(layout: StreetLayout, rng: Callable[[], np.random.Generator]) -> list[SceneObject]:
    """Buildings, walls, hedges, trees, poles and bins along both sides."""
    objects: list[SceneObject] = []
    sw, vw = layout.sidewalk_width, layout.verge_width
    blocked = [(xc - ROAD_HALF_WIDTH - 2.0, xc + ROAD_HALF_WIDTH + 2.0) for xc in layout.cross_streets]
    for side in (-1, 1):
        front = ROAD_HALF_WIDTH + sw + vw + layout.setback
        r = rng()
        x = layout.x_min
        while x < layout.x_max:  # buildings and walls
            width = float(r.uniform(8.0, 25.0))
            a, b = x, min(layout.x_max, x + width)
            x = b + float(r.uniform(0.0, 6.0))
            if _overlaps(a, b, blocked):
                continue
            depth = float(r.uniform(8.0, 15.0))
            kind = r.random()
            if kind < 0.75:
                height = float(r.uniform(5.0, 18.0))
                colour = r.uniform(0.45, 0.85, 3)
                shape = Shape.concat(
                    [
                        box(
                            (b - a, depth, height),
                            (0, 0, height / 2),
                            C["manmade"],
                            M.FACADE,
                            colour,
                            _seed(r),
                            bottom_in_gt=False,
                        ),
                    ]
                )
                objects.append(SceneObject(shape, x=(a + b) / 2, y=side * (front + depth / 2), kind="building"))
            elif kind < 0.9:
                shape = box(
                    (b - a, 0.3, 2.2),
                    (0, 0, 1.1),
                    C["manmade"],
                    M.CONCRETE,
                    (0.7, 0.68, 0.64),
                    _seed(r),
                    bottom_in_gt=False,
                )
                objects.append(SceneObject(shape, x=(a + b) / 2, y=side * (front + 0.15), kind="wall"))
            else:
                shape = box(
                    (b - a, 1.0, 1.3),
                    (0, 0, 0.65),
                    C["vegetation"],
                    M.FOLIAGE,
                    (0.2, 0.5, 0.15),
                    _seed(r),
                    bottom_in_gt=False,
                )
                objects.append(SceneObject(shape, x=(a + b) / 2, y=side * (front + 0.5), kind="hedge"))
        r = rng()
        x = layout.x_min + float(r.uniform(0, 8))
        while x < layout.x_max:  # trees in the verge
            if not _overlaps(x - 3, x + 3, blocked):
                y = side * (ROAD_HALF_WIDTH + sw + vw / 2)
                objects.append(SceneObject(tree(r, _seed(r)), x=x, y=y, kind="tree"))
            x += float(r.uniform(8.0, 18.0))
        r = rng()
        x = layout.x_min + float(r.uniform(0, 10))
        while x < layout.x_max:  # poles and bins at the kerb-side of the sidewalk
            if not _overlaps(x - 1, x + 1, blocked):
                y = side * (ROAD_HALF_WIDTH + 0.4)
                if r.random() < 0.7:
                    objects.append(SceneObject(street_pole(r, _seed(r), -side), x=x, y=y, kind="pole"))
                else:
                    objects.append(SceneObject(trash_bin(r, _seed(r)), x=x, y=y, kind="bin"))
            x += float(r.uniform(12.0, 25.0))
    return objects


def _traffic(
    layout: StreetLayout, ego: EgoTrajectory, duration: float, zone_a: float, rng: Callable[[], np.random.Generator]
) -> list[SceneObject]:
    """Vehicles in lanes, a construction zone, cyclists, pedestrians and parked cars."""
    objects: list[SceneObject] = []
    x0, x1 = layout.x_min, layout.x_max
    v = ego.speed
    r = rng()
    # ego's lane: a lead vehicle and a follower at ego speed
    objects.append(SceneObject(car(r, _seed(r)), x=float(r.uniform(14, 24)), y=ego.y0, speed=v, kind="car"))
    objects.append(SceneObject(car(r, _seed(r)), x=-float(r.uniform(12, 20)), y=ego.y0, speed=v, kind="car"))
    # outer lane +x: slower traffic (cars, a box truck, motorcycles) that the ego overtakes
    slow = v * float(r.uniform(0.45, 0.7))
    makers = [car, car, box_truck, motorcycle, car]
    objects += _lane(makers, -1.5 * LANE_WIDTH, 0.0, slow, x0, x1 + v * duration, rng(), gap=(10, 25))
    # bicycles hugging the kerb of the +x side
    objects += _lane([bicycle], -ROAD_HALF_WIDTH + 0.5, 0.0, 4.0, x0 + 20, x1, rng(), gap=(25, 60))
    # oncoming inner lane: cars, buses, trucks with trailers
    makers = [car, car, bus, truck_with_trailer, car, motorcycle]
    objects += _lane(makers, LANE_WIDTH / 2, np.pi, 9.0, x0, x1 + 9.0 * duration, rng(), gap=(15, 35))
    # oncoming outer lane: a construction zone with barriers, cones and an excavator; parked cars elsewhere
    r = rng()
    zone_b = zone_a + float(r.uniform(20, 35))
    y_zone = 1.5 * LANE_WIDTH
    for x in np.arange(zone_a, zone_b, 2.2):
        objects.append(SceneObject(barrier(r, _seed(r)), x=float(x), y=y_zone + 1.0, kind="barrier"))
    for x in np.arange(zone_a - 6, zone_b + 6, 3.0):
        objects.append(SceneObject(traffic_cone(r, _seed(r)), x=float(x), y=y_zone - 1.4, kind="cone"))
    objects.append(
        SceneObject(
            construction_vehicle(r, _seed(r)), x=(zone_a + zone_b) / 2, y=y_zone + 0.2, yaw=np.pi, kind="construction"
        )
    )
    objects.append(SceneObject(trash_bin(r, _seed(r)), x=zone_a + 3.0, y=y_zone + 0.2, kind="bin"))
    r = rng()
    x = x0
    while x < x1:
        x += float(r.uniform(7, 20))
        if zone_a - 12 < x < zone_b + 12 or any(abs(x - xc) < ROAD_HALF_WIDTH + 6 for xc in layout.cross_streets):
            continue
        objects.append(SceneObject(car(r, _seed(r)), x=x, y=y_zone + 0.4, yaw=np.pi, kind="parked_car"))
    # cars waiting in the cross street
    r = rng()
    for xc in layout.cross_streets:
        for side in (-1, 1):
            for k in range(int(r.integers(1, 3))):
                y = side * (ROAD_HALF_WIDTH + 4 + k * 6.5)
                objects.append(
                    SceneObject(car(r, _seed(r)), x=xc + side * LANE_WIDTH / 2, y=y, yaw=-side * np.pi / 2, kind="car")
                )
    # pedestrians walking on both sidewalks, each on its own line so they never meet
    sw = layout.sidewalk_width
    for side in (-1, 1):
        lines = np.linspace(ROAD_HALF_WIDTH + 0.9, ROAD_HALF_WIDTH + sw - 0.5, 3)
        for i, offset in enumerate(lines):
            direction = 0.0 if i % 2 == 0 else np.pi
            r = rng()
            speed = float(r.uniform(1.0, 1.6))
            objects += _lane(
                [pedestrian], side * offset, direction, speed, x0, x1, r, gap=(8, 30), cross=layout.cross_streets
            )
    return objects


def _lane(
    makers: Sequence[Callable[[np.random.Generator, int], Shape]],
    y: float,
    yaw: float,
    speed: float,
    x0: float,
    x1: float,
    r: np.random.Generator,
    gap: tuple[float, float] = (10, 30),
    cross: Sequence[float] = (),
) -> list[SceneObject]:
    """Objects spaced along a line y from x0 to x1, all moving at ``speed`` along ``yaw``."""
    out = []
    x = x0 + float(r.uniform(0, gap[1]))
    while x < x1:
        maker = makers[int(r.integers(len(makers)))]
        if not any(abs(x - xc) < ROAD_HALF_WIDTH + 1 for xc in cross):
            out.append(SceneObject(maker(r, _seed(r)), x=x, y=y, yaw=yaw, speed=speed, kind=maker.__name__))
        x += float(r.uniform(*gap)) + 12.0
    return out


def _complement(a: float, b: float, cuts: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    spans, x = [], a
    for lo, hi in cuts:
        if lo > x:
            spans.append((x, min(lo, b)))
        x = max(x, hi)
    if x < b:
        spans.append((x, b))
    return spans


def _overlaps(a: float, b: float, intervals: Sequence[tuple[float, float]]) -> bool:
    return any(a < hi and b > lo for lo, hi in intervals)


def custom_world(objects: Sequence[SceneObject], ego: EgoTrajectory | None = None, seed: int = 0) -> World:
    """A world from hand-placed objects (tests); the ego stands still at the origin by default."""
    sun = np.array([0.3, 0.2, 1.0])
    return World(
        list(objects), ego or EgoTrajectory(0.0, 0.0, 0.0, weave_amplitude=0.0), sun / np.linalg.norm(sun), seed
    )
