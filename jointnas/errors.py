"""The one error root. Library messages say what is wrong and how to fix it without naming
command-line flags; the CLI turns any :class:`UsageError` into exit code 2 and one line."""


class JointnasError(Exception):
    """Root of every error jointnas raises on purpose."""


class UsageError(JointnasError, ValueError):
    """Bad input from the user: the message says what is wrong and how to fix it."""


class SpaceError(UsageError):
    """A search-space file or value is malformed; the message names file and key."""


class RecipeError(UsageError):
    """A recipe file is malformed, or its values do not fit a space or the trainer; the message names
    file and key."""


class BudgetError(UsageError):
    """No candidate can meet a resource budget, or a budget was given where none applies.

    ``needed`` is what the CLI turns into a flag suggestion: ``("flops"|"params", minimum)``."""

    def __init__(self, message: str, needed=None):
        super().__init__(message)
        self.needed = needed


class StopSearch(Exception):
    """Not an error: raise it from an objective to end a search cleanly (``raise jointnas.StopSearch``).

    The trial that raises it is not recorded (it goes back to the queue), the trials running beside
    it finish and are recorded, every finished trial is kept, and the run stays resumable: opening
    it again and running continues where it stopped. The message, if any, is logged as the reason."""
