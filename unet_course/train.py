"""Training the U-Net: defaults you can read in one cell, the device policy, the training loop.

What belongs here:

- ``TrainConfig``: every training default in one place (Adam, BCE + Dice, patience values).
- ``choose_accelerator`` / ``Accelerator``: on a GPU, mixed precision (``mixed_bfloat16`` on
  GPUs that have fast bfloat16, ``mixed_float16`` otherwise) and XLA compilation, switched on
  automatically and reported; on a CPU the same code path without them.
- ``dtype_policy``: a context manager that sets Keras's global dtype policy and always restores
  the previous one, so building a model in mixed precision changes nothing afterwards.
- ``build_model`` (a builder under the policy, with a float32 output), ``compile_model``,
  ``make_sequences`` (augmented batches), ``weight_map_training`` (the paper's weighted loss)
  and ``fit``: the training loop.

The callbacks ``fit`` uses are ``callbacks``; prediction is ``predict``; scoring a trained
model is ``evaluate``. Nothing runs at import, and Keras is imported only when used, so the
command line can read ``LOSSES``, ``PRECISIONS`` and ``TrainConfig`` before it starts Keras.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training defaults, readable in one cell.

    Attributes:
        epochs: passes over the training set (early stopping may end sooner).
        batch_size: images per gradient step.
        learning_rate: Adam's initial step size.
        loss: ``"bce_dice"`` (binary cross-entropy + soft Dice), ``"bce"`` or ``"dice"``.
        threshold: probability from which on (``p >= threshold``) a pixel counts as nucleus,
            for the metrics and the instances (one rule everywhere).
        monitor: the quantity early stopping, checkpointing and the LR schedule watch.
        early_stopping_patience: epochs without improvement before training stops (the best
            weights are restored).
        reduce_lr_patience: epochs without improvement before the learning rate is cut.
        reduce_lr_factor: the factor the learning rate is multiplied by when it is cut.
        min_learning_rate: the learning rate is never cut below this.
        seed: seeds Python, NumPy and the backend before the model is built
            (``build_model(..., seed=config.seed)``) and again before training (``fit``).
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
    import keras

    from unet_course.runtime import gpu_devices, gpu_has_fast_bfloat16

    backend = keras.backend.backend()
    gpus = tuple(gpu_devices())
    if precision == "auto":
        precision = "float32"
        if gpus:
            precision = "mixed_bfloat16" if gpu_has_fast_bfloat16() else "mixed_float16"
    if xla == "auto":
        xla = bool(gpus) or backend == "jax"
    if backend == "torch":
        xla = False  # Keras's torch backend has no XLA path
    return Accelerator(backend=backend, gpus=gpus, precision=precision, jit_compile=bool(xla))


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Set Keras's global dtype policy inside the ``with`` block; restore the old one after.

    Layers take the global policy when they are created, so build the model inside the block.
    """
    import keras

    if name not in PRECISIONS[1:]:
        raise ValueError(f"precision must be one of {PRECISIONS[1:]}, got {name!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(
    builder: Callable[[], keras.Model], accelerator: Accelerator, seed: int | None = None
) -> keras.Model:
    """Call ``builder()`` under the accelerator's dtype policy; make sure the output is float32.

    ``seed`` (e.g. ``TrainConfig.seed``): seed Python, NumPy and the backend first
    (``keras.utils.set_random_seed``), so the same seed builds the same initial weights and
    dropout streams whatever ran before.

    Under mixed precision the layers compute in float16/bfloat16 but the probabilities that
    the loss and the metrics see must be float32: a sigmoid in float16 rounds 0.9996 up to 1,
    where the loss is clipped and its gradient is lost. When the model's last layer does not
    compute in float32, it is rebuilt with a float32 dtype policy (same weights), so the head
    convolution and its sigmoid run in float32; the rest of the model stays in 16 bit.

    Returns:
        a ``keras.Model`` whose output dtype is ``float32``.
    """
    import keras

    if seed is not None:
        _check_int("seed", seed, low=0)
        keras.utils.set_random_seed(seed)
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
    import keras

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
    import keras

    from unet_course import losses

    if name == "bce_dice":
        return losses.BCEDiceLoss()
    if name == "dice":
        return losses.SoftDiceLoss()
    if name == "bce":
        return keras.losses.BinaryCrossentropy()
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")


def compile_model(
    model: keras.Model,
    config: TrainConfig,
    accelerator: Accelerator,
    loss: keras.losses.Loss | None = None,
) -> keras.Model:
    """Compile ``model`` with Adam, the configured loss and the Dice and IoU metrics.

    Under ``mixed_float16`` Keras wraps the optimizer in a ``LossScaleOptimizer`` itself
    (``auto_scale_loss=True``), so small float16 gradients do not underflow to zero.
    ``loss`` replaces ``config.loss`` (``weight_map_training``). Returns the same model.
    """
    import keras

    from unet_course.metrics import Dice, IoU

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=make_loss(config.loss) if loss is None else loss,
        metrics=[Dice(threshold=config.threshold), IoU(threshold=config.threshold)],
        jit_compile=accelerator.jit_compile,
    )
    return model



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
        ``(train, val)``: two ``unet_course.sequence.SegmentationSequence`` whose items are
        ``(images (B, S, S, 3) uint8, masks (B, S, S, 1) float32)``; the course's U-Nets
        rescale uint8 pixels themselves (a ``Rescaling(1/255)`` first layer).
    """
    from unet_course.sequence import SegmentationSequence

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

    Python, NumPy and the backend are seeded with ``config.seed`` first, so a model built by
    ``build_model(..., seed=config.seed)`` and trained here gives the same weights every time
    on a CPU (the data order and augmentation follow the sequences' own seeds).

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
    import keras

    from unet_course.callbacks import make_callbacks

    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"out_dir {str(out)!r} is not an existing folder")
    keras.utils.set_random_seed(config.seed)
    return model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=make_callbacks(out, config),
        verbose=verbose,
    )


def weight_map_training(model, train_seq, config: TrainConfig, accelerator: Accelerator):
    """Switch a compiled model and its training batches to the U-Net paper's weight map.

    The masks lose the borders between touching nuclei (``targets.separate_touching``),
    each image gets the per-pixel weights of ``targets.unet_weight_map`` (w0 = 10,
    sigma = 5), which travel through augmentation with the mask, and the model is recompiled
    with ``losses.WeightedBCELoss`` (same optimizer settings and metrics). Validation batches
    are unchanged: the model is still judged on the true masks. Returns the new sequence.
    """
    from unet_course import losses
    from unet_course.sequence import SegmentationSequence
    from unet_course.targets import separate_touching, unet_weight_map

    separated = [separate_touching(np.asarray(m)) for m in train_seq.masks]
    weights = [unet_weight_map(m) for m in separated]
    compile_model(model, config, accelerator, loss=losses.WeightedBCELoss())
    return SegmentationSequence(
        train_seq.images, separated, train_seq.batch_size, size=train_seq.size,
        augment=train_seq.augment, shuffle=train_seq.shuffle, seed=train_seq.seed,
        weights=weights, image_dtype=train_seq.image_dtype,
        augment_options=train_seq.augment_options, workers=train_seq.workers,
    )
