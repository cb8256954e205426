"""Training targets that help a network keep touching nuclei apart.

What belongs here: touching borders cut out of the mask (``separate_touching``), background /
interior / boundary classes (``three_class_targets``, the recipe's targets) and the
border-weighted loss map of Ronneberger et al. 2015 (``unet_weight_map`` with its
class-balancing term ``class_balance_weights``). Training with the weight map is
``train.weight_map_training``.

Label maps are 2-D integer arrays (``label_maps``), 0 = background. NumPy, SciPy and
scikit-image only.
"""

from __future__ import annotations

import numpy as np

from unet_course.label_maps import check_labels

CLASSES = ("background", "interior", "boundary")  # three_class_targets' values 0, 1, 2


def separate_touching(labels: np.ndarray) -> np.ndarray:
    """Cut the borders between touching objects out of a label map.

    A pixel of object ``a`` with an 8-neighbour of another object ``b > 0`` becomes background,
    which leaves a background gap about 2 pixels wide wherever two nuclei touch. This is how
    the paper's targets look (cells separated by background), so that a network can learn the
    gaps and connected components can then tell the nuclei apart.

    Args:
        labels: (H, W) integer label map.

    Returns:
        (H, W) label map of the same dtype with the touching borders set to 0.
    """
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
    """Background / interior / boundary classes from a label map.

    Boundary pixels are the pixels of an object with a 4-neighbour of another label
    (background or another object) — ``skimage.segmentation.find_boundaries(mode="inner")``;
    the other object pixels are interior. Touching nuclei are then separated by two rows of
    boundary, and their interiors are separate connected regions. With ``width=w``, where two
    objects touch, every pixel within ``w`` pixels (a ``(2w+1) x (2w+1)`` window) of the other
    object is boundary too, so touching interiors lie about ``2 w`` pixels apart and survive a
    blurred prediction as separate seeds; the outline against the background stays one pixel,
    so small isolated nuclei keep their interiors.

    Args:
        labels: (H, W) integer label map.
        width: boundary width in pixels (>= 1).

    Returns:
        (H, W) uint8: 0 = background, 1 = interior, 2 = boundary.
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
    """The class-balancing term ``w_c`` of the paper's weight map.

    Each class gets weight ``n_pixels / (n_classes * n_pixels_of_that_class)`` (the "balanced"
    rule of scikit-learn's ``compute_class_weight``), so the map averages to 1 and both classes
    carry the same total weight. A mask with a single class gets weight 1 everywhere.

    Args:
        mask: (H, W) bool (or 0/1) foreground mask.

    Returns:
        (H, W) float32.
    """
    mask = np.asarray(mask).astype(bool)
    fg = np.count_nonzero(mask)
    n = mask.size
    if fg in (0, n):
        return np.ones(mask.shape, dtype=np.float32)
    return np.where(mask, n / (2 * fg), n / (2 * (n - fg))).astype(np.float32)


def _two_nearest(labels: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances d1 <= d2 of every pixel to the nearest and second-nearest object.

    One Euclidean distance transform per object, computed only inside the object's bounding
    box grown by ``reach`` pixels; farther than ``reach`` a distance counts as infinite.

    Returns two (H, W) float64 arrays (``inf`` where fewer than 1 / 2 objects are in reach).
    """
    from scipy import ndimage as ndi

    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    r = int(np.ceil(reach))
    for value, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        grown = tuple(
            slice(max(s.start - r, 0), min(s.stop + r, n))
            for s, n in zip(box, labels.shape, strict=True)
        )
        d = ndi.distance_transform_edt(labels[grown] != value)
        d[d > reach] = np.inf
        d2[grown] = np.minimum(d2[grown], np.maximum(d1[grown], d))
        d1[grown] = np.minimum(d1[grown], d)
    return d1, d2


def unet_weight_map(
    labels: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    *,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """The per-pixel loss weights of Ronneberger et al. 2015, eq. 2.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))`` where ``w_c`` balances
    the two classes (``class_balance_weights`` of ``labels > 0``) and ``d1``, ``d2`` are the
    distances from pixel ``x`` to the nearest and the second-nearest object. As in the paper's
    use (narrow background gaps between touching cells), the border term is added on
    background pixels only; inside an object ``d1`` would be 0. Give it labels whose touching
    borders are cut out (``separate_touching``) to weight the gaps between touching nuclei.

    Distances beyond the reach where the border term drops below ``tolerance`` are not
    computed (``d2 > sigma * sqrt(2 ln(w0 / tolerance))``), so the result is within
    ``tolerance`` of the exact map at a cost of one small distance transform per object.

    Args:
        labels: (H, W) integer label map, or (n, H, W) (one map per image).
        w0: weight of the border term (>= 0).
        sigma: width of the border term in pixels (> 0).
        tolerance: largest error allowed in the border term (> 0).

    Returns:
        float32 weights of the shape of ``labels``.
    """
    if isinstance(labels, np.ndarray) and labels.ndim == 3:
        return np.stack([unet_weight_map(m, w0, sigma, tolerance=tolerance) for m in labels])
    labels = check_labels(labels, "labels")
    if not (np.isfinite(w0) and w0 >= 0 and np.isfinite(sigma) and sigma > 0 and tolerance > 0):
        raise ValueError(
            f"expected w0 >= 0, sigma > 0 and tolerance > 0, got w0={w0}, sigma={sigma}, "
            f"tolerance={tolerance}"
        )
    weights = class_balance_weights(labels > 0)
    if w0 == 0 or tolerance >= w0:
        return weights
    reach = sigma * np.sqrt(2.0 * np.log(w0 / tolerance))
    d1, d2 = _two_nearest(labels, reach)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    return (weights + np.where(labels == 0, border, 0.0)).astype(np.float32)
