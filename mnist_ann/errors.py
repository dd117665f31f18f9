"""Errors a user can cause and fix. The command line prints their message alone, without a traceback."""


class UserError(Exception):
    """Base class: the message says what is wrong and what to do about it."""


class ConfigError(UserError, ValueError):
    """A setting has a value that cannot work; the message names the option."""


class DataError(UserError):
    """A data file is missing, malformed or inconsistent; the message names the file."""


class MNISTNotFoundError(DataError, FileNotFoundError):
    """The MNIST files are neither present nor downloadable."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, or not safe to load."""


class TrainingDivergedError(UserError, RuntimeError):
    """The loss or the weights stopped being finite numbers."""
