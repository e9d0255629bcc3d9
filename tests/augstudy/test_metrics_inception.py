"""Finding, downloading and loading the feature network, and the per-image feature cache.

A tiny TorchScript network made here stands in for Inception; nothing is downloaded.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from augstudy.metrics import features, inception
from augstudy.metrics.features import features_of_images, features_of_pixels, inception_input, open_extractor
from augstudy.metrics.images import ImageRef
from augstudy.metrics.inception import (
    INCEPTION_URL,
    InceptionUnavailableError,
    cached_inception_path,
    load_feature_network,
    resolve_inception_path,
)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


class TinyFeatures(torch.nn.Module):
    """The NVIDIA export's interface (NCHW 0..255 in, (N, D) features out) at a fraction of its size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=9, stride=8)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 128 - 1
        return F.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 2).flatten(1)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("AUGSTUDY_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def network_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny-inception.pt"
    torch.jit.script(TinyFeatures()).save(str(path))
    return path


def test_offline_without_a_path_says_where_to_get_the_network_and_how_to_pass_it(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, destination: Path, timeout_s: float = 0) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(inception, "download_file", offline)
    with pytest.raises(InceptionUnavailableError) as caught:
        resolve_inception_path(None)
    message = str(caught.value)
    assert INCEPTION_URL in message
    assert "--inception PATH" in message
    assert str(cache / "weights" / "inception-2015-12-05.pt") in message
    assert "name resolution" in message
    assert "--metrics swd,memo" in message
    with pytest.raises(InceptionUnavailableError, match="not in the cache"):
        resolve_inception_path(None, download=False)


def test_the_download_goes_into_the_cache_once(
    cache: Path, network_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        inception, "INCEPTION_URL", network_file.as_uri()
    )  # the real download code, a local URL
    path = resolve_inception_path(None)
    assert path == cached_inception_path() == cache / "weights" / "inception-2015-12-05.pt"
    assert path.read_bytes() == network_file.read_bytes()
    assert not [name for name in path.parent.iterdir() if name.name.startswith(".")]  # no temp file left

    def must_not_download(url: str, destination: Path, timeout_s: float = 0) -> None:
        raise AssertionError("downloaded again")

    monkeypatch.setattr(inception, "download_file", must_not_download)
    assert resolve_inception_path(None) == path
    assert isinstance(load_feature_network(path, torch.device("cpu")), torch.jit.ScriptModule)


def test_a_failed_download_leaves_no_partial_file(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(inception, "INCEPTION_URL", (tmp_path / "missing.pt").as_uri())
    with pytest.raises(InceptionUnavailableError, match="could not be downloaded"):
        resolve_inception_path(None)
    folder = cached_inception_path().parent
    assert not folder.exists() or not any(folder.iterdir())


def test_a_missing_path_or_a_file_that_is_not_torchscript_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt: no such file"):
        resolve_inception_path(tmp_path / "nope.pt")
    state_dict = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(TinyFeatures().state_dict(), state_dict)
    with pytest.raises(ValueError, match="pt_inception-2015-12-05-6726825d.pth: not a TorchScript network"):
        load_feature_network(state_dict, torch.device("cpu"))


def test_inception_input_is_299_px_rgb_in_0_255_with_grey_repeated() -> None:
    grey = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))[:, :, None]
    prepared = inception_input(grey)
    assert prepared.shape == (3, 299, 299) and prepared.dtype == np.float32
    assert np.array_equal(prepared[0], prepared[2])
    assert prepared.min() >= 0 and prepared.max() <= 255 and prepared.max() > 240
    colour = np.zeros((30, 30, 3), np.uint8)
    colour[..., 2] = 200
    assert inception_input(colour)[:, 150, 150] == pytest.approx([0, 0, 200], abs=0.5)


def test_features_are_cached_per_image_content(
    cache: Path, network_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for index in range(5):
        path = tmp_path / "images" / f"{index}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L").save(path)
        paths.append(path)
    extractor = open_extractor(network_file, batch_size=2)
    first = features_of_images(extractor, [ImageRef(path) for path in paths])
    assert first.shape == (5, 32)
    assert len(list(extractor.cache_dir.rglob("*.npy"))) == 5
    assert extractor.extractor_id.endswith(features.PREPROCESSING_ID)

    copy = tmp_path / "elsewhere.png"
    copy.write_bytes(paths[3].read_bytes())

    def must_not_compute(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("features recomputed")

    monkeypatch.setattr(features, "features_of_pixels", must_not_compute)
    again = features_of_images(extractor, [ImageRef(copy), *(ImageRef(path) for path in paths)])
    np.testing.assert_array_equal(again[1:], first)
    np.testing.assert_array_equal(again[0], first[3])


def test_uncached_features_match_the_cached_ones(cache: Path, network_file: Path, tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    path = tmp_path / "colour.png"
    Image.fromarray(pixels, "RGB").save(path)
    extractor = open_extractor(network_file, cache=False)
    assert extractor.cache_dir is None
    from_file = features_of_images(extractor, [ImageRef(path)])
    np.testing.assert_allclose(from_file, features_of_pixels(extractor, [pixels]), rtol=1e-6)
    assert not cache.exists()
