"""HMM inference against brute-force enumeration of all K^T paths, the
Wikipedia example, parallel-in-time equals sequential, padding, T = 10^6."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from lateo.inference import hmm

T_MAX = 6
SMOOTHERS = (jax.jit(hmm.hmm_smoother), jax.jit(hmm.parallel_smoother))
VITERBIS = (jax.jit(hmm.hmm_viterbi), jax.jit(hmm.parallel_viterbi))


def _random_model(rng, k, t, zeros=False):
    start = rng.dirichlet(np.ones(k))
    trans = rng.dirichlet(np.ones(k), size=k)
    if zeros and k > 1:  # left-right structure: structural zeros below the diagonal
        trans = np.triu(trans)
        trans /= trans.sum(1, keepdims=True)
    log_obs = rng.normal(scale=2.0, size=(t, k))
    return start, trans, log_obs


def _brute_force(start, trans, log_obs, length):
    """log p(x), gamma, sum xi, best path and its log-probability by enumeration."""
    k = len(start)
    paths = list(itertools.product(range(k), repeat=length))
    with np.errstate(divide="ignore"):
        log_start, log_trans = np.log(start), np.log(trans)
    scores = np.array([
        log_start[z[0]] + sum(log_trans[z[i - 1], z[i]] for i in range(1, length)) + sum(log_obs[i, z[i]] for i in range(length))
        for z in paths
    ])
    log_lik = logsumexp(scores)
    post = np.exp(scores - log_lik)
    gamma = np.zeros((length, k))
    xi = np.zeros((k, k))
    for p, z in zip(post, paths):
        gamma[np.arange(length), z] += p
        for i in range(1, length):
            xi[z[i - 1], z[i]] += p
    best = int(np.argmax(scores))
    return log_lik, gamma, xi, np.array(paths[best]), scores[best]


CASES = [(k, t, zeros) for k in (1, 2, 3) for t in (1, 2, 4, 6) for zeros in (False, True)]


@pytest.mark.parametrize("k, length, zeros", CASES)
def test_exact_inference_equals_brute_force(k, length, zeros):
    rng = np.random.default_rng(100 * k + 10 * length + zeros)
    start, trans, log_obs = _random_model(rng, k, T_MAX, zeros)
    want_ll, want_gamma, want_xi, want_path, want_best = _brute_force(start, trans, log_obs, length)
    # length is traced, so every length of one K shares a compiled program
    args = (jnp.log(jnp.asarray(start)), jnp.asarray(trans), jnp.asarray(log_obs), jnp.asarray(length))
    for smoother in SMOOTHERS:
        post = smoother(*args)
        np.testing.assert_allclose(post.log_likelihood, want_ll, rtol=1e-12)
        np.testing.assert_allclose(post.gamma[:length], want_gamma, atol=1e-12)
        np.testing.assert_array_equal(post.gamma[length:], 0.0)
        np.testing.assert_allclose(post.xi_sum, want_xi, atol=1e-12)
    for viterbi in VITERBIS:
        log_prob, path = viterbi(*args)
        np.testing.assert_allclose(log_prob, want_best, rtol=1e-12)
        np.testing.assert_array_equal(path[:length], want_path)


def test_wikipedia_forward_backward_example():
    """The umbrella world (Wikipedia, "Forward-backward algorithm")."""
    trans = jnp.asarray([[0.7, 0.3], [0.3, 0.7]])
    emission = np.array([[0.9, 0.1], [0.2, 0.8]])
    observed = [0, 0, 1, 0, 0]
    log_obs = jnp.log(jnp.asarray(emission[:, observed].T))
    log_start = jnp.log(jnp.asarray([0.5, 0.5]))
    post = hmm.hmm_smoother(log_start, trans, log_obs)
    np.testing.assert_allclose(post.log_likelihood, -3.3725, atol=5e-5)
    np.testing.assert_allclose(post.gamma[:, 0], [0.8673, 0.8204, 0.3075, 0.8204, 0.8673], atol=5e-5)
    log_prob, path = hmm.hmm_viterbi(log_start, trans, log_obs)
    np.testing.assert_allclose(log_prob, -4.4590, atol=5e-5)
    np.testing.assert_array_equal(path, [0, 0, 1, 0, 0])


def test_parallel_equals_sequential_on_a_long_padded_sequence():
    rng = np.random.default_rng(0)
    start, trans, log_obs = _random_model(rng, 4, 3000)
    args = (jnp.log(jnp.asarray(start)), jnp.asarray(trans), jnp.asarray(log_obs), jnp.asarray(2500))
    seq, par = (smoother(*args) for smoother in SMOOTHERS)
    np.testing.assert_allclose(par.log_likelihood, seq.log_likelihood, rtol=1e-8)
    np.testing.assert_allclose(par.gamma, seq.gamma, atol=1e-8)
    np.testing.assert_allclose(par.xi_sum, seq.xi_sum, rtol=1e-8, atol=1e-8)
    filtered = [jax.jit(f)(*args)[1][:2500] for f in (hmm.hmm_filter, hmm.parallel_filter)]
    np.testing.assert_allclose(filtered[1], filtered[0], atol=1e-8)
    (lp_s, path_s), (lp_p, path_p) = (viterbi(*args) for viterbi in VITERBIS)
    np.testing.assert_allclose(lp_p, lp_s, rtol=1e-8)
    np.testing.assert_array_equal(path_p[:2500], path_s[:2500])


def test_padding_does_not_change_results():
    rng = np.random.default_rng(1)
    start, trans, log_obs = _random_model(rng, 3, 40)
    ls, tr = jnp.log(jnp.asarray(start)), jnp.asarray(trans)
    exact = SMOOTHERS[0](ls, tr, jnp.asarray(log_obs[:25]))
    padded = SMOOTHERS[0](ls, tr, jnp.asarray(log_obs), jnp.asarray(25))
    np.testing.assert_allclose(padded.log_likelihood, exact.log_likelihood, rtol=1e-13)
    np.testing.assert_allclose(padded.gamma[:25], exact.gamma, atol=1e-13)
    np.testing.assert_allclose(padded.xi_sum, exact.xi_sum, atol=1e-13)


@pytest.mark.slow
def test_million_steps_stay_finite_and_correct():
    """T = 10^6 with log-likelihoods of ~-10^6: no underflow, sequential = parallel,
    and with state-independent emissions the answer is known in closed form."""
    rng = np.random.default_rng(2)
    n = 10**6
    trans = jnp.asarray([[0.99, 0.01], [0.02, 0.98]])
    log_start = jnp.log(jnp.asarray([0.5, 0.5]))
    log_obs = jnp.asarray(rng.normal(-1.0, 0.3, size=(n, 2)))
    seq = jax.jit(hmm.hmm_filter)(log_start, trans, log_obs)[0]
    par = jax.jit(hmm.parallel_filter)(log_start, trans, log_obs)[0]
    assert np.isfinite(seq) and seq < -5e5
    np.testing.assert_allclose(par, seq, rtol=1e-8)
    same = jnp.repeat(log_obs[:, :1], 2, axis=1)  # emissions that ignore the state
    np.testing.assert_allclose(jax.jit(hmm.hmm_filter)(log_start, trans, same)[0], float(jnp.sum(same[:, 0])), rtol=1e-10)
    lp_s, path_s = jax.jit(hmm.hmm_viterbi)(log_start, trans, log_obs)
    lp_p, path_p = jax.jit(hmm.parallel_viterbi)(log_start, trans, log_obs)
    np.testing.assert_allclose(lp_p, lp_s, rtol=1e-8)
    assert np.mean(np.asarray(path_p) == np.asarray(path_s)) == 1.0


def test_extreme_emissions_do_not_underflow():
    """Log-likelihoods of -1e5 per step: a probability-space recursion would give 0/0."""
    rng = np.random.default_rng(3)
    start, trans, log_obs = _random_model(rng, 3, 50)
    log_obs = log_obs * 1e5
    post = hmm.hmm_smoother(jnp.log(jnp.asarray(start)), jnp.asarray(trans), jnp.asarray(log_obs))
    assert np.isfinite(post.log_likelihood)
    assert np.all(np.isfinite(post.gamma)) and np.allclose(post.gamma.sum(1), 1.0)


def test_posterior_sampling_matches_smoothed_marginals():
    rng = np.random.default_rng(4)
    start, trans, log_obs = _random_model(rng, 3, 5)
    args = (jnp.log(jnp.asarray(start)), jnp.asarray(trans), jnp.asarray(log_obs), 4)
    keys = jax.random.split(jax.random.key(0), 20000)
    paths = np.asarray(jax.vmap(lambda k: hmm.hmm_posterior_sample(k, *args))(keys))[:, :4]
    gamma = np.asarray(hmm.hmm_smoother(*args).gamma)[:4]
    freq = np.stack([(paths == j).mean(0) for j in range(3)], axis=1)
    # binomial standard error at 20000 draws is at most 0.0036; 5 sigma
    np.testing.assert_allclose(freq, gamma, atol=0.018)
    # pairwise frequencies match xi as well
    xi = np.zeros((3, 3))
    for t in range(1, 4):
        np.add.at(xi, (paths[:, t - 1], paths[:, t]), 1.0 / len(paths))
    np.testing.assert_allclose(xi, np.asarray(hmm.hmm_smoother(*args).xi_sum), atol=0.03)


def test_sample_states_follows_the_chain():
    trans = jnp.asarray([[0.9, 0.1], [0.5, 0.5]])
    states = np.asarray(hmm.hmm_sample_states(jax.random.key(1), jnp.log(jnp.asarray([1.0, 0.0])), trans, 50000))
    assert states[0] == 0
    from_zero = states[1:][states[:-1] == 0]
    np.testing.assert_allclose(from_zero.mean(), 0.1, atol=0.01)


BATCH = jax.jit(hmm.batch_smoother)
SCALED = jax.jit(hmm.batch_smoother_scaled)


def _batch_case(rng, log_scale=2.0):
    start, trans, _ = _random_model(rng, 3, 1, zeros=True)
    log_obs = rng.normal(scale=log_scale, size=(8, 32, 3))
    lengths = np.array([32, 1, 0, 17, 5, 32, 2, 9])
    return jnp.log(jnp.asarray(start)), jnp.asarray(trans), jnp.asarray(log_obs), jnp.asarray(lengths)


def test_batch_smoother_equals_log_space_smoother():
    """The scaled fast path on a padded batch (with empty and length-1 sequences)."""
    ls, tr, lo, lengths = _batch_case(np.random.default_rng(7))
    fast = SCALED(ls, tr, lo, lengths)
    each = [SMOOTHERS[0](ls, tr, lo[i], lengths[i]) for i in range(8)]
    keep = np.asarray(lengths) > 0
    np.testing.assert_allclose(fast.log_likelihood, [float(e.log_likelihood) if k else 0.0 for e, k in zip(each, keep)], rtol=1e-12)
    for i in range(8):
        np.testing.assert_allclose(fast.gamma[i], each[i].gamma if keep[i] else 0.0, atol=1e-12)
    np.testing.assert_allclose(fast.xi_sum, sum(e.xi_sum for e, k in zip(each, keep) if k), rtol=1e-10, atol=1e-12)


def test_batch_smoother_falls_back_to_log_space_on_underflow():
    """An observation 1e5 nats less likely under the only reachable state:
    the scaled recursion's normaliser underflows to 0; the fallback is exact."""
    ls, tr, lo, lengths = _batch_case(np.random.default_rng(8))
    tr = jnp.asarray(np.tile([1.0, 0.0, 0.0], (3, 1)))  # always go to state 0
    lo = lo.at[0, 5, 0].set(-1e5)
    assert not np.isfinite(np.asarray(SCALED(ls, tr, lo, lengths).log_likelihood[0]))
    post = BATCH(ls, tr, lo, lengths)
    want = SMOOTHERS[0](ls, tr, lo[0], lengths[0])
    np.testing.assert_allclose(post.log_likelihood[0], want.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(post.gamma[0], want.gamma, atol=1e-12)
    assert np.all(np.isfinite(np.asarray(post.gamma)))
