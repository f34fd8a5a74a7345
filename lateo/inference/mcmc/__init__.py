"""MCMC on plain arrays: kernels as pure init/step functions, a multi-chain driver and
convergence diagnostics (DESIGN.md section 2)."""

from .driver import KERNELS, MCMCResult, sample
from .kernels import (
    AdaptationState,
    GradientState,
    MHInfo,
    RWMState,
    adaptation_init,
    adaptation_update,
    hmc_init,
    hmc_step,
    mala_init,
    mala_step,
    rwm_init,
    rwm_step,
)

__all__ = [
    "KERNELS", "AdaptationState", "GradientState", "MCMCResult", "MHInfo", "RWMState", "adaptation_init",
    "adaptation_update", "hmc_init", "hmc_step", "mala_init", "mala_step", "rwm_init", "rwm_step", "sample",
]
