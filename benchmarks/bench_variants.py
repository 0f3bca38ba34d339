"""What each member of the autoencoder family buys, and what it costs per epoch.

Trains a plain, sparse, denoising (Gaussian and masking), contractive and variational
autoencoder with the same architecture and seed on MNIST (or scikit-learn's digits when the
MNIST files can neither be found nor downloaded) and prints a markdown table: the median epoch
time, its ratio to the plain autoencoder's, each variant's defining effect measured against the
plain autoencoder, and the test reconstruction error.

The effects are measured on models trained by ``fit`` with the estimators' default training
settings. Epoch times are measured separately, on fresh models, round-robin (one epoch of every
model in turn, with ``partial_fit``) so that load from other processes falls on all models
alike; the first epoch (which also builds the network) is left out and the ratio to the plain
autoencoder is the median of the per-round ratios.

The effect measures (on the test rows):

- sparse: Hoyer sparsity of the codes, (sqrt(k) - L1/L2) / (sqrt(k) - 1) per sample, averaged,
  after dividing each component by its root mean square, so that rescaling components (which
  the decoder can undo) cannot change it. 0: all components equal; 1: one active component.
- denoising: mean squared error of reconstructing corrupted test rows (fresh noise, seeded)
  against the clean rows.
- contractive: sensitivity of the codes to small Gaussian input perturbations, relative to their
  spread: mean ||C^(-1/2) (f(x + d) - f(x))|| / ||d||, with C the covariance of the clean codes,
  so that no invertible linear map of the codes (which the decoder can undo) changes it.
- variational: KL divergence from the prior N(0, I) of the aggregate posterior (the mixture of
  the encoder's Gaussians over the test rows, moment-matched by a diagonal Gaussian), against
  the same model trained with beta=0 (no KL term).

Usage, from the repository root (MNIST is read from, or downloaded into, <data home>/mnist/,
the data home being --data-home, else $SKAE_DATA, else scikit-learn's data home)::

    python benchmarks/bench_variants.py --n-samples 10000
"""

import argparse
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from _harness import (
    add_data_arguments,
    announce_fallback,
    describe_load,
    describe_machine,
    load_dataset,
    machine_info,
)

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer

SIGMA = 0.01  # standard deviation of the perturbations for the contractive measure


def load_data(dataset, data_home, n_samples, n_test, seed, *, download=True):
    """(name, X_train, X_test) as float32 in [0, 1]: random subsets of MNIST (else of digits,
    and the first line printed says so and how to get MNIST), or of digits when asked."""
    data = load_dataset(dataset, data_home, download=download, seed=seed)
    announce_fallback(data)
    X_train, X_test = data.X_train, data.X_test
    rng = np.random.default_rng(seed)
    train = rng.choice(len(X_train), size=min(n_samples, len(X_train)), replace=False)
    test = rng.choice(len(X_test), size=min(n_test, len(X_test)), replace=False)
    return data.label, np.ascontiguousarray(X_train[train]), np.ascontiguousarray(X_test[test])


# -- measures ----------------------------------------------------------------------------------


def normalised_hoyer(codes):
    codes = codes / np.sqrt(np.mean(codes**2, axis=0)).clip(1e-12)
    k = codes.shape[1]
    ratio = np.abs(codes).sum(axis=1) / np.linalg.norm(codes, axis=1).clip(1e-12)
    return float(np.mean((np.sqrt(k) - ratio) / (np.sqrt(k) - 1)))


def corrupt(X, noise_type, level, seed):
    rng = np.random.default_rng(seed)
    if noise_type == "gaussian":
        return (X + level * rng.standard_normal(X.shape)).astype(np.float32)
    return np.where(rng.random(X.shape) < level, np.float32(0.0), X)


def reconstruction_error(model, X_in, X_target):
    return float(np.mean((model.inverse_transform(model.transform(X_in)) - X_target) ** 2))


def relative_sensitivity(model, X, seed):
    delta = (SIGMA * np.random.default_rng(seed).standard_normal(X.shape)).astype(np.float32)
    codes = model.transform(X).astype(np.float64)
    moved = model.transform(X + delta).astype(np.float64) - codes
    factor = np.linalg.cholesky(np.cov(codes, rowvar=False))
    whitened = np.linalg.solve(factor, moved.T).T
    return float(np.mean(np.linalg.norm(whitened, axis=1) / np.linalg.norm(delta, axis=1)))


def aggregate_kl(model, X):
    """KL(N(m, diag(v)) || N(0, I)) for the moment-matched aggregate posterior over X."""
    x = (torch.as_tensor(X) - torch.as_tensor(model.input_offset_)) / model.input_scale_
    with torch.inference_mode():
        mean, logvar = model.encoder_(x.float())
    mean, var = mean.double().numpy(), logvar.double().exp().numpy()
    m, v = mean.mean(axis=0), mean.var(axis=0) + var.mean(axis=0)
    return float(0.5 * np.sum(v + m**2 - 1.0 - np.log(v)))


# -- the run -----------------------------------------------------------------------------------


def variants(args):
    common = dict(
        n_components=args.n_components,
        hidden_layer_sizes=tuple(args.hidden_layer_sizes or ()) or "auto",
        random_state=args.seed,
        device="cpu",
    )
    for name in ("max_iter", "batch_size"):
        if getattr(args, name) is not None:
            common[name] = getattr(args, name)
    ae, vae = AutoEncoderTransformer, VariationalAutoEncoderTransformer
    return {
        "plain": ("", ae(**common)),
        "sparse": (f"l1_penalty={args.l1_penalty}", ae(l1_penalty=args.l1_penalty, **common)),
        "denoising (gaussian)": (
            f"noise_level={args.gaussian_level}",
            ae(noise_type="gaussian", noise_level=args.gaussian_level, **common),
        ),
        "denoising (masking)": (
            f"noise_level={args.masking_level}",
            ae(noise_type="masking", noise_level=args.masking_level, **common),
        ),
        "contractive": (
            f"contractive_penalty={args.contractive_penalty}",
            ae(contractive_penalty=args.contractive_penalty, **common),
        ),
        "variational": (f"beta={args.beta}", vae(beta=args.beta, **common)),
        "variational, beta=0": ("beta=0", vae(beta=0.0, **common)),
    }


def effect(name, models, X_test, args):
    """(measure's name, value for the model, value for its reference)."""
    model, plain = models[name], models["plain"]
    if name == "sparse":
        return (
            "Hoyer sparsity",
            normalised_hoyer(model.transform(X_test)),
            normalised_hoyer(plain.transform(X_test)),
        )
    if name.startswith("denoising"):
        noise_type = "gaussian" if "gaussian" in name else "masking"
        level = args.gaussian_level if noise_type == "gaussian" else args.masking_level
        X_noisy = corrupt(X_test, noise_type, level, args.seed + 1)
        return (
            f"{noise_type} noisy->clean MSE",
            reconstruction_error(model, X_noisy, X_test),
            reconstruction_error(plain, X_noisy, X_test),
        )
    if name == "contractive":
        return (
            "relative sensitivity",
            relative_sensitivity(model, X_test, args.seed + 2),
            relative_sensitivity(plain, X_test, args.seed + 2),
        )
    return (
        "KL(aggregate posterior, prior)",
        aggregate_kl(model, X_test),
        aggregate_kl(models["variational, beta=0"], X_test),
    )


def exact_jacobian_cost(encoder, X, batch_size, repeats=3):
    """Seconds for the exact per-sample Jacobians of one batch (torch.func.vmap(jacrev))
    and for one forward-mode probe of the same batch."""
    from torch.autograd import forward_ad
    from torch.func import jacrev, vmap

    x = torch.as_tensor(X[:batch_size])
    jacobians = vmap(jacrev(encoder))
    exact, probe = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        (jacobians(x).square().sum(dim=(1, 2)).mean()).backward()
        exact.append(time.perf_counter() - start)
        start = time.perf_counter()
        with forward_ad.dual_level():
            codes, tangent = forward_ad.unpack_dual(
                encoder(forward_ad.make_dual(x, torch.randn_like(x)))
            )
        (codes.sum() + tangent.square().sum()).backward()
        probe.append(time.perf_counter() - start)
    encoder.zero_grad(set_to_none=True)
    return statistics.median(exact), statistics.median(probe)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-samples", type=int, default=10_000, help="training rows")
    parser.add_argument("--n-test", type=int, default=2_000, help="test rows")
    parser.add_argument(
        "--max-iter", type=int, default=None, help="epochs of fit (default: the estimators')"
    )
    parser.add_argument(
        "--timed-epochs", type=int, default=3, help="epochs timed per model, after one untimed"
    )
    # --dataset mnist (the default; digits stand in when it is unavailable) or digits.
    add_data_arguments(parser, datasets=("mnist", "digits"))
    parser.add_argument(
        "--n-components", type=int, default=None, help="default: 64 on MNIST, 16 on digits"
    )
    parser.add_argument(
        "--hidden-layer-sizes", type=int, nargs="+", default=None, help='default: "auto"'
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default: the estimators'")
    parser.add_argument("--l1-penalty", type=float, default=0.02)
    parser.add_argument("--gaussian-level", type=float, default=0.3)
    parser.add_argument("--masking-level", type=float, default=0.3)
    parser.add_argument("--contractive-penalty", type=float, default=1e-6)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch's intra-op threads (default 1: on a shared machine, more threads than free "
        "cores make timings erratic)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = machine_info("cpu")

    data_name, X_train, X_test = load_data(
        args.dataset,
        args.data_home,
        args.n_samples,
        args.n_test,
        args.seed,
        download=not args.no_download,
    )
    if args.n_components is None:
        args.n_components = 64 if X_train.shape[1] > 64 else 16

    timed = {name: model for name, (_, model) in variants(args).items()}
    times = {name: [] for name in timed}
    for _ in range(1 + args.timed_epochs):
        for name, model in timed.items():
            start = time.perf_counter()
            model.partial_fit(X_train)
            times[name].append(time.perf_counter() - start)
    times = {name: epoch_times[1:] for name, epoch_times in times.items()}

    models = {}
    for name, (_, model) in variants(args).items():
        models[name] = model.fit(X_train)
    plain = models["plain"]

    hidden = "-".join(str(h) for h in plain.hidden_layer_sizes_)
    print(
        f"Data: {data_name}, {len(X_train)} training / {len(X_test)} test rows; architecture "
        f"{X_train.shape[1]}-{hidden}-{args.n_components}; fit: {plain.max_iter_} epochs of "
        f"batch {plain.batch_size_}, learning rate {plain.learning_rate_init} "
        f"({plain.learning_rate}), seed {args.seed}; epoch times: median of "
        f"{args.timed_epochs} (partial_fit); {describe_machine(machine)}. "
        f"{describe_load(machine)}.\n"
    )
    print(
        "| variant | parameters | epoch time (s) | ratio to plain | effect measure | "
        "variant | reference | test MSE |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for name, (params, _) in variants(args).items():
        if name == "variational, beta=0":
            continue
        ratios = [t / p for t, p in zip(times[name], times["plain"], strict=True)]
        if name == "plain":
            measure = value = reference = "-"
        else:
            measure, value, reference = effect(name, models, X_test, args)
            value, reference = f"{value:.4g}", f"{reference:.4g}"
        print(
            f"| {name} | {params or '-'} | {statistics.median(times[name]):.2f} | "
            f"{statistics.median(ratios):.2f} | {measure} | {value} | {reference} | "
            f"{reconstruction_error(models[name], X_test, X_test):.4f} |"
        )
    print(
        "\nReference: the plain autoencoder, except for the variational one (the same model "
        "trained with beta=0). Lower is better for every measure but Hoyer sparsity."
    )
    exact, probe = exact_jacobian_cost(models["contractive"].encoder_, X_train, plain.batch_size_)
    print(
        f"Contractive penalty on one batch of {plain.batch_size_} (forward + backward): exact "
        f"per-sample Jacobians with torch.func.vmap(jacrev) {1e3 * exact:.1f} ms, one "
        f"forward-mode probe (what training uses) {1e3 * probe:.1f} ms."
    )


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sys.exit(main())
