"""Training the U-Net: defaults you can read in one cell, the device policy, and evaluation.

What belongs here:

- ``TrainConfig``: every training default in one place (Adam, BCE + Dice, patience values).
- ``choose_accelerator`` / ``Accelerator``: on a GPU, mixed precision (``mixed_bfloat16`` on
  GPUs that have fast bfloat16, ``mixed_float16`` otherwise) and XLA compilation, switched on
  automatically and reported; on a CPU the same code path without them.
- ``dtype_policy``: a context manager that sets Keras's global dtype policy and always restores
  the previous one, so building a model in mixed precision changes nothing afterwards.
- ``build_model`` (a builder under the policy, with a float32 output), ``compile_model``,
  ``make_callbacks``, ``make_sequences`` (augmented batches) and ``fit``: the training loop.
- ``predict_native``, ``pixel_scores`` and ``choose_threshold``: predicting images of any size
  at their native resolution (reflect-pad to a size the model accepts, crop the answer back;
  never resize it) and scoring the result over a whole set of images.

Nothing here runs at import (importing the module imports Keras and nothing else happens).
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training defaults, readable in one cell.

    Attributes:
        epochs: passes over the training set (early stopping may end sooner).
        batch_size: images per gradient step.
        learning_rate: Adam's initial step size.
        loss: ``"bce_dice"`` (binary cross-entropy + soft Dice), ``"bce"`` or ``"dice"``.
        threshold: probability above which a pixel counts as nucleus, for the metrics.
        monitor: the quantity early stopping, checkpointing and the LR schedule watch.
        early_stopping_patience: epochs without improvement before training stops (the best
            weights are restored).
        reduce_lr_patience: epochs without improvement before the learning rate is cut.
        reduce_lr_factor: the factor the learning rate is multiplied by when it is cut.
        min_learning_rate: the learning rate is never cut below this.
        seed: seeds Python, NumPy and the backend before the model is built.
    """

    epochs: int = 40
    batch_size: int = 8
    learning_rate: float = 1e-3
    loss: str = "bce_dice"
    threshold: float = 0.5
    monitor: str = "val_dice"
    early_stopping_patience: int = 10
    reduce_lr_patience: int = 4
    reduce_lr_factor: float = 0.5
    min_learning_rate: float = 1e-5
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "early_stopping_patience", "reduce_lr_patience"):
            _check_int(name, getattr(self, name), low=1)
        _check_int("seed", self.seed, low=0)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate!r}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if not 0 < self.reduce_lr_factor < 1:
            raise ValueError(f"reduce_lr_factor must be in (0, 1), got {self.reduce_lr_factor!r}")
        if not self.monitor.startswith(("val_", "loss", "dice", "iou")):
            raise ValueError(f"monitor must name a logged quantity like 'val_dice', got {self.monitor!r}")


LOSSES = ("bce_dice", "bce", "dice")


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")


# --------------------------------------------------------------------------- device policy


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """How training runs on this machine.

    Attributes:
        backend: the Keras backend (``"tensorflow"``, ``"jax"``, ``"torch"``).
        gpus: names of the GPUs the backend sees (empty on CPU).
        precision: the dtype policy, ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.
        jit_compile: whether ``compile`` asks for XLA compilation.
    """

    backend: str
    gpus: tuple[str, ...]
    precision: str
    jit_compile: bool

    def describe(self) -> str:
        """One line for a log: device, precision and XLA, and why."""
        device = f"GPU ({', '.join(self.gpus)})" if self.gpus else "CPU"
        xla = "XLA on" if self.jit_compile else "XLA off"
        if self.backend == "jax" and self.jit_compile:
            xla += " (JAX always compiles with XLA)"
        return f"{device} · backend {self.backend} · precision {self.precision} · {xla}"


def choose_accelerator(precision: str = "auto", xla: bool | str = "auto") -> Accelerator:
    """Decide the dtype policy and XLA compilation for this machine.

    ``"auto"`` means: on a GPU, mixed precision (bfloat16 where the GPU computes it fast,
    compute capability 8.0 or newer; float16 otherwise) and XLA; on a CPU, float32, with XLA
    only on JAX (whose every step is XLA-compiled anyway; TensorFlow on CPU runs faster without).
    Pass explicit values to override, e.g. ``choose_accelerator("float32", xla=False)``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if xla not in ("auto", True, False):
        raise ValueError(f"xla must be 'auto', True or False, got {xla!r}")
    from unet_course.runtime import gpu_devices

    backend = keras.backend.backend()
    gpus = tuple(gpu_devices())
    if precision == "auto":
        precision = "float32"
        if gpus:
            precision = "mixed_bfloat16" if _gpu_has_fast_bfloat16() else "mixed_float16"
    if xla == "auto":
        xla = bool(gpus) or backend == "jax"
    if backend == "torch":
        xla = False  # Keras's torch backend has no XLA path
    return Accelerator(backend=backend, gpus=gpus, precision=precision, jit_compile=bool(xla))


def _gpu_has_fast_bfloat16() -> bool:
    """True when the first GPU has compute capability 8.0 or newer (Ampere, Hopper, ...)."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpu = tf.config.list_physical_devices("GPU")[0]
            major = tf.config.experimental.get_device_details(gpu)["compute_capability"][0]
        elif backend == "jax":
            import jax

            gpu = next(d for d in jax.devices() if d.platform == "gpu")
            major = int(str(gpu.compute_capability).split(".")[0])
        else:
            import torch

            major = torch.cuda.get_device_capability(0)[0]
    except Exception:  # an unknown GPU: float16 with loss scaling works everywhere
        return False
    return major >= 8


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Set Keras's global dtype policy inside the ``with`` block; restore the old one after.

    Layers take the global policy when they are created, so build the model inside the block.
    """
    if name not in PRECISIONS[1:]:
        raise ValueError(f"precision must be one of {PRECISIONS[1:]}, got {name!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(builder: Callable[[], keras.Model], accelerator: Accelerator) -> keras.Model:
    """Call ``builder()`` under the accelerator's dtype policy; make sure the output is float32.

    Under mixed precision the layers compute in float16/bfloat16 but the probabilities that
    the loss and the metrics see must be float32: a sigmoid in float16 rounds 0.9996 up to 1,
    where the loss is clipped and its gradient is lost. When the model's last layer does not
    compute in float32, it is rebuilt with a float32 dtype policy (same weights), so the head
    convolution and its sigmoid run in float32; the rest of the model stays in 16 bit.

    Returns:
        a ``keras.Model`` whose output dtype is ``float32``.
    """
    with dtype_policy(accelerator.precision):
        model = builder()
        if not isinstance(model, keras.Model):
            raise TypeError(f"builder must return a keras.Model, got {type(model).__name__}")
        if model.outputs and str(model.outputs[0].dtype) != "float32":
            model = _float32_head(model)
    return model


def _float32_head(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose output layer computes in float32 (same weights).

    For a functional model the last layer is cloned with a float32 policy; for anything else
    (or if that does not give a float32 output) a float32 ``Activation("linear")`` is appended.
    """
    head = model.layers[-1]

    def clone(layer):
        config = layer.get_config()
        if layer is head:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
        copy.set_weights(model.get_weights())
    except (ValueError, TypeError, NotImplementedError):
        copy = model
    if str(copy.outputs[0].dtype) == "float32":
        return copy
    output = keras.layers.Activation("linear", dtype="float32", name="float32_output")(
        model.outputs[0]
    )
    return keras.Model(model.inputs, output, name=model.name)


# --------------------------------------------------------------------------- training loop


def make_loss(name: str) -> keras.losses.Loss:
    """The loss called ``name`` in ``TrainConfig.loss``: ``"bce_dice"``, ``"bce"`` or ``"dice"``."""
    from unet_course import losses

    if name == "bce_dice":
        return losses.BCEDiceLoss()
    if name == "dice":
        return losses.SoftDiceLoss()
    if name == "bce":
        return keras.losses.BinaryCrossentropy()
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")


def compile_model(
    model: keras.Model, config: TrainConfig, accelerator: Accelerator
) -> keras.Model:
    """Compile ``model`` with Adam, the configured loss and the Dice and IoU metrics.

    Under ``mixed_float16`` Keras wraps the optimizer in a ``LossScaleOptimizer`` itself
    (``auto_scale_loss=True``), so small float16 gradients do not underflow to zero.
    Returns the same model, compiled.
    """
    from unet_course.metrics import Dice, IoU

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=make_loss(config.loss),
        metrics=[Dice(threshold=config.threshold), IoU(threshold=config.threshold)],
        jit_compile=accelerator.jit_compile,
    )
    return model


def make_callbacks(out_dir: str | Path, config: TrainConfig) -> list[keras.callbacks.Callback]:
    """EarlyStopping, AtomicCheckpoint to ``out_dir/model.keras``, ReduceLROnPlateau,
    AtomicCSVLogger to ``out_dir/history.csv``.

    All of them watch ``config.monitor`` (``"val_dice"``: higher is better). The checkpoint
    keeps the best epoch; early stopping restores the best weights at the end, so the model in
    memory and the file agree. Both files are written atomically (``files.atomic_path``).
    """
    out = Path(out_dir)
    mode = "min" if config.monitor.endswith("loss") else "max"
    return [
        AtomicCheckpoint(out / "model.keras", monitor=config.monitor, mode=mode),
        keras.callbacks.EarlyStopping(
            monitor=config.monitor,
            mode=mode,
            patience=config.early_stopping_patience,
            restore_best_weights=True,
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor=config.monitor,
            mode=mode,
            factor=config.reduce_lr_factor,
            patience=config.reduce_lr_patience,
            min_lr=config.min_learning_rate,
        ),
        AtomicCSVLogger(out / "history.csv"),
        HonourInterrupt(),
    ]


class HonourInterrupt(keras.callbacks.Callback):
    """Ctrl-C during ``fit`` stops training at the end of the current batch.

    Without it, a ``KeyboardInterrupt`` raised inside the data pipeline is taken by Keras for
    the end of the data ("Your input ran out of data; interrupting training") and training
    goes on with the next epoch. Here SIGINT is only recorded while ``fit`` runs and raised as
    ``KeyboardInterrupt`` from the next batch or epoch end, in the main thread, where nothing
    swallows it; files being written are finished first (``files.atomic_path``). A second
    Ctrl-C interrupts at once.
    """

    def __init__(self):
        super().__init__()
        self._caught: list[int] = []
        self._previous = None

    def on_train_begin(self, logs=None):
        import signal
        import threading

        self._caught = []
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous not in (signal.SIG_IGN, None):
                self._previous = previous
                signal.signal(signal.SIGINT, self._record)

    def _record(self, signum, frame):
        if self._caught:  # pressed twice: the user means it now
            raise KeyboardInterrupt
        self._caught.append(signum)

    def _check(self, *args, **kwargs):
        if self._caught:
            self._restore()
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check

    def on_train_end(self, logs=None):
        self._restore()
        self._check()

    def _restore(self):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` (a ``.keras`` file) whenever ``monitor`` improves.

    Unlike ``keras.callbacks.ModelCheckpoint``, the file is written to a temporary file in the
    same folder and renamed (``files.atomic_path``): a full disk or Ctrl-C during the write
    leaves the previous best epoch's complete file (or none), and Ctrl-C is honoured (raised
    as ``KeyboardInterrupt``) as soon as the write has finished.
    """

    def __init__(self, path: str | Path, monitor: str = "val_loss", mode: str = "min"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.path, self.monitor, self.mode = Path(path), monitor, mode
        self.best: float | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(float(value)):
            return
        value = float(value)
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best = value
            from unet_course.files import atomic_path

            with atomic_path(self.path) as tmp:
                self.model.save(tmp)


class AtomicCSVLogger(keras.callbacks.Callback):
    """``keras.callbacks.CSVLogger``'s columns (``epoch`` then the sorted log keys), but the
    whole file is rewritten atomically after each epoch: never a half-written line."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict] = []

    def on_train_begin(self, logs=None):
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        import csv
        import io

        from unet_course.files import write_text

        self.rows.append({"epoch": epoch, **{k: _csv_value(v) for k, v in (logs or {}).items()}})
        keys = sorted({k for row in self.rows for k in row} - {"epoch"})
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=["epoch", *keys], restval="NA")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, text.getvalue())


def _csv_value(value):
    array = np.asarray(value)
    return float(array) if array.ndim == 0 and array.dtype.kind in "fiub" else value


def make_sequences(
    splits,
    img_size: int,
    batch_size: int,
    *,
    seed: int = 0,
    augment: bool = True,
    elastic: bool = False,
    workers: int = 1,
):
    """Training and validation batches for ``fit``, built on the fly from ``splits``.

    Training: augmented (flips, 90-degree rotations, brightness and contrast, and the elastic
    deformation when ``elastic``), randomly cropped (or mirror-padded) to ``img_size``, shuffled
    every epoch, reproducible for ``seed`` whatever the number of ``workers``. Validation:
    not augmented, not shuffled, centre-cropped to ``img_size`` (the native-resolution score is
    computed after training with ``predict_native``).

    Args:
        splits: a ``unet_course.datasets.Splits``.
        img_size: training side length (must fit the model, e.g. a multiple of 16).

    Returns:
        ``(train, val)``: two ``unet_course.augment.SegmentationSequence`` whose items are
        ``(images (B, S, S, 3) uint8, masks (B, S, S, 1) float32)``; the course's U-Nets
        rescale uint8 pixels themselves (a ``Rescaling(1/255)`` first layer).
    """
    from unet_course.augment import SegmentationSequence

    common = dict(batch_size=batch_size, size=img_size, seed=seed, image_dtype="uint8")
    train_seq = SegmentationSequence(
        splits.train.images, splits.train.labels, augment=augment, shuffle=True,
        augment_options={"elastic": True} if elastic else None, workers=workers, **common,
    )
    val_seq = SegmentationSequence(
        splits.val.images, splits.val.labels, augment=False, shuffle=False, **common
    )
    return train_seq, val_seq


def fit(
    model: keras.Model,
    train_data,
    val_data,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    steps_per_epoch: int | None = None,
    verbose: int | str = "auto",
) -> keras.callbacks.History:
    """Train a compiled ``model``; write ``out_dir/model.keras`` and ``out_dir/history.csv``.

    Args:
        train_data, val_data: ``keras.utils.PyDataset`` objects (or anything ``model.fit``
            takes) yielding ``(images (B, H, W, 3) uint8 or float32, masks (B, H, W, 1) float32)``.
        config: the ``TrainConfig`` (epochs, callbacks' patience, ...).
        out_dir: an existing folder for the checkpoint and the CSV history.
        steps_per_epoch: limit the batches per epoch (quick runs); ``None`` means all.
        verbose: Keras's progress display (``"auto"`` shows a progress bar).

    Returns:
        the ``History``; ``history.history`` maps ``"loss"``, ``"dice"``, ``"val_dice"``, ...
        to one value per epoch.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"out_dir {str(out)!r} is not an existing folder")
    return model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=make_callbacks(out, config),
        verbose=verbose,
    )


# --------------------------------------------------------------------------- native-size prediction


def _fit_size(side: int, depth: int, padding: str) -> tuple[int, int]:
    """Smallest input side whose output covers ``side`` pixels, and the output's margin."""
    from unet_course.model import nearest_valid_sizes, unet_output_size

    size = nearest_valid_sizes(side, depth, padding)[1]
    while unet_output_size(size, depth, padding) < side:
        size = nearest_valid_sizes(size + 1, depth, padding)[1]
    return size, (size - unet_output_size(size, depth, padding)) // 2


def _foreground(probs: np.ndarray) -> np.ndarray:
    """``(..., C)`` model output -> float32 foreground probability: the sigmoid channel for one
    class, else 1 - P(background) (channel 0) for softmax outputs of 2 or 3 classes."""
    probs = np.asarray(probs, dtype=np.float32)
    return probs[..., 0] if probs.shape[-1] == 1 else 1 - probs[..., 0]


def predict_native(model: keras.Model, images, batch_size: int = 4) -> list[np.ndarray]:
    """Foreground probabilities for images of any size, at their native resolution.

    Each image is reflect-padded to the smallest size the model accepts whose output covers
    it, predicted, and the answer cropped back: nothing is resized. A model with a fixed input
    size is slid over the mirrored image in overlapping tiles, keeping each tile's centre
    (the paper's overlap-tile strategy, ``instances.predict_tiled``).

    Args:
        model: a U-Net (``same`` or ``valid`` padding) with a sigmoid (1 channel) or softmax
            (2 channels, foreground = channel 1) output.
        images: ``(n, H, W, C)`` array or a list of ``(H_i, W_i, C)`` arrays, in the value range
            the model was trained on (the seed U-Net rescales uint8 itself).
        batch_size: images per ``predict`` call (same-size images only are batched).

    Returns:
        a list of ``(H_i, W_i)`` float32 arrays in [0, 1].
    """
    from unet_course.model import unet_geometry

    depth, padding = unet_geometry(model)
    fixed = model.input_shape[1:3]
    channels = model.input_shape[-1]
    out = []
    for image in images:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != channels:
            raise ValueError(f"expected images (H, W, {channels}), got shape {image.shape}")
        if None in fixed:
            out.append(_predict_padded(model, image, depth, padding))
        else:
            out.append(_predict_fixed(model, image, batch_size))
    return out


def _predict_padded(model, image: np.ndarray, depth: int, padding: str) -> np.ndarray:
    (h, w), plans = image.shape[:2], []
    for side in image.shape[:2]:
        size, margin = _fit_size(side, depth, padding)
        plans.append((margin, size - side - margin))
    padded = np.pad(image, [*plans, (0, 0)], mode="reflect")
    probs = _foreground(model.predict_on_batch(padded[None]))[0]
    return probs[:h, :w]


def _predict_fixed(model, image: np.ndarray, batch_size: int) -> np.ndarray:
    """A fixed-input-size model: overlap-tile prediction (``instances.predict_tiled``), so
    tile edges, whose context was padding, are dropped and no seams appear."""
    from unet_course.instances import predict_tiled

    return _foreground(predict_tiled(model, image, batch_size=batch_size))


# --------------------------------------------------------------------------- scores


def pixel_scores(masks, probs, threshold: float = 0.5) -> dict[str, float]:
    """Pixel Dice and IoU over a whole set of images (counts added up, divided once).

    Args:
        masks: true masks, ``(n, H, W)`` or a list of ``(H_i, W_i)``; nonzero = foreground.
        probs: foreground probabilities of the same shapes (e.g. from ``predict_native``).
        threshold: a pixel is predicted foreground when ``prob >= threshold``.

    Returns:
        ``{"dice", "iou", "tp", "fp", "fn", "images", "threshold"}``; both empty gives 1.0.
    """
    if len(masks) != len(probs):
        raise ValueError(f"got {len(masks)} masks but {len(probs)} probability maps")
    tp = fp = fn = 0
    for mask, prob in zip(masks, probs, strict=True):
        mask, prob = np.asarray(mask), np.asarray(prob)
        if mask.shape != prob.shape:
            raise ValueError(f"mask shape {mask.shape} differs from probability shape {prob.shape}")
        truth, pred = mask > 0, prob >= threshold
        tp += int(np.sum(truth & pred))
        fp += int(np.sum(~truth & pred))
        fn += int(np.sum(truth & ~pred))
    union = tp + fp + fn
    return {
        "dice": 2 * tp / (2 * tp + fp + fn) if union else 1.0,
        "iou": tp / union if union else 1.0,
        "tp": tp, "fp": fp, "fn": fn, "images": len(masks), "threshold": float(threshold),
    }


def choose_threshold(masks, probs, thresholds: Sequence[float] | None = None) -> tuple[float, np.ndarray]:
    """The threshold with the highest pixel Dice on these (validation) images.

    Returns:
        ``(best_threshold, dice)`` where ``dice[i]`` is the pixel Dice at ``thresholds[i]``
        (default thresholds: 0.05, 0.10, ..., 0.95). Ties go to the threshold closest to 0.5.
    """
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2) if thresholds is None else np.asarray(thresholds)
    if grid.ndim != 1 or grid.size == 0 or np.any((grid <= 0) | (grid >= 1)):
        raise ValueError(f"thresholds must be a non-empty 1-D list of numbers in (0, 1), got {thresholds!r}")
    dice = np.array([pixel_scores(masks, probs, t)["dice"] for t in grid])
    best = np.flatnonzero(dice == dice.max())
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]]), dice
