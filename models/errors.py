"""The project's own error type.

Every mistake a user can make (a wrong config value, a missing or corrupt dataset, a
checkpoint of another model, a file that is not an image) raises a subclass of
:class:`UserError` with a message that says what was wrong and what to do. The
command-line entry points print that message without a traceback (set
``HYDRA_FULL_ERROR=1`` to see the traceback).
"""


class UserError(Exception):
    """Base class for errors caused by user input, reported without a traceback."""


class ConfigError(UserError, ValueError):
    """A model, data or trainer setting that is wrong (type, range, unknown name, sizes)."""


class DataError(UserError):
    """A dataset that is missing, truncated or corrupt."""


class CheckpointError(UserError):
    """A checkpoint that is missing, empty, corrupt or of another model."""


class ImageError(UserError):
    """An input image that is missing, a directory, or not an image."""


class DivergenceError(UserError, FloatingPointError):
    """Training diverged: the loss or the weights became NaN or infinite (training stops with a
    message naming the step and the metric; the last good checkpoint is kept)."""


class StorageError(UserError, OSError):
    """A file or folder that cannot be written: a full disk, a read-only folder, no permission,
    a file where a folder should be. What was already written is kept."""
