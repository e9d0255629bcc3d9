"""Crafted network files (tests/crafted_files.py, one per attack class of issue 21) through every verb
that reads a network: a non-zero exit, one message naming the file, no traceback, the reader under 1 GiB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from crafted_files import CASES, Case, case_params, saved, tiny_snapshot

from augstudy.cli import main
from stylegan2ada import isolation
from stylegan2ada.dataset import write_dataset

# (attack, name, suffix): one crafted file per attack class and file kind, from the full table
CHOSEN = [("crash", "deep_key", ".pkl"), ("crash", "deep_key", ".pt"), ("hang", "shared_modules", ".pkl"),
          ("hang", "shared_meta", ".pt"), ("oom", "storage_callable", ".pkl"), ("oom", "huge_dims", ".pkl"),
          ("oom", "deflated_record", ".pt"), ("oom", "huge_dims", ".pt"), ("traceback", "tensor_as_number", ".pkl"),
          ("traceback", "sparse_weight", ".pt"), ("over-read", "dtype_rebuilt", ".pkl")]
CLI_CASES = [case for case in CASES if (case.attack, case.name, case.suffix) in CHOSEN]
VERBS = {
    "import-network": "import-network {file} --out {root}/imported.pt",
    "generate": "generate --network {file} --out {root}/pool --per-class 1 --device cpu",
    "gan-metrics": "gan-metrics --real {data}/gan/normal.zip --network {file} --num-images 4 --out {root}/m.json "
                   "--device cpu",
    "train-gan": "train-gan --data {data} --out {root}/runs --classes normal --resume-from {file} --kimg 0.004 "
                 "--batch 4 --workers 0 --threads 1 --device cpu",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("untrusted-cli")
    rng = np.random.default_rng(0)
    write_dataset(root / "data" / "gan" / "normal.zip", [rng.integers(0, 256, (32, 32), dtype=np.uint8)] * 4)
    (root / "crafted").mkdir()
    return {"root": root, "data": root / "data", "crafted": root / "crafted"}


def assert_cli_refuses(verb: str, case: Case, world: dict[str, Path]) -> None:
    path = case.write(world["crafted"])
    args = VERBS[verb].format(file=path, root=world["root"] / verb, data=world["data"]).split()
    isolation.last_usage = None
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # our error, not an escaped exception
    assert "Traceback" not in result.output and path.name in result.output, result.output
    assert "took longer than" not in result.output and "crashed" not in result.output, result.output
    usage = isolation.last_usage
    assert usage is not None and usage.peak_rss_bytes is not None and usage.peak_rss_bytes < 1 << 30, usage


@pytest.mark.parametrize("case", case_params(CLI_CASES))
def test_generate_refuses_each_crafted_network(case: Case, world: dict[str, Path]) -> None:
    assert_cli_refuses("generate", case, world)


@pytest.mark.slow
@pytest.mark.parametrize(("verb", "case"), [
    param for verb in ("import-network", "gan-metrics", "train-gan")  # import-network reads official .pkl files only
    for param in case_params([case for case in CLI_CASES if verb != "import-network" or case.suffix == ".pkl"], verb)])
def test_every_verb_refuses_each_crafted_network(verb: str, case: Case, world: dict[str, Path]) -> None:
    assert_cli_refuses(verb, case, world)


def test_a_crafted_snapshot_in_a_run_folder_is_refused_on_resume(world: dict[str, Path]) -> None:
    """train-gan resumes from the newest snapshot of each run folder: one planted there is untrusted too."""
    case = next(case for case in CASES if (case.name, case.suffix) == ("deep_key", ".pt"))
    runs = world["root"] / "resume-runs"
    (runs / "normal").mkdir(parents=True)
    (runs / "train_gan_options.json").write_text("{}")  # an earlier train-gan's folder: resume reads it
    planted = runs / "normal" / "network-snapshot-000001.pt"
    planted.write_bytes(case.build())
    result = CliRunner().invoke(main, ["train-gan", "--data", str(world["data"]), "--out", str(runs), "--classes",
                                       "normal", "--kimg", "0.004", "--batch", "4", "--device", "cpu"])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.exception
    assert planted.name in result.output and "Traceback" not in result.output, result.output


def test_a_planted_snapshot_without_training_state_is_refused_on_resume(world: dict[str, Path]) -> None:
    """Readable, with sane networks, but not what a run writes: resume says so instead of a traceback."""
    runs = world["root"] / "planted-runs"
    (runs / "normal").mkdir(parents=True)
    (runs / "train_gan_options.json").write_text("{}")  # an earlier train-gan's folder: resume reads it
    planted = runs / "normal" / "network-snapshot-000001.pt"
    planted.write_bytes(saved(tiny_snapshot()))
    result = CliRunner().invoke(main, ["train-gan", "--data", str(world["data"]), "--out", str(runs), "--classes",
                                       "normal", "--kimg", "0.004", "--batch", "4", "--device", "cpu"])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.exception
    assert planted.name in result.output and "damaged" in result.output and "Traceback" not in result.output
