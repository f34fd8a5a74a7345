"""Minibatch training of a VAE with optax Adam, early stopping and checkpoints.

One epoch is one jitted call: a random permutation of the training rows is cut
into ``ceil(n / batch_size)`` minibatches (the last one padded and masked) and
``lax.scan`` runs the Adam steps; the progress bar and the early-stopping test
run between epochs. Randomness is a function of ``(random_state, epoch)``
only — epoch ``t`` uses ``fold_in(train_key, t)`` and the validation ELBO a
fixed key — so a run resumed from a checkpoint after epoch ``t`` is bit for
bit the run that was never interrupted.

Early stopping (Prechelt 1998): after each epoch the mean validation ELBO is
computed; training stops when it has not improved for ``patience`` epochs and
the parameters of the best epoch are kept.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ...core.progress import FitProgress
from ...io import _atomic_write
from ._nets import MixturePrior, net_from_leaves, net_leaves
from ._objectives import encode, loss_and_elbo

CHECKPOINT_FORMAT = "lateo-vae-checkpoint"
_META = "__lateo_checkpoint__"


class TrainResult(NamedTuple):
    """What :func:`train` returns: the kept network and the run's record."""

    net: object
    train_elbo: np.ndarray
    validation_elbo: np.ndarray
    best_epoch: int
    stopped_early: bool


@eqx.filter_jit
def train_epoch(net, opt_state, X, key, learning_rate, prior_kind, likelihood, batch_size):
    """One pass over ``X`` in shuffled minibatches; returns ``(net, opt_state, mean training ELBO)``."""
    n = X.shape[0]
    n_batches = -(-n // batch_size)
    pad = n_batches * batch_size - n
    perm = jax.random.permutation(jax.random.fold_in(key, 0), n)
    index = jnp.concatenate([perm, perm[:pad]]).reshape(n_batches, batch_size)
    mask = jnp.concatenate([jnp.ones(n, X.dtype), jnp.zeros(pad, X.dtype)]).reshape(n_batches, batch_size)
    keys = jax.random.split(jax.random.fold_in(key, 1), n_batches)
    optimizer = optax.adam(learning_rate)
    params, static = eqx.partition(net, eqx.is_array)

    def step(carry, batch):
        params, opt_state = carry
        rows, weight, k = batch

        def objective(p):
            loss, value = loss_and_elbo(eqx.combine(p, static), X[rows], k, prior_kind, likelihood)
            return jnp.sum(weight * loss) / jnp.sum(weight), jnp.sum(weight * value)

        (_, elbo_sum), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), elbo_sum

    (params, opt_state), sums = jax.lax.scan(step, (params, opt_state), (index, mask, keys))
    return eqx.combine(params, static), opt_state, jnp.sum(sums) / n


@eqx.filter_jit
def mean_elbo(net, X, key, prior_kind, likelihood):
    """Mean one-sample ELBO over the rows of ``X`` (the validation criterion)."""
    return jnp.mean(loss_and_elbo(net, X, key, prior_kind, likelihood)[1])


def fingerprint(config: dict, X_train, X_val) -> str:
    """A digest of the hyperparameters and the data, so a checkpoint resumes only the same run."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for part in (X_train, X_val):
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


def save_checkpoint(path, *, tag, epoch, net, opt_state, best_net, best_val, best_epoch, wait, history):
    """Write the full training state after ``epoch`` epochs to ``path`` (``.npz``, no pickle, atomic)."""
    meta = {"format": CHECKPOINT_FORMAT, "tag": tag, "epoch": epoch, "best_val": best_val,
            "best_epoch": best_epoch, "wait": wait}
    arrays = {_META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
              "history_train": np.asarray(history[0], np.float64), "history_val": np.asarray(history[1], np.float64)}
    for prefix, tree in (("net", net), ("opt", opt_state), ("best", best_net)):
        for i, leaf in enumerate(jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))):
            arrays[f"{prefix}:{i}"] = np.asarray(leaf)
    _atomic_write(Path(path), lambda handle: np.savez(handle, **arrays))


def load_checkpoint(path, *, tag, net, opt_state):
    """Read a checkpoint written by :func:`save_checkpoint` for the run ``tag``; ``None`` if ``path`` is absent."""
    path = Path(path)
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays.pop(_META).tobytes().decode())
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("tag") != tag:
        raise ValueError(f"checkpoint {path} belongs to another run (different data, hyperparameters or "
                         "random_state); delete it or pass another checkpoint path.")

    def leaves(prefix):
        return [arrays[f"{prefix}:{i}"] for i in range(sum(k.startswith(prefix + ":") for k in arrays))]

    opt_flat, opt_def = jax.tree_util.tree_flatten(opt_state)
    opt_state = jax.tree_util.tree_unflatten(opt_def, [jnp.asarray(v, o.dtype) for v, o in zip(leaves("opt"), opt_flat)])
    history = (list(arrays["history_train"]), list(arrays["history_val"]))
    return dict(epoch=meta["epoch"], net=net_from_leaves(net, leaves("net")), opt_state=opt_state,
                best_net=net_from_leaves(net, leaves("best")), best_val=meta["best_val"],
                best_epoch=meta["best_epoch"], wait=meta["wait"], history=history)


def train(net, X_train, X_val, *, key, learning_rate, prior_kind, likelihood, batch_size, n_epochs,
          patience, checkpoint=None, tag="", progress="auto", pretrain=None):
    """Train ``net`` for up to ``n_epochs`` epochs; see the module docstring.

    ``X_val`` may have zero rows (no validation: no early stopping, the last
    epoch's parameters are kept). ``checkpoint``: a path written after every
    epoch and, if it exists when training starts, resumed from.
    ``pretrain=(n, init)``: the first ``n`` epochs optimise the standard-normal
    prior's ELBO; at the start of epoch ``n``, ``net = init(net)`` (a
    deterministic function, so resuming repeats it) and the early-stopping
    record restarts, since the two bounds are not comparable.
    """
    train_key, val_key = jax.random.split(key)
    opt_state = optax.adam(learning_rate).init(eqx.filter(net, eqx.is_array))
    state = dict(epoch=0, net=net, opt_state=opt_state, best_net=net, best_val=-np.inf, best_epoch=0, wait=0,
                 history=([], []))
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, tag=tag, net=net, opt_state=opt_state) or state
    lr = jnp.asarray(learning_rate, X_train.dtype)
    validate = X_val.shape[0] > 0
    stopped = validate and patience is not None and state["wait"] >= patience
    with FitProgress(n_epochs, description="VAE", enabled=progress) as bar:
        while state["epoch"] < n_epochs and not stopped:
            epoch = state["epoch"]
            kind = prior_kind
            if pretrain is not None and epoch < pretrain[0]:
                kind = "gaussian"
            elif pretrain is not None and epoch == pretrain[0]:
                state.update(net=pretrain[1](state["net"]), best_val=-np.inf, wait=0)
            net, opt_state, train_elbo = train_epoch(state["net"], state["opt_state"], X_train,
                                                     jax.random.fold_in(train_key, epoch), lr, kind,
                                                     likelihood, batch_size)
            val = float(mean_elbo(net, X_val, val_key, kind, likelihood)) if validate else float("nan")
            state.update(epoch=epoch + 1, net=net, opt_state=opt_state)
            state["history"][0].append(float(train_elbo))
            state["history"][1].append(val)
            if validate and val > state["best_val"]:
                state.update(best_net=net, best_val=val, best_epoch=epoch + 1, wait=0)
            elif validate:
                state["wait"] += 1
            stopped = validate and patience is not None and state["wait"] >= patience
            if checkpoint is not None:
                save_checkpoint(checkpoint, tag=tag, **state)
            bar.update(epoch + 1, objective=val if validate else float(train_elbo))
    if validate:
        stopped = stopped or (patience is not None and state["wait"] >= patience)
        kept, best_epoch = state["best_net"], state["best_epoch"]
    else:
        kept, best_epoch = state["net"], state["epoch"]
    return TrainResult(kept, np.asarray(state["history"][0]), np.asarray(state["history"][1]), best_epoch, stopped)


def kmeans_prior(net, X, *, seed, space="data"):
    """The mixture prior initialised from a k-means clustering of the training rows.

    ``space="data"``: k-means on ``X`` itself; ``"latent"``: on the posterior
    means :math:`m_\\phi(x)` (VaDE's recipe, Jiang et al. 2017). Either way each
    cluster :math:`C_c` of rows sets one component from the posterior means of
    its rows: :math:`\\mu_c` their mean, :math:`\\sigma_c^2` their per-axis
    variance plus the mean posterior variance (the spread of :math:`q`
    itself), :math:`\\pi_c \\propto |C_c| + 1`.
    """
    from ..kmeans import KMeans

    loc, scale = (np.asarray(a, np.float64) for a in encode(net, X))
    k = net.prior.means.shape[0]
    points = np.asarray(X, np.float64) if space == "data" else loc
    labels = KMeans(k, n_init=10, random_state=seed, progress=False).fit(points).labels_
    counts = np.bincount(labels, minlength=k)
    means = np.stack([loc[labels == c].mean(0) if counts[c] else loc.mean(0) for c in range(k)])
    spread = np.stack([loc[labels == c].var(0) if counts[c] > 1 else loc.var(0) for c in range(k)])
    scales = np.sqrt(np.maximum(spread + np.mean(scale**2, 0), 1e-6))
    dtype = net.prior.means.dtype
    prior = MixturePrior(jnp.asarray(np.log((counts + 1.0) / (counts.sum() + k)), dtype),
                         jnp.asarray(means, dtype), jnp.asarray(np.log(scales), dtype))
    return eqx.tree_at(lambda n: n.prior, net, prior)


__all__ = ["kmeans_prior", "TrainResult", "load_checkpoint", "mean_elbo", "net_leaves", "save_checkpoint", "train", "train_epoch"]
