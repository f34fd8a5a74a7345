"""The ``lateo fit vae`` command: train a variational auto-encoder on a table and save it.

Registered in :mod:`lateo.cli` with ``fit.add_command(fit_vae)``. Example::

    $ lateo fit vae digits.csv --prior mixture --latent-dim 10 --components 10 -o gmvae.npz --plot gmvae.png
    $ lateo fit vae digits.csv --conv --hidden 128 --latent-dim 10 -o conv-vae.npz   # CNN encoder/decoder
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from lateo._cli_errors import clean_errors


def _hidden(value: str) -> tuple:
    try:
        widths = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated positive ints such as 256,128; got {value!r}.") from None
    if any(w < 1 for w in widths):
        raise click.BadParameter(f"layer widths must be positive, got {value!r}.")
    return widths




@click.command("vae")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--columns", help="Comma-separated columns to use (default: all, which must be numeric).")
@click.option("--prior", default="gaussian", show_default=True, type=click.Choice(["gaussian", "mixture", "vq"]),
              help="Latent prior: N(0, I), a learnable Gaussian mixture (GMVAE) or a VQ codebook.")
@click.option("--latent-dim", default=2, show_default=True, type=click.IntRange(min=1), help="Latent dimension.")
@click.option("--components", "-k", default=10, show_default=True, type=click.IntRange(min=1),
              help="Mixture components or codebook size (mixture and vq priors).")
@click.option("--likelihood", default="bernoulli", show_default=True, type=click.Choice(["bernoulli", "gaussian"]),
              help="Decoder likelihood; bernoulli needs values in [0, 1].")
@click.option("--hidden", default="256,128", show_default=True,
              help="Hidden layer widths of the encoder MLP (with --conv: of its dense layers after the convolutions).")
@click.option("--conv", is_flag=True, default=False,
              help="Small convolutional encoder/decoder for images (two stride-2 3x3 convolutions each way); "
                   "the rows must be square images (8x8 digits: 64 columns).")
@click.option("--epochs", default=100, show_default=True, type=click.IntRange(min=1), help="Maximum epochs.")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--learning-rate", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--patience", default=10, show_default=True, type=click.IntRange(min=0),
              help="Early-stopping patience in epochs (0: never stop early).")
@click.option("--validation-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True))
@click.option("--pretrain-epochs", default=10, show_default=True, type=click.IntRange(min=0),
              help="Mixture prior: epochs with the N(0, I) prior before the k-means initialisation.")
@click.option("--mixture-init", default="data", show_default=True, type=click.Choice(["data", "latent"]),
              help="Mixture prior: run the initial k-means on the data or on the posterior means.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint file, written every epoch and resumed from if it exists (needs --random-state).")
@click.option("--random-state", type=click.IntRange(min=0), help="Seed, for reproducible fits.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG with the training curves and a grid of samples (square images only for the grid).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Model file to write.")
@clean_errors
def fit_vae(data, columns, prior, latent_dim, components, likelihood, hidden, conv, epochs, batch_size, learning_rate,
            patience, validation_fraction, pretrain_epochs, mixture_init, checkpoint, random_state, plot, out):
    """Train a variational auto-encoder on DATA (CSV or Parquet) and save it to --out."""
    from lateo.cli import _console, _print_metrics, _read_table, _select_columns
    from lateo.io import save_model
    from lateo.models.vae import VAE

    frame = _select_columns(_read_table(data), columns, data)
    model = VAE(prior, latent_dim=latent_dim, n_components=components, likelihood=likelihood, hidden=_hidden(hidden),
                conv=conv, n_epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience or None,
                validation_fraction=validation_fraction, pretrain_epochs=pretrain_epochs,
                mixture_init=mixture_init,
                checkpoint=None if checkpoint is None else str(checkpoint), random_state=random_state, progress="auto")
    console = _console()
    start = time.perf_counter()
    model.fit(frame.to_numpy())
    elapsed = time.perf_counter() - start
    save_model(model, out)
    kind = ", convolutional" if conv else ""
    console.print(f"VAE ({prior} prior{kind}) fitted on {frame.shape[0]} rows x {frame.shape[1]} columns in {elapsed:.2f} s.")
    metrics = [("epochs", f"{model.n_epochs_} (kept epoch {model.best_epoch_})"),
               ("training ELBO per row", f"{model.train_elbo_[model.best_epoch_ - 1]:.6g}")]
    if validation_fraction > 0:
        metrics.append(("validation ELBO per row", f"{model.validation_elbo_[model.best_epoch_ - 1]:.6g}"))
    _print_metrics(console, metrics)
    if plot is not None:
        _plot(model, plot)
        console.print(f"Figure written to {plot}")
    console.print(f"Model saved to {out}")


def _plot(model, path: Path) -> None:
    from lateo._plots_vae import plot_vae_samples, plot_vae_training
    from lateo.plots import _pyplot

    square = int(round(model.n_features_in_**0.5)) ** 2 == model.n_features_in_
    fig, axes = _pyplot().subplots(1, 2 if square else 1, figsize=(10 if square else 5, 4.5), squeeze=False)
    plot_vae_training(model, ax=axes[0, 0])
    if square:
        plot_vae_samples(model, n_rows=8, n_cols=8, random_state=0, ax=axes[0, 1])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


__all__ = ["fit_vae"]
