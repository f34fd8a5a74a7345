"""Benchmark: VAEs on the 8x8 digits (issue 7), lateo against a PyTorch VAE, one process.

Three results, printed as JSON:

* **Throughput.** Training examples per second of the Gaussian-prior VAE,
  MLP 64-256-128-(2x2) encoder and 2-128-256-64 decoder, ReLU, Bernoulli
  likelihood, closed-form KL, Adam (lr 1e-3), batch 128, float32, one
  reshuffle per epoch; lateo (its own jitted epoch, the function
  ``VAE.fit`` runs) against the same model in PyTorch (``torch==2.13.0``
  CPU, eager, with its default thread count and with one thread: on a
  busy 2-core machine its default two threads can be many times slower, so
  the ratio is taken against the faster of the two). Both warm up for
  ``--warmup`` epochs, then ``--epochs`` epochs are timed; the timings
  are repeated ``--repeats`` times, interleaved, and the medians compared.
* **Test-set NLL.** ``VAE(prior="gaussian")`` trained on 80% of the digits
  (random split, seed 0), ``-mean IWAE_k`` (k = 1000) on the other 20%,
  in nats per image (Bernoulli likelihood of pixel/16 grey levels).
* **Clustering.** ``VAE(prior="mixture", n_components=10, latent_dim=10,
  likelihood="gaussian")`` fitted to all 1,797 digits (100 epochs with the
  N(0, I) prior, k-means initialisation of the mixture on the pixels
  (``mixture_init="data"``, the default) or on the posterior means
  (``"latent"``), 100 epochs of the mixture bound, no early stopping); accuracy of ``predict`` under the best one-to-one matching
  of clusters to labels (Hungarian algorithm), against k-means (scikit-learn,
  ``n_init=10``) on the raw pixels.

    python benchmarks/bench_vae.py [--epochs 30] [--warmup 3] [--samples docs/vae_samples.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

import lateo  # noqa: F401  (float64 on; the VAE itself runs in float32)
from lateo.datasets.digits import load_digits
from lateo.models.vae import VAE
from lateo.models.vae._nets import build_net
from lateo.models.vae._train import train_epoch

HIDDEN, LATENT, BATCH, LR = (256, 128), 2, 128, 1e-3


def cluster_accuracy(labels, clusters) -> float:
    """Share of rows whose cluster maps to their label under the best one-to-one matching."""
    k = max(labels.max(), clusters.max()) + 1
    counts = np.zeros((k, k))
    np.add.at(counts, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(labels))


def lateo_throughput(X, epochs, warmup):
    """Examples per second of lateo's jitted training epoch (after ``warmup`` epochs), and compile seconds."""
    net = build_net(jax.random.key(0), n_features=X.shape[1], latent_dim=LATENT, hidden=HIDDEN, prior="gaussian",
                    n_components=1, likelihood="bernoulli", dtype=jnp.float32)
    import equinox as eqx
    import optax

    opt = optax.adam(LR).init(eqx.filter(net, eqx.is_array))
    Xj, lr, key = jnp.asarray(X, jnp.float32), jnp.asarray(LR, jnp.float32), jax.random.key(1)
    t0 = time.perf_counter()
    for e in range(warmup):
        net, opt, elbo = train_epoch(net, opt, Xj, jax.random.fold_in(key, e), lr, "gaussian", "bernoulli", BATCH)
    elbo.block_until_ready()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for e in range(epochs):
        net, opt, elbo = train_epoch(net, opt, Xj, jax.random.fold_in(key, warmup + e), lr, "gaussian", "bernoulli", BATCH)
    elbo.block_until_ready()
    dt = time.perf_counter() - t0
    return epochs * len(X) / dt, warm - warmup * dt / epochs, float(elbo)


def torch_throughput(X, epochs, warmup):
    """Examples per second of the same VAE in PyTorch (eager), after ``warmup`` epochs."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    def mlp(sizes):
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers[:-1])

    enc, dec = mlp((X.shape[1], *HIDDEN, 2 * LATENT)), mlp((LATENT, *HIDDEN[::-1], X.shape[1]))
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=LR)
    data = torch.as_tensor(X, dtype=torch.float32)

    def epoch():
        total = 0.0
        for rows in torch.randperm(len(data)).split(BATCH):
            x = data[rows]
            loc, raw = enc(x).chunk(2, dim=-1)
            scale = raw.exp()
            z = loc + scale * torch.randn_like(loc)
            logits = dec(z)
            recon = -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
            kl = 0.5 * (loc**2 + scale**2 - 1.0 - 2.0 * raw).sum(-1)
            loss = (kl - recon).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(rows)
        return -total / len(data)

    for _ in range(warmup):
        epoch()
    t0 = time.perf_counter()
    for _ in range(epochs):
        elbo = epoch()
    return epochs * len(X) / (time.perf_counter() - t0), elbo


def nll_and_samples(X, samples_png, n_epochs):
    order = np.random.default_rng(0).permutation(len(X))
    n_test = len(X) // 5
    test, train = X[order[:n_test]], X[order[n_test:]]
    out = {}
    for latent in (2, 10):
        t0 = time.perf_counter()
        model = VAE("gaussian", latent_dim=latent, n_epochs=n_epochs, patience=20, random_state=0, progress=False)
        model.fit(train)
        out[f"latent_{latent}"] = {
            "fit_seconds": time.perf_counter() - t0, "epochs": model.n_epochs_, "best_epoch": model.best_epoch_,
            "test_elbo": float(model.score_samples(test, n_samples=100, random_state=1).mean()),
            "test_nll_iwae1000": float(-model.iwae_bound(test, k=1000, random_state=1).mean()),
        }
        if samples_png and latent == 2:
            from lateo._plots_vae import plot_vae_samples
            from lateo.plots import _pyplot

            fig, ax = _pyplot().subplots(figsize=(5, 5))
            plot_vae_samples(model, n_rows=10, n_cols=10, random_state=3, ax=ax)
            ax.set_title("VAE (latent_dim=2) samples, 8x8 digits")
            fig.savefig(samples_png, dpi=110, bbox_inches="tight")
    return out


def clustering(X, y, n_epochs, seeds):
    from sklearn.cluster import KMeans

    result = {"kmeans_raw_pixels": cluster_accuracy(y, KMeans(10, n_init=10, random_state=0).fit_predict(X))}
    for init in ("data", "latent"):
        accs = []
        for seed in seeds:
            model = VAE("mixture", latent_dim=10, n_components=10, likelihood="gaussian", n_epochs=n_epochs,
                        pretrain_epochs=n_epochs // 2, mixture_init=init, patience=None, random_state=seed,
                        progress=False).fit(X)
            accs.append(cluster_accuracy(y, model.predict(X)))
        result[f"gmvae_init_{init}"] = {"seeds": list(seeds), "accuracy": accs, "mean": float(np.mean(accs))}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing repeats; medians are reported")
    parser.add_argument("--fit-epochs", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", default=None, help="write a PNG grid of samples here")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "nll", "clustering"])
    args = parser.parse_args()
    X, y = load_digits()
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                          "jax": jax.__version__, "device": str(jax.devices()[0])}}
    if "throughput" not in args.skip:
        import torch

        default_threads = torch.get_num_threads()
        runs = {"lateo": [], **{f"torch_{t}_threads": [] for t in sorted({default_threads, 1}, reverse=True)}}
        compile_s = lateo_throughput(X, args.epochs, args.warmup)[1]
        for _ in range(args.repeats):  # interleaved, so that the load of a shared machine hits all alike
            runs["lateo"].append(lateo_throughput(X, args.epochs, args.warmup)[0])
            for name in runs:
                if name != "lateo":
                    torch.set_num_threads(int(name.split("_")[1]))
                    runs[name].append(torch_throughput(X, args.epochs, args.warmup)[0])
        torch.set_num_threads(default_threads)
        median = {name: float(np.median(v)) for name, v in runs.items()}
        best = max(v for k, v in median.items() if k != "lateo")
        report["throughput"] = {"batch_size": BATCH, "examples_per_s_median": median, "runs": runs,
                                "ratio_lateo_over_best_torch": median["lateo"] / best, "lateo_compile_s": compile_s,
                                "torch": torch.__version__}
    if "nll" not in args.skip:
        report["nll"] = nll_and_samples(X, args.samples, args.fit_epochs)
    if "clustering" not in args.skip:
        report["clustering"] = clustering(X, y, args.fit_epochs, args.seeds)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
