"""VAE tests: the bounds against PPCA's exact likelihood, closed-form KL, unbiased
reparameterised gradients, the VQ straight-through gradient, input errors,
reproducibility and checkpoint resumption (issue #7).

Statistical tests use fixed seeds and tolerances of 4.5 standard errors
(two-sided, Bonferroni over at most a few dozen coordinates: a false failure
has probability below 1e-3), derived from the Monte Carlo standard errors.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import lateo
from lateo.datasets.digits import load_digits
from lateo.models.vae import VAE
from lateo.models.vae import _objectives as obj
from lateo.models.vae._nets import MLP, MixturePrior, VAENet, build_net

Z_TOL = 4.5
FAST = dict(hidden=(32,), n_epochs=3, batch_size=64, random_state=0, progress=False)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return X[:240], y[:240]


@pytest.fixture(scope="module")
def fitted(digits):
    """One small fitted model per prior (compiled once for the module); the VQ-VAE has the Gaussian likelihood."""
    X = digits[0]
    return {p: VAE(p, latent_dim=3, n_components=4, pretrain_epochs=0, likelihood="gaussian" if p == "vq" else "bernoulli",
                   **FAST).fit(X) for p in ("gaussian", "mixture", "vq")}


# ---------------------------------------------------------------- PPCA as a linear-Gaussian VAE
@pytest.fixture(scope="module")
def ppca_setup():
    rng = np.random.default_rng(0)
    D, q, n = 5, 2, 400
    W0 = rng.normal(size=(D, q)) * np.array([3.0, 1.5])
    X = rng.normal(size=(n, q)) @ W0.T + 0.7 * rng.normal(size=(n, D)) + 2.0
    ppca = lateo.PPCA(n_components=q).fit(X)
    return X[:20], ppca


def _linear(weight, bias):
    layer = eqx.nn.Linear(weight.shape[1], weight.shape[0], dtype=jnp.float64, key=jax.random.key(0))
    layer = eqx.tree_at(lambda m: m.weight, layer, jnp.asarray(weight))
    return eqx.tree_at(lambda m: m.bias, layer, jnp.asarray(bias))


def _ppca_net(ppca, shrink=1.0, widen=1.0):
    """Linear-Gaussian VAE equal to ``ppca``; ``shrink``/``widen`` perturb q away from the exact posterior.

    ``loadings_ = U diag(s)`` has orthogonal columns, so ``M = W^T W + s^2 I`` is
    diagonal and the exact posterior ``N(M^-1 W^T (x - mu), s^2 M^-1)`` is in the
    encoder's (diagonal) family.
    """
    W, mu, s2 = ppca.loadings_, ppca.mean_, ppca.noise_variance_
    M = W.T @ W + s2 * np.eye(W.shape[1])
    assert np.allclose(M, np.diag(np.diag(M)))
    A = shrink * np.linalg.solve(M, W.T)
    log_sd = 0.5 * np.log(s2 / np.diag(M)) + np.log(widen)
    enc = MLP.__new__(MLP)
    object.__setattr__(enc, "layers", (_linear(np.vstack([A, np.zeros_like(A)]), np.concatenate([-A @ mu, log_sd])),))
    dec = MLP.__new__(MLP)
    object.__setattr__(dec, "layers", (_linear(W, mu),))
    return VAENet(enc, dec, jnp.full(W.shape[0], 0.5 * np.log(s2)), None)


def _exact_elbo(net, ppca, X):
    """Closed-form ELBO of the linear-Gaussian model: E_q ln p(x|z) - KL(q || N(0, I))."""
    loc, scale = (np.asarray(a) for a in obj.encode(net, jnp.asarray(X)))
    W, mu, s2 = ppca.loadings_, ppca.mean_, ppca.noise_variance_
    resid = X - loc @ W.T - mu
    recon = -0.5 * (np.sum(resid**2, 1) + (scale**2) @ np.sum(W**2, 0)) / s2 - 0.5 * X.shape[1] * np.log(2 * np.pi * s2)
    return recon - np.asarray(obj.gaussian_kl(jnp.asarray(loc), jnp.asarray(scale)))


def test_exact_posterior_makes_every_bound_log_p(ppca_setup):
    X, ppca = ppca_setup
    net = _ppca_net(ppca)
    log_p = ppca.score_samples(X)
    lw = eqx.filter_jit(obj.log_weights)(net, jnp.asarray(X), jax.random.key(1), 7, "gaussian", "gaussian")
    np.testing.assert_allclose(np.asarray(lw), np.broadcast_to(log_p, (7, len(X))), rtol=1e-10)
    np.testing.assert_allclose(_exact_elbo(net, ppca, X), log_p, rtol=1e-10)


def test_elbo_below_iwae_below_log_p(ppca_setup):
    X, ppca = ppca_setup
    net = _ppca_net(ppca, shrink=0.6, widen=2.0)
    log_p, elbo = ppca.score_samples(X), _exact_elbo(net, ppca, X)
    R, K = 300, 100  # R replicates of K log-weights; IWAE_k uses the first k of each replicate
    lw = np.asarray(eqx.filter_jit(jax.vmap(lambda key: obj.log_weights(net, jnp.asarray(X), key, K, "gaussian",
                                                                         "gaussian")))(jax.random.split(jax.random.key(1), R)))
    means = {}
    for k in (1, 10, 100):
        draws = logsumexp(lw[:, :k], axis=1) - np.log(k)  # (R, n)
        means[k] = (draws.mean(0), draws.std(0, ddof=1) / np.sqrt(R))
    m1, se1 = means[1]
    assert np.all(np.abs(m1 - elbo) < Z_TOL * se1)  # E[IWAE_1] = ELBO
    assert np.all(elbo < log_p - 0.5)  # the perturbed q leaves a real gap
    for small, big in ((1, 10), (10, 100)):
        (ms, ss), (mb, sb) = means[small], means[big]
        assert np.all(mb - ms > -Z_TOL * np.hypot(ss, sb))
        assert np.mean(mb - ms) > 0.1
    m100, se100 = means[100]
    assert np.all(m100 < log_p + Z_TOL * se100)
    assert np.all(elbo < m100)


def test_vae_iwae_bound_matches_pure_function(fitted, digits):
    model, X = fitted["gaussian"], digits[0][:10]
    low, high = model.score_samples(X, n_samples=200, random_state=1), model.iwae_bound(X, k=200, random_state=1)
    assert np.all(high > low)


# ---------------------------------------------------------------- KL terms
def test_gaussian_kl_closed_form_matches_monte_carlo():
    loc, scale = jnp.array([0.3, -1.2, 2.0]), jnp.array([0.5, 1.7, 0.9])
    d = np.asarray(jax.jit(lambda key: (lambda z: obj.log_normal_diag(z, loc, scale) - obj.log_prior(None, z, "gaussian"))(
        loc + scale * jax.random.normal(key, (100_000, 3))))(jax.random.key(0)))
    closed = float(obj.gaussian_kl(loc, scale))
    assert abs(d.mean() - closed) < Z_TOL * d.std() / np.sqrt(d.size)
    manual = -0.5 * np.sum(1 + np.log(scale**2) - loc**2 - scale**2)  # seed 004's formula
    np.testing.assert_allclose(closed, manual, rtol=1e-12)


def test_mixture_kl_is_the_optimal_categorical_bound():
    prior = MixturePrior(jnp.array([0.2, -0.5, 0.1]), jnp.array([[0.0, 1.0], [2.0, -1.0], [-1.5, 0.5]]),
                         jnp.log(jnp.array([[0.7, 1.2], [0.5, 0.6], [1.0, 1.0]])))
    loc, scale = jnp.array([0.8, 0.1]), jnp.array([0.6, 0.9])
    kls, log_pi = np.asarray(obj.component_kls(prior, loc, scale)), np.asarray(jax.nn.log_softmax(prior.logits))
    gamma = np.asarray(obj.responsibilities(prior, loc, scale))

    def bound(g):  # sum_c g_c KL_c + KL(g || pi)
        return float(np.sum(g * kls) + np.sum(g * (np.log(g) - log_pi)))

    closed = float(obj.mixture_kl(prior, loc, scale))
    np.testing.assert_allclose(closed, bound(gamma), rtol=1e-12)
    for g in np.random.default_rng(3).dirichlet(np.ones(3), 20):
        assert bound(g) >= closed - 1e-12
    net = VAENet(None, None, None, prior)
    d = np.asarray(eqx.filter_jit(lambda key: (lambda z: obj.log_normal_diag(z, loc, scale) - obj.log_prior(
        net, z, "mixture"))(loc + scale * jax.random.normal(key, (100_000, 2))))(jax.random.key(4)))  # KL(q || mix)
    assert d.mean() < closed + Z_TOL * d.std() / np.sqrt(d.size)


# ---------------------------------------------------------------- gradients
def _decoder(key, d=2, D=6):
    return VAENet(None, MLP((d, 16, D), key=key, dtype=jnp.float64), None, None)


def _grad_estimates(net, x, loc, log_scale, n, key):
    """Per-sample reparameterised and score-function gradients of E_q ln p(x|z) in (loc, log_scale)."""
    k_r, k_s, k_b = jax.random.split(key, 3)

    def f(z):
        return obj.log_likelihood(net, x, z, "bernoulli")

    def reparam(eps):
        return jax.grad(lambda m, s: f(m + jnp.exp(s) * eps), argnums=(0, 1))(loc, log_scale)

    baseline = jnp.mean(jax.vmap(f)(loc + jnp.exp(log_scale) * jax.random.normal(k_b, (n, loc.size))))

    def score(eps):  # (f(z) - b) * grad ln q(z); z = loc + s eps held fixed
        z = loc + jnp.exp(log_scale) * eps
        g = jax.grad(lambda m, s: obj.log_normal_diag(z, m, jnp.exp(s)), argnums=(0, 1))(loc, log_scale)
        return jax.tree_util.tree_map(lambda t: (f(z) - baseline) * t, g)

    return jax.vmap(reparam)(jax.random.normal(k_r, (n, loc.size))), jax.vmap(score)(jax.random.normal(k_s, (n, loc.size)))


def test_reparameterised_gradient_is_unbiased():
    net = _decoder(jax.random.key(0))
    x = jnp.asarray((np.random.default_rng(1).random(6) > 0.5).astype(float))
    loc, log_scale = jnp.array([0.4, -0.3]), jnp.log(jnp.array([0.8, 0.5]))
    rep, sf = (np.concatenate([np.asarray(a), np.asarray(b)], axis=1)
               for a, b in eqx.filter_jit(_grad_estimates)(net, x, loc, log_scale, 100_000, jax.random.key(5)))
    diff = rep.mean(0) - sf.mean(0)
    se = np.sqrt(rep.var(0, ddof=1) / len(rep) + sf.var(0, ddof=1) / len(sf))
    assert np.all(np.abs(diff) < Z_TOL * se), (diff, se)
    assert np.all(se < 0.05 * np.abs(rep.mean(0)).max())  # the test has power: standard errors are small
    # a biased estimator (the gradient at the mean, eps = 0) is rejected by the same test
    at_mean = np.concatenate([np.asarray(g) for g in jax.grad(
        lambda m, s: obj.log_likelihood(net, x, m + 0 * s, "bernoulli"), argnums=(0, 1))(loc, log_scale)])
    assert np.any(np.abs(at_mean - sf.mean(0)) > Z_TOL * np.sqrt(sf.var(0, ddof=1) / len(sf)))


def test_reparameterised_gradient_matches_exact_linear_gaussian(ppca_setup):
    X, ppca = ppca_setup
    net, x = _ppca_net(ppca), jnp.asarray(X[0])
    W, s2 = jnp.asarray(ppca.loadings_), ppca.noise_variance_
    loc, log_scale = jnp.array([0.5, -0.2]), jnp.log(jnp.array([0.3, 0.6]))

    def exact(m, s):  # E_q ln N(x; W z + mu, s2 I), closed form
        r = x - W @ m - jnp.asarray(ppca.mean_)
        return -0.5 * (r @ r + jnp.exp(2 * s) @ jnp.sum(W**2, 0)) / s2

    truth = np.concatenate([np.asarray(g) for g in jax.grad(exact, argnums=(0, 1))(loc, log_scale)])
    eps = jax.random.normal(jax.random.key(2), (20_000, 2))
    grads = jax.vmap(lambda e: jax.grad(lambda m, s: obj.log_likelihood(net, x, m + jnp.exp(s) * e, "gaussian"),
                                        argnums=(0, 1))(loc, log_scale))(eps)
    g = np.concatenate([np.asarray(a) for a in grads], axis=1)
    assert np.all(np.abs(g.mean(0) - truth) < Z_TOL * g.std(0, ddof=1) / np.sqrt(len(g)) + 1e-9)


def test_vq_straight_through_gradient_passes_the_quantiser():
    net = build_net(jax.random.key(0), n_features=6, latent_dim=3, hidden=(8,), prior="vq", n_components=5,
                    likelihood="bernoulli", dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(0).random((4, 6)))
    z_e = net.encoder(x)
    _, z_q = obj.quantise(net.prior.embeddings, z_e)
    through = eqx.filter_jit(jax.grad(lambda z: jnp.sum(obj.log_likelihood(net, x, obj.straight_through(z, z_q),
                                                                            "bernoulli"))))(z_e)
    at_decoder = eqx.filter_jit(jax.grad(lambda z: jnp.sum(obj.log_likelihood(net, x, z, "bernoulli"))))(z_q)
    np.testing.assert_array_equal(np.asarray(through), np.asarray(at_decoder))
    assert np.all(np.abs(np.asarray(through)) > 0)
    grads = eqx.filter_jit(eqx.filter_grad(lambda n: jnp.sum(obj.vq_terms(n, x, "bernoulli")[0])))(net)
    assert float(jnp.abs(grads.encoder.layers[0].weight).sum()) > 0  # the encoder learns through the quantiser
    codebook_grad = np.asarray(grads.prior.embeddings)
    used = np.unique(np.asarray(obj.quantise(net.prior.embeddings, z_e)[0]))
    assert np.all(np.abs(codebook_grad[used]).sum(1) > 0)
    assert np.all(codebook_grad[np.setdiff1d(np.arange(5), used)] == 0)  # only chosen codes move


# ---------------------------------------------------------------- the estimator
def test_estimator_api(fitted, digits):
    X, n = digits[0][:30], 30
    for prior, model in fitted.items():
        assert model.transform(X).shape == (n, 3)
        rec, draws = model.reconstruct(X), model.sample(5, random_state=1, mean=False)
        assert rec.shape == (n, 64) and draws.shape == (5, 64) and model.sample(5, random_state=1).shape == (5, 64)
        if model.likelihood == "bernoulli":
            assert rec.min() >= 0 and rec.max() <= 1 and set(np.unique(draws)) <= {0.0, 1.0}
        else:  # mean + sigma * noise
            sigma = np.exp(np.asarray(model._net().log_scale))
            z = (draws - model.sample(5, random_state=1)) / sigma
            assert 0.5 < z.std() < 1.5
        assert np.all(np.isfinite(model.score_samples(X))) and model.train_elbo_.shape == (model.n_epochs_,)
    loc, scale = fitted["gaussian"].encode(X)
    assert loc.shape == scale.shape == (n, 3) and np.all(scale > 0)
    codes = fitted["vq"].encode(X)
    np.testing.assert_array_equal(fitted["vq"].transform(X), fitted["vq"].codebook_[codes])
    proba = fitted["mixture"].predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(fitted["mixture"].predict(X), proba.argmax(1))
    assert fitted["mixture"].cluster_weights_.shape == (4,)


def test_save_load_roundtrip(fitted, digits, tmp_path):
    X = digits[0][:20]
    for prior, model in fitted.items():
        path = lateo.save_model(model, tmp_path / f"{prior}.npz")
        loaded = lateo.load_model(path)
        np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
        np.testing.assert_array_equal(loaded.score_samples(X, random_state=2), model.score_samples(X, random_state=2))


def test_early_stopping_keeps_the_best_epoch(digits):
    model = VAE(**{**FAST, "n_epochs": 40}, latent_dim=3, learning_rate=0.05, patience=2).fit(digits[0])
    assert model.best_epoch_ == int(np.argmax(model.validation_elbo_)) + 1
    if model.stopped_early_:
        assert model.n_epochs_ == model.best_epoch_ + 2 < 40


def test_reproducible_from_seed(fitted, digits):
    again = VAE("gaussian", latent_dim=3, n_components=4, pretrain_epochs=0, **FAST).fit(digits[0])
    for a, b in zip(again.weights_, fitted["gaussian"].weights_):
        np.testing.assert_array_equal(a, b)
    other = VAE("gaussian", latent_dim=3, n_components=4, **{**FAST, "random_state": 1}).fit(digits[0])
    assert not np.array_equal(other.weights_[0], again.weights_[0])


def test_checkpoint_resume_equals_uninterrupted_run(digits, tmp_path):
    X, path = digits[0], tmp_path / "ckpt.npz"
    params = dict(FAST, prior="mixture", latent_dim=3, n_components=4, pretrain_epochs=0)
    whole = VAE(**{**params, "n_epochs": 4}).fit(X)
    VAE(**{**params, "n_epochs": 2}, checkpoint=path).fit(X)  # "interrupted" after 2 epochs
    resumed = VAE(**{**params, "n_epochs": 4}, checkpoint=path).fit(X)
    for a, b in zip(whole.weights_, resumed.weights_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole.validation_elbo_, resumed.validation_elbo_)
    with pytest.raises(ValueError, match="another run"):
        VAE(**{**params, "random_state": 5}, checkpoint=path).fit(X)
    with pytest.raises(ValueError, match="integer random_state"):
        VAE(**{**params, "random_state": None}, checkpoint=path).fit(X)


@pytest.mark.parametrize(("X", "match"), [
    (np.full(64, 0.5), "2-D"),
    (np.where(np.eye(5, 64) > 0, np.nan, 0.5), "NaN"),
    (np.full((5, 64), 2.0), r"X must have values in \[0, 1\] for likelihood='bernoulli'"),
    (-np.ones((5, 64)), r"\[0, 1\]"),
])
def test_bad_input_to_fit(X, match):
    with pytest.raises(ValueError, match=match):
        VAE(**FAST).fit(X)


def test_bad_input_after_fit(fitted, digits):
    gauss, X = fitted["gaussian"], digits[0]
    with pytest.raises(ValueError, match="X has 10 features, but VAE is expecting 64"):
        gauss.transform(X[:, :10])
    with pytest.raises(ValueError, match="Z has 2 features"):
        gauss.decode(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="predict_proba needs prior='mixture'"):
        gauss.predict(X)
    with pytest.raises(ValueError, match="prior='vq'"):
        fitted["vq"].iwae_bound(X[:3])
    with pytest.raises(lateo.NotFittedError):
        VAE().transform(X)


@pytest.mark.parametrize(("params", "match"), [
    (dict(prior="flow"), "prior must be one of"), (dict(likelihood="poisson"), "likelihood must be one of"),
    (dict(latent_dim=0), "latent_dim"), (dict(hidden=(16, -1)), "hidden"),
    (dict(validation_fraction=1.0), "validation_fraction"), (dict(learning_rate=0.0), "learning_rate"),
    (dict(prior="mixture", mixture_init="random"), "mixture_init"),
])
def test_bad_hyperparameters(params, match, digits):
    with pytest.raises(ValueError, match=match):
        VAE(**{**FAST, **params}).fit(digits[0][:20])


def test_gaussian_likelihood_is_the_normal_density():
    from scipy.stats import norm

    net = build_net(jax.random.key(0), n_features=4, latent_dim=2, hidden=(8,), prior="gaussian", n_components=1,
                    likelihood="gaussian", dtype=jnp.float64)
    net = eqx.tree_at(lambda n: n.log_scale, net, jnp.log(jnp.array([0.5, 1.0, 2.0, 0.1])))
    x, z = np.random.default_rng(0).normal(size=(3, 4)) * 3, np.random.default_rng(1).normal(size=(3, 2))
    mean = np.asarray(net.decoder(jnp.asarray(z)))
    expected = norm.logpdf(x, mean, [0.5, 1.0, 2.0, 0.1]).sum(1)
    np.testing.assert_allclose(np.asarray(obj.log_likelihood(net, jnp.asarray(x), jnp.asarray(z), "gaussian")),
                               expected, rtol=1e-12)


def test_mixture_pretraining_initialises_by_kmeans(fitted, digits):
    from lateo.models.vae._train import kmeans_prior

    X = digits[0]
    net = fitted["mixture"]._net()
    loc = np.asarray(obj.encode(net, jnp.asarray(X, jnp.float32))[0], np.float64)
    for space, points in (("data", X), ("latent", loc)):
        init = kmeans_prior(net, jnp.asarray(X, jnp.float32), seed=0, space=space)
        labels = lateo.KMeans(4, n_init=10, random_state=0, progress=False).fit(points).labels_
        expected = np.stack([loc[labels == c].mean(0) for c in range(4)])
        np.testing.assert_allclose(np.asarray(init.prior.means), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.exp(np.asarray(init.prior.logits)),
                                   (np.bincount(labels, minlength=4) + 1) / (len(X) + 4), rtol=1e-5)
    with pytest.raises(ValueError, match="pretrain_epochs must be < n_epochs"):
        VAE("mixture", **FAST, pretrain_epochs=3).fit(X)


def test_plots(fitted, digits, tmp_path):
    from lateo._plots_vae import _image_shape, plot_vae_latent, plot_vae_reconstructions, plot_vae_samples
    from lateo._plots_vae import plot_vae_training
    from lateo.plots import _pyplot

    X, y = digits
    fig, axes = _pyplot().subplots(2, 3, figsize=(12, 7))
    plot_vae_latent(fitted["gaussian"], X, y, ax=axes[0, 0])
    plot_vae_latent(fitted["mixture"], X, ax=axes[0, 1])
    plot_vae_reconstructions(fitted["vq"], X, n=6, ax=axes[0, 2])
    plot_vae_samples(fitted["mixture"], n_rows=3, n_cols=4, random_state=0, ax=axes[1, 0])
    plot_vae_training(fitted["gaussian"], ax=axes[1, 1])
    assert len(axes[1, 1].lines) == 3  # training, validation, kept epoch
    fig.savefig(tmp_path / "vae.png")
    _pyplot().close(fig)
    assert (tmp_path / "vae.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="not a square image"):
        _image_shape(5, None)
    assert _image_shape(6, (2, 3)) == (2, 3)


def test_cli_fit_vae(digits, tmp_path):
    import click
    import pandas as pd
    from click.testing import CliRunner

    from lateo._cli_vae import fit_vae

    group = click.Group()
    group.add_command(click.Group("fit", commands={"vae": fit_vae}))
    path = tmp_path / "digits.csv"
    pd.DataFrame(digits[0], columns=[f"p{i}" for i in range(64)]).to_csv(path, index=False)
    out, png = tmp_path / "model.npz", tmp_path / "vae.png"
    result = CliRunner().invoke(group, ["fit", "vae", str(path), "--prior", "vq", "--likelihood", "gaussian",
                                        "--latent-dim", "3", "-k", "4", "--hidden", "32", "--epochs", "3",
                                        "--batch-size", "64", "--random-state", "0", "-o", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    model = lateo.load_model(out)
    assert model.prior == "vq" and model.codebook_.shape == (4, 3) and png.exists()
    np.testing.assert_array_equal(model.codebook_, VAE("vq", latent_dim=3, n_components=4, likelihood="gaussian",
                                                       **FAST).fit(digits[0]).codebook_)
    bad = tmp_path / "bad.csv"
    pd.DataFrame(digits[0][:20] * 16).to_csv(bad, index=False)
    result = CliRunner().invoke(group, ["fit", "vae", str(bad), "-o", str(out), "--epochs", "2"])
    assert result.exit_code == 1 and "[0, 1]" in result.output


def test_load_digits_is_sklearns_digits():
    X, y = load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,) and X.min() == 0.0 and X.max() == 1.0
    assert np.array_equal(np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    raw = load_digits(scaled=False, return_X_y=False)
    np.testing.assert_array_equal(raw, X * 16)
    frame = load_digits(as_frame=True)
    assert list(frame.columns[[0, -1]]) == ["pixel_0", "target"]
    datasets = pytest.importorskip("sklearn.datasets")
    reference = datasets.load_digits()
    np.testing.assert_array_equal(raw, reference.data)
    np.testing.assert_array_equal(y, reference.target)


# ---------------------------------------------------------------- the convolutional option
CONV = dict(conv=True, latent_dim=3, n_components=4, pretrain_epochs=0, hidden=(16,), n_epochs=6, batch_size=32,
            learning_rate=3e-3, patience=None, random_state=0, progress=False)


@pytest.fixture(scope="module")
def conv_fitted(digits):
    """One small convolutional VAE per prior on 200 digits (8x8 by default); the VQ-VAE has the Gaussian likelihood."""
    X = digits[0][:200]
    return {p: VAE(p, **CONV, likelihood="gaussian" if p == "vq" else "bernoulli").fit(X)
            for p in ("gaussian", "mixture", "vq")}


def test_conv_nets_shapes_and_transposed_convolution():
    from lateo.models.vae._nets import Conv, ConvDecoder, ConvEncoder

    @eqx.filter_jit
    def run(net, x, down, h, g, shape):
        # ``up`` is the adjoint (transpose) of a stride-2 ``down``: with the kernel transposed and flipped, it
        # equals the vector-Jacobian product of ``down``
        up = eqx.tree_at(lambda c: (c.weight, c.bias), down,
                         (jnp.transpose(down.weight, (1, 0, 2, 3))[..., ::-1, ::-1], jnp.zeros(2, h.dtype)))
        return (net.encoder(x), net.encoder(x[1]), net.decoder(jnp.zeros((2, 4, 3), x.dtype)), up.up(g, shape),
                jax.vjp(down.down, h)[1](g)[0])

    rng = np.random.default_rng(0)
    for shape in ((5, 8),):  # an odd height and an even width: both paddings of the transposed convolution
        net = build_net(jax.random.key(0), n_features=shape[0] * shape[1], latent_dim=3, hidden=(8,), prior="gaussian",
                        n_components=1, likelihood="gaussian", dtype=jnp.float64, conv=True, image_shape=shape)
        assert isinstance(net.encoder, ConvEncoder) and isinstance(net.decoder, ConvDecoder)
        x = jnp.asarray(rng.random((2, 4, shape[0] * shape[1])))
        h = jnp.asarray(rng.normal(size=(1, 2, *shape)))
        g = jnp.asarray(rng.normal(size=(1, 3, -(-shape[0] // 2), -(-shape[1] // 2))))
        enc, enc1, dec, up, vjp = run(net, x, Conv(2, 3, key=jax.random.key(1), dtype=jnp.float64), h, g, shape)
        assert enc.shape == (2, 4, 6) and dec.shape == x.shape
        np.testing.assert_allclose(np.asarray(enc1), np.asarray(enc)[1], rtol=1e-12)
        np.testing.assert_allclose(np.asarray(up), np.asarray(vjp), rtol=1e-10, atol=1e-12)


def test_conv_fit_api_for_each_prior(conv_fitted, digits):
    X, n = digits[0][200:230], 30
    for prior, model in conv_fitted.items():
        assert model._net().encoder.image_shape == (8, 8)
        assert model.transform(X).shape == (n, 3) and model.reconstruct(X).shape == (n, 64)
        assert model.decode(np.zeros((4, 3))).shape == (4, 64)
        assert model.sample(5, random_state=1).shape == model.sample(5, random_state=1, mean=False).shape == (5, 64)
        assert np.all(np.isfinite(model.score_samples(X))) and model.n_epochs_ == 6
    loc, scale = conv_fitted["gaussian"].encode(X)
    assert loc.shape == scale.shape == (n, 3) and np.all(scale > 0)
    rec = conv_fitted["mixture"].reconstruct(X)
    assert rec.min() >= 0 and rec.max() <= 1
    assert conv_fitted["vq"].encode(X).shape == (n,) and conv_fitted["mixture"].predict(X).shape == (n,)
    iwae = conv_fitted["gaussian"].iwae_bound(X, k=20, random_state=0)
    assert iwae.shape == (n,) and np.mean(iwae) > np.mean(conv_fitted["gaussian"].score_samples(X, random_state=0))


def test_conv_training_improves_the_validation_elbo(conv_fitted):
    for model in conv_fitted.values():
        val = model.validation_elbo_
        assert np.all(np.isfinite(val)) and val[-1] > val[0] + 5.0  # nats per image, over 6 epochs
        assert model.best_epoch_ == model.n_epochs_  # still improving


def test_conv_reproducible_from_seed(conv_fitted, digits):
    X = digits[0][:200]
    again = VAE("gaussian", **CONV).fit(X)
    for a, b in zip(again.weights_, conv_fitted["gaussian"].weights_):
        np.testing.assert_array_equal(a, b)
    other = VAE("gaussian", **{**CONV, "random_state": 1, "n_epochs": 1}).fit(X)
    assert not np.array_equal(other.weights_[0], again.weights_[0])


def test_conv_save_load_roundtrip(conv_fitted, digits, tmp_path):
    X = digits[0][200:220]
    for prior, model in conv_fitted.items():
        loaded = lateo.load_model(lateo.save_model(model, tmp_path / f"conv-{prior}.npz"))
        assert loaded.conv is True and len(loaded.weights_) == len(model.weights_)
        np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
        np.testing.assert_array_equal(loaded.reconstruct(X), model.reconstruct(X))
        np.testing.assert_array_equal(loaded.score_samples(X, random_state=2), model.score_samples(X, random_state=2))


@pytest.mark.parametrize(("params", "columns", "match"), [
    (dict(), 10, r"10 features, not a square number, so pass image_shape=\(H, W\)"),
    (dict(image_shape=(4, 4)), 64, r"image_shape=\(4, 4\) holds 16 pixels but X has 64 features"),
    (dict(image_shape=(8,)), 64, "image_shape must be None or a pair of positive ints"),
    (dict(image_shape=(0, 64)), 64, "image_shape must be"),
    (dict(conv="yes"), 64, "conv must be True or False"),
])
def test_conv_bad_image_shape(params, columns, match, digits):
    model = VAE(**{**CONV, **params})
    with pytest.raises(ValueError, match=match):
        model.fit(digits[0][:20, :columns])
    assert not hasattr(model, "weights_")


def test_cli_fit_vae_conv(conv_fitted, digits, tmp_path):
    import click
    import pandas as pd
    from click.testing import CliRunner

    from lateo._cli_vae import fit_vae

    group = click.Group()
    group.add_command(click.Group("fit", commands={"vae": fit_vae}))
    path, out = tmp_path / "digits.csv", tmp_path / "conv.npz"
    pd.DataFrame(digits[0][:200], columns=[f"p{i}" for i in range(64)]).to_csv(path, index=False)
    result = CliRunner().invoke(group, ["fit", "vae", str(path), "--conv", "--latent-dim", "3", "-k", "4",
                                        "--pretrain-epochs", "0", "--hidden", "16", "--epochs", "6", "--batch-size",
                                        "32", "--learning-rate", "0.003", "--patience", "0", "--random-state", "0",
                                        "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "convolutional" in result.output
    model = lateo.load_model(out)
    assert model.conv is True
    for a, b in zip(model.weights_, conv_fitted["gaussian"].weights_):
        np.testing.assert_array_equal(a, b)
    result = CliRunner().invoke(group, ["fit", "vae", str(path), "--conv", "--columns", "p0,p1,p2", "-o", str(out)])
    assert result.exit_code == 1 and "image_shape" in result.output
