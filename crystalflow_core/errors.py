"""Every error the project raises on purpose, in one small module that imports nothing: the configuration,
the stages, the data and the files each say what is wrong in one line naming the file, key or row."""


class ConfigError(ValueError):
    """A configuration (or compositions file) that cannot be run: names the key and the allowed values."""


class StageError(RuntimeError):
    """A stage asked to work on inputs that do not fit (missing, foreign, stale, unwritable)."""


class CheckpointError(StageError):
    """A model checkpoint that cannot be read (missing, truncated, another program's file)."""


class DamagedFileError(ValueError):
    """A file this project wrote atomically is damaged (truncated, edited): never read around it."""


class DataError(RuntimeError):
    """A dataset file is missing, corrupt, or leaves nothing usable."""
