"""GaussianHMM: differential tests against hmmlearn, Baum-Welch behaviour,
recovery from simulated data, bad input and edge cases."""

import warnings

import numpy as np
import pytest
from hmmlearn import hmm as hmmlearn_hmm

from lateo.core.loop import run_chunk
from lateo.models._hmm_em import posterior_batch
from lateo.models.hmm import GaussianHMM

K, D = 3, 2
LENGTHS = [200, 150, 250]
COV_TYPES = ["diag", "full", "tied", "spherical"]
RTOL = 1e-8


def _truth():
    ref = hmmlearn_hmm.GaussianHMM(K, covariance_type="diag")
    ref.startprob_ = np.array([0.6, 0.3, 0.1])
    ref.transmat_ = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    ref.means_ = np.array([[0.0, 0.0], [3.0, 3.0], [-3.0, 3.0]])
    ref.covars_ = np.array([[1.0, 1.0], [0.5, 0.5], [1.0, 2.0]])
    return ref


@pytest.fixture(scope="module")
def data():
    X, Z = _truth().sample(sum(LENGTHS), random_state=1)
    return X, Z


def _start_covariances(X, covariance_type):
    cv = np.cov(X.T) + 1e-3 * np.eye(D)
    return {"diag": np.tile(np.diag(cv), (K, 1)), "full": np.tile(cv, (K, 1, 1)), "tied": cv,
            "spherical": np.full(K, np.diag(cv).mean())}[covariance_type]


def _pair(X, covariance_type, n_iter):
    """hmmlearn (ML: covars_prior=0, log implementation) and lateo from the same start."""
    peer = hmmlearn_hmm.GaussianHMM(K, covariance_type=covariance_type, covars_prior=0, implementation="log",
                                    n_iter=n_iter, tol=-np.inf, init_params="")
    ours = GaussianHMM(K, covariance_type=covariance_type, reg_covar=0.0, n_iter=n_iter, tol=-np.inf, init_params="")
    for model in (peer, ours):
        model.startprob_ = np.full(K, 1.0 / K)
        model.transmat_ = np.full((K, K), 1.0 / K)
        model.means_ = X[[0, 100, 300]].copy()
        model.covars_ = _start_covariances(X, covariance_type)
    return peer, ours


def _covariances(model, covariance_type):
    if covariance_type == "spherical" and isinstance(model, hmmlearn_hmm.GaussianHMM):
        return model._covars_[:, 0]  # hmmlearn tiles spherical variances to (K, D)
    return model._covars_


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_inference_matches_hmmlearn(data, covariance_type):
    X, _ = data
    peer, ours = _pair(X, covariance_type, 1)
    np.testing.assert_allclose(ours.score(X, LENGTHS), peer.score(X, LENGTHS), rtol=RTOL)
    np.testing.assert_allclose(ours.predict_proba(X, LENGTHS), peer.predict_proba(X, LENGTHS), atol=1e-10)
    lp_o, path_o = ours.decode(X, LENGTHS)
    lp_p, path_p = peer.decode(X, LENGTHS)
    np.testing.assert_allclose(lp_o, lp_p, rtol=RTOL)
    np.testing.assert_array_equal(path_o, path_p)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_baum_welch_matches_hmmlearn(data, covariance_type):
    """One step, then 15 more: parameters and the log-likelihood history agree."""
    X, _ = data
    for n_iter in (1, 16):
        peer, ours = _pair(X, covariance_type, n_iter)
        peer.fit(X, LENGTHS)
        ours.fit(X, LENGTHS)
        np.testing.assert_allclose(ours.startprob_, peer.startprob_, rtol=RTOL, atol=1e-14)
        np.testing.assert_allclose(ours.transmat_, peer.transmat_, rtol=RTOL, atol=1e-14)
        np.testing.assert_allclose(ours.means_, peer.means_, rtol=RTOL)
        np.testing.assert_allclose(_covariances(ours, covariance_type), _covariances(peer, covariance_type), rtol=RTOL)
        np.testing.assert_allclose(ours.lower_bounds_, np.asarray(peer.monitor_.history), rtol=RTOL)
    np.testing.assert_allclose(ours.bic(X, LENGTHS), peer.bic(X, LENGTHS), rtol=RTOL)
    np.testing.assert_allclose(ours.aic(X, LENGTHS), peer.aic(X, LENGTHS), rtol=RTOL)


def test_parallel_in_time_implementation_equals_hmmlearn(data):
    """implementation="parallel" (associative scans, as "auto" picks on accelerators) fits,
    scores and decodes like hmmlearn, padded buckets of unequal lengths included."""
    X, _ = data
    peer, ours = _pair(X, "full", 8)
    ours.set_params(implementation="parallel")
    peer.fit(X, LENGTHS)
    ours.fit(X, LENGTHS)
    np.testing.assert_allclose(ours.transmat_, peer.transmat_, rtol=RTOL, atol=1e-14)
    np.testing.assert_allclose(ours.means_, peer.means_, rtol=RTOL)
    np.testing.assert_allclose(ours.lower_bounds_, np.asarray(peer.monitor_.history), rtol=RTOL)
    np.testing.assert_allclose(ours.predict_proba(X, LENGTHS), peer.predict_proba(X, LENGTHS), atol=1e-10)
    lp_o, path_o = ours.decode(X, LENGTHS)
    lp_p, path_p = peer.decode(X, LENGTHS)
    np.testing.assert_allclose(lp_o, lp_p, rtol=RTOL)
    np.testing.assert_array_equal(path_o, path_p)


@pytest.mark.parametrize(
    "implementation, n_steps, backend, parallel",
    [("auto", 10**5, "cpu", False), ("auto", 10**5, "gpu", True), ("auto", 10**5, "tpu", True),
     ("auto", 100, "gpu", False), ("log", 10**5, "gpu", False), ("scaling", 10**5, "gpu", False),
     ("parallel", 100, "cpu", True)],
)
def test_auto_implementation_is_parallel_for_long_sequences_on_accelerators(implementation, n_steps, backend,
                                                                            parallel):
    from lateo.inference.hmm import use_parallel_in_time

    assert use_parallel_in_time(implementation, n_steps, backend) is parallel


def test_list_of_sequences_equals_concatenated(data):
    X, _ = data
    _, ours = _pair(X, "diag", 1)
    pieces = np.split(X, np.cumsum(LENGTHS)[:-1])
    np.testing.assert_allclose(ours.score(pieces), ours.score(X, LENGTHS), rtol=1e-12)
    np.testing.assert_array_equal(ours.predict(pieces), ours.predict(X, LENGTHS))


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_em_is_monotone(data, covariance_type):
    X, _ = data
    model = GaussianHMM(K, covariance_type=covariance_type, reg_covar=0.0, n_iter=60, tol=-np.inf, random_state=0)
    model.fit(X, LENGTHS)
    history = model.lower_bounds_
    assert history.size == 60
    assert np.all(np.diff(history) >= -64 * np.finfo(float).eps * np.abs(history[1:]))


def test_recovers_simulated_parameters():
    truth = _truth()
    n = 6000
    X, _ = truth.sample(n, random_state=3)
    model = GaussianHMM(K, covariance_type="diag", n_iter=200, tol=1e-6, random_state=0).fit(X)
    assert model.converged_
    order = np.lexsort((model.means_[:, 0], model.means_[:, 1]))
    want = np.lexsort((truth.means_[:, 0], truth.means_[:, 1]))
    # about n/3 visits per state: standard errors ~ sigma / sqrt(2000) = 0.03 for the means,
    # ~sqrt(0.16 / 2000) = 0.009 for the transition probabilities; 5 standard errors
    np.testing.assert_allclose(model.means_[order], truth.means_[want], atol=0.15)
    np.testing.assert_allclose(model.transmat_[np.ix_(order, order)], truth.transmat_[np.ix_(want, want)], atol=0.05)
    np.testing.assert_allclose(model._covars_[order], truth._covars_[want], rtol=0.2)


def test_sequences_of_length_one(data):
    X, _ = data
    singles = [X[i : i + 1] for i in range(12)]
    model = GaussianHMM(2, n_iter=5, random_state=0).fit(singles)
    assert np.isfinite(model.score(singles))
    assert model.predict(singles).shape == (12,)
    np.testing.assert_allclose(model.predict_proba(singles).sum(1), 1.0)


def test_unvisited_state_keeps_finite_parameters(data):
    """State 0 cannot be reached: it keeps its previous parameters (documented)."""
    X, _ = data
    model = GaussianHMM(3, covariance_type="full", init_params="", n_iter=5, reg_covar=0.0)
    model.startprob_ = np.array([0.0, 0.5, 0.5])
    model.transmat_ = np.array([[0.5, 0.25, 0.25], [0.0, 0.5, 0.5], [0.0, 0.5, 0.5]])
    model.means_ = np.array([[50.0, 50.0], [0.0, 0.0], [3.0, 3.0]])
    model.covars_ = np.tile(np.eye(D), (3, 1, 1))
    model.fit(X)
    assert np.all(np.isfinite(model.means_)) and np.all(np.isfinite(model.covars_))
    np.testing.assert_array_equal(model.means_[0], [50.0, 50.0])
    np.testing.assert_array_equal(model.transmat_[0], [0.5, 0.25, 0.25])
    assert model.startprob_[0] == 0.0 and np.all(model.transmat_[1:, 0] == 0.0)


def test_left_right_structural_zeros_stay_zero(data):
    X, _ = data
    model = GaussianHMM(3, init_params="mc", params="tmc", n_iter=10, random_state=0)
    model.startprob_ = np.array([1.0, 0.0, 0.0])
    model.transmat_ = np.array([[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.0, 0.0, 1.0]])
    model.fit(X)
    assert np.all(np.tril(model.transmat_, -1) == 0.0)
    np.testing.assert_array_equal(model.startprob_, [1.0, 0.0, 0.0])  # frozen: "s" not in params


def test_frozen_parameters_do_not_move(data):
    X, _ = data
    peer, ours = _pair(X, "diag", 5)
    ours.set_params(params="mc")
    ours.fit(X, LENGTHS)
    np.testing.assert_array_equal(ours.transmat_, np.full((K, K), 1.0 / K))
    np.testing.assert_array_equal(ours.startprob_, np.full(K, 1.0 / K))


def test_new_lengths_reuse_compiled_code(data):
    X, _ = data
    model = GaussianHMM(K, n_iter=3, random_state=0).fit(X, LENGTHS)
    model.score(X[:100], [60, 40])
    fits, scores = run_chunk._cache_size(), posterior_batch._cache_size()
    model.score(X[:100], [55, 45])  # same buckets (64-step, 2 sequences)
    GaussianHMM(K, n_iter=3, random_state=1).fit(X, [210, 140, 250])  # same buckets as LENGTHS
    assert posterior_batch._cache_size() == scores
    assert run_chunk._cache_size() == fits


def test_map_decoding_and_sampling(data):
    X, _ = data
    model = GaussianHMM(K, n_iter=20, random_state=0).fit(X, LENGTHS)
    log_prob, states = model.decode(X, LENGTHS, algorithm="map")
    np.testing.assert_array_equal(states, model.predict_proba(X, LENGTHS).argmax(1))
    assert log_prob <= 0
    Xs, Zs = model.sample(500, random_state=4)
    assert Xs.shape == (500, D) and Zs.shape == (500,) and set(np.unique(Zs)) <= set(range(K))
    Xs2, _ = model.sample(500, random_state=4)
    np.testing.assert_array_equal(Xs, Xs2)


@pytest.mark.parametrize(
    "X, lengths, kwargs, match",
    [
        (np.zeros((10, 2)), [5, 0, 5], {}, "length 0"),
        (np.zeros((10, 2)), [4, 4], {}, "lengths sum"),
        (np.array([[0.0, np.nan]] * 10), None, {}, "NaN"),
        (np.zeros((10, 2)), None, {"covariance_type": "banana"}, "covariance_type"),
        (np.zeros((10, 2)), None, {"params": "stx"}, "params"),
        (np.zeros((10, 2)), None, {"algorithm": "best"}, "algorithm"),
        (np.zeros((10, 2)), None, {"implementation": "fast"}, "implementation"),
        (np.zeros((2, 2)), None, {"n_components": 3}, "n_components"),
        (np.zeros((0, 2)), None, {}, "no sequence|length 0"),
    ],
)
def test_bad_input_raises_clear_errors(X, lengths, kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianHMM(**{"n_components": 2, **kwargs}).fit(X, lengths)


def test_given_transition_matrix_must_be_stochastic(data):
    X, _ = data
    model = GaussianHMM(2, init_params="smc")
    model.transmat_ = np.array([[0.5, 0.6], [0.5, 0.5]])
    with pytest.raises(ValueError, match="rows of transmat_ must sum to 1"):
        model.fit(X)
    model = GaussianHMM(2, init_params="stc")
    with pytest.raises(ValueError, match="means_"):
        model.fit(X)


def test_caller_data_unchanged_and_deterministic(data):
    X, _ = data
    keep = X.copy()
    a = GaussianHMM(K, n_iter=5, random_state=7).fit(X, LENGTHS)
    b = GaussianHMM(K, n_iter=5, random_state=7).fit(X, LENGTHS)
    np.testing.assert_array_equal(X, keep)
    np.testing.assert_array_equal(a.means_, b.means_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a.score(X)


def test_map_em_with_conjugate_prior_is_monotone(data):
    """MAP-EM: Dirichlet priors on start/transitions and a Normal-inverse-Wishart
    prior on the emissions; log p(X | theta) + log p(theta) never decreases."""
    X, _ = data
    model = GaussianHMM(K, covariance_type="full", prior="default", startprob_prior=2.0, transmat_prior=1.5,
                        reg_covar=0.0, n_iter=40, tol=-np.inf, random_state=0).fit(X, LENGTHS)
    history = model.lower_bounds_
    assert np.all(np.diff(history) >= -64 * np.finfo(float).eps * np.abs(history[1:]))
    assert np.all(model.transmat_ > 0)  # alpha > 1 pulls every transition off zero


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_frozen_means_centre_the_covariances(data, covariance_type):
    """With "m" frozen, the covariance update is the exact M-step about the frozen
    means: one step equals the weighted scatter about them, computed by hand."""
    X, _ = data
    _, ours = _pair(X, covariance_type, 1)
    means = ours.means_.copy()
    gamma = ours.predict_proba(X, LENGTHS)
    ours.set_params(params="c").fit(X, LENGTHS)
    # frozen up to the last bit of the centring round trip (x - shift + shift)
    np.testing.assert_allclose(ours.means_, means, rtol=4 * np.finfo(float).eps)
    scatter = np.stack([(gamma[:, k, None] * (X - means[k])).T @ (X - means[k]) for k in range(K)])
    counts = gamma.sum(0)
    want = {
        "full": scatter / counts[:, None, None],
        "tied": scatter.sum(0) / counts.sum(),
        "diag": np.diagonal(scatter, axis1=1, axis2=2) / counts[:, None],
        "spherical": np.diagonal(scatter, axis1=1, axis2=2).mean(1) / counts,
    }[covariance_type]
    np.testing.assert_allclose(ours._covars_, want, rtol=1e-10)
