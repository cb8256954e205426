"""Checks for notebook 04's exercises (the U-Net architecture).

Each ``check_exercise_N`` takes the learner's function and returns a ``Result``. The expected
values come from Keras itself (``count_params`` of a model that ``build_unet`` builds) and from
the package's graph walks (``unet_output_size``, ``receptive_field``), never from the reference
solutions, which do the arithmetic by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from unet_course.lessons.exercises import Result, run_check

SEED_PARAMS = 1_941_105  # seed_unet, 16 base filters


def check_exercise_1(params_with_base: Callable[[int], int], times: Any) -> Result:
    """``params_with_base(base) -> int``: parameters of the seed-like U-Net (3 input channels,
    depth 4, one sigmoid output) with ``base`` filters at level 1, and ``times`` (2 or 4): about
    how many times the seed model's count the 32-filter model has."""
    from unet_course.model import build_unet

    bases = (16, 32, 8)
    want = [build_unet((None, None, 3), base_filters=b).count_params() for b in bases]

    times_unset = times is None or times is Ellipsis

    def attempt():
        return [int(params_with_base(b)) for b in bases], times

    def verify(value):
        got, given = value
        if got[0] != SEED_PARAMS:
            return (f"with 16 base filters the model has {SEED_PARAMS:,} parameters, you gave "
                    f"{got[0]:,}; are the biases, the up-convolutions and the 1x1 head counted?")
        if got != want:
            return f"your counts {got} differ from Keras' for base filters {bases}"
        if times_unset:
            return None  # the counts are right; `times` is judged once it is set
        if given not in (2, 4):
            return f"times should be 2 or 4, got {given!r}"
        if given != round(want[1] / want[0] / 2) * 2:
            return "times: how does a product of two channel counts grow when both double?"
        return None

    result = run_check("Exercise 1", attempt, verify)
    if result.right and times_unset:
        return Result("Exercise 1", "not yet", "Your counts are right; now set `times` (2 or 4) "
                      "in the cell above, run it, then run this cell.")
    return result


def check_exercise_2(paper_tiles: Callable[..., Any]) -> Result:
    """``paper_tiles(target, depth=3) -> (tile_below, tile_above, out_below, out_above)``: the
    input sides nearest to ``target`` that the paper's unpadded model with ``depth`` poolings
    accepts, one at or below ``target`` and one at or above it (both ``target`` itself when it
    fits, as 700 does at depth 3), and their output sides. Tried at depth 3 and at depth 2."""
    from unet_course.geometry import nearest_valid_sizes, unet_output_size

    cases = ((1000, 3), (333, 3), (700, 3), (450, 2))  # (target, depth)
    want = []
    for t, d in cases:
        below, above = nearest_valid_sizes(t, d, "valid")
        want.append((below, above, unet_output_size(below, d, "valid"),
                     unet_output_size(above, d, "valid")))

    def verify(got):
        for (t, d), g, w in zip(cases, got, want, strict=True):
            g = tuple(int(v) for v in g)
            where = f"for target {t} at depth {d}"
            if g[:2] != w[:2] and w[0] == w[1] == t:
                return (f"{where} you gave tiles {g[:2]}, but {t} itself fits the model: it is "
                        "then both the tile at or below and the tile at or above")
            if g[:2] != w[:2]:
                return (f"{where} you gave tiles {g[:2]}; does every block lose 4 pixels, must "
                        "the size be even before each pooling, and do you use `depth`?")
            if g[2:] != w[2:]:
                return (f"{where}, for tiles {w[:2]} you gave outputs {g[2:]}; each "
                        "up-convolution doubles, then its block loses 4")
        return None

    return run_check("Exercise 2", lambda: [paper_tiles(t, depth=d) for t, d in cases], verify)


def check_exercise_3(textbook_rf: Callable[[int], int]) -> Result:
    """``textbook_rf(depth) -> int``: the textbook receptive field of ``build_unet(depth=...)``."""
    from unet_course.model import build_unet
    from unet_course.receptive_field import receptive_field

    depths = (1, 2, 4, 5)
    want = [receptive_field(build_unet((None, None, 3), base_filters=2, depth=d)) for d in depths]

    def verify(got):
        got = [int(v) for v in got]
        if got[2] != 200:
            return f"at depth 4 the field is 200 pixels (the notebook's walk), you gave {got[2]}"
        if got != want:
            return (f"your fields {got} for depths {depths} differ from the layer walk's; "
                    "did you count the poolings' own (2 - 1) * j?")
        return None

    return run_check("Exercise 3", lambda: [textbook_rf(d) for d in depths], verify)
