"""Data sets for learning: bundled offline ones by name, or the user's own ``.npy``/``.csv``.

Bundled (they ship inside scikit-learn's and scikit-image's wheels; nothing is downloaded):

* ``digits`` — scikit-learn's 1797 handwritten digits, 8×8 pixels scaled to [0, 1] (64
  values per point; pixels 0, 32 and 39 never vary).  :func:`digit_labels` gives the classes.
* natural images — scikit-image's camera, grass, gravel and brick (512×512 grey) by default,
  or any sample image it ships (:data:`SAMPLE_IMAGES`; colour ones by their luminance):
  :func:`natural_image` and :func:`image_patches`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .checks import as_array, one_of, positive_int

BUNDLED = {"digits": "scikit-learn's 1797 handwritten digits, 8x8 pixels scaled to [0, 1]"}
#: scikit-image's bundled grey natural images (512 x 512)
IMAGES = ("camera", "grass", "gravel", "brick")
#: every sample image scikit-image ships (the others need a download)
SAMPLE_IMAGES = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins",
                 "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "moon",
                 "page", "retina", "rocket", "text")


def _digits():
    from sklearn.datasets import load_digits
    return load_digits()


def digit_labels() -> np.ndarray:
    """Classes 0–9 of the ``digits`` data set, (1797,)."""
    return _digits().target.copy()


def load_data(source: str | Path) -> np.ndarray:
    """Data points as a float array (n, d): a bundled data set's name (see :data:`BUNDLED`) or a
    path to a ``.npy`` file or a comma-separated ``.csv`` file (:func:`read_numbers`)."""
    if str(source) in BUNDLED:
        return _digits().data / 16.0
    if Path(source).suffix not in (".npy", ".csv"):
        raise ValueError(f"--data must be a bundled data set ({', '.join(BUNDLED)}) or a .npy "
                         f"or .csv file, got {str(source)!r}")
    return as_array(read_numbers(source, "--data"), str(source), ndim=2)


def read_numbers(path: str | Path, what: str) -> np.ndarray:
    """The array in a ``.npy`` file, or the numbers of a comma-separated ``.csv`` file as
    (rows, columns), one data point per row; a ``.csv`` may begin with a line of column names
    (a first line in which no field is a number).  Errors name ``what`` (the option or argument
    the path came from): a missing file, a folder, or content that is not numbers."""
    path = Path(path)
    if path.suffix not in (".npy", ".csv"):
        raise ValueError(f"{what} must be a .npy or .csv file, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"{what}: {path} is a folder, not a data file")
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file not found: {path}")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with warnings.catch_warnings():          # an empty file: the caller reports it as such
            warnings.simplefilter("ignore", UserWarning)
            return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=_column_names(path))
    except (ValueError, OSError) as err:
        # np.load takes any file that is not an array for pickled objects (refused here)
        reason = ("not a NumPy array file" if "pickled" in str(err)
                  else " ".join(str(err).split())[:120])
        raise ValueError(f"{what}: could not read {path} as a {path.suffix} file of numbers "
                         f"({reason})") from None


def _column_names(path: Path) -> int:
    """1 when the first line of the ``.csv`` file ``path`` names the columns (none of its fields
    is a number), else 0: the number of lines to skip."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        fields = fh.readline().split(",")

    def number(text):
        try:
            float(text)
            return True
        except ValueError:
            return False
    return int(any(f.strip() for f in fields) and not any(number(f) for f in fields))


def split(x: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split into training and held-out points (each at least one)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    if n_test < 1 or n_test >= len(x):
        raise ValueError(f"{len(x)} data points are too few to hold out {test_fraction:g} of them")
    return x[order[n_test:]], x[order[:n_test]]


def natural_image(name: str) -> np.ndarray:
    """A bundled image (one of :data:`SAMPLE_IMAGES`; colour ones by their luminance) scaled to
    zero mean and unit variance, (height, width)."""
    one_of(name, "image", SAMPLE_IMAGES)
    from skimage import color, data
    image = getattr(data, name)()
    image = color.rgb2gray(image[..., :3]) if image.ndim == 3 else image.astype(float)
    return (image - image.mean()) / image.std()


def image_patches(size: int, per_image: int, seed: int,
                  images: Sequence[str] = IMAGES) -> np.ndarray:
    """``per_image`` square patches of ``size`` × ``size`` pixels from each bundled image (each
    scaled to zero mean, unit variance), at seeded random positions: (n, size²), row-major."""
    size, per_image = positive_int(size, "size"), positive_int(per_image, "per_image")
    loaded = [natural_image(name) for name in images]
    smallest = min(min(image.shape) for image in loaded)
    if size > smallest:
        raise ValueError(f"size must be at most {smallest} pixels (the smallest image's side), "
                         f"got {size}")
    rng = np.random.default_rng(seed)
    patches = []
    for image in loaded:
        rows = rng.integers(0, image.shape[0] - size + 1, per_image)
        cols = rng.integers(0, image.shape[1] - size + 1, per_image)
        patches.append(np.stack([image[r:r + size, c:c + size].ravel()
                                 for r, c in zip(rows, cols)]))
    return np.concatenate(patches)
