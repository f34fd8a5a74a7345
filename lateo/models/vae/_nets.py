"""The networks of a VAE as Equinox modules: MLP encoder and decoder, prior parameters.

Everything here acts on a batch ``(..., features)`` with plain matrix products
(``x @ W.T + b``), so a minibatch is one GEMM per layer, no ``vmap`` needed.
The working dtype is ``float32`` by default (neural networks do not need
float64, and it is about twice as fast on a CPU); ``dtype="float64"`` is
used by the tests that compare bounds with PPCA's exact log-likelihood.

One :class:`VAENet` holds every trainable array of a model, so a single
optax optimiser and a single serialisation cover it:

* ``encoder``: MLP ``x -> (loc, raw_scale)`` (``2 * latent_dim`` outputs) for
  the Gaussian and mixture priors, ``x -> z_e`` (``latent_dim``) for VQ; or,
  for images (``conv=True``), a :class:`ConvEncoder` with the same outputs;
* ``decoder``: MLP ``z -> eta`` (Bernoulli logits or Gaussian means), or its
  mirror :class:`ConvDecoder`, with ``log_scale`` (one per feature) for the
  Gaussian likelihood;
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


CONV_CHANNELS = (16, 32)  # channels of the two stride-2 convolutions of the image encoder


def conv_shapes(image_shape) -> list:
    """Spatial sizes ``[(H, W), (H1, W1), (H2, W2)]`` through the stride-2 convolutions: ``ceil(s / 2)`` each."""
    shapes = [tuple(int(s) for s in image_shape)]
    for _ in CONV_CHANNELS:
        shapes.append(tuple(-(-s // 2) for s in shapes[-1]))
    return shapes


def _promote(h, weight):
    """Both arrays in their common dtype (as ``x @ W`` would promote; ``lax`` convolutions do not)."""
    dtype = jnp.result_type(h, weight)
    return h.astype(dtype), weight.astype(dtype)


class Conv(eqx.Module):
    """A 3x3 convolution's ``weight`` (out, in, 3, 3) and ``bias`` (out,).

    Initialised as PyTorch's ``nn.Conv2d``: uniform :math:`\\pm 1/\\sqrt{\\text{in} \\cdot 9}`.
    """

    weight: jax.Array
    bias: jax.Array

    def __init__(self, n_in, n_out, *, key, dtype):
        k_w, k_b = jax.random.split(key)
        bound = 1.0 / (9 * n_in) ** 0.5
        self.weight = jax.random.uniform(k_w, (n_out, n_in, 3, 3), dtype, -bound, bound)
        self.bias = jax.random.uniform(k_b, (n_out,), dtype, -bound, bound)

    def down(self, h):
        """Stride-2 convolution, padding 1, of ``h`` (N, in, H, W): ``(N, out, ceil(H/2), ceil(W/2))``."""
        h, weight = _promote(h, self.weight)
        out = jax.lax.conv_general_dilated(h, weight, (2, 2), ((1, 1), (1, 1)),
                                           dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return out + self.bias[:, None, None]

    def up(self, h, shape):
        """Stride-2 transposed convolution of ``h`` (N, in, h, w) to ``(N, out, *shape)``.

        Computed as a convolution of the 2x input-dilated ``h`` (padding 1 before,
        1 or 2 after: PyTorch's ``ConvTranspose2d(3, stride=2, padding=1,
        output_padding=0 or 1)``), so ``shape`` may be ``2h`` or ``2h - 1``.
        """
        pads = tuple((1, 1 + target - (2 * size - 1)) for target, size in zip(shape, h.shape[2:]))
        h, weight = _promote(h, self.weight)
        out = jax.lax.conv_general_dilated(h, weight, (1, 1), pads, lhs_dilation=(2, 2),
                                           dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return out + self.bias[:, None, None]


class ConvEncoder(eqx.Module):
    """Small CNN for images: two ``Conv(3x3, stride 2) -> ReLU``, then the dense :class:`MLP` head.

    ``x`` (..., H*W) is read as one-channel images ``(H, W)`` (row-major, as
    ``x.reshape(H, W)``); the ``(32, ceil(H/4), ceil(W/4))`` feature maps are
    flattened into the head ``(32*H2*W2, *hidden, n_out)``.
    """

    convs: tuple
    head: MLP
    image_shape: tuple = eqx.field(static=True)

    def __init__(self, image_shape, hidden, n_out, *, key, dtype):
        keys = jax.random.split(key, len(CONV_CHANNELS) + 1)
        widths = (1, *CONV_CHANNELS)
        self.convs = tuple(Conv(a, b, key=k, dtype=dtype) for a, b, k in zip(widths[:-1], widths[1:], keys))
        h2, w2 = conv_shapes(image_shape)[-1]
        self.head = MLP((CONV_CHANNELS[-1] * h2 * w2, *hidden, n_out), key=keys[-1], dtype=dtype)
        self.image_shape = tuple(int(s) for s in image_shape)

    def __call__(self, x):
        """Apply to ``x`` of shape ``(..., H*W)``; returns ``(..., n_out)``."""
        lead = x.shape[:-1]
        h = x.reshape(-1, 1, *self.image_shape)
        for conv in self.convs:
            h = jax.nn.relu(conv.down(h))
        return self.head(h.reshape(*lead, -1))


class ConvDecoder(eqx.Module):
    """The mirror of :class:`ConvEncoder`: the dense head ``(d, *hidden[::-1], 32*H2*W2) -> ReLU``,
    then ``ConvTranspose(3x3, stride 2) 32 -> 16 -> ReLU -> ConvTranspose 16 -> 1``.

    Returns the logits or means ``(..., H*W)`` of the flattened image (no output nonlinearity).
    """

    head: MLP
    convs: tuple
    image_shape: tuple = eqx.field(static=True)

    def __init__(self, image_shape, hidden, latent_dim, *, key, dtype):
        keys = jax.random.split(key, len(CONV_CHANNELS) + 1)
        h2, w2 = conv_shapes(image_shape)[-1]
        self.head = MLP((latent_dim, *hidden[::-1], CONV_CHANNELS[-1] * h2 * w2), key=keys[0], dtype=dtype)
        widths = (*CONV_CHANNELS[::-1], 1)
        self.convs = tuple(Conv(a, b, key=k, dtype=dtype) for a, b, k in zip(widths[:-1], widths[1:], keys[1:]))
        self.image_shape = tuple(int(s) for s in image_shape)

    def __call__(self, z):
        """Apply to ``z`` of shape ``(..., latent_dim)``; returns ``(..., H*W)``."""
        lead = z.shape[:-1]
        shapes = conv_shapes(self.image_shape)
        h = jax.nn.relu(self.head(z)).reshape(-1, CONV_CHANNELS[-1], *shapes[-1])
        for i, conv in enumerate(self.convs):
            h = conv.up(h, shapes[-2 - i])
            if i < len(self.convs) - 1:
                h = jax.nn.relu(h)
        return h.reshape(*lead, -1)


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

    encoder: MLP | ConvEncoder
    decoder: MLP | ConvDecoder
    log_scale: jax.Array | None
    prior: MixturePrior | VQCodebook | None


def build_net(key, *, n_features, latent_dim, hidden, prior, n_components, likelihood, dtype, conv=False,
              image_shape=None) -> VAENet:
    """A freshly initialised :class:`VAENet`.

    The decoder mirrors the encoder (``hidden`` reversed). ``conv=True``: the
    :class:`ConvEncoder` / :class:`ConvDecoder` pair on images ``image_shape``
    ``(H, W)`` with ``H * W = n_features`` (``hidden``: their dense layers). Mixture means start
    as draws from :math:`\\mathcal N(0, I)` and unit scales, uniform weights;
    the VQ codebook starts uniform on :math:`[-1/K, 1/K]` (van den Oord et al.
    2017's reference code). The Gaussian likelihood's per-feature
    :math:`\\ln\\sigma_j` starts at 0.
    """
    k_enc, k_dec, k_prior = jax.random.split(key, 3)
    hidden = tuple(hidden)
    n_out = latent_dim if prior == "vq" else 2 * latent_dim
    if conv:
        if image_shape is None or int(image_shape[0]) * int(image_shape[1]) != n_features:
            raise ValueError(f"image_shape {image_shape!r} does not hold n_features={n_features} pixels.")
        encoder = ConvEncoder(image_shape, hidden, n_out, key=k_enc, dtype=dtype)
        decoder = ConvDecoder(image_shape, hidden, latent_dim, key=k_dec, dtype=dtype)
    else:
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
