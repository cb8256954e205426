"""The training run's callbacks: ``ScoreCheckpoint`` (the model kept by its score),
``AtomicCSVLogger`` (``history.csv`` written atomically) and ``HonourInterrupt`` (Ctrl-C)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from unet_course.files import atomic_path, write_text
from unet_course.predict import predict_classes


class HonourInterrupt(keras.callbacks.Callback):
    """Ctrl-C during ``fit`` (or recorded before it, ``interrupts.pending``) raises
    ``KeyboardInterrupt`` at the next batch or epoch end, in the main thread, where the data
    pipeline cannot swallow it; a second Ctrl-C interrupts at once."""

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
        from unet_course import interrupts

        if self._caught or interrupts.pending():  # also a Ctrl-C recorded before fit began
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


class ScoreCheckpoint(keras.callbacks.Callback):
    """At each epoch's end, predict whole validation slides (``predict_classes``) and log
    ``score(labels, probs)``, a dict whose ``"val_score"`` (higher is better) picks the model.
    The best weights are kept in memory (``restore_best``) and saved atomically to ``path``
    (a ``.keras`` file) when given. ValueError unless images and labels pair up."""

    def __init__(self, images, labels, score, path: str | Path | None = None):
        super().__init__()
        if len(images) == 0 or len(images) != len(labels):
            raise ValueError(f"need as many label maps as images (at least one), got "
                             f"{len(images)} images and {len(labels)} label maps")
        self.images, self.labels, self.score = list(images), list(labels), score
        self.path = None if path is None else Path(path)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        found = self.score(self.labels, predict_classes(self.model, self.images))
        if logs is not None:
            logs.update(found)
        value = float(found["val_score"])
        if self.best is None or value > self.best:
            self.best, self.best_epoch = value, epoch
            self._weights = [np.array(w) for w in self.model.get_weights()]
            if self.path is not None:
                with atomic_path(self.path) as tmp:
                    self.model.save(tmp)

    def restore_best(self) -> None:
        """Put the best check's weights back into the model (nothing if none was made)."""
        if self._weights is not None:
            self.model.set_weights(self._weights)
