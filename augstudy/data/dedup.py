"""Exact and near-duplicate groups, and which member of each group the dedup split keeps.

Public image sets are full of copies: in the chest-CT set, 46 of 54 normal test files are
byte-identical to a train file, which inflates test accuracy. Three relations link two files:
the same bytes (sha256), the same decoded pixels (a re-encoding), or perceptual hashes within
PHASH_THRESHOLD bits (resized, re-compressed or lightly marked copies). Groups are the connected
components of those links.

The perceptual hash is a 256-bit DCT hash: the grey image is box-averaged to 64x64, transformed
with a 2-D DCT-II, and each of the 16x16 lowest-frequency coefficients becomes one bit, set when it
is above the median of the non-DC ones. Why 256 bits and 12: on the chest-CT set the common 64-bit
pHash puts different slices of one patient 2 bits apart, while at 256 bits they sit 16 or more
bits apart, copies with annotation marks at 10-12, and the two classes at least 72 apart; copies
resized to 50-90 % or re-saved as JPEG (quality 75) stay within 8 bits for images of 250 px and
more (below ~150 px the hash is less stable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.fft import dctn
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

PHASH_SIDE = 64
PHASH_FREQS = 16
PHASH_BITS = PHASH_FREQS * PHASH_FREQS
PHASH_THRESHOLD = 12
SPLIT_RANK = {"train": 0, "valid": 1, "test": 2}
_POPCOUNT = np.array([value.bit_count() for value in range(256)], dtype=np.uint16)
_ROWS_PER_BLOCK = 512


@dataclass(frozen=True)
class HashedFile:
    """What duplicate detection needs to know about one readable file."""

    split: str
    class_name: str
    relative_path: str
    sha256: str
    pixel_sha256: str
    phash: str


@dataclass(frozen=True)
class DedupDecision:
    """One file's fate in the dedup split.

    Attributes:
        group: 1-based duplicate group number, 0 for a file without duplicates.
        keep: whether the dedup split keeps it.
        reason: why it is dropped ("" when kept).
        kind: how a dropped file relates to its group: "bytes" or "pixels" when an identical file is
            ranked before it, else "near"; "conflict" when its group mixes classes; "" when kept.
        duplicate_of: the relative path of that identical file, or of the group's kept copy.
    """

    group: int
    keep: bool
    reason: str
    kind: str
    duplicate_of: str


def phash(luma: np.ndarray) -> str:
    """The 256-bit DCT perceptual hash of a 2-D uint8 grey image, as 64 hex digits."""
    small = Image.fromarray(np.ascontiguousarray(luma, dtype=np.uint8), "L").resize(
        (PHASH_SIDE, PHASH_SIDE), Image.Resampling.BOX)
    coefficients = dctn(np.asarray(small, dtype=np.float64), type=2, norm="ortho")
    low = coefficients[:PHASH_FREQS, :PHASH_FREQS].ravel()
    bits = low > np.median(low[1:])
    return np.packbits(bits).tobytes().hex()


def hamming_distance(first: str, second: str) -> int:
    return (int(first, 16) ^ int(second, 16)).bit_count()


def near_pairs(hashes: Sequence[str], threshold: int) -> list[tuple[int, int, int]]:
    """All (i, j, distance) with i < j whose hashes differ in at most `threshold` bits.

    Works in blocks of rows so memory stays small for tens of thousands of images.
    """
    if not hashes:
        return []
    packed = np.stack([np.frombuffer(bytes.fromhex(value), dtype=np.uint8) for value in hashes])
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(packed), _ROWS_PER_BLOCK):
        block = packed[start:start + _ROWS_PER_BLOCK]
        distances = _POPCOUNT[block[:, None, :] ^ packed[None, :, :]].sum(axis=2)
        rows, cols = np.nonzero(distances <= threshold)
        for row, col in zip(rows.tolist(), cols.tolist()):
            if start + row < col:
                pairs.append((start + row, col, int(distances[row, col])))
    return pairs


def find_groups(files: Sequence[HashedFile], threshold: int = PHASH_THRESHOLD) -> list[int]:
    """A 1-based group number per file (0 when it has no duplicate), numbered in file order."""
    edges: list[tuple[int, int]] = []
    for attribute in ("sha256", "pixel_sha256"):
        first_seen: dict[str, int] = {}
        for index, file in enumerate(files):
            first = first_seen.setdefault(getattr(file, attribute), index)
            if first != index:
                edges.append((first, index))
    edges.extend((i, j) for i, j, _ in near_pairs([file.phash for file in files], threshold))
    if not edges:
        return [0] * len(files)
    rows, cols = zip(*edges)
    graph = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(files), len(files)))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    numbers: dict[int, int] = {}
    groups: list[int] = []
    for label in component.tolist():
        if sizes[label] < 2:
            groups.append(0)
        else:
            groups.append(numbers.setdefault(label, len(numbers) + 1))
    return groups


def dedup_decisions(files: Sequence[HashedFile], groups: Sequence[int]) -> list[DedupDecision]:
    """Keep one copy of every group: the train copy if there is one, else valid, else test.

    Within a split the shortest file name wins ("10.png" over "10 - Copy (2).png"), then the path.
    Every other member is dropped, so valid and test lose each image that duplicates a train
    image. A group whose members carry different classes is a label conflict: all are dropped.
    """
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        if group:
            members.setdefault(group, []).append(index)
    decisions = [DedupDecision(0, True, "", "", "") for _ in files]
    for group, indices in members.items():
        classes = sorted({files[index].class_name for index in indices})
        if len(classes) > 1:
            for index in indices:
                decisions[index] = DedupDecision(
                    group, False, f"label conflict: the same image appears as {', '.join(classes)}", "conflict", "")
            continue
        ranked = sorted(indices, key=lambda i: (SPLIT_RANK[files[i].split],
                                                len(files[i].relative_path.rsplit("/", 1)[-1]),
                                                files[i].relative_path))
        decisions[ranked[0]] = DedupDecision(group, True, "", "", "")
        for position, index in enumerate(ranked[1:], start=1):
            kind, original = _closest_original(files, index, ranked[:position])
            detail = ""
            if kind == "near":
                detail = f" (pHash distance {hamming_distance(files[index].phash, files[original].phash)})"
            decisions[index] = DedupDecision(group, False,
                                             f"{kind} duplicate of {files[original].relative_path}{detail}",
                                             kind, files[original].relative_path)
    return decisions


def _closest_original(files: Sequence[HashedFile], index: int, earlier: Sequence[int]) -> tuple[str, int]:
    """How a dropped file relates to the members ranked before it: an identical file if there is
    one ("bytes", then "pixels"), else the group's kept copy ("near")."""
    for kind, attribute in (("bytes", "sha256"), ("pixels", "pixel_sha256")):
        for other in earlier:
            if getattr(files[other], attribute) == getattr(files[index], attribute):
                return kind, other
    return "near", earlier[0]


def leakage_counts(files: Sequence[HashedFile], groups: Sequence[int]) -> dict[str, dict[str, dict[str, int]]]:
    """Per split and class, before any removal: exact and near copies of a train image, and exact
    copies within the split itself.

    Returns {"exact": {split: {class: n}}, "near": ..., "within": ...}; "exact" and "near" cover
    valid and test (every train file trivially matches train), "within" covers all splits and
    counts files beyond the first of each set of identical files.
    """
    train_bytes = {file.sha256 for file in files if file.split == "train"}
    train_pixels = {file.pixel_sha256 for file in files if file.split == "train"}
    train_groups = {group for file, group in zip(files, groups) if group and file.split == "train"}
    splits = sorted({file.split for file in files}, key=SPLIT_RANK.__getitem__)
    classes = sorted({file.class_name for file in files})
    counts: dict[str, dict[str, dict[str, int]]] = {
        "exact": {split: dict.fromkeys(classes, 0) for split in splits if split != "train"},
        "near": {split: dict.fromkeys(classes, 0) for split in splits if split != "train"},
        "within": {split: dict.fromkeys(classes, 0) for split in splits},
    }
    seen: set[tuple[str, str]] = set()
    for file, group in zip(files, groups):
        if file.split != "train":
            if file.sha256 in train_bytes or file.pixel_sha256 in train_pixels:
                counts["exact"][file.split][file.class_name] += 1
            elif group in train_groups:
                counts["near"][file.split][file.class_name] += 1
        if (file.split, file.pixel_sha256) in seen or (file.split, file.sha256) in seen:
            counts["within"][file.split][file.class_name] += 1
        seen.update({(file.split, file.pixel_sha256), (file.split, file.sha256)})
    return counts
