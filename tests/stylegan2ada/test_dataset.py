"""The NVlabs dataset reader (folder and zip) and the resumable, rank-aware sampler."""

from __future__ import annotations

import io
import json
import zipfile
from itertools import islice
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from stylegan2ada.dataset import DatasetError, ImageDataset, InfiniteSampler, write_dataset


def _images(count: int, size: int = 8, channels: int = 1, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels == 1 else (size, size, channels)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize("suffix", ["", ".zip"])
@pytest.mark.parametrize("channels", [1, 3])
def test_reads_images_back_exactly_from_folder_and_zip(tmp_path: Path, suffix: str, channels: int) -> None:
    images = _images(5, channels=channels)
    dataset = ImageDataset(write_dataset(tmp_path / f"data{suffix}", images))
    assert (len(dataset), dataset.resolution, dataset.num_channels, dataset.label_dim) == (5, 8, channels, 0)
    for index, expected in enumerate(images):
        image, label = dataset[index]
        assert image.dtype == np.uint8 and image.flags.writeable
        assert np.array_equal(image, expected.reshape(8, 8, channels).transpose(2, 0, 1))
        assert label.shape == (0,)


def test_labels_become_one_hot_with_class_names(tmp_path: Path) -> None:
    path = write_dataset(tmp_path / "data.zip", _images(4), labels=[1, 0, 2, 1], class_names=["a", "b", "c"])
    dataset = ImageDataset(path, use_labels=True)
    assert dataset.label_dim == 3 and dataset.class_names == ["a", "b", "c"]
    assert [int(dataset[i][1].argmax()) for i in range(4)] == [1, 0, 2, 1]
    assert dataset.labels.sum(1).tolist() == [1, 1, 1, 1]
    assert ImageDataset(path).label_dim == 0  # labels only when asked for


def test_class_names_widen_one_hot_to_absent_classes(tmp_path: Path) -> None:
    path = write_dataset(tmp_path / "data", _images(2), labels=[0, 0], class_names=["a", "b"])
    assert ImageDataset(path, use_labels=True).label_dim == 2


def test_xflip_appends_mirrors(tmp_path: Path) -> None:
    dataset = ImageDataset(write_dataset(tmp_path / "data", _images(3)), xflip=True)
    assert len(dataset) == 6
    for index in range(3):
        assert np.array_equal(dataset[index + 3][0], dataset[index][0][:, :, ::-1])


def test_max_size_keeps_a_fixed_subset(tmp_path: Path) -> None:
    path = write_dataset(tmp_path / "data", _images(10))
    first, second = ImageDataset(path, max_size=4), ImageDataset(path, max_size=4)
    assert len(first) == 4
    assert all(np.array_equal(first[i][0], second[i][0]) for i in range(4))


def test_missing_labels_are_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write_dataset(tmp_path / "data", _images(2))
    with pytest.raises(DatasetError, match="dataset.json"):
        ImageDataset(path, use_labels=True)
    (path / "dataset.json").write_text(json.dumps({"labels": [["00000/img00000000.png", 0]]}))
    with pytest.raises(DatasetError, match="img00000001.png"):
        ImageDataset(path, use_labels=True)


def _write_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    PIL.Image.fromarray(array, mode=mode).save(buffer, format="png")
    path.write_bytes(buffer.getvalue())


def test_bad_images_are_errors_naming_the_file(tmp_path: Path) -> None:
    _write_png(tmp_path / "a" / "x.png", np.zeros([8, 6], np.uint8))
    with pytest.raises(DatasetError, match="x.png is 6x8"):
        ImageDataset(tmp_path / "a")
    _write_png(tmp_path / "b" / "1.png", np.zeros([8, 8], np.uint8))
    _write_png(tmp_path / "b" / "2.png", np.zeros([16, 16], np.uint8))
    dataset = ImageDataset(tmp_path / "b")
    with pytest.raises(DatasetError, match="2.png"):
        dataset[1]
    _write_png(tmp_path / "c" / "rgba.png", np.zeros([8, 8, 4], np.uint8))
    with pytest.raises(DatasetError, match="rgba.png has image mode RGBA"):
        ImageDataset(tmp_path / "c")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        ImageDataset(tmp_path / "d")
    with pytest.raises(DatasetError, match="holds no images"):
        ImageDataset(_empty_zip(tmp_path / "e.zip"))
    with pytest.raises(DatasetError, match="no such folder"):
        ImageDataset(tmp_path / "missing")


def _empty_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "no images")
    return path


def test_sampler_position_is_a_pure_function_of_the_step() -> None:
    full = list(islice(iter(InfiniteSampler(10, 4, seed=3)), 40))
    resumed = list(islice(iter(InfiniteSampler(10, 4, seed=3, start_step=4)), 24))
    assert resumed == full[16:]
    for epoch in range(4):
        assert sorted(full[epoch * 10:(epoch + 1) * 10]) == list(range(10))
    assert full != list(islice(iter(InfiniteSampler(10, 4, seed=4)), 40))


def test_ranks_read_disjoint_slices_of_each_global_batch() -> None:
    single = list(islice(iter(InfiniteSampler(7, 4, seed=1)), 20))
    ranks = [list(islice(iter(InfiniteSampler(7, 4, seed=1, rank=r, world_size=2)), 10)) for r in range(2)]
    merged = [index for step in range(5) for rank in ranks for index in rank[step * 2:(step + 1) * 2]]
    assert merged == single
    with pytest.raises(ValueError, match="divisible"):
        InfiniteSampler(7, 3, world_size=2)
