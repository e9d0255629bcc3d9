"""The Inception-v3 2015-12-05 feature network that KID and FID are defined on.

We use NVIDIA's TorchScript export (the file StyleGAN2-ADA and clean-fid load): a standalone
``torch.jit`` archive that needs neither torchvision nor the network's source. Its
``forward(img, return_features=False, ...)`` takes float or uint8 NCHW RGB in 0..255, resizes to
299 x 299 with bilinear sampling, normalises to [-1, 1] and, with ``return_features=True``, returns
the 2048-d pool3 features. The other files that carry these weights cannot stand alone: the
pytorch-fid ``pt_inception-2015-12-05-6726825d.pth`` is a state dict for a torchvision model and
the NGC ``inception-2015-12-05.pkl`` a pickle that needs NVIDIA's source tree.

The file is found at ``--inception PATH``, else in the user cache, else downloaded there.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import torch

from augstudy.cache import cache_root
from stylegan2ada.io import atomic_open

INCEPTION_FILENAME = "inception-2015-12-05.pt"
INCEPTION_URL = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
)
DOWNLOAD_TIMEOUT_S = 60.0


class InceptionUnavailableError(RuntimeError):
    """The Inception network is neither given, cached nor downloadable; the message says what to do."""


def cached_inception_path() -> Path:
    return cache_root() / "weights" / INCEPTION_FILENAME


def download_file(url: str, destination: Path, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Stream `url` into `destination` atomically, so an interrupted download leaves no partial file."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response, atomic_open(destination, "wb") as handle:
        shutil.copyfileobj(response, handle, length=1 << 20)


def resolve_inception_path(path: str | Path | None = None, download: bool = True) -> Path:
    """The local Inception file: `path` if given, else the cached copy, else a fresh download.

    Raises:
        FileNotFoundError: `path` was given and does not exist.
        InceptionUnavailableError: nothing given or cached, and downloading is off or fails.
    """
    if path is not None:
        given = Path(path)
        if not given.is_file():
            raise FileNotFoundError(f"--inception {given}: no such file. {_where_to_get_it()}")
        return given
    cached = cached_inception_path()
    if cached.is_file():
        return cached
    if not download:
        raise InceptionUnavailableError(
            f"The Inception network is not in the cache ({cached}). {_where_to_get_it()}"
        )
    try:
        download_file(INCEPTION_URL, cached)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise InceptionUnavailableError(
            f"KID and FID need the Inception network, which is not in the cache ({cached}) and could not be "
            f"downloaded from {INCEPTION_URL} ({error}). {_where_to_get_it()}"
        ) from error
    return cached


def load_feature_network(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    """Load a TorchScript feature network in eval mode.

    Raises:
        ValueError: the file is not a TorchScript archive (e.g. the pytorch-fid state dict).
    """
    try:
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript, but the standard Inception weights exist only as TorchScript.
            warnings.filterwarnings(
                "ignore", message=".*torch.jit.load.* is deprecated", category=DeprecationWarning
            )
            network = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as error:
        hint = " Delete it so that it is downloaded again." if path == cached_inception_path() else ""
        raise ValueError(
            f"{path}: not a TorchScript network ({str(error).splitlines()[0]}).{hint} {_where_to_get_it()}"
        ) from error
    return network.eval()


def takes_return_features(network: torch.jit.ScriptModule) -> bool:
    """Whether `forward` has the `return_features` switch of the NVIDIA export."""
    return any(argument.name == "return_features" for argument in network.forward.schema.arguments)


def _where_to_get_it() -> str:
    return (
        f"Download the TorchScript Inception network from {INCEPTION_URL} on a machine with internet access, "
        f"then pass it with `augstudy gan-metrics --inception PATH` or copy it to {cached_inception_path()}. "
        "SWD and the pixel-space memorisation check need no download: `--metrics swd,memo`."
    )
