"""bench/gpu_check.py: the one device check. Its dry run works on a CPU, and parts cannot sink each other."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_budgets_fit_eight_minutes_and_cover_every_figure_asked_for() -> None:
    check = _module()
    assert sum(part.budget_s for part, _ in check.PARTS) <= check.TOTAL_BUDGET_S == 480
    names = {part.name for part, _ in check.PARTS}
    assert names == {"environment", "kernel_build", "pytest_gpu", "ops", "ops_compile", "step_ref", "step_cuda",
                     "generate", "train_1kimg"}


def test_a_part_past_its_budget_is_killed_and_the_next_part_still_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = _module()
    parts = {part.name: (part, fn) for part, fn in check.PARTS}
    slow_part, slow_fn = parts["step_ref"]
    monkeypatch.setattr(check, "PARTS", [
        (check.Part(slow_part.name, slow_part.budget_s, False, slow_part.what, dry_budget_s=0.5), slow_fn),
        parts["environment"],
    ])
    report = check.check(tmp_path / "out", dry_run=True, data=tmp_path / "no-data")
    assert report["parts"]["step_ref"]["status"] == "timeout"
    assert report["parts"]["environment"]["status"] == "ok"
    assert report["parts"]["environment"]["results"]["torch"]
    saved = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert saved["parts"]["step_ref"]["status"] == "timeout"
    assert "| step_ref |" in (tmp_path / "out" / "gpu_check.md").read_text()


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_a_full_check_without_a_gpu_is_refused_with_the_way_out(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], check=False, capture_output=True,
                          text=True)
    assert done.returncode == 2 and "--dry-run" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.slow
def test_dry_run_lists_every_part_and_runs_the_cpu_ones(tmp_path: Path) -> None:
    check = _module()
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    statuses = {name: entry["status"] for name, entry in report["parts"].items()}
    assert statuses == {part.name: "skipped" if part.gpu_only else "ok" for part, _ in check.PARTS}
    results = {name: entry.get("results", {}) for name, entry in report["parts"].items()}
    assert {"p0_fp32", "p0.5_fp32"} <= set(results["step_ref"])
    assert all(results["step_ref"][key]["sec_per_kimg"] > 0 for key in ("p0_fp32", "p0.5_fp32"))
    assert all(row["ref_s"] > 0 for row in results["ops"]["rows"])
    assert results["generate"]["result"]["batched"]["images_per_s"] > 0
    assert results["train_1kimg"]["swd"]["swd"] > 0 and results["train_1kimg"]["nonfinite_steps"] == 0
    summary = (tmp_path / "gpu_check.md").read_text()
    assert "dry run" in summary and all(f"| {part.name} |" in summary for part, _ in check.PARTS)
    assert "sec/kimg" in summary and "swd" in summary


def test_an_ops_part_cut_off_keeps_the_ops_it_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check = _module()
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import ops as ops_bench  # bench/ops.py

    cases = ops_bench.op_cases

    def first_case_then_a_hang(shapes: object, device: object) -> list[dict[str, object]]:
        def cut_off(x: object, impl: str) -> object:
            raise TimeoutError("the part's budget ran out here")

        first = cases(shapes, device)[0]
        return [first, {"name": "cut off", "x": first["x"], "op": cut_off, "before": None}]

    monkeypatch.setattr(ops_bench, "op_cases", first_case_then_a_hang)
    recorder = check.Recorder(tmp_path / "ops.json")
    with pytest.raises(TimeoutError):
        check.part_ops(recorder, True, None)
    rows = json.loads((tmp_path / "ops.json").read_text())["rows"]
    assert [row["op"] for row in rows] == [cases(check._op_shapes(True), "cpu")[0]["name"]]
    assert rows[0]["ref_s"] > 0


def test_pytest_gpu_counts_outcomes_as_they_come(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check = _module()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_fake_gpu.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.gpu\ndef test_passes():\n    pass\n\n"
        "@pytest.mark.gpu\ndef test_fails():\n    assert False\n\n"
        "def test_not_gpu():\n    pass\n"
    )
    monkeypatch.setattr(check, "ROOT", tmp_path)
    recorder = check.Recorder(tmp_path / "pytest_gpu.json")
    with pytest.raises(RuntimeError, match="1 failed, 1 passed, 1 deselected"):
        check.part_pytest_gpu(recorder, False, None)
    saved = json.loads((tmp_path / "pytest_gpu.json").read_text())
    assert saved["so_far"] == {"passed": 1, "failed": 1}
    assert saved["counts"] == {"failed": 1, "passed": 1, "deselected": 1} and saved["exit_code"] == 1


def test_the_gpu_training_run_uses_the_timed_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check = _module()
    commands: dict[str, list[str]] = {}
    monkeypatch.setattr(check, "_cli", lambda rec, name, command: commands.__setitem__(name, command))
    args = check.argparse.Namespace(part_dir=str(tmp_path), data=tmp_path)
    with pytest.raises(FileNotFoundError):  # no stats.jsonl: the CLI steps were only recorded
        check.part_train_1kimg(check.Recorder(tmp_path / "train.json"), False, args)
    train = commands["train_gan"]
    settings = {flag: train[train.index(flag) + 1] for flag in ("--batch", "--kimg", "--device")}
    assert settings == {"--batch": str(check.STEP_256["batch"]), "--kimg": "1", "--device": "cuda"}
    assert commands["prepare"][commands["prepare"].index("--resolution") + 1] == str(check.STEP_256["resolution"])
