"""The digits data set as spike trains: scikit-learn's 8x8 handwritten digits (no download), a fixed
train/test split, and a deterministic rate code.

A pixel of grey level g (0..16) fires g times in STEPS = 16 steps, evenly spread: at step t when
floor((t + 1)·g/16) > floor(t·g/16). No random numbers are drawn, so every run, the PyTorch model
and snnc see the same spikes.
"""

import numpy as np

STEPS = 16
#: Held-out fraction and seed of the split (stratified by class).
TEST_FRACTION, SEED = 0.25, 0


def encode(images: np.ndarray) -> np.ndarray:
    """(batch, 64) grey levels 0..16 -> spikes (batch, STEPS, 64) as float32."""
    t = np.arange(STEPS)[None, :, None]
    g = images[:, None, :].astype(np.int64)
    return ((t + 1) * g // 16 > t * g // 16).astype(np.float32)


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The encoded ``split`` ("train" or "test") and its labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    parts = train_test_split(digits.data, digits.target, test_size=TEST_FRACTION, random_state=SEED,
                             stratify=digits.target)
    images, labels = (parts[0], parts[2]) if split == "train" else (parts[1], parts[3])
    return encode(images), labels.astype(np.int64)


def accuracy(output_spikes: np.ndarray, labels: np.ndarray) -> float:
    """Classification by spike count over all steps (batch, T, 10); ties go to the lower class."""
    return float(np.mean(output_spikes.sum(axis=1).argmax(axis=1) == labels))
