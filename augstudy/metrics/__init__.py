"""GAN quality metrics (KID, FID, multi-scale SWD) and the memorisation check.

Plain functions over feature arrays or image arrays live in `kid_fid`, `swd` and `memorisation`;
`evaluate` runs them over two image sources (the `augstudy gan-metrics` verb) or over a generator
at snapshot time. Every default is in `defaults`.
"""
