"""Where the raw files come from, which split and which class each one belongs to.

A SOURCE is a folder in the Kaggle layout (`Data/{train,valid,test}/<class folder>`, or the split
folders directly), a single folder of class folders (split here, stratified, by seed), or
`kaggle:OWNER/SLUG`, downloaded with kagglehub. Class folders are named differently per split in
the real chest-CT set (`squamous.cell.carcinoma_left.hilum_T1_N2_M0_IIIa` in train,
`squamous.cell.carcinoma` in test), so folder names map to canonical classes by rule.
"""

from __future__ import annotations

import fnmatch
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from augstudy.optional import require

SPLITS: tuple[str, ...] = ("train", "valid", "test")
SPLIT_FOLDER_NAMES: dict[str, str] = {"train": "train", "valid": "valid", "val": "valid",
                                      "validation": "valid", "test": "test"}
# (folder-name prefix, canonical class), first match wins; canonical names map to themselves.
CLASS_RULES: tuple[tuple[str, str], ...] = (
    ("normal", "normal"),
    ("squamous.cell.carcinoma", "squamous"),
    ("squamous", "squamous"),
    ("adenocarcinoma", "adenocarcinoma"),
    ("large.cell.carcinoma", "large_cell"),
    ("large_cell", "large_cell"),
)
KAGGLE_PREFIX = "kaggle:"
DEFAULT_VAL_FRAC = 0.1
DEFAULT_TEST_FRAC = 0.2
_CLASS_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_KAGGLE_HANDLE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class SourceError(ValueError):
    """The SOURCE cannot be used as given; the message says what was found and what to do."""


@dataclass(frozen=True)
class SourceFile:
    """One raw file and where it belongs.

    Attributes:
        split: "train", "valid" or "test".
        class_name: the canonical class.
        source_folder: the class folder's own name in the source.
        path: absolute path of the file.
        relative_path: path relative to the source root, with "/" separators (stable across machines).
    """

    split: str
    class_name: str
    source_folder: str
    path: Path
    relative_path: str


@dataclass(frozen=True)
class Discovery:
    """Every file of a source with its split and class, and how the folders were read.

    Attributes:
        root: the folder the relative paths start from.
        layout: "splits" (split folders given) or "class-folders" (split here by seed).
        files: sorted by split, class and relative path.
        class_folders: split -> {folder name: class}, for the report.
        ignored_folders: folders mapped to a class outside the chosen classes, or to "" by --class-map.
        ignored_files: files outside any class folder, with the reason.
    """

    root: Path
    layout: str
    files: tuple[SourceFile, ...]
    class_folders: dict[str, dict[str, str]]
    ignored_folders: tuple[str, ...]
    ignored_files: tuple[dict[str, str], ...]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted({file.class_name for file in self.files}))


def parse_class_map(entries: Sequence[str]) -> dict[str, str]:
    """`FOLDER_GLOB=CLASS` entries (commas also separate) to a mapping; `CLASS` empty means ignore."""
    mapping: dict[str, str] = {}
    for entry in (part.strip() for text in entries for part in text.split(",")):
        if not entry:
            continue
        pattern, sep, class_name = entry.partition("=")
        if not sep or not pattern.strip():
            raise SourceError(f"--class-map entry {entry!r} is not FOLDER=CLASS (e.g. 'squamous*=squamous')")
        class_name = class_name.strip()
        if class_name and not _CLASS_NAME.match(class_name):
            raise SourceError(f"--class-map class name {class_name!r} must be letters, digits, '_', '.', '-'")
        mapping[pattern.strip()] = class_name
    return mapping


def canonical_class(folder: str, class_map: Mapping[str, str]) -> str | None:
    """The class a folder name maps to: `class_map` globs first (case-insensitive), then CLASS_RULES.

    Returns "" for a folder the class map says to ignore and None for one nothing matches.
    """
    lowered = folder.lower()
    for pattern, class_name in class_map.items():
        if fnmatch.fnmatchcase(lowered, pattern.lower()):
            return class_name
    for prefix, class_name in CLASS_RULES:
        if lowered.startswith(prefix):
            return class_name
    return None


def resolve_source(source: str, download_dir: Path | None = None) -> Path:
    """A local folder for SOURCE, downloading `kaggle:OWNER/SLUG` with kagglehub when needed."""
    if source.startswith(KAGGLE_PREFIX):
        return download_kaggle(source[len(KAGGLE_PREFIX):], download_dir)
    root = Path(source).expanduser()
    if not root.is_dir():
        raise SourceError(f"SOURCE {source!r} is not a folder (nor kaggle:OWNER/SLUG)")
    return root.resolve()


def download_kaggle(handle: str, download_dir: Path | None = None) -> Path:
    """Download a Kaggle dataset with kagglehub (which caches it) and return its folder."""
    if not _KAGGLE_HANDLE.match(handle):
        raise SourceError(f"kaggle source {handle!r} is not OWNER/SLUG (e.g. mohamedhanyyy/chest-ctscan-images)")
    kagglehub = require("kagglehub", "kaggle", "Downloading a Kaggle dataset")
    try:
        if download_dir is None:
            path = kagglehub.dataset_download(handle)
        else:
            path = kagglehub.dataset_download(handle, output_dir=str(download_dir))
    except Exception as error:  # offline, no credentials, unknown dataset: all end the same way
        raise SourceError(
            f"Could not download the Kaggle dataset {handle!r} ({type(error).__name__}: {error}). "
            f"Download it by hand from https://www.kaggle.com/datasets/{handle} (Download button, or "
            f"`kaggle datasets download -d {handle}` with credentials in ~/.kaggle/kaggle.json), unzip it, "
            f"and point SOURCE at the unzipped folder: augstudy prepare /path/to/folder --out DIR"
        ) from error
    folder = Path(path)
    if not folder.is_dir():
        raise SourceError(f"kagglehub returned {str(folder)!r} for {handle!r}, which is not a folder")
    return folder


def discover(
    root: Path,
    class_map: Mapping[str, str],
    classes: Sequence[str] = (),
    val_frac: float | None = None,
    test_frac: float | None = None,
    seed: int = 0,
) -> Discovery:
    """List every file under `root` with its split and canonical class.

    Args:
        classes: the classes to keep (others are ignored); empty keeps all found.
        val_frac, test_frac: only for a folder of class folders, which has no splits of its own.
        seed: for that split; each class is shuffled by its own generator, so adding a class
            does not move the files of another.
    """
    base, split_dirs = _find_split_folders(root)
    if split_dirs:
        if val_frac is not None or test_frac is not None:
            raise SourceError(f"{base} already has split folders {sorted(split_dirs)}; --val-frac and "
                              "--test-frac only apply to a folder of class folders")
        layout = "splits"
        folders = {split: _class_folders(split_dirs[split]) for split in SPLITS}
        ignored_files = [item for split in SPLITS for item in _stray_files(split_dirs[split], base)]
    else:
        layout = "class-folders"
        folders = {"all": _class_folders(base)}
        ignored_files = _stray_files(base, base)
        if not folders["all"]:
            raise SourceError(f"{root} holds neither split folders (train/valid/test, or Data/...) nor class "
                              "folders with files in them")
    mapped = _map_folders(folders, class_map, base)
    found = sorted({name for by_folder in mapped.values() for name in by_folder.values() if name})
    chosen = list(classes) or found
    missing = [name for name in chosen if name not in found]
    if missing:
        raise SourceError(f"--classes asks for {missing}, but {base} has only {found} "
                          f"(folders: {_folder_listing(mapped)})")
    ignored_folders = tuple(f"{split}/{folder}" for split, by_folder in mapped.items()
                            for folder, name in by_folder.items() if name not in chosen)
    files: list[SourceFile] = []
    for split, by_folder in mapped.items():
        parent = split_dirs[split] if split_dirs else base
        for folder, class_name in by_folder.items():
            if class_name in chosen:
                files.extend(SourceFile(split, class_name, folder, path, path.relative_to(base).as_posix())
                             for path in _files_under(parent / folder))
    if layout == "class-folders":
        files = _stratified_split(files, DEFAULT_VAL_FRAC if val_frac is None else val_frac,
                                  DEFAULT_TEST_FRAC if test_frac is None else test_frac, seed)
    order = {split: rank for rank, split in enumerate(SPLITS)}
    files.sort(key=lambda f: (order[f.split], f.class_name, f.relative_path))
    return Discovery(base, layout, tuple(files), {split: dict(sorted(by_folder.items()))
                                                  for split, by_folder in mapped.items()},
                     ignored_folders, tuple(ignored_files))


def _find_split_folders(root: Path) -> tuple[Path, dict[str, Path]]:
    """Split folders in `root`, `root/Data` or `root/data`, descending through lone wrapper folders
    (a single subfolder that itself holds folders)."""
    base = root
    for _ in range(4):
        for candidate in (base, base / "Data", base / "data"):
            if candidate.is_dir():
                split_dirs = _split_dirs(candidate)
                if split_dirs:
                    missing = [split for split in SPLITS if split not in split_dirs]
                    if missing:
                        raise SourceError(
                            f"{candidate} has split folders {sorted(split_dirs)} but no {missing}; give all "
                            "of train/valid/test, or point SOURCE at one folder of class folders to split it "
                            "with --val-frac/--test-frac")
                    return candidate, split_dirs
        folders = [entry for entry in base.iterdir() if entry.is_dir() and not entry.name.startswith(".")]
        if len(folders) == 1 and any(entry.is_dir() for entry in folders[0].iterdir()):
            base = folders[0]  # an unzipped archive often wraps everything in one folder
        else:
            break
    return base, {}


def _split_dirs(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        split = SPLIT_FOLDER_NAMES.get(entry.name.lower())
        if split and entry.is_dir():
            if split in found:
                raise SourceError(f"{folder} has two folders for the {split} split: "
                                  f"{found[split].name!r} and {entry.name!r}")
            found[split] = entry
    return found


def _class_folders(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir()
                  if entry.is_dir() and not entry.name.startswith(".") and any(_files_under(entry)))


def _files_under(folder: Path) -> list[Path]:
    """Every non-hidden file under a class folder, subfolders included, in a stable order."""
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts))


def _stray_files(folder: Path, base: Path) -> list[dict[str, str]]:
    return [{"path": entry.relative_to(base).as_posix(), "reason": "not inside a class folder"}
            for entry in sorted(folder.iterdir()) if entry.is_file() and not entry.name.startswith(".")]


def _map_folders(folders: dict[str, list[str]], class_map: Mapping[str, str],
                 base: Path) -> dict[str, dict[str, str]]:
    mapped: dict[str, dict[str, str]] = {}
    unmapped: list[str] = []
    for split, names in folders.items():
        mapped[split] = {}
        for name in names:
            class_name = canonical_class(name, class_map)
            if class_name is None:
                unmapped.append(name if split == "all" else f"{split}/{name}")
            else:
                mapped[split][name] = class_name
    if unmapped:
        rules = ", ".join(f"{prefix}* -> {name}" for prefix, name in CLASS_RULES)
        raise SourceError(
            f"class folders in {base} that map to no class: {unmapped}. Built-in rules: {rules}. "
            f"Map them with --class-map 'FOLDER=CLASS' (globs allowed, e.g. '{unmapped[0].split('/')[-1]}=mine'; "
            "'FOLDER=' ignores a folder)")
    return mapped


def _folder_listing(mapped: dict[str, dict[str, str]]) -> str:
    return ", ".join(f"{split}/{folder} -> {name or '(ignored)'}"
                     for split, by_folder in mapped.items() for folder, name in by_folder.items())


def _stratified_split(files: list[SourceFile], val_frac: float, test_frac: float,
                      seed: int) -> list[SourceFile]:
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise SourceError(f"--val-frac {val_frac} and --test-frac {test_frac} must be in [0, 1) and sum below 1")
    by_class: dict[str, list[SourceFile]] = {}
    for file in files:
        by_class.setdefault(file.class_name, []).append(file)
    result: list[SourceFile] = []
    for class_name, members in sorted(by_class.items()):
        members.sort(key=lambda f: f.relative_path)
        rng = np.random.default_rng([seed, zlib.crc32(class_name.encode())])
        order = rng.permutation(len(members))
        n_test = round(len(members) * test_frac)
        n_val = round(len(members) * val_frac)
        for rank, index in enumerate(order):
            split = "test" if rank < n_test else "valid" if rank < n_test + n_val else "train"
            file = members[index]
            result.append(SourceFile(split, file.class_name, file.source_folder, file.path, file.relative_path))
    return result
