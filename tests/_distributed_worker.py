"""One process of a data-parallel fit, as a user's script run with ``torchrun`` would be.

Run by tests/test_distributed.py as
``torchrun --standalone --nproc_per_node=2 tests/_distributed_worker.py OUT_DIR``. Each process
fits on its own unequal shard of the digits and writes what the test checks to
``OUT_DIR/rank<r>.json``.
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skae import AutoEncoderTransformer

# Shared with the test, which fits one process on the union of the shards.
N_TRAIN = 1400
SHARD_0 = 900  # rank 0's rows; rank 1 gets the other 500
PARAMS = dict(n_components=8, hidden_layer_sizes=(32,), max_iter=12, batch_size=64,
              random_state=0, device="cpu")  # fmt: skip


def data():
    X = load_digits().data.astype(np.float32)  # 0..16: centred and scaled, linear output
    return X[:N_TRAIN], X[N_TRAIN:]


def weights(est):
    return torch.cat([p.detach().flatten() for m in (est.encoder_, est.decoder_)
                      for p in m.parameters()])  # fmt: skip


def same_on_every_rank(tensor):
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor)
    return all(torch.equal(gathered[0], other) for other in gathered)


def main(out_dir):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    train, test = data()
    shard = train[:SHARD_0] if rank == 0 else train[SHARD_0:]
    report = {"rank": rank}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # random_state=None on purpose: rank 0's seed must reach every rank.
        fit = AutoEncoderTransformer(**{**PARAMS, "random_state": None}).fit(shard)
        report["fit"] = summary(fit, test)
        seeded = AutoEncoderTransformer(**PARAMS).fit(shard)
        report["seeded"] = summary(seeded, test)
        stopped = AutoEncoderTransformer(**PARAMS, early_stopping=True, n_iter_no_change=2,
                                         tol=0.05).fit(shard)  # fmt: skip
        report["early_stopping"] = summary(stopped, test)
        streamed = AutoEncoderTransformer(**PARAMS)
        for _ in range(2):
            streamed.partial_fit(shard)
        report["partial_fit"] = summary(streamed, test)
    # Every rank calls save; only rank 0 writes. A path of each rank's own shows who wrote.
    seeded.save(Path(out_dir) / f"saved_by_rank{rank}.safetensors")
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


def summary(est, test):
    return {
        "identical_weights": same_on_every_rank(weights(est)),
        "n_iter": est.n_iter_,
        "loss_curve": est.loss_curve_,
        "validation_scores": est.validation_scores_,
        "batch_size": est.batch_size_,
        "input_offset": est.input_offset_.tolist(),
        "input_scale": est.input_scale_,
        "test_score": est.score(test),
        "plan": est.fit_plan_.to_dict(),
    }


if __name__ == "__main__":
    main(sys.argv[1])
