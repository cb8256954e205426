"""``python -m unet_course ...``: the command line (see ``unet_course.cli``).

Ctrl-C is recorded from here on (``interrupts.recording``), also while the command line's
modules are imported, and honoured by ``cli.main``.
"""

from unet_course.interrupts import recording

if __name__ == "__main__":
    with recording():
        from unet_course.cli import main

        code = main()
    raise SystemExit(code)
