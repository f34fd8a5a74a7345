"""The networks of a VAE as Equinox modules: MLP encoder and decoder, prior parameters.

Everything here acts on a batch ``(..., features)`` with plain matrix products
(``x @ W.T + b``), so a minibatch is one GEMM per layer, no ``vmap`` needed.
The working dtype is ``float32`` by default (neural networks do not need
float64, and it is about twice as fast on a CPU); ``dtype="float64"`` is
used by the tests that compare bounds with PPCA's exact log-likelihood.

One :class:`VAENet` holds every trainable array of a model, so a single
optax optimiser and a single serialisation cover it:

* ``encoder``: MLP ``x -> (loc, raw_scale)`` (``2 * latent_dim`` outputs) for
  the Gaussian and mixture priors, ``x -> z_e`` (``latent_dim``) for VQ;
* ``decoder``: MLP ``z -> eta`` (Bernoulli logits or Gaussian means), with
  ``log_scale`` (one per feature) for the Gaussian likelihood;
* ``prior``: the learnable mixture ``(logits, means, log_scales)``, or the VQ
  ``codebook`` (n_components, latent_dim); ``None`` for the standard normal.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


class MLP(eqx.Module):
    """Fully connected network: ``Linear -> ReLU`` for each hidden layer, then a linear output.

    Parameters
    ----------
    sizes : sequence of int
        ``(in, hidden_1, ..., hidden_m, out)``; with no hidden layer the map is affine.
    key : jax.Array
        PRNG key of the initialisation (Equinox's default: uniform
        :math:`\\pm 1/\\sqrt{\\text{fan-in}}`, the same as PyTorch's ``nn.Linear``).
    dtype : numpy dtype
    """

    layers: tuple

    def __init__(self, sizes, *, key, dtype):
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(eqx.nn.Linear(a, b, dtype=dtype, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys))

    def __call__(self, x):
        """Apply to ``x`` of shape ``(..., in)``; returns ``(..., out)``."""
        for layer in self.layers[:-1]:
            x = jax.nn.relu(x @ layer.weight.T + layer.bias)
        last = self.layers[-1]
        return x @ last.weight.T + last.bias


class MixturePrior(eqx.Module):
    r"""Learnable Gaussian mixture :math:`p(z) = \sum_c \pi_c \mathcal N(z; \mu_c, \mathrm{diag}\,\sigma_c^2)`.

    ``logits`` (K,) give :math:`\pi = \mathrm{softmax}(\text{logits})`;
    ``means`` (K, d); ``log_scales`` (K, d) are :math:`\ln\sigma_c`.
    """

    logits: jax.Array
    means: jax.Array
    log_scales: jax.Array


class VQCodebook(eqx.Module):
    """The VQ-VAE codebook ``embeddings`` (K, d): the K latent codes :math:`e_k`."""

    embeddings: jax.Array


class VAENet(eqx.Module):
    """All trainable arrays of a VAE (see the module docstring)."""

    encoder: MLP
    decoder: MLP
    log_scale: jax.Array | None
    prior: MixturePrior | VQCodebook | None


def build_net(key, *, n_features, latent_dim, hidden, prior, n_components, likelihood, dtype) -> VAENet:
    """A freshly initialised :class:`VAENet`.

    The decoder mirrors the encoder (``hidden`` reversed). Mixture means start
    as draws from :math:`\\mathcal N(0, I)` and unit scales, uniform weights;
    the VQ codebook starts uniform on :math:`[-1/K, 1/K]` (van den Oord et al.
    2017's reference code). The Gaussian likelihood's per-feature
    :math:`\\ln\\sigma_j` starts at 0.
    """
    k_enc, k_dec, k_prior = jax.random.split(key, 3)
    hidden = tuple(hidden)
    n_out = latent_dim if prior == "vq" else 2 * latent_dim
    encoder = MLP((n_features, *hidden, n_out), key=k_enc, dtype=dtype)
    decoder = MLP((latent_dim, *hidden[::-1], n_features), key=k_dec, dtype=dtype)
    log_scale = jnp.zeros(n_features, dtype) if likelihood == "gaussian" else None
    if prior == "mixture":
        means = jax.random.normal(k_prior, (n_components, latent_dim), dtype)
        zeros = jnp.zeros((n_components, latent_dim), dtype)
        prior_params = MixturePrior(jnp.zeros(n_components, dtype), means, zeros)
    elif prior == "vq":
        bound = 1.0 / n_components
        prior_params = VQCodebook(jax.random.uniform(k_prior, (n_components, latent_dim), dtype, -bound, bound))
    else:
        prior_params = None
    return VAENet(encoder, decoder, log_scale, prior_params)


def net_leaves(net) -> list:
    """The arrays of ``net`` in a fixed order (``jax.tree_util`` flattening order)."""
    return jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_array))


def net_from_leaves(skeleton, leaves):
    """``skeleton`` with its arrays replaced by ``leaves`` (as returned by :func:`net_leaves`).

    Raises ``ValueError`` if the number or shapes of the arrays do not match.
    """
    params, static = eqx.partition(skeleton, eqx.is_array)
    flat, treedef = jax.tree_util.tree_flatten(params)
    if len(flat) != len(leaves):
        raise ValueError(f"expected {len(flat)} weight arrays, got {len(leaves)}.")
    new = []
    for i, (old, value) in enumerate(zip(flat, leaves)):
        value = jnp.asarray(value, old.dtype)
        if value.shape != old.shape:
            raise ValueError(f"weight array {i} has shape {value.shape}, expected {old.shape}.")
        new.append(value)
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, new), static)
