"""n_threads: torch's thread count chosen per call from the work, and restored afterwards."""

import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from skae import AutoEncoderTransformer, VariationalAutoEncoderTransformer, _threads
from skae._threads import (
    FLOPS_PER_THREAD,
    choose_threads,
    idle_cores,
    torch_threads,
    training_flops,
)
from skae._training import BackpropStep, TrainingStep

CPU = torch.device("cpu")
X = (load_digits().data[:300] / 16).astype(np.float32)


@pytest.fixture
def four_torch_threads():
    """torch set to 4 threads for the test (the suite runs at 1), restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize(
    "flops, idle, expected",
    [
        (0.5 * FLOPS_PER_THREAD, 4, 1),  # a small step: one thread, whatever is free
        (2.5 * FLOPS_PER_THREAD, 4, 2),  # one thread per FLOPS_PER_THREAD of work
        (40 * FLOPS_PER_THREAD, 4, 4),  # never more than torch's own setting
        (40 * FLOPS_PER_THREAD, 1, 1),  # nor than the cores other processes leave idle
        (40 * FLOPS_PER_THREAD, 0, 1),  # and always at least one
    ],
)
def test_auto_follows_the_work_and_the_idle_cores(
    monkeypatch, four_torch_threads, flops, idle, expected
):
    monkeypatch.setattr(_threads, "idle_cores", lambda: idle)
    assert choose_threads("auto", flops, CPU) == expected


def test_auto_watches_the_cores_only_when_it_would_use_several(monkeypatch, four_torch_threads):
    watched = []
    monkeypatch.setattr(_threads, "idle_cores", lambda: watched.append(1) or 4)
    choose_threads("auto", training_flops(40_000, 39), CPU)  # digits: 9 MFLOP per step
    assert watched == []
    choose_threads("auto", training_flops(485_000, 256), CPU)  # MNIST: 745 MFLOP per step
    assert watched == [1]


def test_an_explicit_count_is_taken_and_other_devices_are_left_alone():
    assert choose_threads(3, 1.0, CPU) == 3
    assert choose_threads("auto", 1e12, torch.device("cuda")) is None
    assert choose_threads(3, 1e12, torch.device("cuda")) is None


def test_torch_threads_restores_the_setting_even_after_an_error(four_torch_threads):
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(2):
            assert torch.get_num_threads() == 2
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 4


def test_idle_cores_sees_a_busy_core(monkeypatch):
    monkeypatch.setattr(_threads, "IDLE_REUSE_SECONDS", 0.0)  # a new watch every call
    cores = len(_threads._usable_cores())
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started and spinning
        busy = min(idle_cores() for _ in range(3))
    finally:
        spinner.kill()
        spinner.wait()
    assert busy <= cores - 1


def test_a_recent_watch_is_reused(monkeypatch):
    watches = []
    monkeypatch.setattr(_threads, "_watch_idle_cores", lambda: watches.append(1) or 2)
    monkeypatch.setattr(_threads, "_last_watch", (-float("inf"), 0))
    assert idle_cores() == idle_cores() == 2
    assert watches == [1]
    monkeypatch.setattr(_threads, "IDLE_REUSE_SECONDS", 0.0)
    idle_cores()
    assert watches == [1, 1]


@pytest.mark.parametrize("n_threads, expected", [(2, 2), (1, 1), ("auto", 1)])
@pytest.mark.parametrize("cls", [AutoEncoderTransformer, VariationalAutoEncoderTransformer])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 2 epochs suffice
def test_fit_and_inference_run_on_the_chosen_threads_then_restore_them(
    monkeypatch, four_torch_threads, cls, n_threads, expected
):
    seen = []
    for step in (TrainingStep, BackpropStep):  # autograd's step, and the hand-written one
        monkeypatch.setattr(step, "compute_gradients", _recording(step.compute_gradients, seen))
    est = cls(n_components=4, hidden_layer_sizes=(16,), max_iter=2, n_threads=n_threads)
    est.set_params(device="cpu", random_state=0).fit(X)  # a small step: "auto" takes one
    assert seen and set(seen) == {expected}
    assert torch.get_num_threads() == 4
    assert _threads_in(est.transform, X) == expected
    assert torch.get_num_threads() == 4


def _recording(compute_gradients, seen):
    def recording(self, x):
        seen.append(torch.get_num_threads())
        return compute_gradients(self, x)

    return recording


def _threads_in(method, X):
    """The torch thread count while ``method(X)`` encodes (read inside the encoder)."""
    seen = []
    estimator = method.__self__
    encode = estimator._encode

    def recording(modules, x):
        seen.append(torch.get_num_threads())
        return encode(modules, x)

    estimator._encode = recording
    try:
        method(X)
    finally:
        del estimator._encode
    return seen[0]


@pytest.mark.parametrize("value", [0, -1, 1.5, "two", True, None])
def test_invalid_n_threads_is_refused_with_the_valid_values(value):
    with pytest.raises(ValueError, match=r'n_threads=.* is invalid: expected "auto" or an integer'):
        AutoEncoderTransformer(n_threads=value).fit(X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 3 epochs suffice
def test_results_agree_whatever_the_thread_count():
    fits = [
        AutoEncoderTransformer(
            n_components=4, hidden_layer_sizes=(32,), max_iter=3, random_state=0, n_threads=n
        ).fit(X)
        for n in (1, 2)
    ]
    np.testing.assert_allclose(fits[0].transform(X), fits[1].transform(X), rtol=1e-4, atol=1e-5)
