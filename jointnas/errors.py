"""Errors that the CLI turns into exit code 2 with one line of text."""


class UsageError(ValueError):
    """Bad input from the user: the message says what is wrong and how to fix it."""
