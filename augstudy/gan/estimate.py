"""How long a study's GAN step takes on one GPU, printed by `augstudy run CONFIG --dry-run` before any GPU time.

augstudy's own GPU speed has not been measured (no GPU was available to the sessions that built it;
`make gpu-check` measures it). The only figure is the reference implementation's published speed,
21.6-24.2 s/kimg for StyleGAN2-ADA at 256 px (`auto`, ADA on, one V100, at `auto`'s batch of 16): the
estimate scales it by the kimg to train and labels it as such. It exists for 256 px only.
"""

from __future__ import annotations

from typing import Any

REFERENCE_SEC_PER_KIMG = {256: (21.6, 24.2)}  # NVlabs stylegan2-ada-pytorch, one V100 (DESIGN.md)
SOURCE = ("the reference StyleGAN2-ADA's published 21.6-24.2 s/kimg at 256 px (`auto`, ADA on, one V100, batch "
          "16), times the kimg to train; NOT measured with augstudy (run `make gpu-check` on your GPU for that)")


def gan_gpu_time(resolution: int, kimg: float | None, runs: int | None) -> dict[str, Any]:
    """The estimated GPU hours of `runs` networks of `kimg` each at `resolution`, with where the figure comes from."""
    estimate: dict[str, Any] = {"resolution": resolution, "kimg_per_run": kimg, "runs": runs, "gpus": 1}
    reference = REFERENCE_SEC_PER_KIMG.get(resolution)
    if reference is None or kimg is None or runs is None:
        missing = (f"no reference speed at {resolution} px" if reference is None else
                   "kimg is not set" if kimg is None else "the number of runs is not known before `prepare`")
        return {**estimate, "hours": None, "why_none": missing}
    low, high = (seconds * kimg * runs / 3600 for seconds in reference)
    return {**estimate, "reference_sec_per_kimg": list(reference), "hours": [round(low, 2), round(high, 2)],
            "source": SOURCE}


def study_gan_gpu_time(prepare: dict[str, Any], train_gan: dict[str, Any]) -> dict[str, Any]:
    """`gan_gpu_time` for a study's resolved prepare and train_gan options (one run per class unless
    conditional); a batch other than the reference's 16 is named, since it changes the speed."""
    classes = train_gan.get("classes") or prepare.get("classes") or []
    runs = 1 if train_gan.get("conditional") else (len(classes) or None)
    estimate = gan_gpu_time(int(prepare["resolution"]), train_gan.get("kimg"), runs)
    batch = train_gan.get("batch")
    if estimate["hours"] is not None and batch not in (None, 16):
        estimate["caveat"] = (f"batch {batch}: the reference figure is at batch 16; a smaller batch uses the GPU "
                              "less fully, so expect the upper end or more")
    return estimate
