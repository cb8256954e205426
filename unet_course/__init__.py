"""unet_course: the helper package that the U-Net course notebooks import.

Importing it is cheap and changes nothing: Keras, TensorFlow and matplotlib are imported by
the submodules that need them, not here. The submodules, by topic:

- ``data``: the synthetic nuclei generator and its ``Difficulty`` options (``rendering`` draws
  the slides; the Data Science Bowl 2018 loader of ``dsb2018`` is re-exported);
  ``datasets``: train / validation / test splits of either; ``real_slide``: one real DSB 2018
  slide with its labels, fetched at set-up; ``files``: atomic writes and the one image reader.
- ``baseline``: the classical pipeline every result is shown beside (global Otsu, then
  connected components or a distance-transform watershed).
- ``conv``: convolution and transposed convolution written as matrices; ``conv_cost``: what
  the matrix costs (notebook 02's timing harness); ``conv_explorer``: the kernel / stride /
  padding explorer; ``autodiff``: input gradients on any Keras backend (notebook 03).
- ``model``: the U-Net builders and shape tools.
- ``metrics`` / ``losses``: Dice, IoU and the training losses (``keras.ops`` only).
- ``augment`` / ``train``: augmentation, data feeding and the training loop defaults.
- ``recipe``: the course's default recipe (what ``train`` runs), with ``normalization``, the
  per-image percentile normalisation layer it starts with.
- ``instances``: from probability maps to separate objects, and the instance score.
- ``plotting``: the course's figures.
- ``runtime``: quick mode, backend and device reports.
- ``cli``: the command line, ``python -m unet_course train | evaluate | predict | doctor``
  (``predict``: the work of its ``predict`` command).
- ``exercises``: the open exercises' right / wrong / not-yet checks, one module per notebook.
- ``course``: the README table, notebook navigation and Colab links (maintainers' tool).
"""

from unet_course.runtime import quick_mode

__version__ = "0.1.0"
__all__ = ["quick_mode", "__version__"]
