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


class CheckpointImportError(ValueError):
    """A reference checkpoint that cannot be imported (one line naming the key and its value)."""


class WorkerError(StageError):
    """A worker process of a stage could not start or died: names the stage, the reason and what was kept."""


class UnsafeFileError(ValueError):
    """A file that would run code when read (a pickle with a callable outside the allow-list): never loaded."""


class Interrupted(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt, not an error of the program
    """SIGTERM or SIGHUP received by the main process (raised where it runs, so every pool ends its workers)."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        super().__init__(signal.Signals(signum).name)


# the project's own errors: one line and exit code 1 at the command line and in a Snakemake log
# (tracebacks with --debug); every other exception is a bug and keeps its traceback
PROJECT_ERRORS = (ConfigError, StageError, DamagedFileError, DataError, UnsafeFileError, CheckpointImportError)
