"""``python -m unet_course ...``: the command line (see ``unet_course.cli``)."""

from unet_course.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
