"""Training and inference speed of AutoEncoderTransformer against the plain PyTorch loop.

Times, in one process on one machine and alternating epoch by epoch so that drifts in the
machine's speed hit all alike:

  plain    the design's loop: DataLoader over a TensorDataset, Adam, MSE, batch 128
  skae     AutoEncoderTransformer with the same architecture, optimizer, batch size and epochs,
           one partial_fit per epoch
  skae_fit the same estimator's fit() over all the epochs at once, timed after the others
           (its one-off costs, such as the copy to the device or a CUDA graph's capture, are
           paid once per fit, as a user's fit pays them; its first epoch is included)
  skorch   skorch's NeuralNet with the same module (when skorch is installed)
  pca      PCA fit and transform, for scale

and reports seconds per epoch, the ratio to the plain loop (the median of each epoch's time over
the plain loop's epoch just before it), final train loss and test
reconstruction error (a speed-up must not cost quality), transform throughput and the peak
extra memory of transform.

MNIST is read from, or downloaded into, <data home>/mnist/ (--data-home, else $SKAE_DATA, else
scikit-learn's data home); scikit-learn's digits stand in when it is unavailable.

    python benchmarks/bench_speed.py                                       # full MNIST
    python benchmarks/bench_speed.py --device cuda --epochs 10             # on a GPU
"""

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _harness import (
    PeakMemory,
    add_data_arguments,
    add_machine_arguments,
    announce_fallback,
    describe_load,
    describe_machine,
    limit_threads,
    load_dataset,
    machine_info,
    machine_load,
    markdown_table,
    write_json,
)
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from torch import nn

from skae import AutoEncoderTransformer

ARCHITECTURE = dict(n_components=64, hidden_layer_sizes=(256, 128))
BATCH_SIZE = 128
LEARNING_RATE = 1e-3


def design_modules(n_features, generator):
    """The design's encoder and decoder: n -> 256 -> 128 -> 64, leaky ReLU, sigmoid output."""
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    sizes = [n_features, *ARCHITECTURE["hidden_layer_sizes"], ARCHITECTURE["n_components"]]
    encoder = nn.Sequential(
        nn.Linear(sizes[0], sizes[1]),
        nn.LeakyReLU(),
        nn.Linear(sizes[1], sizes[2]),
        nn.LeakyReLU(),
        nn.Linear(sizes[2], sizes[3]),
    )
    decoder = nn.Sequential(
        nn.Linear(sizes[3], sizes[2]),
        nn.LeakyReLU(),
        nn.Linear(sizes[2], sizes[1]),
        nn.LeakyReLU(),
        nn.Linear(sizes[1], sizes[0]),
        nn.Sigmoid(),
    )
    return nn.Sequential(encoder, decoder)


class PlainLoop:
    """The design's plain PyTorch training loop, as a user would first write it."""

    def __init__(self, X_train, device, seed):
        generator = torch.Generator().manual_seed(seed)
        self.model = design_modules(X_train.shape[1], generator).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE)
        self.loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(X_train)),
            batch_size=BATCH_SIZE,
            shuffle=True,
        )
        self.device, self.n_rows, self.train_loss = device, len(X_train), math.nan

    def train_epoch(self):
        total = 0.0
        for (x,) in self.loader:
            x = x.to(self.device)
            self.optimizer.zero_grad()
            batch_loss = nn.functional.mse_loss(self.model(x), x)
            batch_loss.backward()
            self.optimizer.step()
            total += batch_loss.item() * len(x)
        self.train_loss = total / self.n_rows

    def results(self, X_test, X_train):
        with torch.no_grad():
            x_test = torch.from_numpy(X_test).to(self.device)
            test_mse = float(nn.functional.mse_loss(self.model(x_test), x_test))
        return dict(train_loss=self.train_loss, test_mse=test_mse)


class SkaeTrainer:
    """AutoEncoderTransformer with the same architecture, optimizer and batch size."""

    def __init__(self, X_train, device, seed):
        self.ae = AutoEncoderTransformer(
            **ARCHITECTURE,
            batch_size=BATCH_SIZE,
            learning_rate_init=LEARNING_RATE,
            learning_rate="constant",
            random_state=seed,
            device=device,
        )
        self.X_train = X_train

    def train_epoch(self):
        # partial_fit trains one epoch, as fit does for each of its epochs (and it pays its
        # per-call checks of the input every time, so this is no flattering measure).
        self.ae.partial_fit(self.X_train)

    def results(self, X_test, X_train):
        result = dict(train_loss=self.ae.loss_curve_[-1], test_mse=-self.ae.score(X_test))
        result.update(time_transform(self.ae, X_train, X_test))
        return result


class SkorchTrainer:
    """skorch's NeuralNet with the same module, one epoch per partial_fit."""

    def __init__(self, X_train, device, seed):
        from skorch import NeuralNet

        self.net = NeuralNet(
            module=design_modules(X_train.shape[1], torch.Generator().manual_seed(seed)),
            criterion=nn.MSELoss,
            optimizer=torch.optim.Adam,
            lr=LEARNING_RATE,
            batch_size=BATCH_SIZE,
            max_epochs=1,
            train_split=None,
            iterator_train__shuffle=True,
            device=str(device),
            verbose=0,
        )
        self.X_train = X_train

    def train_epoch(self):
        self.net.partial_fit(self.X_train, self.X_train)

    def results(self, X_test, X_train):
        with torch.no_grad():
            recon = self.net.forward(X_test).cpu().numpy()
        return dict(
            train_loss=self.net.history[-1, "train_loss"],
            test_mse=float(np.mean((recon - X_test) ** 2)),
        )


def time_round(trainers, X_train, X_test, epochs, device):
    """Train every method for ``epochs``, alternating epoch by epoch so that drifts in the
    machine's speed hit all alike; return each method's epoch times and results."""
    times = {name: [] for name in trainers}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):
            for name, trainer in trainers.items():
                start = time.perf_counter()
                trainer.train_epoch()
                _synchronize(device)
                times[name].append(time.perf_counter() - start)
    return {
        name: dict(epoch_times=times[name], **trainer.results(X_test, X_train))
        for name, trainer in trainers.items()
    }


def time_skae_fit(X_train, X_test, epochs, device, seed):
    """skae's fit() over all the epochs in one call: seconds per epoch, first epoch included."""
    ae = SkaeTrainer(X_train, device, seed).ae
    ae.set_params(max_iter=epochs, n_iter_no_change=epochs)  # no stopping before max_iter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        ae.fit(X_train)
        _synchronize(device)
        seconds = time.perf_counter() - start
    return dict(
        s_per_epoch=seconds / ae.n_iter_, train_loss=ae.loss_curve_[-1], test_mse=-ae.score(X_test)
    )


def time_pca(X_train, X_test):
    start = time.perf_counter()
    pca = PCA(ARCHITECTURE["n_components"], random_state=0).fit(X_train)
    fit_time = time.perf_counter() - start
    recon = pca.inverse_transform(pca.transform(X_test))
    result = dict(fit_time=fit_time, test_mse=float(np.mean((recon - X_test) ** 2)))
    result.update(time_transform(pca, X_train, X_test))
    return result


def time_transform(model, X_train, X_test):
    """Transform throughput over train + test, and the peak extra resident memory it took."""
    X_all = np.concatenate([X_train, X_test])
    model.transform(X_all[:1000])  # warm-up
    with PeakMemory() as memory:
        start = time.perf_counter()
        model.transform(X_all)
        seconds = time.perf_counter() - start
    return dict(
        transform_seconds=seconds,
        transform_rows_per_s=len(X_all) / seconds,
        transform_peak_extra_mb=memory.growth_mb,
    )


def _synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, datasets=None)
    add_machine_arguments(parser, device="cpu")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds")
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--no-skorch", action="store_true")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    data = load_dataset("mnist", args.data_home, download=not args.no_download)
    announce_fallback(data)
    X_train, X_test, dataset = data.X_train[: args.n_train], data.X_test, data.name
    device = torch.device(args.device)
    trainers = {"plain": PlainLoop, "skae": SkaeTrainer}
    if not args.no_skorch:
        try:
            import skorch  # noqa: F401

            trainers["skorch"] = SkorchTrainer
        except ImportError:
            print("skorch is not installed: skipping it (pip install skorch).")
    with limit_threads(args.threads):
        info = machine_info(args.device)
        machine = describe_machine(info)
        print(f"# Speed on {dataset} ({len(X_train)} train rows), {machine}")
        rounds, fits = [], []
        for seed in range(args.repeats):
            built = {name: cls(X_train, device, seed) for name, cls in trainers.items()}
            rounds.append(time_round(built, X_train, X_test, args.epochs, device))
            fits.append(time_skae_fit(X_train, X_test, args.epochs, device, seed))
            for name, run in rounds[-1].items():
                epoch = statistics.median(run["epoch_times"])
                print(f"  round {seed + 1} {name}: {epoch:.3f} s/epoch", file=sys.stderr)
            fit_epoch = fits[-1]["s_per_epoch"]
            print(f"  round {seed + 1} skae_fit: {fit_epoch:.3f} s/epoch", file=sys.stderr)
        pca = time_pca(X_train, X_test)
    report(rounds, fits, pca, args, dataset, device, machine, info)


def report(rounds, fits, pca, args, dataset, device, machine, info):
    # The first epoch of a round carries one-off costs (allocation, warm-up): it is reported
    # in the JSON but left out of the medians, unless it is the only one.
    def timed_epochs(run):
        return run["epoch_times"][1:] or run["epoch_times"]

    def median_epoch(name):
        return statistics.median(t for run in rounds for t in timed_epochs(run[name]))

    def median_ratio_to_plain(name):
        # Epoch i of a method against epoch i of the plain loop, run just before it.
        return statistics.median(
            t / t_plain
            for run in rounds
            for t, t_plain in zip(timed_epochs(run[name]), timed_epochs(run["plain"]), strict=True)
        )

    def mean_over_rounds(name, key):
        # Each round starts from another seed: the mean says more than one run.
        return statistics.fmean(run[name][key] for run in rounds)

    rows = []
    for name, last in rounds[-1].items():
        rows.append(
            dict(
                method=name,
                s_per_epoch=median_epoch(name),
                vs_plain=median_ratio_to_plain(name),
                train_loss=mean_over_rounds(name, "train_loss"),
                test_mse_per_pixel=mean_over_rounds(name, "test_mse"),
                transform_rows_per_s=last.get("transform_rows_per_s"),
                transform_peak_extra_mb=last.get("transform_peak_extra_mb"),
            )
        )
    fit_per_epoch = statistics.median(fit["s_per_epoch"] for fit in fits)
    rows.insert(
        2,
        dict(
            method="skae_fit",
            s_per_epoch=fit_per_epoch,
            vs_plain=fit_per_epoch / median_epoch("plain"),  # not paired: fit runs on its own
            train_loss=statistics.fmean(fit["train_loss"] for fit in fits),
            test_mse_per_pixel=statistics.fmean(fit["test_mse"] for fit in fits),
            transform_rows_per_s=None,
            transform_peak_extra_mb=None,
        ),
    )
    rows.append(
        dict(
            method="pca",
            s_per_epoch=pca["fit_time"],
            vs_plain=None,
            train_loss=None,
            test_mse_per_pixel=pca["test_mse"],
            transform_rows_per_s=pca["transform_rows_per_s"],
            transform_peak_extra_mb=pca["transform_peak_extra_mb"],
        )
    )
    print(markdown_table(pd.DataFrame(rows)))
    by_method = {row["method"]: row for row in rows}
    skae, skae_fit = by_method["skae"], by_method["skae_fit"]
    print(
        f"\nskae epoch time is {skae['vs_plain']:.2f}x the plain loop's (median of paired "
        f"epochs), {skae_fit['vs_plain']:.2f}x within one fit; "
        f"transform of train + test takes "
        f"{pca['transform_rows_per_s'] / skae['transform_rows_per_s']:.1f}x PCA's time. "
        f"(pca's s_per_epoch column is its whole fit.) {args.epochs} epochs x {args.repeats} "
        f"rounds, batch {BATCH_SIZE}, device {device}, data {dataset}. {describe_load(info)}."
    )
    if args.output:
        payload = dict(machine=machine, load=machine_load(info), dataset=dataset, args=vars(args))
        payload["rows"] = rows
        payload["rounds"] = rounds
        payload["fits"] = fits
        write_json(args.output, payload)


if __name__ == "__main__":
    main()
