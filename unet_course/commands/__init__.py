"""The subcommands of ``unet-course`` (``unet_course.cli``), one small module each.

Each module declares its arguments (``add``), checks them before any work and runs the
package (``run``); ``common`` holds what they share (the one-line usage error, argument types,
the checks of ``--data`` and ``--out``, starting Keras).
"""
