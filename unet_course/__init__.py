"""unet_course: the helper package that the U-Net course notebooks import.

Importing it is cheap: Keras, TensorFlow and matplotlib are imported by the submodules that
need them, not here. It changes one thing, before TensorFlow starts: unless you set
``TF_CPU_ALLOCATOR_USE_BFC`` yourself, it asks TensorFlow to pool its CPU memory (the BFC
allocator it uses on GPUs). With the default allocator, every training step hands its large
buffers back to the system and faults them in again; ``model.fit`` of the course's recipe then
spent as much time in the kernel as computing, and ran 1.7 times slower on the course's 2-core
CPU (``benchmarks/fit_speed.py``). Import ``unet_course`` before TensorFlow for it to apply.
The submodules, by topic:

- ``data``: the synthetic nuclei generator and its ``Difficulty`` options (``rendering`` draws
  the slides; the Data Science Bowl 2018 loader of ``dsb2018`` is re-exported);
  ``datasets``: train / validation / test splits of either; ``real_slide``: one real DSB 2018
  slide with its labels, fetched at set-up; ``files``: atomic writes and the one image reader.
- ``baseline``: the classical pipeline every result is shown beside (global Otsu, then
  connected components or a distance-transform watershed).
- ``conv``: convolution and transposed convolution written as matrices; ``conv_cost``: what
  the matrix costs (notebook 02's timing harness); ``conv_explorer``: the kernel / stride /
  padding explorer; ``autodiff``: input gradients on any Keras backend (notebook 03).
- ``model``: the U-Net builders and the tracing of a built one (shapes, parameters, blocks);
  ``geometry``: which input sizes fit a U-Net and what comes out, read from a model too;
  ``receptive_field``: textbook and exact receptive fields, traced through the layer graph.
- ``metrics`` / ``losses``: Dice, IoU and the training losses (``keras.ops`` only).
- ``augment`` / ``train``: augmentation, data feeding, the device policy and the training
  loop; ``callbacks``: checkpoint and history written atomically, Ctrl-C honoured.
- ``predict``: a trained model on images of any size (native-size and overlap-tile
  prediction, image in, nuclei out); ``rescale``: prediction at the scale where an image's
  nuclei have the training nuclei's size.
- From probabilities to scored nuclei: ``postprocess`` (components or a seeded watershed),
  ``scoring`` (the Data Science Bowl 2018 score), ``targets`` (separated masks, three classes,
  the paper's weight map), ``overlay`` (a label map drawn over an image), ``label_maps`` (the
  one label-map check); ``evaluate``: pixel scores, the threshold choice and the instance
  score of a trained model.
- ``recipe``: the course's default recipe (what ``train`` runs), with ``normalization``, the
  per-image percentile normalisation layer it starts with.
- ``plotting``: the course's figures.
- ``runtime``: quick mode, backend and device reports.
- ``cli``: the command line, ``python -m unet_course train | evaluate | predict | doctor``,
  one module of ``commands`` per subcommand; ``interrupts``: Ctrl-C recorded for a whole
  command and honoured between its stages.
- ``exercises``: the open exercises' right / wrong / not-yet checks, one module per notebook.
- ``course``: the README table, notebook navigation and Colab links (maintainers' tool).
"""

import os as _os

_os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # before TensorFlow starts

from unet_course.runtime import quick_mode  # noqa: E402

__version__ = "0.1.0"
__all__ = ["quick_mode", "__version__"]
