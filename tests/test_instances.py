"""Tests for the instance modules (scoring, postprocess, targets, overlay) and tiled prediction
(predict): hand-worked scores, brute-force references, tiling."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from unet_course import geometry, overlay, postprocess, predict, scoring, targets

THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)


# --------------------------------------------------------------------------- helpers
def squares(shape, boxes):
    """Label map with label k+1 filling boxes[k] = (r0, r1, c0, c1) (later boxes on top)."""
    labels = np.zeros(shape, dtype=np.int32)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        labels[r0:r1, c0:c1] = k + 1
    return labels


def random_labels(rng, size=48, count=8, max_id=None):
    """Overlapping random discs; labels are random ids (not consecutive)."""
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), dtype=np.int64)
    ids = rng.choice(np.arange(1, max_id or 10 * count), size=count, replace=False)
    for k in ids:
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(2, 9)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return labels


def reference_counts(true, pred, thresholds):
    """Brute force: per-object masks, IoU by loops, maximum one-to-one matching by SciPy."""
    t_ids = [v for v in np.unique(true) if v]
    p_ids = [v for v in np.unique(pred) if v]
    iou = np.zeros((len(t_ids), len(p_ids)))
    for a, ta in enumerate(t_ids):
        for b, pb in enumerate(p_ids):
            A, B = true == ta, pred == pb
            iou[a, b] = (A & B).sum() / (A | B).sum()
    tp = []
    for t in thresholds:
        hit = (iou > t).astype(float)
        rows, cols = linear_sum_assignment(hit, maximize=True)
        tp.append(int(hit[rows, cols].sum()))
    tp = np.array(tp)
    return iou, tp, len(p_ids) - tp, len(t_ids) - tp


# --------------------------------------------------------------------------- hand-worked scores
def test_thresholds_are_the_dsb_ones():
    assert scoring.DSB_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_float_thresholds_with_long_fractions_match_exactly():
    """0.1 + 0.2 and 0.05 * 7 + 0.5 carry denominators of 10**16 or more: the exact integer
    comparison must not overflow int64 (it once miscounted such thresholds)."""
    true = np.zeros((50, 50), np.int32)
    true[5:45, 5:30] = 1  # 1,000 pixels
    pred = np.zeros_like(true)
    pred.flat[np.flatnonzero(true)[:850]] = 1  # 850 of them: IoU 0.85 exactly
    for threshold, expected in [(0.85, 0), (0.5 + 0.05 * 7, 0), (0.8499999999999999, 1),
                                (0.1 + 0.2, 1), (0.9 + 0.05, 0), (0.7 + 0.1 + 0.05, 0)]:
        tp, _, _ = scoring.match_counts(true, pred, [threshold])
        assert tp.tolist() == [expected], (threshold, tp)


def test_perfect_prediction_scores_one_whatever_the_label_values():
    true = squares((20, 20), [(0, 5, 0, 5), (10, 15, 10, 18)])
    pred = np.where(true == 1, 7, np.where(true == 2, 3, 0))
    tp, fp, fn = scoring.match_counts(true, pred)
    assert tp.tolist() == [2] * 10 and fp.tolist() == [0] * 10 and fn.tolist() == [0] * 10
    assert scoring.dsb_score(true, pred) == 1.0


def test_empty_images():
    empty = np.zeros((8, 8), dtype=np.int32)
    one = squares((8, 8), [(1, 4, 1, 4)])
    assert scoring.dsb_score(empty, empty) == 1.0  # nothing to find, nothing found
    assert scoring.dsb_score(empty, one) == 0.0  # one false positive at every threshold
    assert scoring.dsb_score(one, empty) == 0.0  # one false negative at every threshold


def test_one_missed_nucleus():
    # true: A and B; prediction finds A exactly and misses B.
    # every threshold: TP = 1, FP = 0, FN = 1 -> 1 / 2; mean 0.5
    true = squares((20, 20), [(0, 5, 0, 5), (10, 15, 10, 15)])
    pred = squares((20, 20), [(0, 5, 0, 5)])
    tp, fp, fn = scoring.match_counts(true, pred)
    assert (tp.tolist(), fp.tolist(), fn.tolist()) == ([1] * 10, [0] * 10, [1] * 10)
    assert scoring.dsb_score(true, pred) == pytest.approx(0.5)


def test_one_split_nucleus():
    # true: A (10x10 = 100 px) and B (matched exactly).
    # pred: A cut into A1 (7 rows, 70 px) and A2 (3 rows, 30 px): IoU(A, A1) = 0.7, IoU(A, A2) = 0.3.
    # t = 0.50 .. 0.65: TP = 2 (A1, B), FP = 1 (A2), FN = 0      -> 2/3
    # t = 0.70 .. 0.95: TP = 1 (B),     FP = 2 (A1, A2), FN = 1  -> 1/4 (0.7 is not > 0.7)
    # score = (4 * 2/3 + 6 * 1/4) / 10 = 25/60 = 5/12
    true = squares((30, 30), [(0, 10, 0, 10), (20, 25, 20, 25)])
    pred = squares((30, 30), [(0, 7, 0, 10), (7, 10, 0, 10), (20, 25, 20, 25)])
    iou, true_ids, pred_ids = scoring.iou_matrix(true, pred)
    np.testing.assert_allclose(iou, [[0.7, 0.3, 0.0], [0.0, 0.0, 1.0]])
    assert true_ids.tolist() == [1, 2] and pred_ids.tolist() == [1, 2, 3]
    tp, fp, fn = scoring.match_counts(true, pred)
    assert tp.tolist() == [2, 2, 2, 2, 1, 1, 1, 1, 1, 1]
    assert fp.tolist() == [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]
    assert fn.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert scoring.dsb_score(true, pred) == pytest.approx(5 / 12)


def test_one_merged_pair():
    # true: A (6 rows x 10 = 60 px) touching B (4 rows x 10 = 40 px); pred: one 100 px object.
    # IoU(A, pred) = 0.6, IoU(B, pred) = 0.4.
    # t = 0.50, 0.55: TP = 1, FP = 0, FN = 1 -> 1/2
    # t = 0.60 .. 0.95: TP = 0, FP = 1, FN = 2 -> 0   (IoU exactly 0.6 is not above 0.6)
    # score = 2 * 1/2 / 10 = 0.1
    true = squares((12, 12), [(0, 6, 0, 10), (6, 10, 0, 10)])
    pred = (true > 0).astype(np.int32)
    tp, fp, fn = scoring.match_counts(true, pred)
    assert tp.tolist() == [1, 1] + [0] * 8
    assert fp.tolist() == [0, 0] + [1] * 8
    assert fn.tolist() == [1, 1] + [2] * 8
    assert scoring.dsb_score(true, pred) == pytest.approx(0.1)


def test_below_half_one_object_matches_at_most_one():
    # At IoU threshold 0.2 the merged prediction overlaps A (0.6) and B (0.4) but is matched once.
    true = squares((12, 12), [(0, 6, 0, 10), (6, 10, 0, 10)])
    pred = (true > 0).astype(np.int32)
    tp, fp, fn = scoring.match_counts(true, pred, thresholds=[0.2, 0.5])
    assert tp.tolist() == [1, 1] and fp.tolist() == [0, 0] and fn.tolist() == [1, 1]


# --------------------------------------------------------------------------- against brute force
@pytest.mark.parametrize("seed", range(12))
def test_counts_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    true = random_labels(rng, count=int(rng.integers(1, 10)))
    # a prediction that resembles the truth: shifted, dilated or eroded, plus strangers
    pred = np.roll(true, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
    pred = ndi.grey_dilation(pred, size=3) if seed % 2 else pred
    pred = np.where(random_labels(rng, count=3) > 0, 1000 + seed, pred)
    thresholds = [0.1, 0.3, 0.45, *THRESHOLDS]
    iou, ref_tp, ref_fp, ref_fn = reference_counts(true, pred, thresholds)
    np.testing.assert_allclose(scoring.iou_matrix(true, pred)[0], iou)
    tp, fp, fn = scoring.match_counts(true, pred, thresholds)
    assert tp.tolist() == ref_tp.tolist()
    assert fp.tolist() == ref_fp.tolist() and fn.tolist() == ref_fn.tolist()
    expected = np.mean(ref_tp[3:] / (ref_tp[3:] + ref_fp[3:] + ref_fn[3:]))
    assert scoring.dsb_score(true, pred) == pytest.approx(expected)
    assert scoring.dsb_score(pred, true) == pytest.approx(expected)  # TP same, FP and FN swap


def test_huge_label_values_agree_with_small_ones():
    rng = np.random.default_rng(5)
    true = random_labels(rng, size=64, count=12)
    pred = ndi.grey_dilation(true, size=3)
    expected = scoring.match_counts(true, pred)
    huge = np.where(true > 0, true + 2**40, 0)  # ids far above the pixel count
    assert np.array_equal(np.stack(scoring.match_counts(huge, pred)), np.stack(expected))
    iou, true_ids, _ = scoring.iou_matrix(huge, pred)
    np.testing.assert_array_equal(iou, scoring.iou_matrix(true, pred)[0])
    assert true_ids.min() > 2**40


def test_overlaps_count_every_pair_like_numpy():
    """The contingency table's counts against np.unique over the (true, pred) pixel pairs."""
    rng = np.random.default_rng(9)
    true = random_labels(rng, count=9)
    pred = np.where(random_labels(rng, count=6) > 0, 500, np.roll(true, 3, axis=1))
    true_ids, pred_ids, i, j, inter, union = scoring._overlaps(true, pred)
    fg = (true > 0) & (pred > 0)
    pairs, counts = np.unique(np.stack([true[fg], pred[fg]]), axis=1, return_counts=True)
    got = sorted(zip(true_ids[i].tolist(), pred_ids[j].tolist(), inter.tolist(), strict=True))
    assert got == sorted(zip(*pairs.tolist(), counts.tolist(), strict=True))
    for a, b, u in zip(true_ids[i], pred_ids[j], union, strict=True):
        assert u == np.count_nonzero((true == a) | (pred == b))
    assert inter.dtype == union.dtype == np.int64


def test_dataset_score_is_the_mean_of_image_scores():
    rng = np.random.default_rng(0)
    trues = np.stack([random_labels(rng) for _ in range(4)])
    preds = np.stack([np.roll(t, 1, axis=0) for t in trues])
    per = scoring.dsb_score_dataset(trues, preds, per_image=True)
    assert per.shape == (4,)
    assert per.tolist() == [scoring.dsb_score(t, p) for t, p in zip(trues, preds, strict=True)]
    assert scoring.dsb_score_dataset(list(trues), list(preds)) == pytest.approx(per.mean())


# --------------------------------------------------------------------------- bad input
def test_score_errors():
    a = np.zeros((8, 8), dtype=np.int32)
    with pytest.raises(ValueError, match="same shape"):
        scoring.dsb_score(a, np.zeros((8, 9), dtype=np.int32))
    with pytest.raises(TypeError, match="float"):
        scoring.dsb_score(a, a.astype(np.float32))
    with pytest.raises(TypeError, match="bool"):
        scoring.dsb_score(a > 0, a)
    with pytest.raises(ValueError, match=">= 0"):
        scoring.dsb_score(a - 1, a)
    with pytest.raises(ValueError, match="2-D"):
        scoring.dsb_score(a[None], a[None])
    with pytest.raises(TypeError, match="NumPy"):
        scoring.dsb_score(a.tolist(), a)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        scoring.dsb_score(a, a, thresholds=[0.5, 1.0])
    with pytest.raises(ValueError, match="as many images"):
        scoring.dsb_score_dataset([a, a], [a])
    with pytest.raises(ValueError, match="same shape"):  # checked before any image is scored
        scoring.dsb_score_dataset([a, a], [a, a[:4]])


# --------------------------------------------------------------------------- post-processing
def two_touching_discs(size=40, r=8.0, gap=13.0):
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), dtype=np.int32)
    c = size / 2
    labels[(yy - c) ** 2 + (xx - c + gap / 2) ** 2 <= r * r] = 1
    labels[(yy - c) ** 2 + (xx - c - gap / 2) ** 2 <= r * r] = 2
    return labels


def test_components_merge_touching_nuclei_and_watershed_splits_them():
    true = two_touching_discs()
    prob = (true > 0).astype(np.float32)
    comp = postprocess.label_instances(prob, method="components")
    ref, n = ndi.label(prob > 0.5)
    assert comp.max() == n == 1 and np.array_equal(comp, ref)
    shed = postprocess.label_instances(prob, method="watershed")
    assert shed.max() == 2 and shed.dtype == np.int32
    assert scoring.dsb_score(true, shed) > scoring.dsb_score(true, comp)
    tp, _, _ = scoring.match_counts(true, shed, thresholds=[0.8])
    assert tp[0] == 2


def test_components_match_scipy_on_random_maps():
    rng = np.random.default_rng(1)
    prob = ndi.gaussian_filter(rng.random((64, 64)), 2).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    got = postprocess.label_instances(prob, threshold=0.6, method="components", min_size=0)
    ref, n = ndi.label(prob > 0.6)
    assert got.max() == n and np.array_equal(got, ref)


def test_min_size_drops_small_objects_and_renumbers():
    labels = squares((20, 20), [(0, 2, 0, 1), (5, 10, 5, 10), (15, 16, 15, 20)])
    got = postprocess.remove_small(labels, 5)
    assert sorted(np.unique(got).tolist()) == [0, 1, 2]
    assert np.array_equal(got > 0, (labels == 2) | (labels == 3))
    prob = (labels > 0).astype(np.float32)
    assert postprocess.label_instances(prob, min_size=6).max() == 1


def test_three_class_prediction_seeds_the_watershed():
    true = two_touching_discs()
    classes = targets.three_class_targets(true)
    prob = np.eye(3, dtype=np.float32)[classes]  # a perfect (H, W, 3) prediction
    assert postprocess.label_instances(prob, method="components").max() == 1  # foreground only: merged
    got = postprocess.label_instances(prob, method="watershed")
    tp, _, _ = scoring.match_counts(true, got, thresholds=[0.9])
    assert got.max() == 2 and tp[0] == 2


def test_channel_axis_of_one_is_accepted():
    prob = (two_touching_discs() > 0).astype(np.float32)
    assert np.array_equal(
        postprocess.label_instances(prob[..., None], method="watershed"),
        postprocess.label_instances(prob, method="watershed"),
    )


def test_label_instances_errors():
    prob = np.zeros((8, 8), dtype=np.float32)
    with pytest.raises(TypeError, match="float"):
        postprocess.label_instances(np.zeros((8, 8), dtype=np.int32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        postprocess.label_instances(prob + 2)
    with pytest.raises(ValueError, match="shape"):
        postprocess.label_instances(np.zeros((8, 8, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="method"):
        postprocess.label_instances(prob, method="kmeans")
    with pytest.raises(ValueError, match="min_distance"):
        postprocess.label_instances(prob, method="watershed", min_distance=0)


# --------------------------------------------------------------------------- targets
def brute_touching(labels):
    out = labels.copy()
    h, w = labels.shape
    for y in range(h):
        for x in range(w):
            a = labels[y, x]
            near = labels[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
            if a and ((near != a) & (near > 0)).any():
                out[y, x] = 0
    return out


@pytest.mark.parametrize("seed", range(3))
def test_separate_touching_matches_brute_force(seed):
    labels = random_labels(np.random.default_rng(seed), size=32, count=6)
    got = targets.separate_touching(labels)
    assert np.array_equal(got, brute_touching(labels))


def test_separate_touching_splits_the_mask_of_touching_nuclei():
    true = two_touching_discs()
    assert ndi.label(true > 0)[1] == 1
    assert ndi.label(targets.separate_touching(true) > 0)[1] == 2


def test_three_class_targets_match_brute_force():
    labels = random_labels(np.random.default_rng(3), size=32, count=6)
    got = targets.three_class_targets(labels)
    padded = np.pad(labels, 1, mode="edge")
    expected = (labels > 0).astype(np.uint8)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        shifted = padded[1 + dy : 33 + dy, 1 + dx : 33 + dx]
        expected[(labels > 0) & (shifted != labels)] = 2
    assert got.dtype == np.uint8 and np.array_equal(got, expected)


def test_class_balance_matches_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    mask = random_labels(np.random.default_rng(4)) > 0
    w = targets.class_balance_weights(mask)
    ref = compute_class_weight("balanced", classes=np.array([False, True]), y=mask.ravel())
    np.testing.assert_allclose(w[~mask], ref[0], rtol=1e-6)
    np.testing.assert_allclose(w[mask], ref[1], rtol=1e-6)
    n, fg = mask.size, np.count_nonzero(mask)  # by hand: n / (2 * pixels of the class)
    assert w.dtype == np.float32 and w.shape == mask.shape
    assert set(np.unique(w).tolist()) == {np.float32(n / (2 * fg)), np.float32(n / (2 * (n - fg)))}
    assert np.all(w[mask] == np.float32(n / (2 * fg)))
    assert w.mean() == pytest.approx(1.0)
    assert np.all(targets.class_balance_weights(np.ones((3, 5), int)) == 1)
    assert np.all(targets.class_balance_weights(np.zeros((4, 4), bool)) == 1)


def brute_weight(labels, y, x, w0, sigma, wc):
    """Eq. 2 at one pixel from coordinates: d_i = min distance to any pixel of object i."""
    if labels[y, x]:
        return wc[y, x]
    d = sorted(
        np.sqrt(((np.argwhere(labels == k) - (y, x)) ** 2).sum(1)).min()
        for k in np.unique(labels)
        if k
    )
    if len(d) < 2:
        return wc[y, x]
    return wc[y, x] + w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize(("w0", "sigma"), [(10.0, 5.0), (5.0, 2.0), (20.0, 12.0)])
def test_weight_map_matches_direct_computation(w0, sigma):
    rng = np.random.default_rng(int(w0))
    labels = targets.separate_touching(random_labels(rng, size=48, count=7))
    w = targets.unet_weight_map(labels, w0=w0, sigma=sigma)
    wc = targets.class_balance_weights(labels > 0)
    gap = np.argwhere((labels == 0) & (ndi.label(labels == 0)[0] > 0))
    chosen = [*gap[rng.choice(len(gap), 40)], (0, 0), (47, 47), (24, 24)]
    for y, x in chosen:
        assert w[y, x] == pytest.approx(brute_weight(labels, y, x, w0, sigma, wc), abs=1e-5)
    assert w.dtype == np.float32 and w.shape == labels.shape


def test_weight_map_is_highest_in_the_gap_between_touching_nuclei():
    labels = targets.separate_touching(two_touching_discs())
    w = targets.unet_weight_map(labels)
    gap = (labels == 0) & (two_touching_discs() > 0)
    assert gap.any() and w[gap].min() > 8 > w[~gap].max() - 1  # d1 + d2 ~ 2 px in the gap


def test_weight_map_with_one_nucleus_is_class_balance_only():
    labels = squares((16, 16), [(4, 9, 4, 9)])
    np.testing.assert_array_equal(targets.unet_weight_map(labels), targets.class_balance_weights(labels > 0))


def test_weight_map_of_a_batch_is_the_stack_of_maps():
    rng = np.random.default_rng(0)
    batch = np.stack([random_labels(rng, size=32) for _ in range(3)])
    got = targets.unet_weight_map(batch)
    assert got.shape == batch.shape
    for g, labels in zip(got, batch, strict=True):
        np.testing.assert_array_equal(g, targets.unet_weight_map(labels))


def test_weight_map_errors():
    with pytest.raises(ValueError, match="sigma"):
        targets.unet_weight_map(np.zeros((4, 4), np.int32), sigma=0)
    with pytest.raises(TypeError, match="integer"):
        targets.unet_weight_map(np.zeros((4, 4), np.float32))


# --------------------------------------------------------------------------- tiling
@pytest.fixture(scope="module")
def small_models():
    import keras

    from unet_course.model import build_unet

    keras.utils.set_random_seed(0)
    same = build_unet((None, None, 3), num_classes=1, base_filters=4, depth=2, padding="same")
    valid = build_unet((None, None, 3), num_classes=3, base_filters=4, depth=2, padding="valid")
    return same, valid


def _np(x):
    import keras

    return keras.ops.convert_to_numpy(x)


def test_tiled_same_model_equals_whole_image_in_the_interior(small_models):
    same, _ = small_models
    image = np.random.default_rng(0).random((150, 133, 3)).astype(np.float32)
    whole = _np(same(np.pad(image, ((0, 2), (0, 3), (0, 0)))[None]))[0, :150, :133]
    tiled = predict.predict_tiled(same, image, tile=64, overlap=24)
    assert tiled.shape == (150, 133, 1) and tiled.dtype == np.float32
    r = 24  # beyond this the whole-image pass sees zero padding, the tiles see a mirror
    np.testing.assert_allclose(tiled[r:-r, r:-r], whole[r:-r, r:-r], atol=1e-5)
    assert np.abs(tiled - whole).max() > 1e-3  # the borders do differ: the check has teeth
    short = predict.predict_tiled(same, image, tile=64, overlap=4)  # too little context
    assert np.abs(short[r:-r, r:-r] - whole[r:-r, r:-r]).max() > 1e-3


def test_tiled_valid_model_equals_one_pass_over_the_mirrored_image(small_models):
    _, valid = small_models
    image = np.random.default_rng(1).random((70, 91, 3)).astype(np.float32)
    tiled = predict.predict_tiled(valid, image, tile=60)  # 60 -> 20: 20 pixels of context a side
    big = np.pad(image, ((20, 180 - 70 - 20), (20, 180 - 91 - 20), (0, 0)), mode="reflect")
    whole = _np(valid(big[None]))[0]  # 180 -> 140 output, covering the image at (0, 0)
    assert tiled.shape == (70, 91, 3)
    np.testing.assert_allclose(tiled, whole[:70, :91], atol=1e-5)
    np.testing.assert_allclose(tiled.sum(-1), 1.0, atol=1e-5)  # softmax survived the tiling


def test_tiled_prediction_of_a_fixed_size_model_and_a_grey_image():
    import keras

    from unet_course.model import build_unet

    keras.utils.set_random_seed(1)
    model = build_unet((32, 32, 1), num_classes=1, base_filters=2, depth=1)
    image = np.random.default_rng(2).random((45, 50)).astype(np.float32)
    got = predict.predict_tiled(model, image, overlap=4)  # tile defaults to the model's 32
    assert got.shape == (45, 50, 1)
    with pytest.raises(ValueError, match="32"):
        predict.predict_tiled(model, image, tile=64)


def test_tiling_errors(small_models):
    same, valid = small_models
    image = np.zeros((40, 40, 3), np.float32)
    with pytest.raises(ValueError, match="Nearest sizes"):  # smaller than the network minimum
        predict.predict_tiled(valid, image, tile=20)
    with pytest.raises(ValueError, match="divisible"):
        predict.predict_tiled(same, image, tile=30)
    with pytest.raises(ValueError, match="overlap"):
        predict.predict_tiled(same, image, tile=32, overlap=16)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predict.predict_tiled(same, np.zeros((40, 40, 1), np.float32), tile=32)
    with pytest.raises(TypeError, match="NumPy"):
        predict.predict_tiled(same, image.tolist(), tile=32)


def test_unet_geometry(small_models):
    same, valid = small_models
    assert geometry.unet_geometry(same) == (2, "same")
    assert geometry.unet_geometry(valid) == (2, "valid")


def test_tiling_on_the_jax_backend():
    code = textwrap.dedent(
        """
        import numpy as np, keras
        from unet_course import predict
        from unet_course.model import build_unet
        assert keras.backend.backend() == "jax"
        keras.utils.set_random_seed(0)
        m = build_unet((None, None, 3), num_classes=1, base_filters=2, depth=1, padding="valid")
        image = np.random.default_rng(1).random((20, 17, 3)).astype(np.float32)
        tiled = predict.predict_tiled(m, image, tile=28, batch_size=8)  # 28 -> 12, 4 tiles
        big = np.pad(image, ((8, 44 - 20 - 8), (8, 44 - 17 - 8), (0, 0)), mode="reflect")
        whole = np.asarray(m(big[None]))[0]  # 44 -> 28
        assert tiled.shape == (20, 17, 1)
        assert np.abs(tiled - whole[:20, :17]).max() < 1e-5
        print("ok")
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-2000:]


def test_tile_plan_reports_the_cut(small_models):
    same, valid = small_models
    assert predict.tile_plan(valid, 60, 0) == {"tile": 60, "crop": 20, "overlap": 0, "core": 20}
    assert predict.tile_plan(same, 64, 8) == {"tile": 64, "crop": 0, "overlap": 8, "core": 48}
    assert predict.tile_plan(same)["tile"] == 512  # free-size model: the nearest size >= 512


def test_predict_instances_picks_the_post_processing_from_the_output(small_models):
    same, valid = small_models
    image = np.random.default_rng(3).random((40, 52, 3)).astype(np.float32)
    labels, prob = predict.predict_instances(same, image, "components", tile=32, overlap=4)
    assert prob.shape == (40, 52, 1)
    assert np.array_equal(labels, postprocess.label_instances(prob, 0.5, "components"))
    labels, prob = predict.predict_instances(valid, image, "watershed", tile=60)
    assert prob.shape == (40, 52, 3)  # three classes: interior-seeded watershed
    assert np.array_equal(labels, postprocess.label_instances(prob, 0.5, "watershed"))
    with pytest.raises(ValueError, match="method"):
        predict.predict_instances(same, image, "kmeans")


def test_overlay_tints_objects_and_whitens_outlines():
    labels = squares((20, 24), [(2, 10, 2, 10), (12, 18, 12, 20)])
    image = np.full((20, 24, 3), 40, np.uint8)
    over = overlay.overlay_instances(image, labels)
    assert over.shape == (20, 24, 3) and over.dtype == np.uint8
    assert np.array_equal(over[labels == 0], image[labels == 0])  # background untouched
    assert np.all(over[2, 2] == 255) and not np.all(over[5, 5] == 255)  # outline vs interior
    assert not np.array_equal(over[5, 5], over[14, 15])  # two objects, two tints
    with pytest.raises(ValueError, match="differ"):
        overlay.overlay_instances(image[:10], labels)


def test_relabel_is_relabel_sequential_and_skips_maps_already_numbered_1_to_n():
    from skimage.segmentation import relabel_sequential

    from unet_course.label_maps import relabel

    gaps = np.array([[0, 7, 7], [2**40, 0, 3]], dtype=np.int64)  # huge values: no counting
    got, ids = relabel(gaps)
    np.testing.assert_array_equal(got, relabel_sequential(gaps)[0])
    assert ids.tolist() == [3, 7, 2**40]
    ordered = np.array([[0, 2, 2], [1, 0, 3]], dtype=np.int32)
    same, ids = relabel(ordered)
    assert same is ordered and ids.tolist() == [1, 2, 3]
    assert relabel(np.array([[0, 5], [0, 0]]))[0].tolist() == [[0, 1], [0, 0]]
    rng = np.random.default_rng(0)  # small values with gaps: the lookup table's path
    sparse = rng.choice([0, 2, 3, 9, 40, 41], size=(32, 32)).astype(np.int32)
    got, ids = relabel(sparse)
    expected, _, inverse = relabel_sequential(sparse)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == sparse.dtype and ids.tolist() == [2, 3, 9, 40, 41]
