"""Data for the study: the built-in phantom, `prepare` (decode, dedupe, resize) and the prepared-folder reader.

Modules: `phantom` (procedural chest-CT-like images), `sources` (where files come from and which class
they are), `decode` (any image file to normalised pixels), `dedup` (exact and perceptual duplicates),
`nvlabs_zip` (GAN training zips), `prepare` (the `prepare` step) and `prepared` (reading its output).
"""
