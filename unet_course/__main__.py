"""``python -m unet_course ...``: the command line (``cli``), Ctrl-C recorded from the start."""

from unet_course.interrupts import recording

if __name__ == "__main__":
    with recording():  # also while the command line's modules are imported
        from unet_course.cli import main

        code = main()
    raise SystemExit(code)
