"""The one training run: the recipe's settings (``Recipe``), its model, batches, optimizer and
checks (``train_recipe``), the post-processing chosen on *validation* slides
(``choose_pipeline``), and ``run``, what ``python -m unet_course train`` calls.
"""

from __future__ import annotations

import dataclasses
import numbers
import sys
from pathlib import Path

import keras
import numpy as np

from unet_course import rescale
from unet_course.devices import LR_RULE, distributed, global_batch, learning_rate
from unet_course.evaluate import scores
from unet_course.files import one_colour_as_grey, to_uint8
from unet_course.normalization import stain_as_fluorescence
from unet_course.postprocess import DEFAULT_POSTPROCESSING, tune_postprocessing
from unet_course.predict import foreground, predict_classes
from unet_course.scoring import pixel_scores
from unet_course.sequence import ThreeClassSequence
from unet_course.targets import CLASSES

TARGETS = ("three_class", "binary")
MODELS = ("recipe", "seed", "unet")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The default training settings (``benchmarks/quality.py`` measures each).

    ``steps`` optimizer steps of ``batch_size`` random ``img_size`` crops, each cut from a
    slide drawn at random; every ``check_every`` steps the validation slides are scored and
    the best check's model is kept. Adam warms up linearly from a tenth of ``learning_rate``
    over ``warmup_steps``, then decays to 0 along a cosine. ``train_images`` / ``val_images``
    synthetic slides of side ``slide_size``; on a folder of real slides ``synthetic_share``
    of the crops come from synthetic slides. ``targets``: ``"three_class"`` (background /
    interior / boundary, ``boundary_width`` pixels where nuclei touch) or ``"binary"``.
    ``model``: ``"recipe"`` (``build_unet`` with percentile normalisation), ``"seed"``
    (``model.seed_unet``) or ``"unet"`` (``build_unet`` of 0-255 pixels with ``dropout``,
    ``activation`` and ``upsampling``); the last two predict binary targets only.
    """

    img_size: int = 128
    batch_size: int = 4
    base_filters: int = 16
    depth: int = 4
    batch_norm: bool = True
    steps: int = 960
    check_every: int = 120
    learning_rate: float = 3e-3
    warmup_steps: int = 60
    elastic: bool = False
    train_images: int = 240
    val_images: int = 32
    slide_size: int = 256
    synthetic_share: float = 0.5
    seed: int = 42
    targets: str = "three_class"
    boundary_width: int = 2
    gamma: float = 0.0
    model: str = "recipe"
    dropout: float = 0.0
    activation: str = "elu"
    upsampling: str = "transpose"

    def __post_init__(self) -> None:
        for name in ("img_size", "batch_size", "base_filters", "depth", "steps", "check_every",
                     "train_images", "val_images", "slide_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.img_size % 2**self.depth:
            raise ValueError(f"img_size must be a multiple of 2**depth = {2**self.depth}, "
                             f"got {self.img_size}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {self.targets!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.model != "recipe" and self.targets != "binary":
            raise ValueError(f"the {self.model} model predicts binary targets only")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate!r}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps), got {self.warmup_steps!r}")
        if not 0 <= self.synthetic_share < 1:
            raise ValueError(f"synthetic_share must be in [0, 1), got {self.synthetic_share!r}")

    @property
    def checks(self) -> int:
        """How many times the validation slides are scored."""
        return -(-self.steps // self.check_every)


def quick_recipe(recipe: Recipe | None = None) -> Recipe:
    """The same recipe shrunk for quick mode: a few small steps, a few images."""
    recipe = recipe or Recipe()
    return dataclasses.replace(recipe, img_size=64, steps=8, check_every=4, warmup_steps=0,
                               train_images=16, val_images=6, slide_size=64)


def build_model(recipe: Recipe) -> keras.Model:
    """The U-Net ``recipe.model`` names, uncompiled (see ``Recipe``)."""
    from unet_course.model import build_unet, seed_unet

    if recipe.model == "seed":
        return seed_unet((None, None, 3))
    if recipe.model == "unet":
        return build_unet((None, None, 3), base_filters=recipe.base_filters, depth=recipe.depth,
                          dropout=recipe.dropout, activation=recipe.activation,
                          batch_norm=recipe.batch_norm, upsampling=recipe.upsampling,
                          rescale=1 / 255)
    classes = len(CLASSES) if recipe.targets == "three_class" else 1
    return build_unet((None, None, 3), num_classes=classes,
                      base_filters=recipe.base_filters, depth=recipe.depth,
                      batch_norm=recipe.batch_norm, normalize=True, name="recipe_unet")


def steps_per_check(recipe: Recipe) -> int:
    """Steps between two checks: ``recipe.steps`` spread evenly over ``recipe.checks``."""
    return -(-recipe.steps // recipe.checks)


def make_sequences(splits, recipe: Recipe, extra_train=None) -> tuple[ThreeClassSequence, ThreeClassSequence]:
    """Training batches (augmented random crops, ``steps_per_check`` a pass) and validation
    batches (centre crops). ``extra_train`` (synthetic slides, or None) gives
    ``recipe.synthetic_share`` of the training crops."""
    options = {"elastic": recipe.elastic}
    if recipe.model == "recipe":  # its percentile normalisation undoes these
        options.update(brightness=0.0, contrast=0.0)
    extra = {"boundary_width": recipe.boundary_width, "gamma": recipe.gamma,
             "three_class": recipe.targets == "three_class", "image_dtype": "uint8",
             "workers": 2}
    images = [_as_predicted(image) for image in splits.train.images]
    labels = list(splits.train.labels)
    draw = None
    if extra_train is not None and len(extra_train) and recipe.synthetic_share > 0:
        n, m = len(images), len(extra_train)
        images += [_as_predicted(image) for image in extra_train.images]
        labels += list(extra_train.labels)
        draw = np.r_[np.full(n, (1 - recipe.synthetic_share) / n),
                     np.full(m, recipe.synthetic_share / m)]
    train_seq = ThreeClassSequence(images, labels, recipe.batch_size, size=recipe.img_size,
                                   augment=True, shuffle=True, seed=recipe.seed,
                                   augment_options=options, batches=steps_per_check(recipe),
                                   draw=draw, **extra)
    val_seq = ThreeClassSequence([_as_predicted(image) for image in splits.val.images],
                                 splits.val.labels, recipe.batch_size,
                                 size=recipe.img_size, augment=False, shuffle=False, **extra)
    return train_seq, val_seq


def _as_predicted(image: np.ndarray) -> np.ndarray:
    """A uint8 training slide as ``predict.predict_classes`` shows it to the network, in uint8:
    one colour as its grey brightness (``files.to_uint8``, as a DSB folder is read), a stained
    one as its negated grey brightness (``stain_as_fluorescence``), any other as it is."""
    grey = one_colour_as_grey(image)
    if grey is not image:
        return to_uint8(grey)
    seen = stain_as_fluorescence(image)
    return image if seen is image else np.round(seen).astype(np.uint8)


def compile_model(model: keras.Model, recipe: Recipe, jit_compile: bool | None = None,
                  metrics: list | None = None, loss: keras.losses.Loss | None = None):
    """Compile with Adam (warm-up, then cosine decay) and, unless ``loss`` is given,
    ``ClassesDiceLoss`` for three classes or ``BCEDiceLoss`` for binary targets."""
    from unet_course.losses import BCEDiceLoss, ClassesDiceLoss

    total = recipe.checks * steps_per_check(recipe)
    warmup = recipe.warmup_steps
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.learning_rate / 10 if warmup else recipe.learning_rate,
        decay_steps=total - warmup, warmup_target=recipe.learning_rate if warmup else None,
        warmup_steps=warmup)
    if jit_compile is None:  # XLA where it pays: on a GPU, and always on JAX
        from unet_course.train import choose_accelerator

        jit_compile = choose_accelerator().jit_compile
    if loss is None:
        loss = ClassesDiceLoss() if recipe.targets == "three_class" else BCEDiceLoss()
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=metrics,
                  jit_compile=jit_compile)
    return model


MAX_CHECK_IMAGES = 24  # validation slides scored at each check (all of them at the end)


def train_recipe(model: keras.Model, splits, recipe: Recipe, out_dir: str | Path | None = None,
                 verbose: int | str = "auto", extra_train=None) -> keras.callbacks.History:
    """Train a ``compile_model``-compiled ``model`` for ``recipe.steps``, scoring the
    ``check_slides`` at each check (``check_scores``) and keeping the best check's weights
    (also in ``out_dir/model.keras``, with ``out_dir/history.csv``, when given)."""
    train_seq, _ = make_sequences(splits, recipe, extra_train)
    from unet_course.callbacks import AtomicCSVLogger, HonourInterrupt, ScoreCheckpoint

    pick = check_slides(len(splits.val), recipe.seed)
    checker = ScoreCheckpoint([splits.val.images[i] for i in pick],
                              [splits.val.labels[i] for i in pick],
                              check_scores,
                              None if out_dir is None else Path(out_dir) / "model.keras")
    callbacks = [HonourInterrupt(), checker]
    if out_dir is not None:  # both written atomically: complete files or the previous ones
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        callbacks.append(AtomicCSVLogger(Path(out_dir) / "history.csv"))
    history = model.fit(train_seq, epochs=recipe.checks, callbacks=callbacks, verbose=verbose)
    checker.restore_best()
    return history


def check_slides(n: int, seed: int) -> list[int]:
    """The indices of the validation slides a check scores: all ``n`` of them, or
    ``MAX_CHECK_IMAGES`` drawn with ``seed``, in increasing order."""
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(n)[:MAX_CHECK_IMAGES])


def check_scores(labels, probs) -> dict[str, float]:
    """``val_dice`` and ``val_iou`` (pixel scores at 0.5) and ``val_score``, which picks the
    model: the instance score with ``DEFAULT_POSTPROCESSING`` for three-class maps, else the
    pixel Dice."""
    pixel = pixel_scores([np.asarray(t) > 0 for t in labels], [foreground(p) for p in probs],
                         0.5)
    logged = {"val_dice": pixel["dice"], "val_iou": pixel["iou"]}
    if np.asarray(probs[0]).shape[-1] != len(CLASSES):
        return {**logged, "val_score": pixel["dice"]}
    return {**logged, "val_score": scores(labels, probs, DEFAULT_POSTPROCESSING)["dsb_map"]}


def choose_pipeline(model: keras.Model, splits, size_normalise: bool = True) -> dict:
    """The watershed settings tuned on the validation slides for size-normalised prediction
    (``rescale``; the default, unless ``size_normalise=False`` or the training slides hold no
    nucleus) and for one pass at each image's own size.

    Returns ``{"scale", "settings", "native", "val", "val_native", "target_area"}``: ``"auto"``
    or 1.0, the settings of that way and of one pass, the validation ``scores`` of each, and
    the training nuclei's median area.
    """
    probs = predict_classes(model, splits.val.images)
    native, _ = tune_postprocessing(splits.val.labels, probs)
    target = rescale.median_area(splits.train.labels)
    val_native = scores(splits.val.labels, probs, native)
    val_sized, settings_sized = val_native, native
    auto = size_normalise and bool(np.isfinite(target))
    if auto:
        sized, _ = rescale.predict_size_normalised(model, splits.val.images, native, target,
                                                   first=probs)
        settings_sized, _ = tune_postprocessing(splits.val.labels, sized)
        val_sized = scores(splits.val.labels, sized, settings_sized)
    return {"scale": "auto" if auto else 1.0, "settings": settings_sized if auto else native,
            "native": native, "val": val_sized if auto else val_native,
            "val_native": val_native, "target_area": target}


def settings(quick: bool = False, **changes) -> Recipe:
    """The recipe for this run: ``Recipe()`` (``quick_recipe()`` in quick mode) with ``changes``;
    a change of ``steps`` keeps the warm-up's share of them unless ``warmup_steps`` is given."""
    base = quick_recipe() if quick else Recipe()
    if "steps" in changes and "warmup_steps" not in changes:  # the same share of warm-up
        changes["warmup_steps"] = base.warmup_steps * changes["steps"] // base.steps
    return dataclasses.replace(base, **changes)


def run(data, recipe: Recipe, out_dir: str | Path, *, devices: str | int = 1, **options) -> dict:
    """``train_and_record`` inside ``devices.distributed(devices)``: on one device, or data
    parallel on several. Raises ValueError before any work for devices that cannot train."""
    with distributed(devices) as plan:
        return train_and_record(data, recipe, out_dir, plan, **options)


def train_and_record(data, recipe: Recipe, out_dir: str | Path, plan, *, quick: bool = False,
                     precision: str = "auto", xla: bool | str = "auto", log=print) -> dict:
    """Train the recipe on ``data`` (``"synthetic"`` or a DSB2018 folder) under the
    ``devices.Plan`` ``plan``; write ``model.keras``, ``history.csv`` and ``metrics.json`` (the
    scores, the post-processing chosen on validation slides, the classical pipeline tuned on
    them, and every setting needed to repeat the run) into ``out_dir``. ``quick`` cuts a
    folder to a few dozen images. Returns the report written to ``metrics.json``.
    """
    import time

    from unet_course import datasets, train

    start = time.perf_counter()
    keras.utils.set_random_seed(recipe.seed)
    counts = {"train": recipe.train_images, "val": recipe.val_images}
    splits = datasets.load_splits(data, recipe.slide_size, quick=quick, seed=recipe.seed,
                                  counts=counts)
    log(splits.describe())
    if not any(np.any(labels) for labels in splits.train.labels):
        raise ValueError(f"--data {str(data)!r}: no training slide has a nucleus in its masks "
                         "(every mask is blank); check that each mask PNG marks one nucleus")
    extra = None
    if data != datasets.SYNTHETIC and recipe.synthetic_share > 0:
        extra = datasets.load_split(datasets.SYNTHETIC, "train", recipe.slide_size,
                                    seed=recipe.seed, counts={"train": recipe.train_images})
        log(f"with {recipe.synthetic_share:.0%} of the training crops cut from "
            f"{len(extra)} synthetic slides")
    log(f"{recipe.checks * steps_per_check(recipe)} steps of {recipe.batch_size} crops of "
        f"{recipe.img_size}x{recipe.img_size}; the validation slides are scored every "
        f"{steps_per_check(recipe)} steps and the best check is kept")
    accelerator = train.choose_accelerator(precision, xla)
    per_device, recipe = recipe, dataclasses.replace(
        recipe, batch_size=global_batch(recipe.batch_size, plan.count),
        learning_rate=learning_rate(recipe.learning_rate, plan.count))
    log(f"Training on {accelerator.describe()}"
        + (f", data parallel on {plan.count} devices ({', '.join(plan.devices)}): "
           f"{recipe.batch_size} crops a step" if plan.count > 1 else ""))
    model = train.build_model(lambda: build_model(recipe), accelerator)
    compile_model(model, recipe, accelerator.jit_compile)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    live = 1 if sys.stdout.isatty() else 2  # a bar that moves within a check, in a terminal
    history = train_recipe(model, splits, recipe, out, verbose=live, extra_train=extra)
    choice = choose_pipeline(model, splits, size_normalise=recipe.model == "recipe")
    val = choice["val"]
    checks = history.history["val_score"]
    from unet_course.baseline import tune_classical

    classical = tune_classical(splits.val.images, splits.val.labels)
    report = {
        "val_dice": val["dice"], "val_iou": val["iou"], "val_dsb_map": val["dsb_map"],
        "postprocessing": choice["settings"], "best_threshold": choice["settings"]["threshold"],
        "scale": choice["scale"], "postprocessing_native": choice["native"],
        "val_dsb_map_native": choice["val_native"]["dsb_map"],
        "val_images": len(splits.val), "best_check": int(np.argmax(checks)) + 1,
        "best_step": (int(np.argmax(checks)) + 1) * steps_per_check(recipe),
        "checks_run": len(checks), "steps_run": len(checks) * steps_per_check(recipe),
        "val_classical": classical,
        "synthetic_slides": 0 if extra is None else len(extra),
        "train_seconds": round(time.perf_counter() - start, 1),
        "data": str(data), "source": splits.source, "seed": recipe.seed,
        "quick": quick, "model": recipe.model, "recipe": dataclasses.asdict(per_device),
        "devices": list(plan.devices), "global_batch": recipe.batch_size,
        "lr_rule": LR_RULE,
        "img_size": recipe.slide_size,
        "train_median_area": choice["target_area"] if choice["scale"] == "auto" else None,
        "device": accelerator.describe(), "precision": accelerator.precision,
        "xla": accelerator.jit_compile, "keras_backend": keras.backend.backend(),
        "options": {"precision": precision, "xla": xla},
        "split": {"seed": recipe.seed, "train": len(splits.train), "val": len(splits.val),
                  "test": len(splits.test)},
    }
    from unet_course.files import write_run_record

    return write_run_record(out, report)  # atomic; adds model.keras's SHA-256

