"""CategoricalHMM, PoissonHMM and GMMHMM: differential tests against hmmlearn
(implementation="log", ML-equivalent priors, identical start parameters),
Baum-Welch behaviour, recovery from simulated data, edge cases, bad input.

Compilation dominates the run time, so every model sees the same bucket
shapes (sequence lengths ``LENGTHS``) wherever possible.
"""

import numpy as np
import pytest
from hmmlearn import hmm as hmmlearn_hmm

from lateo.models.gmm_hmm import GMMHMM, ml_covars_priors
from lateo.models.hmm_discrete import CategoricalHMM, PoissonHMM

K = 3
LENGTHS = [200, 150, 250]
RTOL = 1e-8
START = np.array([0.6, 0.3, 0.1])
TRANS = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
TRANS0 = np.array([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]])  # start of the differential fits
EMISSION = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.2, 0.6]])
EMISSION0 = np.array([[0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])
LAMBDAS = np.array([[1.0, 5.0], [4.0, 0.5], [10.0, 10.0]])
LAMBDAS0 = np.array([[2.0, 2.0], [3.0, 1.0], [6.0, 6.0]])
N_SYMBOLS = EMISSION.shape[1]
# GMMHMM: 2 states x 2 components in 2-D
GK, GM, GD = 2, 2, 2
G_TRANS0 = np.array([[0.6, 0.4], [0.3, 0.7]])
COV_TYPES = ["full", "diag", "spherical", "tied"]
FAMILIES = ["categorical", "poisson"] + [f"gmm-{c}" for c in COV_TYPES]


def _categorical_truth():
    ref = hmmlearn_hmm.CategoricalHMM(K, n_features=N_SYMBOLS)
    ref.startprob_, ref.transmat_, ref.emissionprob_ = START, TRANS, EMISSION
    return ref


def _poisson_truth():
    ref = hmmlearn_hmm.PoissonHMM(K)
    ref.startprob_, ref.transmat_, ref.lambdas_ = START, TRANS, LAMBDAS
    return ref


def _gmm_truth():
    ref = hmmlearn_hmm.GMMHMM(GK, n_mix=GM, covariance_type="full")
    ref.startprob_, ref.transmat_ = np.array([0.6, 0.4]), np.array([[0.9, 0.1], [0.2, 0.8]])
    ref.weights_ = np.array([[0.3, 0.7], [0.5, 0.5]])
    ref.means_ = np.array([[[0.0, 0.0], [3.0, 0.0]], [[0.0, 4.0], [4.0, 4.0]]]) + 10.0
    ref.covars_ = np.tile(0.5 * np.eye(GD), (GK, GM, 1, 1))
    ref.n_features = GD
    return ref


@pytest.fixture(scope="module")
def data():
    """One simulated data set per family, concatenated sequences of ``LENGTHS``."""
    n = sum(LENGTHS)
    return {"categorical": _categorical_truth().sample(n, random_state=1)[0],
            "poisson": _poisson_truth().sample(n, random_state=2)[0],
            "gmm": _gmm_truth().sample(n, random_state=3)[0]}


def _gmm_start(X, covariance_type):
    cv = np.cov(X.T) + 1e-3 * np.eye(GD)
    means = X[[0, 100, 300, 400]].reshape(GK, GM, GD)
    covs = {"full": np.tile(cv, (GK, GM, 1, 1)), "diag": np.tile(np.diag(cv), (GK, GM, 1)),
            "spherical": np.full((GK, GM), np.diag(cv).mean()), "tied": np.tile(cv, (GK, 1, 1))}[covariance_type]
    return means, covs


def _pair(family, data, n_iter=1, **ours_kwargs):
    """hmmlearn (log implementation, ML-equivalent priors) and lateo from the same start; and X."""
    common = {"n_iter": n_iter, "tol": -np.inf, "init_params": ""}
    if family == "categorical":
        peer = hmmlearn_hmm.CategoricalHMM(K, n_features=N_SYMBOLS, implementation="log", **common)
        ours = CategoricalHMM(K, n_features=N_SYMBOLS, **common, **ours_kwargs)
        attrs = {"startprob_": np.full(K, 1.0 / K), "transmat_": TRANS0, "emissionprob_": EMISSION0}
        X = data["categorical"]
    elif family == "poisson":
        peer = hmmlearn_hmm.PoissonHMM(K, implementation="log", **common)
        ours = PoissonHMM(K, **common, **ours_kwargs)
        attrs = {"startprob_": np.full(K, 1.0 / K), "transmat_": TRANS0, "lambdas_": LAMBDAS0}
        X = data["poisson"]
    else:
        ctype = family.split("-")[1]
        X = data["gmm"]
        prior, weight = ml_covars_priors(ctype, GM, GD)
        peer = hmmlearn_hmm.GMMHMM(GK, n_mix=GM, covariance_type=ctype, covars_prior=prior, covars_weight=weight,
                                   implementation="log", **common)
        ours = GMMHMM(GK, n_mix=GM, covariance_type=ctype, reg_covar=0.0, **common, **ours_kwargs)
        means, covs = _gmm_start(X, ctype)
        attrs = {"startprob_": np.full(GK, 1.0 / GK), "transmat_": G_TRANS0,
                 "weights_": np.full((GK, GM), 1.0 / GM), "means_": means, "covars_": covs}
    for model in (peer, ours):
        for name, value in attrs.items():
            setattr(model, name, np.array(value))
    return peer, ours, X


def _copy_to_peer(ours, peer):
    """Give hmmlearn lateo's current parameters."""
    for name in ("startprob_", "transmat_", "emissionprob_", "lambdas_", "weights_", "means_", "covars_"):
        if hasattr(peer, name):
            setattr(peer, name, np.array(getattr(ours, name)))
    return peer


def _fitted_pair(family, data):
    """hmmlearn and lateo at the same parameters, after one lateo step (scoring needs a fit)."""
    peer, ours, X = _pair(family, data, n_iter=1)
    ours.fit(X, LENGTHS)
    peer.fit(X, LENGTHS)
    return _copy_to_peer(ours, peer), ours, X


# ----------------------------------------------------------------- hmmlearn


@pytest.mark.parametrize("family", FAMILIES)
def test_inference_matches_hmmlearn(data, family):
    """score, posteriors and Viterbi (path and log-probability) at the same parameters."""
    peer, ours, X = _fitted_pair(family, data)
    np.testing.assert_allclose(ours.score(X, LENGTHS), peer.score(X, LENGTHS), rtol=RTOL)
    np.testing.assert_allclose(ours.predict_proba(X, LENGTHS), peer.predict_proba(X, LENGTHS), rtol=RTOL, atol=1e-10)
    lp_o, path_o = ours.decode(X, LENGTHS)
    lp_p, path_p = peer.decode(X, LENGTHS)
    np.testing.assert_allclose(lp_o, lp_p, rtol=RTOL)
    np.testing.assert_array_equal(path_o, path_p)


def _emission_attrs(model):
    names = ("emissionprob_", "lambdas_", "weights_", "means_")
    return {n: getattr(model, n) for n in names if hasattr(model, n)}


@pytest.mark.parametrize("family", ["categorical", "poisson"])
def test_baum_welch_matches_hmmlearn(data, family):
    """One step, then nine more: every parameter and the log-likelihood history agree."""
    for n_iter in (1, 10):
        peer, ours, X = _pair(family, data, n_iter)
        peer.fit(X, LENGTHS)
        ours.fit(X, LENGTHS)
        np.testing.assert_allclose(ours.startprob_, peer.startprob_, rtol=RTOL, atol=1e-14)
        np.testing.assert_allclose(ours.transmat_, peer.transmat_, rtol=RTOL, atol=1e-14)
        for name, value in _emission_attrs(peer).items():
            np.testing.assert_allclose(getattr(ours, name), value, rtol=RTOL, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(ours.lower_bounds_, np.asarray(peer.monitor_.history), rtol=RTOL)
    np.testing.assert_allclose(ours.bic(X, LENGTHS), peer.bic(X, LENGTHS), rtol=RTOL)
    np.testing.assert_allclose(ours.aic(X, LENGTHS), peer.aic(X, LENGTHS), rtol=RTOL)


DISCRETE_PRIORS = {"categorical": {"startprob_prior": 2.0, "transmat_prior": 1.5, "emissionprob_prior": 2.5},
                   "poisson": {"startprob_prior": 2.0, "transmat_prior": 1.5, "lambdas_prior": 3.0,
                               "lambdas_weight": 0.5}}


@pytest.mark.parametrize("family", ["categorical", "poisson"])
def test_discrete_map_step_matches_hmmlearn(data, family):
    """One MAP step. Dirichlet priors: hmmlearn's rule exactly. Gamma prior on
    the Poisson rates: the per-state conjugate update ``(a + s_k) / (b + n_k)``
    on hmmlearn's E-step statistics (hmmlearn 0.3.3 uses the total count
    ``sum_k n_k`` in place of ``n_k``: the documented deviation)."""
    priors = DISCRETE_PRIORS[family]
    peer, ours, X = _pair(family, data, n_iter=1, **priors)
    peer.set_params(**priors)
    ours.fit(X, LENGTHS)
    lengths = np.asarray(LENGTHS)
    peer._init(X, lengths)
    peer._check()
    stats, _ = peer._do_estep(X, lengths)
    peer._do_mstep(stats)
    np.testing.assert_allclose(ours.startprob_, peer.startprob_, rtol=RTOL)
    np.testing.assert_allclose(ours.transmat_, peer.transmat_, rtol=RTOL)
    if family == "categorical":
        np.testing.assert_allclose(ours.emissionprob_, peer.emissionprob_, rtol=RTOL)
    else:
        a, b = priors["lambdas_prior"], priors["lambdas_weight"]
        want = (a + stats["obs"]) / (b + stats["post"][:, None])
        np.testing.assert_allclose(ours.lambdas_, want, rtol=RTOL)


def _hmmlearn_old_mean_correction(ctype, counts, delta, kappa, offset, denom):
    """hmmlearn's covariance minus the exact EM (MAP) one.

    hmmlearn centres its scatter on the previous means: with ``delta =
    mu_new - mu_old`` and ``e = mu_new - mu0`` its numerator exceeds the
    exact one by ``n delta delta^T + kappa (delta e^T + e delta^T)``
    (``sum_x r (x - a)(x - a)^T`` expanded around ``mu_new``); both share
    hmmlearn's denominator ``denom``.
    """
    def outer(a, b):
        return a[..., :, None] * b[..., None, :]

    if ctype in ("full", "tied"):
        num = counts[..., None, None] * outer(delta, delta) + kappa[..., None, None] * (
            outer(delta, offset) + outer(offset, delta))
        num = num.sum(axis=1) if ctype == "tied" else num
        return num / denom[..., None, None]
    if ctype == "diag":
        return (counts[..., None] * delta**2 + 2 * kappa[..., None] * delta * offset) / denom
    return (counts * (delta**2).sum(-1) + 2 * kappa * (delta * offset).sum(-1)) / denom


def _hmmlearn_gmm_step(peer, X):
    """hmmlearn's GMMHMM Baum-Welch step, returning its E-step statistics too."""
    lengths = np.asarray(LENGTHS)
    peer._init(X, lengths)
    peer._check()
    stats, log_lik = peer._do_estep(X, lengths)
    peer._do_mstep(stats)
    return stats, log_lik


def _gmm_denominator(ctype, stats, covars_prior, covars_weight):
    """hmmlearn's ``c_d`` of GMMHMM._do_mstep."""
    n = stats["post_mix_sum"]
    if ctype == "full":
        return n + 1 + covars_weight + GD + 1
    if ctype == "diag":
        return n[..., None] + 1 + 2 * (covars_prior + 1)
    if ctype == "spherical":
        return GD * (n + 1) + 2 * (covars_prior + 1)
    return stats["post_sum"] + GM + covars_weight + GD + 1


def _random_priors(ctype, rng):
    """Proper, non-trivial hmmlearn priors for every GMMHMM parameter."""
    if ctype in ("full", "tied"):
        lead = (GK, GM) if ctype == "full" else (GK,)
        a = rng.normal(size=lead + (GD, GD))
        covars_prior, covars_weight = a @ np.swapaxes(a, -1, -2) + np.eye(GD), rng.uniform(3, 5, lead)
    else:
        shape = (GK, GM, GD) if ctype == "diag" else (GK, GM)
        covars_prior, covars_weight = rng.uniform(1, 3, shape), rng.uniform(0.5, 2, shape)
    return {"weights_prior": rng.uniform(1, 3, (GK, GM)), "means_prior": 10 + rng.normal(size=(GK, GM, GD)),
            "means_weight": rng.uniform(0.5, 2, (GK, GM)), "covars_prior": covars_prior,
            "covars_weight": covars_weight}


@pytest.mark.parametrize("with_priors", [False, True], ids=["ml", "map"])
@pytest.mark.parametrize("ctype", COV_TYPES)
def test_gmm_baum_welch_step_matches_hmmlearn(data, ctype, with_priors):
    """One step (all of "stmcw"): start, transitions, weights and means agree;
    covariances agree once hmmlearn's previous-means centring is undone
    (the documented deviation; an exact identity, so the tolerance stays 1e-8)."""
    priors = _random_priors(ctype, np.random.default_rng(5)) if with_priors else {}
    peer, ours, X = _pair(f"gmm-{ctype}", data, n_iter=1, **priors)
    if with_priors:
        peer.set_params(**priors)
    old_means = np.array(peer.means_)
    ours.fit(X, LENGTHS)
    stats, log_lik = _hmmlearn_gmm_step(peer, X)
    for name in ("startprob_", "transmat_", "weights_", "means_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(peer, name), rtol=RTOL, err_msg=name)
    kappa = peer.means_weight
    correction = _hmmlearn_old_mean_correction(ctype, stats["post_mix_sum"], peer.means_ - old_means, kappa,
                                               peer.means_ - peer.means_prior,
                                               _gmm_denominator(ctype, stats, peer.covars_prior, peer.covars_weight))
    np.testing.assert_allclose(ours.covars_, peer.covars_ - correction, rtol=RTOL)
    if not with_priors:  # the objective at the start is the log-likelihood (the prior kernel is 0)
        np.testing.assert_allclose(ours.lower_bounds_, [log_lik], rtol=RTOL)


# ----------------------------------------------------------------- behaviour


@pytest.mark.parametrize("family", ["categorical", "poisson", "gmm-diag"])
def test_list_of_sequences_equals_lengths(data, family):
    _, ours, X = _pair(family, data, n_iter=3)
    pieces = np.split(X, np.cumsum(LENGTHS)[:-1])
    fitted = ours.fit(X, LENGTHS)
    by_lengths = (fitted.score(X, LENGTHS), fitted.predict_proba(X, LENGTHS), fitted.predict(X, LENGTHS))
    _, again, _ = _pair(family, data, n_iter=3)
    again.fit(pieces)
    np.testing.assert_allclose(again.transmat_, fitted.transmat_, rtol=1e-12)
    np.testing.assert_allclose(again.score(pieces), by_lengths[0], rtol=1e-12)
    np.testing.assert_allclose(again.predict_proba(pieces), by_lengths[1], rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(again.predict(pieces), by_lengths[2])


@pytest.mark.parametrize("family", ["categorical", "poisson", "gmm-full"])
def test_sequences_of_length_one(data, family):
    peer, ours, X = _fitted_pair(family, data)
    singles = [X[i: i + 1] for i in range(12)]
    ours.set_params(n_iter=3).fit(singles)
    assert np.all(np.isfinite(ours.transmat_)) and np.isfinite(ours.score(singles))
    assert ours.predict(singles).shape == (12,)
    np.testing.assert_allclose(ours.predict_proba(singles).sum(1), 1.0)
    peer = _copy_to_peer(ours, peer)
    np.testing.assert_allclose(ours.score(singles), peer.score(np.concatenate(singles), [1] * 12), rtol=RTOL)


MONOTONE = {
    "categorical": {},
    "categorical-map": {"emissionprob_prior": 2.0, "transmat_prior": 1.5},
    "poisson": {},
    "poisson-map": {"lambdas_prior": 2.0, "lambdas_weight": 0.5},
    "gmm-diag": {},
    "gmm-full-map": {"weights_prior": 2.0, "means_prior": 10.0, "means_weight": 0.5, "covars_prior": 0.5,
                     "covars_weight": 4.0},
    "gmm-spherical-map": {"means_weight": 1.0, "means_prior": 10.0, "covars_prior": 1.0, "covars_weight": 1.0},
}


@pytest.mark.parametrize("case", list(MONOTONE))
def test_em_is_monotone(data, case):
    """The objective (log-likelihood + log-prior) never decreases beyond rounding."""
    family = case.removesuffix("-map")
    _, ours, X = _pair(family, data, n_iter=50, **MONOTONE[case])
    ours.fit(X, LENGTHS)
    history = ours.lower_bounds_
    assert history.size == 50 and np.all(np.isfinite(history))
    assert np.all(np.diff(history) >= -64 * np.finfo(float).eps * np.abs(history[1:]))


# Recovery: sticky chains make the states nearly certain given the data, so the
# complete-data (binomial, Poisson) standard errors at the fitted state visits
# are the estimators' Monte-Carlo errors (checked over 12 replications: rms
# z-score 1.0); 5 of them is the tolerance. The best of three random starts
# guards against EM's local optima.
STICKY = np.array([[0.95, 0.03, 0.02], [0.02, 0.95, 0.03], [0.03, 0.02, 0.95]])
SEPARATED = np.array([[0.8, 0.1, 0.05, 0.05], [0.05, 0.8, 0.1, 0.05], [0.05, 0.05, 0.2, 0.7]])


def _best_of_three(cls, X, **kwargs):
    fits = [cls(K, tol=1e-8, random_state=seed, **kwargs).fit(X) for seed in range(3)]
    return max(fits, key=lambda m: m.score(X))


def _assert_within_standard_errors(model, X, key, estimate, truth, se_of):
    order, want = np.argsort(key(model)), np.argsort(key(truth))
    visits = model.predict_proba(X).sum(0)[order]
    est, true = estimate(model)[order], estimate(truth)[want]
    se = se_of(true, visits[:, None])
    assert np.all(np.abs(est - true) < 5 * se), (est, true, se)
    trans, trans_true = model.transmat_[np.ix_(order, order)], truth.transmat_[np.ix_(want, want)]
    se_t = np.sqrt(trans_true * (1 - trans_true) / visits[:, None])
    assert np.all(np.abs(trans - trans_true) < 5 * se_t), (trans, trans_true, se_t)


def test_recovers_categorical_parameters():
    truth = _categorical_truth()
    truth.transmat_, truth.emissionprob_ = STICKY, SEPARATED
    X, _ = truth.sample(6000, random_state=11)
    model = _best_of_three(CategoricalHMM, X, n_iter=300)
    _assert_within_standard_errors(model, X, lambda m: m.emissionprob_.argmax(1), lambda m: m.emissionprob_,
                                   truth, lambda p, n: np.sqrt(p * (1 - p) / n))


def test_recovers_poisson_parameters():
    truth = _poisson_truth()
    truth.transmat_ = STICKY
    X, _ = truth.sample(3000, random_state=12)
    model = _best_of_three(PoissonHMM, X, n_iter=200)
    _assert_within_standard_errors(model, X, lambda m: m.lambdas_.sum(1), lambda m: m.lambdas_,
                                   truth, lambda lam, n: np.sqrt(lam / n))


@pytest.mark.parametrize("family", ["categorical", "poisson", "gmm-tied"])
def test_unreachable_state_keeps_finite_parameters(data, family):
    """State 0 can never be entered (start probability 0, transition column 0):
    its emission parameters stay as they were and everything stays finite."""
    _, ours, X = _pair(family, data, n_iter=4)
    k = ours.n_components
    start = np.r_[0.0, np.full(k - 1, 1.0 / (k - 1))]
    trans = np.tile(start, (k, 1))
    ours.startprob_, ours.transmat_ = start, trans
    before = {n: np.array(v) for n, v in _emission_attrs(ours).items()}
    ours.fit(X, LENGTHS)
    for name, value in before.items():
        fitted = getattr(ours, name)
        assert np.all(np.isfinite(fitted)), name
        np.testing.assert_array_equal(fitted[0], value[0], err_msg=name)
    assert np.all(np.isfinite(ours.covars_)) if hasattr(ours, "covars_") else True
    assert ours.startprob_[0] == 0.0 and np.all(ours.transmat_[:, 0] == 0.0)
    assert np.isfinite(ours.score(X, LENGTHS))


def test_initialisation_from_data_and_sampling(data):
    """Default init_params: random categorical rows, Gamma Poisson rates, k-means GMM
    means; fits are deterministic per random_state; samples have the right types."""
    cases = [(CategoricalHMM(K, n_iter=3, random_state=4), data["categorical"], (None, 1), np.integer),
             (PoissonHMM(K, n_iter=3, random_state=4), data["poisson"], (None, 2), np.integer),
             (GMMHMM(GK, n_mix=GM, n_iter=3, random_state=4), data["gmm"], (None, GD), np.floating)]
    for model, X, shape, kind in cases:
        model.fit(X, LENGTHS)
        twin = type(model)(**model.get_params()).fit(X, LENGTHS)
        np.testing.assert_array_equal(twin.transmat_, model.transmat_)
        Xs, Zs = model.sample(300, random_state=9)
        assert Xs.shape == (300, shape[1]) and np.issubdtype(Xs.dtype, kind) and Zs.shape == (300,)
        np.testing.assert_array_equal(model.sample(300, random_state=9)[0], Xs)
    cat = cases[0][0]
    assert cat.emissionprob_.shape == (K, int(data["categorical"].max()) + 1)  # n_features inferred
    gmm = cases[2][0]
    assert gmm.means_.shape == (GK, GM, GD) and gmm.covars_.shape == (GK, GM, GD)
    # from the k-means start, three steps bring every component near a true one
    true = _gmm_truth().means_.reshape(-1, GD)
    nearest = np.sqrt(((gmm.means_.reshape(-1, 1, GD) - true[None]) ** 2).sum(-1)).min(axis=1)
    assert np.all(nearest < 1.0), nearest


def test_caller_data_unchanged(data):
    X = data["poisson"].copy()
    keep = X.copy()
    PoissonHMM(K, n_iter=2, random_state=0).fit(X, LENGTHS).score(X, LENGTHS)
    np.testing.assert_array_equal(X, keep)


# ----------------------------------------------------------------- bad input


def _bad_categorical(X, **kw):
    return CategoricalHMM(2, n_iter=1, **kw).fit(X)


@pytest.mark.parametrize(
    "X, kwargs, match",
    [
        (np.array([[0], [1], [-1]]), {}, "non-negative"),
        (np.array([[0.0], [1.5], [2.0]]), {}, "non-integer"),
        (np.array([[0.0], [np.nan], [2.0]]), {}, "NaN"),
        (np.array([[0], [1], [5]]), {"n_features": 3}, "symbols must be < n_features"),
        (np.array([[0, 1], [1, 0]]), {}, "one symbol per row"),
        (np.array([[0], [1]]), {"n_features": 0}, "n_features"),
        (np.array([[0], [1]]), {"emissionprob_prior": np.ones(5)}, "emissionprob_prior"),
    ],
)
def test_categorical_bad_input(X, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _bad_categorical(X, **kwargs)


def test_categorical_bad_attributes_and_scoring_symbols(data):
    X = data["categorical"]
    model = CategoricalHMM(K, init_params="st", n_features=N_SYMBOLS, n_iter=1)
    model.emissionprob_ = np.full((K, 5), 0.2)
    with pytest.raises(ValueError, match=r"emissionprob_ must have shape \(3, 4\)"):
        model.fit(X, LENGTHS)
    model.emissionprob_ = EMISSION0 + 0.1
    with pytest.raises(ValueError, match="rows of emissionprob_ must sum to 1"):
        model.fit(X, LENGTHS)
    model.emissionprob_ = EMISSION0
    model.fit(X, LENGTHS)
    with pytest.raises(ValueError, match="largest symbol in X is 4"):
        model.score(np.array([[0], [4]]))


@pytest.mark.parametrize(
    "X, kwargs, attrs, match",
    [
        (np.array([[0, 1], [2, -3]]), {}, {}, "non-negative"),
        (np.array([[0, 1], [2, 0.5]]), {}, {}, "non-integer"),
        (np.array([[0, np.nan], [2, 1]]), {}, {}, "NaN"),
        (np.array([[0, 1], [2, 1]]), {"init_params": "st"}, {"lambdas_": np.ones((2, 3))}, r"lambdas_ must have shape"),
        (np.array([[0, 1], [2, 1]]), {"init_params": "st"}, {"lambdas_": -np.ones((2, 2))}, "non-negative finite"),
        (np.array([[0, 1], [2, 1]]), {"init_params": "st"}, {}, "lambdas_ must be set"),
        (np.array([[0, 1], [2, 1]]), {"lambdas_prior": np.ones(3)}, {}, "lambdas_prior"),
        (np.array([[0, 1], [2, 1]]), {"params": "stx"}, {}, "params"),
    ],
)
def test_poisson_bad_input(X, kwargs, attrs, match):
    model = PoissonHMM(2, n_iter=1, **kwargs)
    for name, value in attrs.items():
        setattr(model, name, value)
    with pytest.raises(ValueError, match=match):
        model.fit(X)


@pytest.mark.parametrize(
    "kwargs, attrs, match",
    [
        ({}, {"nan": True}, "NaN"),
        ({"n_mix": 0}, {}, "n_mix"),
        ({"covariance_type": "banana"}, {}, "covariance_type"),
        ({"init_params": "stcw"}, {"means_": np.zeros((2, 2))}, r"means_ must have shape \(2, 2, 2\)"),
        ({"init_params": "stmw"}, {"covars_": np.ones((2, 2, 2, 2))}, r"covars_ must have shape \(2, 2, 2\)"),
        ({"init_params": "stmw", "covariance_type": "full"}, {"covars_": -np.tile(np.eye(2), (2, 2, 1, 1))},
         "positive-definite"),
        ({"init_params": "stmc"}, {"weights_": np.full((2, 2), 0.7)}, "rows of weights_ must sum to 1"),
        ({"means_weight": -1.0}, {}, "means_weight"),
        ({"covars_prior": np.ones(5)}, {}, "covars_prior"),
    ],
)
def test_gmm_bad_input(data, kwargs, attrs, match):
    X = data["gmm"][:40].copy()
    if attrs.pop("nan", False):
        X[3, 1] = np.nan
    model = GMMHMM(2, **{"n_mix": 2, "n_iter": 1, **kwargs})
    for name, value in attrs.items():
        setattr(model, name, value)
    with pytest.raises(ValueError, match=match):
        model.fit(X)
