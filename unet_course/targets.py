"""Training targets that keep touching nuclei apart: borders cut out, three classes, and the
border-weighted loss map of Ronneberger et al. 2015. Label maps are ``(H, W)`` integer arrays,
0 = background (else TypeError / ValueError from ``label_maps.check_labels``).
"""

from __future__ import annotations

import numpy as np

from unet_course.label_maps import check_labels

CLASSES = ("background", "interior", "boundary")  # three_class_targets' values 0, 1, 2


def separate_touching(labels: np.ndarray) -> np.ndarray:
    """``labels`` with every object pixel that has an 8-neighbour of another object set to 0
    (a gap about 2 pixels wide where two nuclei touch: the paper's targets); same dtype."""
    labels = check_labels(labels, "labels")
    return np.where(_touching(labels, 1), 0, labels).astype(labels.dtype)


def _touching(labels: np.ndarray, width: int) -> np.ndarray:
    """(H, W) bool: object pixels with another object within ``width`` pixels (a
    ``(2 width + 1)``-square window; background does not count)."""
    from scipy import ndimage as ndi

    work = labels.astype(np.int64)
    big = int(work.max(initial=0)) + 1  # stands in for background when looking for smaller ids
    window = (2 * width + 1, 2 * width + 1)
    higher = ndi.grey_dilation(work, size=window) != work
    lower = ndi.grey_erosion(np.where(work > 0, work, big), size=window, mode="nearest")
    return (work > 0) & (higher | (lower != work))


def three_class_targets(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """``(H, W)`` uint8 classes of a label map: 0 background, 1 interior, 2 boundary.

    Boundary: the object pixels with a 4-neighbour of another label
    (``skimage.segmentation.find_boundaries(mode="inner")``) and, with ``width=w > 1``, every
    object pixel within ``w`` pixels (a ``(2w+1)``-square window) of another object. ValueError
    unless ``width`` is an integer >= 1.
    """
    from skimage.segmentation import find_boundaries

    labels = check_labels(labels, "labels")
    if isinstance(width, bool) or not isinstance(width, int | np.integer) or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    classes = (labels > 0).astype(np.uint8)
    boundary = find_boundaries(labels, connectivity=1, mode="inner")
    if width > 1:
        boundary |= _touching(labels, width)
    classes[boundary] = 2
    return classes


def class_balance_weights(mask: np.ndarray) -> np.ndarray:
    """The paper's class-balancing term ``w_c`` of an ``(H, W)`` bool or 0/1 mask, ``(H, W)``
    float32: ``compute_class_weight("balanced")`` of each pixel's class (1 for a single class)."""
    from sklearn.utils.class_weight import compute_class_weight

    mask = np.asarray(mask).astype(bool)
    if mask.all() or not mask.any():
        return np.ones(mask.shape, dtype=np.float32)
    weights = compute_class_weight("balanced", classes=np.array([False, True]), y=mask.ravel())
    return weights.astype(np.float32)[mask.astype(np.intp)]


def _two_nearest(labels: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances d1 <= d2 of every pixel to the nearest and second-nearest object: (H, W)
    float64 each, ``inf`` beyond ``reach`` (one distance transform per object, inside its
    bounding box grown by ``reach``)."""
    from scipy import ndimage as ndi

    d1, d2 = np.full(labels.shape, np.inf), np.full(labels.shape, np.inf)
    r = int(np.ceil(reach))
    for value, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(s.start - r, 0), min(s.stop + r, n))
                      for s, n in zip(box, labels.shape, strict=True))
        d = ndi.distance_transform_edt(labels[grown] != value)
        d[d > reach] = np.inf
        d2[grown] = np.minimum(d2[grown], np.maximum(d1[grown], d))
        d1[grown] = np.minimum(d1[grown], d)
    return d1, d2


def unet_weight_map(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0, *,
                    tolerance: float = 1e-6) -> np.ndarray:
    """The per-pixel loss weights of Ronneberger et al. 2015, eq. 2, float32 of ``labels``'s
    shape (``(H, W)`` or ``(n, H, W)``).

    ``w = w_c + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))``, ``w_c`` the ``class_balance_weights``
    of ``labels > 0``, ``d1``, ``d2`` the distances to the nearest and second-nearest object;
    the border term on background pixels only, within ``tolerance`` of the exact one. Raises
    ValueError unless ``w0 >= 0``, ``sigma > 0`` and ``tolerance > 0``.
    """
    if isinstance(labels, np.ndarray) and labels.ndim == 3:
        return np.stack([unet_weight_map(m, w0, sigma, tolerance=tolerance) for m in labels])
    labels = check_labels(labels, "labels")
    if not (np.isfinite(w0) and w0 >= 0 and np.isfinite(sigma) and sigma > 0 and tolerance > 0):
        raise ValueError(f"expected w0 >= 0, sigma > 0 and tolerance > 0, got w0={w0}, "
                         f"sigma={sigma}, tolerance={tolerance}")
    weights = class_balance_weights(labels > 0)
    if w0 == 0 or tolerance >= w0:
        return weights
    reach = sigma * np.sqrt(2.0 * np.log(w0 / tolerance))
    d1, d2 = _two_nearest(labels, reach)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    return (weights + np.where(labels == 0, border, 0.0)).astype(np.float32)
