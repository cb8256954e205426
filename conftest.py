"""pytest's set-up for the whole repository (``make test`` runs ``tests`` and ``notebooks``)."""

from tools.kernel_polling import poll_in_slices

poll_in_slices()  # nbmake's notebook runs never wait a whole cell timeout for a missed message
