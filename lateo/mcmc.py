"""MCMC on any log-density: ``lateo.mcmc.sample(logdensity, init)``.

Public namespace for :mod:`lateo.inference.mcmc`: the multi-chain driver and
its result, and the pure ``init``/``step`` kernels and warm-up adaptation
functions for users who write their own loops.
"""

from .inference.mcmc.diagnostics import (
    check_convergence,
    ess_bulk,
    ess_mean,
    ess_tail,
    mcse_mean,
    mcse_sd,
    multivariate_ess,
    rhat,
    summary,
)
from .inference.mcmc.driver import KERNELS, Gibbs, MCMCResult, sample
from .inference.mcmc.kernels import (
    AdaptationState,
    GibbsState,
    GradientState,
    HMCState,
    MALAState,
    MHInfo,
    RWMState,
    adaptation_init,
    adaptation_update,
    adapted_covariance,
    adapted_inverse_mass,
    end_window,
    gibbs_init,
    gibbs_step,
    haario_scale,
    hmc_init,
    hmc_step,
    mala_init,
    mala_step,
    nuts_init,
    nuts_step,
    pool_moments,
    robbins_monro_update,
    rwm_init,
    rwm_step,
    ula_init,
    ula_step,
    warmup_windows,
    welford_update,
)

__all__ = [
    "KERNELS", "AdaptationState", "GradientState", "HMCState", "MALAState", "MCMCResult", "MHInfo", "RWMState",
    "adaptation_init", "adaptation_update", "adapted_covariance", "adapted_inverse_mass", "haario_scale",
    "hmc_init", "hmc_step", "mala_init", "mala_step", "pool_moments", "robbins_monro_update", "rwm_init",
    "rwm_step", "sample", "Gibbs", "GibbsState", "gibbs_init", "gibbs_step", "nuts_init", "nuts_step", "ula_init",
    "ula_step", "end_window", "warmup_windows", "welford_update", "check_convergence", "ess_bulk", "ess_mean", "ess_tail", "mcse_mean",
    "mcse_sd", "multivariate_ess", "rhat", "summary",
]  # fmt: skip
