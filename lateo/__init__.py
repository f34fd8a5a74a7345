"""lateo: latent-variable models on one statistics engine (JAX).

Public API: explicit re-exports only. Importing lateo turns on float64 in
JAX (see :mod:`lateo._config`).
"""

from . import _config  # noqa: F401  (precision policy and compilation cache)
from . import datasets, io, mcmc, plots, vi
from .algorithms.online_em import ChunkStream
from .datasets import load_digits, load_nile, load_old_faithful, make_gaussian_mixture
from .exceptions import ConvergenceWarning, NotFittedError
from .io import load_model, save_model
from .models.bayesian_mixture import BayesianGaussianMixture
from .models.gaussian_mixture import GaussianMixture
from .models.gmm_hmm import GMMHMM
from .models.hmm import GaussianHMM
from .models.hmm_discrete import CategoricalHMM, PoissonHMM
from .models.kmeans import KMeans
from .models.logistic import BayesianLogisticRegression
from .models.ppca import PPCA
from .models.vae import VAE
from .models.progression import ProgressionModel

__version__ = "0.1.0"

__all__ = [
    "BayesianGaussianMixture", "BayesianLogisticRegression", "CategoricalHMM", "ChunkStream", "PPCA", "VAE", "load_digits", "vi", "ConvergenceWarning", "GMMHMM", "GaussianHMM", "GaussianMixture", "KMeans",
    "NotFittedError", "ProgressionModel", "PoissonHMM", "__version__", "datasets", "io", "load_model", "load_nile", "mcmc",
    "load_old_faithful", "make_gaussian_mixture", "plots", "save_model",
]
