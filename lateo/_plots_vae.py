"""Figures for variational auto-encoders (re-exported by :mod:`lateo.plots`).

``plot_vae_latent`` (the latent space as a scatter), ``plot_vae_reconstructions``
(inputs above their reconstructions), ``plot_vae_samples`` (a grid of generated
images) and ``plot_vae_training`` (training and validation ELBO per epoch).
Each takes an optional ``ax`` and returns the Axes it drew on.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_vae_latent", "plot_vae_reconstructions", "plot_vae_samples", "plot_vae_training"]


def _image_shape(n_features, image_shape):
    if image_shape is not None:
        if int(np.prod(image_shape)) != n_features:
            raise ValueError(f"image_shape {tuple(image_shape)} does not hold {n_features} features.")
        return tuple(image_shape)
    side = int(round(np.sqrt(n_features)))
    if side * side != n_features:
        raise ValueError(f"{n_features} features are not a square image; pass image_shape=(height, width).")
    return side, side


def _mosaic(images, n_cols, shape, pad=1):
    """Tile ``images`` (n, h*w) into one array, ``n_cols`` per row, ``pad`` pixels apart (NaN gaps)."""
    h, w = shape
    n_rows = -(-len(images) // n_cols)
    out = np.full((n_rows * (h + pad) - pad, n_cols * (w + pad) - pad), np.nan)
    for i, img in enumerate(images):
        r, c = divmod(i, n_cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = np.reshape(img, shape)
    return out


def _show(ax, mosaic, title):
    import matplotlib

    cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return ax


def plot_vae_latent(model, X, labels=None, *, dims=(0, 1), ax=None):
    """Posterior means :math:`E_q[z\\mid x]` of the rows of ``X`` on two latent axes ``dims``.

    Points are coloured by ``labels`` if given, else by ``model.predict(X)``
    for a mixture prior (with its component means marked), else uniformly.
    """
    from .plots import _new_axes

    ax = _new_axes(ax)
    Z = model.transform(X)
    if Z.shape[1] < 2:
        raise ValueError("plot_vae_latent needs latent_dim >= 2.")
    i, j = dims
    if labels is None and model.prior == "mixture":
        labels = model.predict(X)
    colour = None if labels is None else np.asarray(labels)
    points = ax.scatter(Z[:, i], Z[:, j], c=colour, cmap="tab10" if colour is not None else None, s=8, alpha=0.8)
    if colour is not None:
        ax.legend(*points.legend_elements(), fontsize=7, loc="best", title="label" if labels is not None else None)
    if model.prior == "mixture":
        ax.scatter(model.cluster_means_[:, i], model.cluster_means_[:, j], marker="x", color="black", s=60,
                   label="component means")
    ax.set_xlabel(f"z[{i}]")
    ax.set_ylabel(f"z[{j}]")
    ax.set_title(f"latent space ({model.prior} prior)")
    return ax


def plot_vae_reconstructions(model, X, *, n=10, image_shape=None, ax=None):
    """The first ``n`` rows of ``X`` (top row) above their reconstructions (bottom row)."""
    from .plots import _new_axes

    X = np.asarray(X, np.float64)[:n]
    shape = _image_shape(X.shape[1], image_shape)
    ax = _new_axes(ax)
    return _show(ax, _mosaic(np.vstack([X, model.reconstruct(X)]), len(X), shape), "inputs (top), reconstructions")


def plot_vae_samples(model, *, n_rows=8, n_cols=8, image_shape=None, random_state=None, ax=None):
    """A grid of ``n_rows * n_cols`` generated images :math:`E[x\\mid z]`, :math:`z \\sim p(z)`."""
    from .plots import _new_axes

    images = model.sample(n_rows * n_cols, random_state=random_state)
    shape = _image_shape(images.shape[1], image_shape)
    ax = _new_axes(ax)
    return _show(ax, _mosaic(images, n_cols, shape), f"samples ({model.prior} prior)")


def plot_vae_training(model, ax=None):
    """Mean ELBO per row against the epoch: training and validation, the kept epoch marked."""
    from .plots import _new_axes

    ax = _new_axes(ax)
    epochs = np.arange(1, model.n_epochs_ + 1)
    ax.plot(epochs, model.train_elbo_, label="training")
    if np.any(np.isfinite(model.validation_elbo_)):
        ax.plot(epochs, model.validation_elbo_, label="validation")
        ax.axvline(model.best_epoch_, color="grey", ls="--", lw=1, label=f"kept: epoch {model.best_epoch_}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO per row")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return ax
