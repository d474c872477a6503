"""Smoke test of bench/inference.py on the small mini-yolov2 cfg (one quick round, < 10 s)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import TESTS_DIR, golden_dir

pytest.importorskip("cv2")


def _bench_module():
    path = TESTS_DIR.parent / "bench" / "inference.py"
    spec = importlib.util.spec_from_file_location("pydarknet_bench_inference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_quick_run_writes_results(tmp_path, capsys):
    bench = _bench_module()
    out = tmp_path / "inference.json"
    argv = ["--quick", "--cfg-dir", str(golden_dir() / "mini_yolov2_synth"), "--models", "mini-yolov2",
            "--batches", "1,2", "--size", "128", "--threads", "1", "--out", str(out)]
    result = bench.main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert out.with_suffix(".md").is_file()

    assert result["command"] == "python3 bench/inference.py " + " ".join(argv)
    machine = result["machine"]
    for key in ("cpu_count", "torch", "opencv", "threads"):
        assert machine[key]
    assert machine["threads"] == machine["torch_num_threads"] == 1
    assert result["cfgs"]["mini-yolov2"]["shown"].endswith("mini-yolov2.cfg")
    saved = {k: v for k, v in json.loads(out.read_text()).items() if k != "command"}  # the command is argv
    assert str(TESTS_DIR.parent) not in json.dumps(saved)  # no absolute paths of the machine

    cases = result["cases"]
    assert [(c["model"], c["batch"]) for c in cases] == [("mini-yolov2", 1), ("mini-yolov2", 2)]
    for case in cases:
        assert case["reps"] == 3 and case["warmup"] == 1
        contenders = [c for c in bench.CONTENDERS if case["batch"] == 1 or c not in bench.BATCH1_ONLY]
        assert set(case["median_ms"]) == set(contenders)
        for c in contenders:
            assert len(case["times_ms"][c]) == 3
            assert case["median_ms"][c] > 0
        assert case["ratios"]["torch/opencv"] == pytest.approx(case["median_ms"]["torch"] / case["median_ms"]["opencv"])
        # The contenders compute the same network.
        check = case["check_batch1"]
        assert check["plain_folded_vs_torch_region_max_abs"] <= 1e-4
        assert check["onnxruntime_vs_torch_region_max_abs"] <= 1e-4
        assert check["exact_vs_torch_region_max_abs"] <= 1e-4
        assert check["opencv_vs_torch_last_conv_max_abs"] <= 1e-4
    assert "exact/opencv" in cases[0]["ratios"] and "detect/opencv" in cases[0]["ratios"]
    assert "exact" not in cases[1]["median_ms"]
