"""Variational inference on plain arrays (DESIGN.md section 2): reparameterised ELBO
estimators (standard, STL, analytic entropy), Gaussian families, unconstraining
transforms, the ADVI driver and closed-form KL divergences."""

from .advi import fit
from .estimators import ESTIMATORS, Problem, elbo, elbo_grad
from .families import FAMILIES, FullRank, LowRank, MeanField, get_family
from .kl import gaussian_entropy_tril, kl_diag_normal, kl_mvn, kl_mvn_tril, kl_normal, kl_uniform
from .posterior import ApproxPosterior
from .transforms import TRANSFORMS, Exp, Identity, Layout, Sigmoid, Softplus, StickBreaking, make_layout

__all__ = [
    "ESTIMATORS", "FAMILIES", "TRANSFORMS", "ApproxPosterior", "Exp", "FullRank", "Identity", "Layout", "LowRank",
    "MeanField", "Problem", "Sigmoid", "Softplus", "StickBreaking", "elbo", "elbo_grad", "fit", "gaussian_entropy_tril",
    "get_family", "kl_diag_normal", "kl_mvn", "kl_mvn_tril", "kl_normal", "kl_uniform", "make_layout",
]  # fmt: skip
