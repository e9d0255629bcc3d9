"""`augstudy phantom`: procedural chest-CT-like slices, so the whole study runs offline.

Each image is an axial slice drawn from simple shapes: body outline with a fat layer, two lungs
with vessels, heart, aorta, sternum, ribs and spine, then CT-like noise. The cancer classes add a
mass where their Kaggle folder names put it (squamous: at the left hilum; adenocarcinoma: in the
periphery of the left lower lobe; large cell: a large peripheral mass). Images are grey, their
sizes vary, and they are written in the Kaggle layout with the real set's class folder names
(long TNM names in train/valid, short ones in test), so `prepare` exercises its class mapping.

Image i of a class depends only on (seed, class, i): the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from augstudy.data.decode import png_bytes
from augstudy.data.sources import SPLITS
from augstudy.locks import writing
from augstudy.options import (
    MAX_SIDE,
    RangedNumber,
    check_memory,
    check_ranges,
    options_to_dict,
    ranged,
    write_options,
)
from augstudy.outputs import OutputPath, check_output
from stylegan2ada.io import atomic_write_bytes

OPTIONS_NAME = "phantom_options.json"
# Memory of one planned image (its path and class in the plan), an upper estimate.
BYTES_PER_PLANNED_IMAGE = 500
# Errors caused by the options or --out: the CLI and `augstudy run` show their message, no traceback.
USER_ERRORS = (ValueError,)
# canonical class -> (train/valid folder, test folder), as named in the Kaggle chest-CT set
CLASS_FOLDERS: dict[str, tuple[str, str]] = {
    "normal": ("normal", "normal"),
    "squamous": ("squamous.cell.carcinoma_left.hilum_T1_N2_M0_IIIa", "squamous.cell.carcinoma"),
    "adenocarcinoma": ("adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib", "adenocarcinoma"),
    "large_cell": ("large.cell.carcinoma_left.hilum_T2_N2_M0_IIIa", "large.cell.carcinoma"),
}
# grey levels of the tissues (0-255, roughly a lung window)
AIR, LUNG, FAT, SOFT, BLOOD, VESSEL, MASS, BONE = 0.0, 28.0, 92.0, 122.0, 138.0, 118.0, 165.0, 232.0


@dataclass(frozen=True)
class PhantomOptions:
    """Options of `augstudy phantom`.

    Attributes:
        out: folder to write; images go to `out/Data/{train,valid,test}/<class folder>/`.
        per_class: images per class over all splits.
        seed: same seed, same images.
        classes: canonical classes (keys of CLASS_FOLDERS).
        val_frac, test_frac: share of each class in valid and test (at least one each).
        copies: per class, byte-identical copies of train images added to test as "NNNN - Copy.png",
            the leakage the real set has, so `prepare` has copies to find.
        min_width, max_width: image widths are drawn in this range; heights are 0.65-0.9 of the width.
    """

    out: Path
    per_class: int = ranged(80, low=3, integer=True)  # one each for train, valid and test
    seed: int = ranged(0, low=0, integer=True)
    classes: tuple[str, ...] = ("normal", "squamous")
    val_frac: float = ranged(0.15, low=0, high=1, low_open=True, high_open=True)
    test_frac: float = ranged(0.2, low=0, high=1, low_open=True, high_open=True)
    copies: int = ranged(0, low=0, integer=True)
    min_width: int = ranged(224, low=32, high=MAX_SIDE, integer=True)
    max_width: int = ranged(480, low=32, high=MAX_SIDE, integer=True)

    def __post_init__(self) -> None:
        check_ranges(self)
        check_memory("--per-class", "per_class", self.per_class,
                     self.per_class * len(self.classes) * BYTES_PER_PLANNED_IMAGE, "planning this many images")

    def disk_bytes(self) -> int:
        """About what the images take on disk: grey PNGs at most half their raw size."""
        return self.per_class * len(self.classes) * self.max_width**2 // 2


@dataclass(frozen=True)
class PhantomResult:
    """Where the phantom is (pass `root` to `augstudy prepare`) and how many files each split/class got."""

    root: Path
    counts: dict[str, dict[str, int]]
    written: int


def write_phantom(out_dir: str | Path, per_class: int, seed: int,
                  classes: tuple[str, ...] = ("normal", "squamous"), *, val_frac: float = 0.15,
                  test_frac: float = 0.2, copies: int = 0) -> PhantomResult:
    """Write a phantom data set in the Kaggle layout; see PhantomOptions."""
    return make_phantom(PhantomOptions(Path(out_dir), per_class, seed, tuple(classes), val_frac, test_frac, copies))


def make_phantom(options: PhantomOptions) -> PhantomResult:
    """Write every image of the phantom, skipping files a run with the same options already wrote."""
    _check(options)
    out = check_output(options.out, verb="phantom", owned=(OPTIONS_NAME,))
    with writing(out, "phantom", needed=options.disk_bytes()):
        return _write_phantom(options, out)


def _write_phantom(options: PhantomOptions, out: Path) -> PhantomResult:
    """make_phantom's work, under the writer lock of --out."""
    plan = _plan(options)
    options_path = out / OPTIONS_NAME
    if (out / "Data").exists() and not options_path.is_file():
        raise ValueError(f"--out {options.out} already holds a Data/ folder that phantom did not write (no "
                         f"{OPTIONS_NAME}); phantom replaces its images, so choose an empty or new --out")
    previous = json.loads(options_path.read_text(encoding="utf-8")) if options_path.is_file() else None
    same_options = previous == _comparable(options)
    data = out / "Data"
    if not same_options and data.is_dir():  # files of other options must not pass for ours on a resume
        for stale in data.rglob("*.png"):
            stale.unlink()
    write_options(options_path, options)
    written = 0
    rendered: dict[tuple[str, int], bytes] = {}
    for relative, class_name, index in plan:
        path = out / relative
        if same_options and path.is_file():
            continue
        key = (class_name, index)
        if key not in rendered:
            rendered.clear()  # copies follow their original in the plan, so one entry is enough
            rendered[key] = png_bytes(Image.fromarray(render_slice(options.seed, class_name, index, options), "L"))
        atomic_write_bytes(path, rendered[key])
        written += 1
    counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    for relative, class_name, _ in plan:
        by_class = counts[Path(relative).parts[1]]
        by_class[class_name] = by_class.get(class_name, 0) + 1
    return PhantomResult(out, counts, written)


def render_slice(seed: int, class_name: str, index: int, options: PhantomOptions) -> np.ndarray:
    """One phantom slice as a 2-D uint8 array; its own generator makes it independent of the others."""
    rng = np.random.default_rng([seed, zlib.crc32(class_name.encode()), index])
    width = int(rng.integers(options.min_width, options.max_width + 1))
    height = round(width * rng.uniform(0.65, 0.9))
    image = np.full((height, width), AIR, dtype=np.float32)

    cx, cy = width * rng.uniform(0.47, 0.53), height * rng.uniform(0.47, 0.53)
    ax, ay = width * rng.uniform(0.40, 0.46), height * rng.uniform(0.36, 0.43)
    tilt = rng.uniform(-0.05, 0.05)
    _fill(image, FAT, cx, cy, ax, ay, tilt)
    _fill(image, SOFT, cx, cy + ay * 0.02, ax * 0.9, ay * 0.86, tilt)
    for degrees in (-150, -125, -55, -30, 25, 50, 130, 155):  # ribs in the chest wall, clear of sternum and spine
        phi = np.radians(degrees + rng.uniform(-5, 5))
        _fill(image, BONE, cx + ax * 0.86 * np.cos(phi), cy + ay * 0.86 * np.sin(phi), ax * 0.05, ay * 0.035,
              phi + np.pi / 2)

    lungs = []
    for side in (-1, 1):  # side -1 is the patient's right (image left), +1 the patient's left
        lung = (cx + side * ax * rng.uniform(0.42, 0.48), cy - ay * rng.uniform(0.0, 0.1),
                ax * rng.uniform(0.30, 0.36), ay * rng.uniform(0.58, 0.68), side * rng.uniform(0.05, 0.2))
        _fill(image, LUNG, *lung)
        lungs.append(lung)
    _fill(image, BLOOD, cx + ax * rng.uniform(0.08, 0.16), cy + ay * 0.05, ax * rng.uniform(0.2, 0.26),
          ay * rng.uniform(0.3, 0.38), rng.uniform(-0.4, 0.4))  # heart
    _fill(image, BLOOD, cx + ax * 0.07, cy + ay * 0.42, ay * 0.09, ay * 0.09, 0.0)  # descending aorta
    _fill(image, BONE, cx, cy - ay * 0.84, ax * 0.07, ay * 0.05, 0.0)  # sternum
    _fill(image, BONE, cx, cy + ay * 0.64, ay * 0.15, ay * 0.13, 0.0)  # vertebral body
    _fill(image, SOFT, cx, cy + ay * 0.64, ay * 0.05, ay * 0.045, 0.0)  # its marrow

    for lx, ly, lax, lay, angle in lungs:
        hilum_x = lx - np.sign(lx - cx) * lax * 0.6
        for _ in range(int(rng.integers(18, 36))):  # vessels: denser and thicker towards the hilum
            spread = rng.uniform(0.1, 1.0)
            vx = hilum_x + (lx - hilum_x) * spread * 1.5 + rng.normal(0, lax * 0.35 * spread)
            vy = ly + rng.normal(0, lay * 0.5 * spread)
            radius = max(1.0, (1.0 - spread) * ay * 0.03 + rng.uniform(0.3, 1.2))
            _fill(image, VESSEL, vx, vy, radius, radius * rng.uniform(0.6, 1.6), rng.uniform(0, np.pi),
                  only_over=LUNG)

    _add_lesion(image, rng, class_name, lungs[1])
    image += rng.normal(0.0, 5.0, size=image.shape).astype(np.float32)
    image = gaussian_filter(image, sigma=0.8 * width / 400.0)
    image = image * rng.uniform(0.92, 1.08) + rng.uniform(-6.0, 6.0)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _add_lesion(image: np.ndarray, rng: np.random.Generator, class_name: str,
                lung: tuple[float, float, float, float, float]) -> None:
    """Draw the class's tumour into the patient's left lung (image right); normal gets none."""
    if class_name == "normal":
        return
    lx, ly, lax, lay, angle = lung
    if class_name == "squamous":  # central, at the left hilum (medial edge of the lung), into the mediastinum
        mx, my, size = lx - lax * rng.uniform(0.15, 0.35), ly + lay * rng.uniform(-0.2, 0.2), rng.uniform(0.45, 0.6)
    elif class_name == "adenocarcinoma":  # peripheral, lower lobe (posterior in an axial slice)
        mx, my, size = lx + lax * rng.uniform(0.2, 0.5), ly + lay * rng.uniform(0.35, 0.6), rng.uniform(0.15, 0.28)
    elif class_name == "large_cell":  # large peripheral mass
        mx, my, size = lx + lax * rng.uniform(0.0, 0.35), ly + lay * rng.uniform(-0.4, 0.2), rng.uniform(0.4, 0.6)
    else:
        raise ValueError(f"the phantom has no lesion for class {class_name!r}; classes: {sorted(CLASS_FOLDERS)}")
    radius = lax * size
    box = _box(image.shape, mx, my, radius * 1.5)
    ys, xs = np.mgrid[box].astype(np.float32)
    theta = np.arctan2(ys - my, xs - mx)
    edge = np.ones_like(theta)
    for harmonic in range(2, 6):  # a lobulated, irregular outline
        edge += rng.uniform(0.03, 0.12) * np.sin(harmonic * theta + rng.uniform(0, 2 * np.pi))
    mass = np.hypot(xs - mx, ys - my) <= radius * edge
    if class_name != "squamous":  # peripheral masses stay inside the lung
        lung_x, lung_y = _ellipse_coordinates(xs, ys, lx, ly, lax, lay, angle)
        mass &= lung_x * lung_x + lung_y * lung_y <= 1.0
    region = image[box]
    region[mass] = MASS + rng.normal(0.0, 6.0, size=int(mass.sum())).astype(np.float32)


def _box(shape: tuple[int, ...], cx: float, cy: float, reach: float) -> tuple[slice, slice]:
    """The rows and columns within `reach` of a centre, clipped to the image."""
    top, bottom = max(0, int(cy - reach) - 1), min(shape[0], int(cy + reach) + 2)
    left, right = max(0, int(cx - reach) - 1), min(shape[1], int(cx + reach) + 2)
    return slice(top, max(top, bottom)), slice(left, max(left, right))


def _ellipse_coordinates(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, ax: float, ay: float,
                         angle: float) -> tuple[np.ndarray, np.ndarray]:
    cos, sin = np.cos(angle), np.sin(angle)
    return ((xs - cx) * cos + (ys - cy) * sin) / ax, (-(xs - cx) * sin + (ys - cy) * cos) / ay


def _fill(image: np.ndarray, value: float, cx: float, cy: float, ax: float, ay: float, angle: float,
          only_over: float | None = None) -> None:
    """Paint a rotated ellipse, computing only its bounding box; `only_over` limits it to one tissue."""
    box = _box(image.shape, cx, cy, max(ax, ay))
    ys, xs = np.mgrid[box].astype(np.float32)
    u, v = _ellipse_coordinates(xs, ys, cx, cy, ax, ay, angle)
    inside = u * u + v * v <= 1.0
    region = image[box]
    if only_over is not None:
        inside &= region == only_over
    region[inside] = value


def _plan(options: PhantomOptions) -> list[tuple[str, str, int]]:
    """(relative path, class, image index) of every file, copies right after their original."""
    _check(options)
    plan: list[tuple[str, str, int]] = []
    for class_name in options.classes:
        n_test = max(1, round(options.per_class * options.test_frac))
        n_val = max(1, round(options.per_class * options.val_frac))
        n_train = options.per_class - n_test - n_val
        train_folder, test_folder = CLASS_FOLDERS[class_name]
        for index in range(options.per_class):
            split = "train" if index < n_train else "valid" if index < n_train + n_val else "test"
            folder = test_folder if split == "test" else train_folder
            plan.append((f"Data/{split}/{folder}/{index:04d}.png", class_name, index))
            if split == "train" and index < options.copies:
                plan.append((f"Data/test/{test_folder}/{index:04d} - Copy.png", class_name, index))
    return plan


def _check(options: PhantomOptions) -> None:
    unknown = [name for name in options.classes if name not in CLASS_FOLDERS]
    if unknown or not options.classes:
        raise ValueError(f"phantom classes {list(options.classes)}: choose from {sorted(CLASS_FOLDERS)}")
    if len(set(options.classes)) != len(options.classes):
        raise ValueError(f"phantom classes {list(options.classes)} repeat a class")
    n_train = options.per_class - max(1, round(options.per_class * options.test_frac)) - max(
        1, round(options.per_class * options.val_frac))
    if n_train < 1:
        raise ValueError(f"--val-frac {options.val_frac} and --test-frac {options.test_frac} leave no train images")
    if not 0 <= options.copies <= n_train:
        raise ValueError(f"--copies {options.copies} must be between 0 and the train images per class ({n_train})")
    if not 32 <= options.min_width <= options.max_width:
        raise ValueError(f"widths {options.min_width}-{options.max_width}: need 32 <= min_width <= max_width")


def _comparable(options: PhantomOptions) -> dict[str, object]:
    """The options as they read back from JSON, to tell whether existing files came from the same ones."""
    return json.loads(json.dumps(options_to_dict(options), sort_keys=True, default=str))


@click.command("phantom")
@click.option("--out", required=True, type=OutputPath(), help="Folder to write.")
@click.option("--per-class", type=RangedNumber(PhantomOptions, "per_class"),
              default=80, show_default=True, help="Images per class, all splits.")
@click.option("--seed", type=RangedNumber(PhantomOptions, "seed"), default=0, show_default=True)
@click.option("--classes", default="normal,squamous", show_default=True,
              help=f"Comma-separated, from: {', '.join(CLASS_FOLDERS)}.")
@click.option("--val-frac", type=RangedNumber(PhantomOptions, "val_frac"), default=0.15, show_default=True)
@click.option("--test-frac", type=RangedNumber(PhantomOptions, "test_frac"), default=0.2, show_default=True)
@click.option("--copies", type=RangedNumber(PhantomOptions, "copies"), default=0, show_default=True,
              help="Per class, byte-identical copies of train images put in test (leakage to find).")
def phantom_command(out: Path, per_class: int, seed: int, classes: str, val_frac: float, test_frac: float,
                    copies: int) -> None:
    """Write a chest-CT-like phantom in the Kaggle layout (grey, varied sizes; squamous has a hilar mass)."""
    try:
        options = PhantomOptions(out, per_class, seed, tuple(name.strip() for name in classes.split(",")
                                                             if name.strip()), val_frac, test_frac, copies)
        result = make_phantom(options)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from error
    table = ", ".join(f"{split} " + "/".join(f"{n} {name}" for name, n in by_class.items())
                      for split, by_class in result.counts.items())
    click.echo(f"phantom: {result.written} files written to {result.root / 'Data'} ({table})")
