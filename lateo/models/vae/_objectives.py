r"""The VAE objectives as pure, jittable functions of a :class:`~._nets.VAENet` and a batch.

Notation (seed 004, lecture 7; seed 001): data :math:`x \in \mathbb R^D`, latent
:math:`z \in \mathbb R^d`, decoder :math:`p_\theta(x \mid z)`, encoder
:math:`q_\phi(z \mid x) = \mathcal N(z; m_\phi(x), \mathrm{diag}\, s_\phi(x)^2)`
with :math:`s = \exp(\text{raw})`. Every function returns one value per row.

**Likelihoods.** Bernoulli with logits :math:`\eta = h_\theta(z)`:
:math:`\ln p(x\mid z) = \sum_j x_j \eta_j - \ln(1 + e^{\eta_j})` (for grey
levels :math:`x_j \in [0, 1]` this is the usual cross-entropy, a normalised
likelihood only for binary :math:`x`). Gaussian:
:math:`\sum_j \ln \mathcal N(x_j; h_\theta(z)_j, \sigma_j^2)` with a learnt
:math:`\ln \sigma_j` per feature.

**Gaussian prior** (Kingma & Welling 2014): the ELBO

.. math:: \mathcal L(x) = E_{q}[\ln p_\theta(x\mid z)] - D_{KL}(q_\phi(z\mid x) \,\|\, \mathcal N(0, I)),

the expectation by reparameterisation :math:`z = m + s \odot \varepsilon`,
:math:`\varepsilon \sim \mathcal N(0, I)`, the KL in closed form
(:func:`lateo.inference.vi.kl.kl_diag_normal`; seed 004's
:math:`-\tfrac12\sum_i (1 + \ln s_i^2 - m_i^2 - s_i^2)`).

**Mixture prior** ("GMVAE" here: the Gaussian-mixture-prior VAE with a
learnable mixture, as in VaDE, Jiang et al. 2017, rather than Dilokthanakul et
al. 2016's two-level prior). :math:`p(c) = \pi_c`,
:math:`p(z\mid c) = \mathcal N(\mu_c, \mathrm{diag}\,\sigma_c^2)`. With the
variational family :math:`q(z, c\mid x) = q_\phi(z\mid x)\,\gamma_c(x)`,

.. math:: \mathcal L_\gamma(x) = E_q[\ln p_\theta(x\mid z)] - \sum_c \gamma_c D_{KL}(q_\phi(z\mid x)\|p(z\mid c))
          - D_{KL}(\gamma \| \pi),

a lower bound on :math:`\ln p(x)` for every :math:`\gamma`. The best
:math:`\gamma` is in closed form, :math:`\gamma_c \propto \pi_c
e^{-D_{KL}(q\|p(z\mid c))}` (the categorical posterior, used by ``predict``),
and at it the two KL terms collapse to

.. math:: \min_\gamma [\cdots] = -\ln \sum_c \pi_c \exp(-D_{KL}(q_\phi(z\mid x)\,\|\,\mathcal N(\mu_c, \sigma_c^2))),

so the categorical is marginalised exactly and only the reconstruction term
is sampled. It upper-bounds :math:`D_{KL}(q\|\sum_c \pi_c p(z\mid c))` (Jensen).

**VQ prior** (van den Oord et al. 2017): :math:`z_e = f_\phi(x)`,
:math:`k^* = \arg\min_k \|z_e - e_k\|`, :math:`z_q = e_{k^*}`; the posterior is a
point mass on code :math:`k^*`, so with the uniform prior over the :math:`K`
codes the ELBO is :math:`\ln p_\theta(x\mid z_q) - \ln K`. Training minimises

.. math:: -\ln p_\theta(x \mid z_e + \mathrm{sg}(z_q - z_e)) + \|\mathrm{sg}(z_e) - e_{k^*}\|^2
          + \beta\,\|z_e - \mathrm{sg}(e_{k^*})\|^2, \quad \beta = 0.25,

the straight-through estimator copying the decoder-input gradient to :math:`z_e`.

**IWAE** (Burda et al. 2016): with :math:`z_i \sim q_\phi(z\mid x)`,
:math:`\mathcal L_k = E[\ln \tfrac1k \sum_{i=1}^k p(x, z_i)/q(z_i\mid x)]`, and
:math:`\mathcal L \le \mathcal L_k \le \mathcal L_{k+1} \le \ln p(x)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ...inference.vi.kl import kl_diag_normal

LOG_2PI = 1.8378770664093453
VQ_BETA = 0.25


def encode(net, x):
    """``(loc, scale)`` of :math:`q_\\phi(z\\mid x)`, each ``(..., d)`` (Gaussian and mixture priors)."""
    out = net.encoder(x)
    loc, raw = jnp.split(out, 2, axis=-1)
    return loc, jnp.exp(raw)


def log_normal_diag(z, loc, scale):
    """:math:`\\ln \\mathcal N(z; \\mu, \\mathrm{diag}\\,\\sigma^2)`, summed over the last axis."""
    u = (z - loc) / scale
    return -0.5 * jnp.sum(u**2 + 2.0 * jnp.log(scale) + LOG_2PI, axis=-1)


def log_likelihood(net, x, z, likelihood):
    """:math:`\\ln p_\\theta(x\\mid z)` per row; ``x`` and ``z`` broadcast over leading axes."""
    eta = net.decoder(z)
    if likelihood == "bernoulli":
        return jnp.sum(x * eta - jax.nn.softplus(eta), axis=-1)
    return log_normal_diag(x, eta, jnp.exp(net.log_scale))


def decoder_mean(net, z, likelihood):
    """:math:`E[x\\mid z]`: ``sigmoid(eta)`` (Bernoulli) or ``eta`` (Gaussian)."""
    eta = net.decoder(z)
    return jax.nn.sigmoid(eta) if likelihood == "bernoulli" else eta


def gaussian_kl(loc, scale):
    """:math:`D_{KL}(\\mathcal N(m, s^2)\\|\\mathcal N(0, I))` in closed form, per row."""
    return kl_diag_normal(loc, scale, 0.0, 1.0).astype(loc.dtype)


def component_kls(prior, loc, scale):
    """:math:`D_{KL}(q\\|\\mathcal N(\\mu_c, \\sigma_c^2))` for every component: ``(..., K)``."""
    kl = kl_diag_normal(loc[..., None, :], scale[..., None, :], prior.means, jnp.exp(prior.log_scales))
    return kl.astype(loc.dtype)


def mixture_kl(prior, loc, scale):
    """:math:`-\\ln\\sum_c \\pi_c e^{-D_{KL}(q\\|p(z\\mid c))}`: both KL terms at the optimal :math:`\\gamma`."""
    log_pi = jax.nn.log_softmax(prior.logits)
    return -logsumexp(log_pi - component_kls(prior, loc, scale), axis=-1)


def responsibilities(prior, loc, scale):
    """The categorical posterior :math:`\\gamma_c(x) \\propto \\pi_c e^{-D_{KL}(q\\|p(z\\mid c))}`, ``(..., K)``."""
    return jax.nn.softmax(jax.nn.log_softmax(prior.logits) - component_kls(prior, loc, scale), axis=-1)


def log_prior(net, z, prior_kind):
    """:math:`\\ln p(z)`: standard normal, or the mixture :math:`\\ln\\sum_c \\pi_c \\mathcal N(z;\\mu_c,\\sigma_c^2)`."""
    if prior_kind == "gaussian":
        return -0.5 * jnp.sum(z**2 + LOG_2PI, axis=-1)
    p = net.prior
    log_comp = log_normal_diag(z[..., None, :], p.means, jnp.exp(p.log_scales))
    return logsumexp(jax.nn.log_softmax(p.logits) + log_comp, axis=-1)


def elbo(net, x, key, prior_kind, likelihood):
    """One-sample reparameterised ELBO per row, closed-form KL (Gaussian and mixture priors)."""
    loc, scale = encode(net, x)
    z = loc + scale * jax.random.normal(key, loc.shape, loc.dtype)
    kl = gaussian_kl(loc, scale) if prior_kind == "gaussian" else mixture_kl(net.prior, loc, scale)
    return log_likelihood(net, x, z, likelihood) - kl


def quantise(codebook, z_e):
    """Nearest code: ``(index, e_index)`` for each row of ``z_e`` (squared Euclidean distance)."""
    d2 = jnp.sum(z_e**2, -1, keepdims=True) - 2.0 * z_e @ codebook.T + jnp.sum(codebook**2, -1)
    index = jnp.argmin(d2, axis=-1)
    return index, codebook[index]


def straight_through(z_e, z_q):
    """:math:`z_e + \\mathrm{sg}(z_q - z_e)`: value :math:`z_q`, gradient copied to :math:`z_e`."""
    return z_e + jax.lax.stop_gradient(z_q - z_e)


def vq_terms(net, x, likelihood):
    """``(loss, elbo)`` per row of the VQ-VAE (see the module docstring)."""
    z_e = net.encoder(x)
    codebook = net.prior.embeddings
    _, z_q = quantise(codebook, z_e)
    recon = log_likelihood(net, x, straight_through(z_e, z_q), likelihood)
    codebook_loss = jnp.sum((jax.lax.stop_gradient(z_e) - z_q) ** 2, axis=-1)
    commitment = jnp.sum((z_e - jax.lax.stop_gradient(z_q)) ** 2, axis=-1)
    loss = -recon + codebook_loss + VQ_BETA * commitment
    return loss, recon - jnp.log(codebook.shape[0]).astype(recon.dtype)


def loss_and_elbo(net, x, key, prior_kind, likelihood):
    """``(loss, elbo)`` per row: the training loss (negative ELBO, or the VQ loss) and the ELBO."""
    if prior_kind == "vq":
        return vq_terms(net, x, likelihood)
    value = elbo(net, x, key, prior_kind, likelihood)
    return -value, value


def log_weights(net, x, key, k, prior_kind, likelihood):
    """Log importance weights :math:`\\ln p(x, z_i) - \\ln q(z_i\\mid x)`, shape ``(k, n)``."""
    loc, scale = encode(net, x)
    z = loc + scale * jax.random.normal(key, (k, *loc.shape), loc.dtype)
    log_q = log_normal_diag(z, loc, scale)
    return log_likelihood(net, x, z, likelihood) + log_prior(net, z, prior_kind) - log_q


def iwae(net, x, key, k, prior_kind, likelihood):
    """The importance-weighted bound :math:`\\ln \\frac1k\\sum_i w_i` per row (one draw of the k samples)."""
    lw = log_weights(net, x, key, k, prior_kind, likelihood)
    return logsumexp(lw, axis=0) - jnp.log(k).astype(lw.dtype)
