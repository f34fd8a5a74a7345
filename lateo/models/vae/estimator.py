"""``VAE``: variational auto-encoders with Gaussian, Gaussian-mixture and VQ priors, scikit-learn style.

The maths is in :mod:`lateo.models.vae._objectives`, the networks in
:mod:`lateo.models.vae._nets` and the training loop (Adam, minibatches,
early stopping, checkpoints) in :mod:`lateo.models.vae._train`. The
estimator validates, calls them and stores numpy results (DESIGN.md §3).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..._config import resolve_dtype
from ..._validation import check_array, check_float, check_int, check_option, check_random_key
from ...core.progress import check_progress
from .._base import ParamsMixin, check_is_fitted
from . import _objectives as obj
from ._nets import build_net, net_from_leaves, net_leaves
from ._train import fingerprint, kmeans_prior, train

PRIORS = ("gaussian", "mixture", "vq")
LIKELIHOODS = ("bernoulli", "gaussian")
_IWAE_BLOCK = 2**17  # rows x importance samples evaluated per jitted call


@eqx.filter_jit
def _elbo_rows(net, X, keys, prior_kind, likelihood):
    return jnp.mean(jax.vmap(lambda k: obj.loss_and_elbo(net, X, k, prior_kind, likelihood)[1])(keys), axis=0)


@eqx.filter_jit
def _iwae_rows(net, X, key, k, prior_kind, likelihood):
    return obj.iwae(net, X, key, k, prior_kind, likelihood)


_encode = eqx.filter_jit(obj.encode)
_decoder_mean = eqx.filter_jit(obj.decoder_mean)


@eqx.filter_jit
def _codes(net, X):
    return obj.quantise(net.prior.embeddings, net.encoder(X))[0]


@eqx.filter_jit
def _responsibilities(net, X):
    return obj.responsibilities(net.prior, *obj.encode(net, X))


class VAE(ParamsMixin):
    """Variational auto-encoder (Kingma & Welling 2014) with three priors; seed 004, lecture 7.

    Parameters
    ----------
    prior : {"gaussian", "mixture", "vq"}, default="gaussian"
        ``"gaussian"``: :math:`p(z) = \\mathcal N(0, I)`. ``"mixture"``: a
        learnable Gaussian mixture with ``n_components`` components and the
        categorical posterior marginalised in closed form (VaDE-style GMVAE;
        the bound is derived in :mod:`lateo.models.vae._objectives`);
        ``predict`` returns the cluster. ``"vq"``: VQ-VAE (van den Oord et
        al. 2017), a codebook of ``n_components`` codes, straight-through
        gradients, codebook + commitment losses with :math:`\\beta = 0.25`,
        uniform prior over the codes.
    latent_dim : int, default=2
    n_components : int, default=10
        Mixture components or codebook size (ignored for ``prior="gaussian"``).
    likelihood : {"bernoulli", "gaussian"}, default="bernoulli"
        Bernoulli needs ``X`` in ``[0, 1]``; Gaussian learns one variance per feature.
    hidden : tuple of int, default=(256, 128)
        Hidden widths of the MLP encoder (the decoder mirrors them); ``()``
        makes both maps affine (a linear-Gaussian decoder is PPCA). With
        ``conv=True``: the widths of the dense layers between the
        convolutions and the posterior parameters.
    conv : bool, default=False
        Small convolutional networks for images instead of MLPs. Each row is
        read as a one-channel image of ``image_shape`` ``(H, W)`` (row-major).
        Encoder: ``Conv 3x3, stride 2, 16 channels -> ReLU -> Conv 3x3,
        stride 2, 32 channels -> ReLU -> flatten (32 * ceil(H/4) * ceil(W/4))
        -> [Linear -> ReLU for each width in hidden] -> Linear`` to the
        posterior parameters (``2 * latent_dim``; ``latent_dim`` for VQ).
        Decoder, the mirror: ``Linear`` layers (``hidden`` reversed) from
        :math:`z` to ``32 * ceil(H/4) * ceil(W/4) -> ReLU -> ConvTranspose
        3x3, stride 2, 16 channels -> ReLU -> ConvTranspose 3x3, stride 2,
        1 channel``, flattened to the ``H * W`` logits (Bernoulli) or means
        (Gaussian). The priors, likelihoods, bounds and methods are the same
        as with MLPs.
    image_shape : tuple of 2 ints, optional
        ``(H, W)`` of the images for ``conv=True``, with ``H * W`` the number
        of features; by default square, :math:`H = W = \\sqrt{\\text{n\\_features}}`
        (8x8 for the 64-pixel digits), an error if that is not an integer.
        Ignored when ``conv=False``.
    n_epochs : int, default=100
        Maximum passes over the training rows.
    batch_size : int, default=128
    learning_rate : float, default=1e-3
        Adam's step size.
    patience : int or None, default=10
        Stop when the validation ELBO has not improved for this many epochs
        (and keep the best epoch's parameters); ``None`` never stops early.
    validation_fraction : float, default=0.1
        Share of rows held out (at random) for the validation ELBO; ``0``
        trains on all rows and keeps the last epoch.
    pretrain_epochs : int, default=10
        ``prior="mixture"`` only (VaDE's recipe, Jiang et al. 2017): train
        this many epochs with the standard-normal prior, then initialise the
        mixture from a k-means clustering (see ``mixture_init``) and train the
        mixture bound; early stopping restarts at the switch. ``0``: the
        mixture is trained from its random start. Must be ``< n_epochs``.
    mixture_init : {"data", "latent"}, default="data"
        Where the k-means of the initialisation runs: on the training rows
        (``"data"``) or on their posterior means (``"latent"``, VaDE's
        recipe). Each cluster gives one component: the mean, per-axis
        variance (plus the mean posterior variance) and share of its rows'
        posterior means. On the digits the GMVAE refines the data-space
        clusters (accuracy 0.79 -> 0.85); latent-space k-means of a VAE
        merges digits more often (``benchmarks/bench_vae.py``).
    checkpoint : str or path, optional
        File (``.npz``, no pickle) written after every epoch; if it exists
        when ``fit`` starts, training resumes from it and ends exactly as an
        uninterrupted run. Needs an integer ``random_state``.
    random_state : int, numpy RNG or JAX key, optional
        Seeds the initialisation, the validation split, minibatches and
        reparameterisation noise: the same seed gives the same fit, bit for
        bit on one machine.
    dtype : {"float32", "float64"}, default="float32"
        Working precision of the networks (float32: neural nets need no more
        and it is about twice as fast; inputs are cast once).
    progress : {"auto", True, False}, default="auto"

    Attributes
    ----------
    weights_ : list of ndarray
        Every trainable array (encoder, decoder, likelihood scale, prior) in
        the networks' flattening order; what :func:`lateo.save_model` stores.
    train_elbo_, validation_elbo_ : ndarray (n_epochs_,)
        Mean ELBO per row for each epoch (training: running mean over the
        epoch's minibatches; validation: NaN without a validation set).
    n_epochs_, best_epoch_, stopped_early_, n_features_in_
    cluster_weights_, cluster_means_, cluster_scales_ : ndarray
        ``prior="mixture"``: :math:`\\pi` (K,), :math:`\\mu` (K, d), :math:`\\sigma` (K, d).
    codebook_ : ndarray (K, d)
        ``prior="vq"``: the codes.
    """

    _estimator_type = "transformer"

    def __init__(self, prior="gaussian", *, latent_dim=2, n_components=10, likelihood="bernoulli", hidden=(256, 128),
                 conv=False, image_shape=None, n_epochs=100, batch_size=128, learning_rate=1e-3, patience=10,
                 validation_fraction=0.1, pretrain_epochs=10, mixture_init="data", checkpoint=None, random_state=None,
                 dtype="float32", progress="auto"):
        self._store_init_args(locals())

    # ---------------------------------------------------------------- fit
    def _validate_params(self):
        check_option(self.prior, name="prior", options=PRIORS)
        check_option(self.likelihood, name="likelihood", options=LIKELIHOODS)
        check_int(self.latent_dim, name="latent_dim", low=1)
        check_int(self.n_components, name="n_components", low=1)
        hidden = self.hidden
        if not isinstance(hidden, (tuple, list)) or not all(isinstance(h, int) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be a tuple of positive ints (layer widths), got {hidden!r}.")
        if not isinstance(self.conv, (bool, np.bool_)):
            raise ValueError(f"conv must be True or False, got {self.conv!r}.")
        shape = self.image_shape
        if shape is not None and (not isinstance(shape, (tuple, list)) or len(shape) != 2
                                  or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape)):
            raise ValueError(f"image_shape must be None or a pair of positive ints (H, W), got {shape!r}.")
        check_int(self.n_epochs, name="n_epochs", low=1)
        check_int(self.batch_size, name="batch_size", low=1)
        check_float(self.learning_rate, name="learning_rate", low=0.0, inclusive=False)
        if self.patience is not None:
            check_int(self.patience, name="patience", low=1)
        fraction = check_float(self.validation_fraction, name="validation_fraction")
        if fraction >= 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}.")
        check_int(self.pretrain_epochs, name="pretrain_epochs", low=0)
        check_option(self.mixture_init, name="mixture_init", options=("data", "latent"))
        if self.prior == "mixture" and self.pretrain_epochs >= self.n_epochs:
            raise ValueError(f"pretrain_epochs must be < n_epochs for prior='mixture' (the mixture is trained after "
                             f"the pretraining), got pretrain_epochs={self.pretrain_epochs}, n_epochs={self.n_epochs}.")
        if self.checkpoint is not None and not isinstance(self.random_state, (int, np.integer)):
            raise ValueError("checkpoint needs an integer random_state, so that a resumed run repeats the same "
                             f"random draws; got random_state={self.random_state!r}.")
        check_progress(self.progress)
        return resolve_dtype(self.dtype)

    def _check_X(self, X, name="X", n_features=None):
        X = check_array(X, name=name, n_features=n_features, estimator=type(self).__name__)
        if self.likelihood == "bernoulli" and (X.min() < 0.0 or X.max() > 1.0):
            raise ValueError(f"{name} must have values in [0, 1] for likelihood='bernoulli'; got values in "
                             f"[{X.min():.4g}, {X.max():.4g}]. Scale it (e.g. X / X.max()) or use likelihood='gaussian'.")
        return X

    def fit(self, X, y=None):
        """Train on ``X`` (n_samples, n_features); ``y`` is ignored. Returns ``self``."""
        del y
        dtype = self._validate_params()
        X = self._check_X(X)
        n = X.shape[0]
        n_val = int(math.floor(self.validation_fraction * n))
        if n - n_val < 1 or (self.validation_fraction > 0 and n_val < 1):
            raise ValueError(f"X has n_samples={n}: too few to hold out validation_fraction="
                             f"{self.validation_fraction} and train on the rest; pass more rows or validation_fraction=0.")
        key = check_random_key(self.random_state)
        k_init, k_split, k_train = jax.random.split(key, 3)
        order = np.asarray(jax.random.permutation(k_split, n))
        X_val, X_train = X[order[:n_val]], X[order[n_val:]]
        self._image_shape(X.shape[1])
        self.n_features_in_ = X.shape[1]
        net = build_net(k_init, **self._net_config(), dtype=dtype)
        pretrain = None
        if self.prior == "mixture" and self.pretrain_epochs > 0:
            seed = int(np.asarray(jax.random.randint(k_init, (), 0, 2**31 - 1)))
            X_fit = jnp.asarray(X_train, dtype)
            pretrain = (self.pretrain_epochs, lambda net: kmeans_prior(net, X_fit, seed=seed, space=self.mixture_init))
        config = {k: v for k, v in self.get_params().items() if k not in ("n_epochs", "progress", "checkpoint")}
        result = train(net, jnp.asarray(X_train, dtype), jnp.asarray(X_val, dtype), key=k_train,
                       learning_rate=self.learning_rate, prior_kind=self.prior, likelihood=self.likelihood,
                       batch_size=min(self.batch_size, X_train.shape[0]), n_epochs=self.n_epochs,
                       patience=self.patience, checkpoint=self.checkpoint,
                       tag=fingerprint(config, X_train, X_val), progress=self.progress, pretrain=pretrain)
        self.train_elbo_, self.validation_elbo_ = result.train_elbo, result.validation_elbo
        self.n_epochs_, self.best_epoch_ = len(result.train_elbo), int(result.best_epoch)
        self.stopped_early_ = bool(result.stopped_early)
        self._set_net(result.net)
        return self

    def _image_shape(self, n_features):
        """``(H, W)`` of the images for ``conv=True`` (``image_shape`` or the square root); ``None`` for MLPs."""
        if not self.conv:
            return None
        if self.image_shape is None:
            side = math.isqrt(n_features)
            if side * side != n_features:
                raise ValueError(f"conv=True needs images: X has {n_features} features, not a square number, so "
                                 "pass image_shape=(H, W) with H * W = n_features.")
            return (side, side)
        height, width = (int(s) for s in self.image_shape)
        if height * width != n_features:
            raise ValueError(f"image_shape={tuple(self.image_shape)!r} holds {height * width} pixels but X has "
                             f"{n_features} features; image_shape=(H, W) needs H * W = n_features.")
        return (height, width)

    def _net_config(self):
        return dict(n_features=self.n_features_in_, latent_dim=self.latent_dim, hidden=tuple(self.hidden),
                    prior=self.prior, n_components=self.n_components, likelihood=self.likelihood,
                    conv=bool(self.conv), image_shape=self._image_shape(self.n_features_in_))

    def _set_net(self, net):
        """Store ``net`` as numpy ``weights_`` (saved by :func:`lateo.save_model`) and the derived attributes."""
        self.weights_ = [np.asarray(leaf) for leaf in net_leaves(net)]
        for name in ("cluster_weights_", "cluster_means_", "cluster_scales_", "codebook_"):
            self.__dict__.pop(name, None)
        if self.prior == "mixture":
            self.cluster_weights_ = np.asarray(jax.nn.softmax(net.prior.logits), np.float64)
            self.cluster_means_ = np.asarray(net.prior.means, np.float64)
            self.cluster_scales_ = np.asarray(jnp.exp(net.prior.log_scales), np.float64)
        elif self.prior == "vq":
            self.codebook_ = np.asarray(net.prior.embeddings, np.float64)
        self._net_cache = (id(self.weights_), net)

    def _net(self):
        """The fitted network, rebuilt from ``weights_`` after :func:`lateo.load_model`."""
        check_is_fitted(self, "weights_")
        cache = self.__dict__.get("_net_cache")
        if cache is not None and cache[0] == id(self.weights_):
            return cache[1]
        skeleton = build_net(jax.random.key(0), **self._net_config(), dtype=resolve_dtype(self.dtype))
        net = net_from_leaves(skeleton, self.weights_)
        self._net_cache = (id(self.weights_), net)
        return net

    def _rows(self, X, name="X"):
        check_is_fitted(self, "weights_")
        return jnp.asarray(self._check_X(X, name=name, n_features=self.n_features_in_), resolve_dtype(self.dtype))

    def _key(self, random_state):
        return check_random_key(self.random_state if random_state is None else random_state)

    # ------------------------------------------------------------ queries
    def encode(self, X):
        """Posterior parameters: ``(loc, scale)`` of :math:`q(z\\mid x)` (n, d) each; ``prior="vq"``: code indices (n,)."""
        net, Xj = self._net(), self._rows(X)
        if self.prior == "vq":
            return np.asarray(_codes(net, Xj))
        loc, scale = _encode(net, Xj)
        return np.asarray(loc, np.float64), np.asarray(scale, np.float64)

    def transform(self, X):
        """Posterior mean :math:`E_q[z\\mid x]` (n, latent_dim); ``prior="vq"``: the chosen code :math:`z_q`."""
        codes = self.encode(X)
        return self.codebook_[codes] if self.prior == "vq" else codes[0]

    def fit_transform(self, X, y=None):
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X, y).transform(X)

    def decode(self, Z):
        """Decoder mean :math:`E[x\\mid z]` (probabilities for Bernoulli) for each row of ``Z`` (n, latent_dim)."""
        check_is_fitted(self, "weights_")
        Z = check_array(Z, name="Z", n_features=self.latent_dim, estimator=f"{type(self).__name__}.decode")
        Zj = jnp.asarray(Z, resolve_dtype(self.dtype))
        return np.asarray(_decoder_mean(self._net(), Zj, self.likelihood), np.float64)

    def reconstruct(self, X):
        """``decode(transform(X))``: the reconstruction through the posterior mean."""
        return self.decode(self.transform(X))

    def sample_latent(self, n_samples=1, random_state=None):
        """Draw ``n_samples`` latents from the prior (mixture: component then Gaussian; VQ: a uniform code)."""
        check_is_fitted(self, "weights_")
        n_samples = check_int(n_samples, name="n_samples", low=1)
        k_c, k_z = jax.random.split(self._key(random_state))
        dtype = resolve_dtype(self.dtype)
        if self.prior == "vq":
            return self.codebook_[np.asarray(jax.random.randint(k_c, (n_samples,), 0, self.n_components))]
        eps = np.asarray(jax.random.normal(k_z, (n_samples, self.latent_dim), dtype), np.float64)
        if self.prior == "gaussian":
            return eps
        c = np.asarray(jax.random.categorical(k_c, jnp.log(jnp.asarray(self.cluster_weights_)), shape=(n_samples,)))
        return self.cluster_means_[c] + self.cluster_scales_[c] * eps

    def sample(self, n_samples=1, random_state=None, *, mean=True):
        """Generate ``n_samples`` rows: :math:`z \\sim p(z)`, then :math:`E[x\\mid z]` (``mean=True``,
        the usual picture of a sample) or a draw :math:`x \\sim p(x\\mid z)` (``mean=False``)."""
        key = self._key(random_state)
        mu = self.decode(self.sample_latent(n_samples, jax.random.fold_in(key, 0)))
        if mean:
            return mu
        k_x = jax.random.fold_in(key, 1)
        if self.likelihood == "bernoulli":
            return np.asarray(jax.random.uniform(k_x, mu.shape) < mu, np.float64)
        sigma = np.exp(np.asarray(self._net().log_scale, np.float64))
        return mu + sigma * np.asarray(jax.random.normal(k_x, mu.shape), np.float64)

    def score_samples(self, X, *, n_samples=1, random_state=None):
        """ELBO per row (the training bound), averaged over ``n_samples`` reparameterised draws.

        VQ: :math:`\\ln p(x\\mid z_q) - \\ln K` (deterministic). Mixture: the
        closed-form-categorical bound of :mod:`~lateo.models.vae._objectives`.
        """
        n_samples = check_int(n_samples, name="n_samples", low=1)
        net, Xj = self._net(), self._rows(X)
        keys = jax.random.split(self._key(random_state), n_samples)
        return np.asarray(_elbo_rows(net, Xj, keys, self.prior, self.likelihood), np.float64)

    def score(self, X, y=None):
        """Mean ELBO per row."""
        return float(np.mean(self.score_samples(X)))

    def iwae_bound(self, X, k=1000, random_state=None):
        """The importance-weighted bound :math:`\\mathcal L_k` per row (Burda et al. 2016).

        :math:`\\text{ELBO} \\le \\mathcal L_k \\le \\ln p(x)`; :math:`-\\mathcal L_{1000}` is the
        usual test-set NLL estimate. Not defined for ``prior="vq"`` (its
        posterior is a point mass, so importance sampling does not apply).
        """
        if self.prior == "vq":
            raise ValueError("iwae_bound needs a continuous posterior; prior='vq' has a point-mass posterior "
                             "(use score_samples, its ELBO ln p(x|z_q) - ln K).")
        k = check_int(k, name="k", low=1)
        net, Xj = self._net(), self._rows(X)
        key = self._key(random_state)
        block = max(1, min(Xj.shape[0], _IWAE_BLOCK // k))
        n_blocks = -(-Xj.shape[0] // block)
        pad = jnp.concatenate([Xj, jnp.zeros((n_blocks * block - Xj.shape[0], Xj.shape[1]), Xj.dtype)])
        out = [_iwae_rows(net, pad[i * block:(i + 1) * block], jax.random.fold_in(key, i), k, self.prior,
                          self.likelihood) for i in range(n_blocks)]
        return np.asarray(jnp.concatenate(out)[: Xj.shape[0]], np.float64)

    def predict_proba(self, X):
        """``prior="mixture"``: the categorical posterior :math:`\\gamma_c(x)` (n, n_components)."""
        if self.prior != "mixture":
            raise ValueError(f"predict_proba needs prior='mixture' (clusters in latent space); this VAE has prior={self.prior!r}.")
        return np.asarray(_responsibilities(self._net(), self._rows(X)), np.float64)

    def predict(self, X):
        """``prior="mixture"``: the most probable cluster :math:`\\arg\\max_c \\gamma_c(x)` of each row."""
        return np.argmax(self.predict_proba(X), axis=1)


__all__ = ["VAE"]
