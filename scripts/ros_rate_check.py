"""Feed a running occupancy_node a recording at a fixed rate and report what it did (needs a sourced ROS 2).

The recording's images, CameraInfo and tf are published with rclpy, together with ``/clock``, frame after frame
at ``--rate`` Hz for ``--seconds`` s (re-stamped on every pass so that time keeps moving forward): a stand-in for
``ros2 bag play --clock --loop`` where rosbag2 is not installed. Then the node's last diagnostics are printed.
Run ``ros2 topic hz /occupancy_node/voxels`` beside it for the output rate. docs/node.md ("Verified under a real
ROS 2") gives the whole procedure and its numbers::

    ros2 launch occ_ros occupancy.launch.py model:=$PWD/out/demo/export/demo.onnx use_sim_time:=true &
    python scripts/ros_rate_check.py --bag out/demo/data/bag --rate 12 --seconds 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the launch tests' rclpy player

from ros_harness import Player, bag_frames, status_values  # noqa: E402

KEYS = (
    "frames received",
    "frames processed",
    "worker dropped",
    "silent inputs",
    "wait p50 [ms]",
    "inference p50 [ms]",
    "end_to_end p50 [ms]",
    "end_to_end p99 [ms]",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bag", type=Path, required=True, help="an occ synth recording (MCAP)")
    parser.add_argument("--rate", type=float, default=12.0, help="frames per second (default 12)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to play (default 30)")
    args = parser.parse_args()
    player = Player()
    try:
        static, frames = bag_frames(args.bag)
        stamps = sorted(frames)
        if not player.advertise(static + frames[stamps[0]], timeout=60):
            print("the node did not subscribe to every input within 60 s", file=sys.stderr)
            return 1
        for topic, msgtype, raw in static:
            player.publish_raw(topic, msgtype, raw)
        time.sleep(0.5)
        span = stamps[-1] - stamps[0] + (stamps[1] - stamps[0] if len(stamps) > 1 else 10**8)
        start, played = time.monotonic(), 0
        while time.monotonic() - start < args.seconds:
            index, passes = played % len(stamps), played // len(stamps)
            stamp = stamps[index] + passes * span

            def restamp(msg: object, stamp: int = stamp) -> None:
                header = msg.transforms[0].header if hasattr(msg, "transforms") else msg.header  # type: ignore[attr-defined]
                header.stamp.sec, header.stamp.nanosec = divmod(stamp, 10**9)

            records = frames[stamps[index]]
            player.play_frame(stamp, records, edits={t: restamp for t, _, _ in records}, wait_s=None)
            played += 1
            time.sleep(max(0.0, start + played / args.rate - time.monotonic()))
        elapsed = time.monotonic() - start
        player.wait_for(lambda: False, 2.0)  # the last clouds and a diagnostics update
        print(
            f"published {played} frames in {elapsed:.1f} s ({played / elapsed:.2f} Hz); clouds received: "
            f"{len(player.heard.clouds)}"
        )
        status = player.heard.last_status()
        if status is not None:
            values = status_values(status)
            print(f"diagnostics: level {status.level[0]} '{status.message}'")
            for key in KEYS:
                print(f"  {key}: {values.get(key, '-')}")
        return 0
    finally:
        player.close()


if __name__ == "__main__":
    sys.exit(main())
