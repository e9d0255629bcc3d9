"""The classifier side of the study: frozen backbones, a feature cache, heads, the sweep over
synthetic-mix ratios x seeds and its other arms (classic augmentation, a real-data learning curve,
synthetic only), its statistics, answer and plots, and `predict`.

Nothing here imports Keras at module import time: the Keras backend (TensorFlow or torch) must be
chosen before the first `import keras` in the process, so every module asks `backend.import_keras`
for it inside the functions that need it.
"""
