"""The subcommands of ``unet-course`` (``cli``); ``common`` holds what they share."""
