"""Nothing a verb writes lands in an input or an unrelated folder, two runs never write one folder at
once, a full disk is one message, sizes that exhaust memory are refused before work, and finished work
is not reused once its inputs changed (issue 22). One table per class of fault, over every verb it
applies to; each refusal is one message naming the file or option, with no traceback."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from augstudy.classify.predict import list_images
from augstudy.cli import main
from augstudy.data.phantom import write_phantom
from augstudy.data.prepare import PrepareOptions, prepare
from augstudy.gan.generate import GenerateOptions, generate_pool
from augstudy.locks import LockedError, writing
from augstudy.publish.cli import build_lock
from stylegan2ada.io import sha256_file
from stylegan2ada.networks import build_networks
from stylegan2ada.snapshot import save_snapshot

TINY = {"channel_base": 1024, "channel_max": 64, "mapping_layers": 2}


def tiny_snapshot(path: Path, extra_meta: dict[str, Any]) -> Path:
    torch.manual_seed(0)
    G, D = build_networks("auto", 32, 1, 0, **TINY)
    return save_snapshot(path, {
        "G": G.state_dict(), "D": D.state_dict(), "G_ema": G.state_dict(), "G_init_kwargs": G.init_kwargs,
        "D_init_kwargs": D.init_kwargs, "options": {},
        "meta": {"kimg": 0.0, "cur_nimg": 0, "batch_idx": 0, "extra_meta": extra_meta},
    })


def tree(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs of every verb: phantom data, a prepared folder, a snapshot, a pool generate wrote, a folder of
    real images, an unrelated folder holding a user's file, and a study config."""
    root = tmp_path_factory.mktemp("nothing-lost")
    phantom = write_phantom(root / "phantom", per_class=6, seed=0).root
    prepared = prepare(PrepareOptions(source=str(phantom), out=root / "prepared", resolution=32)).out
    snapshot = tiny_snapshot(root / "normal.pt", {"class_name": "normal"})
    pool = root / "pool"
    generate_pool(GenerateOptions(networks=(snapshot,), out=pool, per_class=2, batch=2, device="cpu"))
    images = root / "real-images"
    shutil.copytree(phantom / "Data" / "train" / "normal", images)
    unrelated = root / "my-folder"
    unrelated.mkdir()
    (unrelated / "precious.txt").write_text("keep me", encoding="utf-8")
    (root / "model").mkdir()
    config = root / "study.toml"
    config.write_text('[study]\nname = "t"\nsource = "phantom"\n[phantom]\nper_class = 3\n', encoding="utf-8")
    return {"root": root, "phantom": phantom, "prepared": prepared, "snapshot": snapshot, "pool": pool,
            "images": images, "unrelated": unrelated, "model": root / "model", "config": config}


def invoke(line: str, world: dict[str, Path]):
    return CliRunner().invoke(main, [part.format(**world) for part in line.split()])


def assert_clean_failure(result, *expected: str) -> None:
    assert result.exit_code != 0, result.output
    for text in expected:
        assert text in result.output, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def ids(cases: list[tuple[str, ...]]) -> list[str]:
    return [f"{line.split()[0]}-{index}" for index, (line, *_) in enumerate(cases)]


# ---- writes into inputs or into folders the verb did not write ------------------------------------

DID_NOT_WRITE = "did not write"
FOREIGN_OUTPUTS = [
    ("phantom --per-class 3 --out {unrelated}", DID_NOT_WRITE),
    ("prepare {phantom} --out {unrelated}", DID_NOT_WRITE),
    ("train-gan --data {prepared} --out {unrelated} --no-cpu-train", DID_NOT_WRITE),
    ("generate --network {snapshot} --out {unrelated} --per-class 1", DID_NOT_WRITE),
    ("generate --network {snapshot} --out {images} --per-class 1", DID_NOT_WRITE),  # synthetic among real
    ("sweep --data {prepared} --out {unrelated} --ratios 0", DID_NOT_WRITE),
    ("audit --data {prepared} --out {unrelated} --no-backbone-features", DID_NOT_WRITE),
    ("publish --pool {pool} --out {unrelated} --owner o --slug s", DID_NOT_WRITE),
    ("run {config} --out {unrelated}", DID_NOT_WRITE),
    ("demo --out {unrelated}", DID_NOT_WRITE),
    ("sweep --data {prepared} --out {pool} --ratios 0", DID_NOT_WRITE),  # another verb's output
    ("gan-metrics --real {prepared} --fake {images} --metrics swd", "is not a pool written by"),
    ("gan-metrics --real {prepared} --fake {pool} --metrics swd --out {pool}/normal/seed00000.png", "inside --fake"),
    ("gan-metrics --real {prepared} --fake {pool} --metrics swd --out {unrelated}/precious.txt", DID_NOT_WRITE),
    ("predict --model {model} {images} --out {unrelated}/precious.txt", DID_NOT_WRITE),
]


@pytest.mark.parametrize(("line", "expected"), FOREIGN_OUTPUTS, ids=ids(FOREIGN_OUTPUTS))
def test_an_output_never_lands_in_an_input_or_a_folder_the_verb_did_not_write(
        world: dict[str, Path], line: str, expected: str) -> None:
    guarded = ("unrelated", "images", "pool", "prepared")
    before = {name: tree(world[name]) for name in guarded}
    assert_clean_failure(invoke(line, world), expected)
    assert {name: tree(world[name]) for name in guarded} == before


EMPTY_OUT = [
    ("phantom --out ''", "folder name"),
    ("prepare {phantom} --out ''", "folder name"),
    ("train-gan --data {prepared} --out ''", "folder name"),
    ("generate --network {snapshot} --out '' --per-class 1", "folder name"),
    ("sweep --data {prepared} --out ''", "folder name"),
    ("audit --data {prepared} --out ''", "folder name"),
    ("publish --pool {pool} --out '' --owner o --slug s", "folder name"),
    ("run {config} --out ''", "folder name"),
    ("demo --out ''", "folder name"),
    ("gan-metrics --real {prepared} --fake {pool} --out ''", "file name"),
    ("predict --model {model} {images} --out ''", "file name"),
    ("import-network {snapshot} --out ''", "file name"),
]


@pytest.mark.parametrize(("line", "expected"), EMPTY_OUT, ids=ids(EMPTY_OUT))
def test_an_empty_out_is_refused_not_read_as_the_current_folder(world: dict[str, Path], line: str,
                                                                expected: str) -> None:
    args = ["" if part == "''" else part.format(**world) for part in line.split()]
    assert_clean_failure(CliRunner().invoke(main, args), "--out", expected)


def test_a_verb_continues_its_own_output(world: dict[str, Path], tmp_path: Path) -> None:
    """The ownership check refuses foreign folders only: a verb's own earlier output is resumed."""
    out = tmp_path / "pool"
    for _ in range(2):
        result = invoke(f"generate --network {{snapshot}} --out {out} --per-class 1", world)
        assert result.exit_code == 0, result.output
    assert "1 already present" in result.output


# ---- one writer per output folder -----------------------------------------------------------------

HOLDER = """
import sys
from pathlib import Path
from augstudy.locks import writing
out, lock = Path(sys.argv[1]), (Path(sys.argv[2]) if sys.argv[2] else None)
with writing(out, "holder", lock_file=lock):
    print("held", flush=True)
    sys.stdin.read()
"""


def hold(out: Path, lock_file: Path | None = None) -> subprocess.Popen[str]:
    """Another process holding the writer lock of `out` until it is killed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(lock_file or "")], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


LOCKED = [
    "phantom --per-class 3 --out {out}",
    "prepare {phantom} --out {out}",
    "train-gan --data {prepared} --out {out} --no-cpu-train",
    "generate --network {snapshot} --out {out} --per-class 1",
    "sweep --data {prepared} --out {out} --ratios 0",
    "audit --data {prepared} --out {out} --no-backbone-features",
    "publish --pool {pool} --out {out} --owner o --slug s",
    "run {config} --out {out}",
]


@pytest.mark.parametrize("line", LOCKED, ids=[line.split()[0] for line in LOCKED])
def test_a_second_writer_is_refused_and_told_who_holds_the_folder(world: dict[str, Path], tmp_path: Path,
                                                                  line: str) -> None:
    out = tmp_path / "out"
    holder = hold(out, build_lock(out) if line.startswith("publish") else None)
    try:
        before = tree(tmp_path)
        result = CliRunner().invoke(main, [part.format(**world, out=out) for part in line.split()])
        assert_clean_failure(result, "being written by another augstudy run", f"pid {holder.pid}", str(out))
        assert tree(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()


def test_train_gan_ranks_after_the_first_run_under_rank_0s_lock(world: dict[str, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun every rank runs train-gan on one --out: only rank 0 takes the lock."""
    out = tmp_path / "runs"
    holder = hold(out)  # rank 0
    try:
        monkeypatch.setenv("RANK", "1")
        monkeypatch.setattr("stylegan2ada.training.measure_sec_per_kimg", lambda options: 1.0)
        result = invoke(f"train-gan --data {{prepared}} --out {out} --no-cpu-train", world)
        assert result.exit_code == 0, result.output
        assert "Not training (--no-cpu-train)" in result.output
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_writer_releases_its_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = hold(out)
    with pytest.raises(LockedError, match=f"pid {holder.pid}"), writing(out, "test"):
        raise AssertionError("a second writer got the folder while its holder lives")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with writing(out, "test"):  # no stale lock: the kernel released it with the process
        assert json.loads((out / ".augstudy-lock").read_text())["pid"] == os.getpid()


# ---- a full disk ----------------------------------------------------------------------------------

def disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def torch_zip_full(*args: Any, **kwargs: Any) -> None:  # what torch.save says on a full disk
    raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4352 vs 4240")


# (command line, function that meets the full disk, how it fails)
FULL_DISK = [
    ("phantom --per-class 3 --out {out}", "augstudy.data.phantom.atomic_write_bytes", disk_full),
    ("prepare {phantom} --out {out}", "augstudy.data.prepare.atomic_write_bytes", disk_full),
    ("train-gan --data {prepared} --out {out} --kimg 0.01", "stylegan2ada.training.measure_sec_per_kimg",
     torch_zip_full),
    ("generate --network {snapshot} --out {out} --per-class 2", "augstudy.gan.generate.atomic_write_bytes",
     disk_full),
    ("audit --data {prepared} --out {out} --no-backbone-features", "augstudy.audit.run.atomic_write_json",
     disk_full),
    # the first call of the sweep's work (so the test needs no Keras): the lock's translation covers it all
    ("sweep --data {prepared} --out {out} --ratios 0", "augstudy.classify.sweep.resolve_keras_backend", disk_full),
    ("gan-metrics --real {prepared} --fake {pool} --metrics swd --out {out}/m.json",
     "augstudy.metrics.evaluate.atomic_write_json", disk_full),
    ("run {config} --out {out}", "augstudy.pipeline.atomic_write_json", disk_full),
]


@pytest.mark.parametrize(("line", "target", "failure"), FULL_DISK, ids=ids(FULL_DISK))
def test_a_full_disk_is_one_message_naming_the_folder(world: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, line: str, target: str,
                                                      failure: Any) -> None:
    monkeypatch.setattr(target, failure)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [part.format(**world, out=out) for part in line.split()])
    assert_clean_failure(result, "is full", str(out), "run the same command again")
    assert not [path for path in tmp_path.rglob("*") if path.name.endswith(".tmp")]


SPACE_CHECKED = [
    "phantom --per-class 3 --out {out}",
    "prepare {phantom} --out {out}",
    "generate --network {snapshot} --out {out} --per-class 2",
]


@pytest.mark.parametrize("line", SPACE_CHECKED, ids=[line.split()[0] for line in SPACE_CHECKED])
def test_too_little_space_is_refused_before_any_work(world: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, line: str) -> None:
    monkeypatch.setattr("augstudy.locks.free_bytes", lambda folder: 10)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [part.format(**world, out=out) for part in line.split()])
    assert_clean_failure(result, "of disk space and only 10 bytes is free", str(out))
    assert not out.exists()


def test_a_failed_model_save_leaves_no_partial_file(tmp_path: Path) -> None:
    """sweep once left `.tmp-head.keras` behind on a full disk."""
    from augstudy.classify.backbones import WeightsChoice
    from augstudy.classify.saved import ClassifierInfo, save_classifier

    class Model:
        def get_config(self) -> dict[str, Any]:
            return {}

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Model:
            return cls()

        def get_weights(self) -> list[Any]:
            return []

        def set_weights(self, weights: list[Any]) -> None:
            self.weights = weights

        def save(self, path: Path) -> None:
            Path(path).write_bytes(b"half a model")
            disk_full()

    info = ClassifierInfo(class_names=("a", "b"), positive_class="b", backbone="resnet50",
                          weights=WeightsChoice("none"), input_size=32, image_pipeline="x", working_size=32,
                          fit="pad", head="compact", inputs="features", keras_backend="tensorflow", ratio=0, seed=0)
    with pytest.raises(OSError):
        save_classifier(tmp_path / "model", Model(), info)  # type: ignore[arg-type]
    assert list((tmp_path / "model").iterdir()) == []


# ---- sizes that exhaust memory, and numbers that are not numbers ----------------------------------

SIZES = [
    ("phantom --per-class 1000000000000 --out {root}/s1", "--per-class 1000000000000", "memory"),
    ("prepare --resolution 1048576 {phantom} --out {root}/s2", "1048576: must be an integer in [4, 8192]"),
    ("generate --per-class 1000000000000 --network {snapshot} --out {root}/s3", "must be an integer in [1, "),
    ("generate --per-class 4000000000 --network {snapshot} --out {root}/s3", "--per-class 4000000000", "memory"),
    ("generate --size 100000 --network {snapshot} --out {root}/s3 --per-class 1", "100000: must be an integer in"),
    ("sweep --input-size 100000 --data {prepared} --out {root}/s4", "100000: must be an integer in [32, 8192]"),
    ("sweep --input-size 8192 --feature-batch-size 512 --data {prepared} --out {root}/s4", "images of 8192 px",
     "memory"),
    ("sweep --bootstrap 100000000 --data {prepared} --out {root}/s4", "100000000: must be an integer in [100, "),
    ("audit --input-size 100000 --data {prepared} --out {root}/s5", "100000: must be an integer in [32, 8192]"),
    ("gan-metrics --real {prepared} --network {snapshot} --num-images 1000000000 --out {root}/s6.json",
     "--num-images 1000000000", "memory"),
    ("publish --size 100000 --pool {pool} --out {root}/s7 --owner o --slug s", "100000 is not in the range"),
    ("generate --seeds 0-99999999999 --network {snapshot} --out {root}/s3", "--seeds", "memory"),
    ("train-gan --batch 1000000 --data {prepared} --out {root}/s8", "1000000: must be an integer in [1, 2048]"),
    ("train-gan --cmax 1000000 --data {prepared} --out {root}/s8", "1000000: must be an integer in [1, 2048]"),
    ("train-gan --metrics-images 1000000000 --data {prepared} --out {root}/s8", "must be an integer in [1, 100000]"),
    ("audit --feature-batch-size 1000000 --data {prepared} --out {root}/s5", "--feature-batch-size 1000000",
     "memory"),
    ("gan-metrics --batch 1000000 --real {prepared} --fake {pool}", "--batch 1000000", "memory"),
    ("predict --batch-size 1000000 --model {model} {images}", "--batch-size 1000000", "memory"),
    ("sweep --ratios 0,nan --data {prepared} --out {root}/s4", "'0,nan': give distinct percentages"),
    ("sweep --ratios 0,inf --data {prepared} --out {root}/s4", "'0,inf': give distinct percentages"),
    ("sweep --real-fractions 50,nan --arms real --data {prepared} --out {root}/s4", "'50,nan'"),
    ("train-gan --gamma nan --data {prepared} --out {root}/s8", "nan: must be a number >= 0"),
    ("train-gan --kimg inf --data {prepared} --out {root}/s8", "inf: must be a number > 0"),
    ("gan-metrics --memo-ratio nan --real {prepared} --fake {pool}", "nan: must be a number in [0, 1]"),
]


@pytest.mark.parametrize("case", SIZES, ids=ids(SIZES))
def test_sizes_beyond_the_machine_and_non_numbers_are_refused_before_work(world: dict[str, Path],
                                                                          case: tuple[str, ...]) -> None:
    line, *expected = case
    before = sorted(path.name for path in world["root"].iterdir())
    assert_clean_failure(invoke(line, world), *expected)
    assert sorted(path.name for path in world["root"].iterdir()) == before


# ---- the tracebacks and poor answers of issue 22 --------------------------------------------------

CASES = [
    ("train-gan --freezed 1000 --data {prepared} --out {root}/f1 --no-cpu-train", "can freeze 0 to"),
    ("train-gan --data {prepared} --out {prepared}/runs --dry-run", "inside --data"),
    ("sweep --data {prepared} --out {prepared}/results --dry-run", "inside --data"),
    ("gan-metrics --device banana --real {prepared} --fake {pool} --metrics swd --out {root}/m.json",
     "--device 'banana': choose auto, cpu, cuda or cuda:N"),
    ("gan-metrics --device cuda:7 --real {prepared} --fake {pool} --metrics swd --out {root}/m.json",
     "--device cuda:7"),
    ("prepare {phantom} --out {root}/c1 --classes ,", "names no class"),
    ("publish --pool {pool} --out {root}/c2 --owner o --slug s --classes ,", "names no class"),
    ("train-gan --data {prepared} --out {root}/c4 --classes ,", "names nothing"),
    ("generate --network {snapshot} --out {root}/c5 --per-class 1 --class ,", "names nothing"),
    ("publish --pool {pool} --out {root}/c3 --owner o --slug s --exclude-flagged", "holds no memorisation check"),
    ("predict --model {model} {images} --weights {root}/nonexistent.h5", "nonexistent.h5: no such file"),
    ("gan-metrics --real {prepared} --fake {pool} --num-images 50 --metrics swd --out {root}/m.json",
     "a --fake pool is used whole"),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=ids(CASES))
def test_each_reported_traceback_or_silence_is_now_a_message(world: dict[str, Path], line: str,
                                                             expected: str) -> None:
    before = sorted(path.name for path in world["root"].iterdir())
    assert_clean_failure(invoke(line, world), expected)
    assert sorted(path.name for path in world["root"].iterdir()) == before  # no options file left behind


def test_a_class_whose_files_are_all_unreadable_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(world["phantom"], source)
    for path in (source / "Data").rglob("*.png"):
        if "squamous" in path.parent.name:
            path.write_bytes(b"not an image")
    result = invoke(f"prepare {source} --out {tmp_path / 'out'}", world)
    assert_clean_failure(result, "class(es) squamous", "none of their files is a readable image")


def test_strict_refuses_before_writing_anything(world: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(world["phantom"], source)
    broken = next((source / "Data" / "train").rglob("*.png"))
    broken.write_bytes(b"not an image")
    result = invoke(f"prepare {source} --out {tmp_path / 'out'} --strict", world)
    assert_clean_failure(result, "unreadable file(s)", broken.name)
    assert not (tmp_path / "out").exists()


def test_a_class_without_test_images_is_warned_about(world: dict[str, Path], tmp_path: Path) -> None:
    source, rng = tmp_path / "source", np.random.default_rng(0)
    for name in ("normal", "squamous"):
        for index in range(1 if name == "squamous" else 6):
            folder = source / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(folder / f"{index}.png")
    result = invoke(f"prepare {source} --out {tmp_path / 'out'} --resolution 32", world)
    assert result.exit_code == 0, result.output
    assert "warning: class 'squamous' has no test images" in result.output
    assert "warning: class 'normal'" not in result.output


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize(("ratios", "expected"), [("[0, nan]", "must be finite percentages"),
                                                  ("[0, inf]", "must be finite percentages"),
                                                  ("[0, 50, 50]", "a value is repeated")])
def test_a_config_states_ratios_by_the_command_lines_rule(tmp_path: Path, ratios: str, expected: str,
                                                          dry_run: bool) -> None:
    config = tmp_path / "study.toml"
    config.write_text(f'[study]\nname = "t"\nsource = "phantom"\nout = "out"\n[sweep]\nratios = {ratios}\n',
                      encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(config), *(["--dry-run"] if dry_run else [])])
    assert_clean_failure(result, "[sweep] ratios = ", expected)
    assert not (tmp_path / "out").exists()


def test_predict_skips_hidden_files_as_prepare_does(tmp_path: Path) -> None:
    Image.new("L", (8, 8)).save(tmp_path / "0001.png")
    (tmp_path / "._0001.png").write_bytes(b"macOS resource fork")
    (tmp_path / ".cache").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / ".cache" / "x.png")
    assert list_images([tmp_path]) == [tmp_path / "0001.png"]


def test_audit_offers_only_the_backends_it_accepts() -> None:
    result = CliRunner().invoke(main, ["audit", "--help"])
    assert result.exit_code == 0 and "jax" not in result.output


def test_sweep_help_loads_no_heavy_library() -> None:
    """`sweep --help` once took 2 s importing scikit-learn and the report to print its help."""
    code = ("import sys\nfrom click.testing import CliRunner\nfrom augstudy.cli import main\n"
            "assert CliRunner().invoke(main, ['sweep', '--help']).exit_code == 0\n"
            "print(sorted({name.split('.')[0] for name in sys.modules} & {'sklearn', 'matplotlib', 'seaborn', "
            "'tensorflow', 'keras', 'scipy', 'torch', 'pandas'}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    loaded = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stderr


# ---- finished work made from other inputs is never reused -----------------------------------------

def test_a_gan_run_resumed_on_re_prepared_data_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    tiny_snapshot(runs / "normal" / "network-snapshot-000000.pt",
                  {"class_name": "normal", "data_sha256": "0" * 64})  # trained on other data
    (runs / "train_gan_options.json").write_text("{}", encoding="utf-8")  # as the earlier run left it
    result = invoke(f"train-gan --data {{prepared}} --out {runs} --classes normal --no-cpu-train", world)
    assert_clean_failure(result, "[normal]", "was trained on other data than", "normal.zip")


def test_a_gan_run_records_the_content_of_its_data(world: dict[str, Path], tmp_path: Path) -> None:
    from augstudy.gan.train import TrainGanOptions, plan_runs

    runs = plan_runs(TrainGanOptions(data=world["prepared"], out=tmp_path / "runs"))
    assert {run.name: run.extra_meta["data_sha256"] for run in runs} == {
        run.name: sha256_file(world["prepared"] / "gan" / f"{run.name}.zip") for run in runs}


@pytest.mark.slow
def test_an_audit_is_redone_when_the_prepared_pixels_change(world: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "prepared"
    shutil.copytree(world["prepared"], data)
    out = tmp_path / "audit"
    line = f"audit --data {data} --out {out} --no-backbone-features --quiet"
    assert invoke(line, world).exit_code == 0
    first = json.loads((out / "audit.json").read_text())["fingerprint"]
    image = next((data / "images" / "train").rglob("*.png"))
    Image.fromarray(255 - np.asarray(Image.open(image))).save(image)  # as re-preparing with another fit would
    assert invoke(line, world).exit_code == 0
    assert json.loads((out / "audit.json").read_text())["fingerprint"] != first


@pytest.mark.slow
def test_a_sweep_cell_is_not_reused_after_the_data_was_re_prepared(tmp_path: Path) -> None:
    """Issue 22: re-preparing --data at another size kept the manifest, so the old cell was reused."""
    from augstudy.classify.toydata import write_toy_study

    study = write_toy_study(tmp_path, train=4, valid=2, test=2, pool=2, size=32)
    line = ["sweep", "--data", str(study.data), "--out", str(tmp_path / "results"), "--ratios", "0", "--seeds", "1",
            "--weights", "none", "--input-size", "32", "--epochs", "1", "--batch-size", "4", "--quiet",
            "--bootstrap", "100", "--cache-dir", str(tmp_path / "cache")]
    assert CliRunner().invoke(main, line).exit_code == 0
    manifest = (study.data / "manifest.csv").read_bytes()
    image = next((study.data / "images" / "train").rglob("*.png"))
    Image.fromarray(255 - np.asarray(Image.open(image))).save(image)
    assert (study.data / "manifest.csv").read_bytes() == manifest
    result = CliRunner().invoke(main, line)
    assert_clean_failure(result, "was made with other options or data", "data_sha256")


def test_a_study_re_prepares_when_its_source_images_change(world: dict[str, Path], tmp_path: Path) -> None:
    """`augstudy run` skips a finished step whose options did not change; changed source images must
    still re-run prepare (and with it every later step), not leave the study on the old images."""
    from augstudy.pipeline import Study, _source_listing, load_config

    shutil.copytree(world["phantom"], tmp_path / "data")
    config = tmp_path / "study.toml"
    config.write_text('[study]\nname = "t"\nsource = "data"\nout = "study"\n', encoding="utf-8")
    study = Study(load_config(config), log=lambda line: None)
    runs: list[int] = []

    def step() -> None:
        study._run_step("prepare", study.options("prepare"), lambda: runs.append(1), _source_listing(study.source))

    step()
    step()
    assert len(runs) == 1  # unchanged: skipped
    image = next((tmp_path / "data").rglob("*.png"))
    Image.fromarray(255 - np.asarray(Image.open(image))).save(image)
    step()
    assert len(runs) == 2 and study.invalidated  # the later steps re-run too
