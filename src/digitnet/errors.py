"""Exception types. Every error a user can cause is a DigitnetError with a message that says
what is wrong and how to fix it; the CLI prints that message as one line."""


class DigitnetError(Exception):
    """Base class of every error digitnet raises on purpose."""


class ConfigError(DigitnetError, ValueError):
    """A configuration value is out of range, of the wrong type, or unknown."""


class DataError(DigitnetError):
    """MNIST (or another data file) is missing, corrupt, truncated or fails its checksum."""


class ImageError(DigitnetError):
    """A user image cannot be read, or does not look like a single digit."""


class ModelFileError(DigitnetError):
    """A model file or run folder is missing, unreadable, tampered with or inconsistent."""
