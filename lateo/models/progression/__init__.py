"""Disease-progression mixed-effects models (seed 000, Leaspy's models) fitted by MCMC-SAEM."""

from .estimator import ProgressionModel, simulate_cohort

__all__ = ["ProgressionModel", "simulate_cohort"]
