"""Warnings and errors that lateo raises."""


class ConvergenceWarning(UserWarning):
    """An iterative fit stopped at ``max_iter`` before its convergence test passed."""


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``."""
