"""bench/speed_table.py: the README block is rebuilt from the benchmarks' JSON, rows without JSON left out."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("speed_table", REPO / "bench" / "speed_table.py")
assert spec is not None and spec.loader is not None
speed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(speed)


def test_the_block_between_the_markers_is_rebuilt_from_the_json(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    (bench / "export").mkdir(parents=True)
    (bench / "export" / "demo_onnxruntime_cpu_fp32.json").write_text(json.dumps({"p50_ms": 21.04}))
    (bench / "export" / "occ3d_onnxruntime_cpu_fp32.json").write_text(json.dumps({"p50_ms": 712.4}))
    row = {"node-side total (p50)": 9.44, "node-side total (p99)": 11.25}
    (bench / "pipeline.json").write_text(json.dumps({"raw": row, "jpeg": {**row, "node-side total (p50)": 18.0}}))
    labels = [{"depth": "relative", "calibration": "frame", "frames_per_second": 1.234}]
    (bench / "labels.json").write_text(json.dumps({"results": labels}))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{speed.BEGIN}\nold table\n{speed.END}\nafter\n")
    assert speed.main(["--bench", str(bench), "--readme", str(readme), "--check"]) == 1  # differs: nothing written
    assert "old table" in readme.read_text()
    assert speed.main(["--bench", str(bench), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\nbefore\n") and text.endswith(f"{speed.END}\nafter\n") and "old table" not in text
    assert "| demo network, ONNX Runtime CPU (6×112×200 → 80×80×8) | 21.0 ms | `bench/export_bench.py` |" in text
    assert "| 712 ms |" in text  # >= 100 ms: whole milliseconds
    assert "| 9.4 ms (p99 11.2) |" in text and "| 18.0 ms (p99 11.2) |" in text
    assert "| 1.23 frames/s |" in text
    assert "training step" not in text and "GPU" not in text  # no train.json, no gpu.json: rows left out
    assert speed.main(["--bench", str(bench), "--readme", str(readme), "--check"]) == 0


def test_a_readme_without_the_markers_is_an_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no block\n")
    assert speed.main(["--bench", str(tmp_path), "--readme", str(readme)]) == 1
    assert readme.read_text() == "no block\n"
