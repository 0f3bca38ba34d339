"""Data-parallel training: a real 2-process torch.distributed group (torchrun, gloo, CPU)."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning

import skae
from skae import AutoEncoderTransformer
from skae._training._distributed import AveragedOverProcesses, local_batch_size

sys.path.insert(0, str(Path(__file__).parent))
import _distributed_worker as worker  # noqa: E402

WORKER = Path(__file__).parent / "_distributed_worker.py"


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """The two processes' reports of one torchrun launch."""
    out = tmp_path_factory.mktemp("distributed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(WORKER), str(out)]  # fmt: skip
    # A hang (a collective one rank skipped) fails the test instead of stalling the suite.
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    return reports, out


@pytest.mark.parametrize("run", ["fit", "seeded", "early_stopping", "partial_fit"])
def test_every_rank_ends_with_the_same_model(ranks, run):
    reports, _ = ranks
    first, second = (report[run] for report in reports)
    assert first["identical_weights"] and second["identical_weights"]
    # Decided once for all: the same plan, epochs, losses, validation scores and scaling.
    for key in ("plan", "n_iter", "loss_curve", "validation_scores", "input_offset",
                "input_scale"):  # fmt: skip
        assert first[key] == second[key], key
    assert first["batch_size"] == second["batch_size"] == worker.PARAMS["batch_size"]
    # The plan is the union's: every row of both processes, and how many processes there were.
    assert first["plan"]["n_samples"] == worker.N_TRAIN
    assert first["plan"]["n_processes"] == 2


def test_statistics_and_stopping_cover_the_union_of_the_shards(ranks):
    reports, _ = ranks
    train, _ = worker.data()
    assert_allclose(reports[0]["seeded"]["input_offset"], train.mean(axis=0), atol=1e-4)
    assert reports[0]["seeded"]["input_scale"] == pytest.approx(
        np.sqrt(train.var(axis=0).mean()), rel=1e-5
    )
    stopped = reports[0]["early_stopping"]
    assert stopped["n_iter"] < worker.PARAMS["max_iter"]  # the plateau rule ended it early
    assert len(stopped["validation_scores"]) == stopped["n_iter"]


def test_quality_matches_a_single_process_fit_on_the_same_rows(ranks):
    reports, _ = ranks
    train, test = worker.data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        single = AutoEncoderTransformer(**worker.PARAMS).fit(train)
    # Held-out error within 10% of one process trained on all the rows.
    assert reports[0]["seeded"]["test_score"] > 1.10 * single.score(test)
    assert reports[0]["seeded"]["n_iter"] == single.n_iter_


def test_only_rank_0_saves_and_the_file_loads(ranks):
    reports, out = ranks
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["saved_by_rank0.safetensors"]
    loaded = skae.load(out / "saved_by_rank0.safetensors")
    assert loaded.fit_plan_.to_dict() == reports[0]["seeded"]["plan"]
    _, test = worker.data()
    assert loaded.score(test) == pytest.approx(reports[0]["seeded"]["test_score"], rel=1e-6)


def test_shares_of_a_global_batch_cover_every_process_in_as_many_steps():
    for sizes in ([900, 500], [1, 999], [10, 10, 7], [256, 3]):
        total = sum(sizes)
        steps = -(-total // 64)
        shares = [local_batch_size(64, n, total) for n in sizes]
        assert all(-(-n // share) <= steps for n, share in zip(sizes, shares, strict=True))
    assert local_batch_size(64, 1000, 1000) == 64  # one process: the batch itself


class _Sum:
    """A stand-in process group of two ranks whose other rank sent ``other``."""

    world_size, rank = 2, 0

    def __init__(self, other):
        self.other = other

    def all_reduce_(self, tensor):
        return tensor.add_(self.other)


def test_gradients_are_averaged_over_the_global_batch():
    # Rank 0 has 3 rows with gradient g0 (its batch mean); rank 1 has 1 row with g1: the
    # update must use (3 g0 + 1 g1) / 4, the gradient of the mean over all 4 rows.
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([weight], lr=1.0)

    class Step:
        def __init__(self):
            self.optimizer = optimizer

        def compute_gradients(self, x):
            weight.grad.copy_(x.mean(dim=0))  # into the shared buffer, as the real steps do
            return torch.zeros(())

        def update(self):
            self.optimizer.step()

    g1 = torch.tensor([8.0, -4.0])
    other = torch.cat([g1 * 1, torch.tensor([1.0])])
    step = AveragedOverProcesses(Step(), _Sum(other))
    step(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    expected = (3 * torch.tensor([3.0, 4.0]) + g1) / 4
    assert torch.allclose(weight.detach(), -expected)
    # A process whose rows ran out contributes nothing and still takes part.
    weight.data.zero_()
    step(torch.empty((0, 2)))
    assert torch.allclose(weight.detach(), -g1)
