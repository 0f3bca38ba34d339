"""Every python block of README.md runs on its own, as a reader saving it to a file would.

Each ```python block is written to a fresh folder as a script and run in a new process, alone:
it must bring its own imports and data (a block that leans on a name from another one fails
here). Warnings are errors, except deprecation notices from other libraries, and so are
warnings logged on stderr (Dask's ``distributed.nanny - WARNING - ...``), which are no Python
warnings. A block whose first line names a script (``# train_ddp.py: run with torchrun ...``)
is saved under that name and run the way its comment says. Each block says on the terminal
when it starts, as it may run for a minute with nothing else to show.

What a block prints is quoted in the ```text block that follows it, and checked here, so the
quotes cannot go stale: the words exactly, integers exactly, and decimals within 2% (training
on another CPU rounds differently, which moves the last digits: digits' quickstart accuracy
was 0.956 on an Intel Xeon, 0.953 and 0.960 on other machines).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SCRIPT = re.compile(r"# (\w+\.py): run with +(torchrun [^\n]*)")
# Warnings are errors; other libraries' deprecation notices, and distributed's note that its
# dashboard port is taken (by another test's cluster), are not the README's doing.
WARNINGS = [
    "error",
    "ignore::DeprecationWarning",
    "error::DeprecationWarning:skae",
    "ignore:Port 8787 is already in use",
]


# A line that a logging handler writes for a warning or worse, as Python's and Dask's formats
# put it: "WARNING:name:..." or "2026-12-07 01:40:44,884 - distributed.nanny - WARNING - ...".
LOGGED_WARNING = re.compile(r"(?:.* - )?(WARNING|ERROR|CRITICAL)(?: - |:)")


# Decimals of a quoted output may differ from what a block prints by this share.
RELATIVE_TOLERANCE = 0.02
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def quoted_outputs():
    """For each python block, the ```text block that quotes its output before the next python
    block, or None when it has none."""
    between = re.split(r"```python\n.*?```", README.read_text(encoding="utf-8"), flags=re.S)
    quotes = [re.search(r"```text\n(.*?)```", text, re.S) for text in between[1:]]
    return [quote.group(1) if quote else None for quote in quotes]


def output_differences(printed, quoted):
    """How ``printed`` differs from the ``quoted`` output (whitespace aside): words that differ,
    integers that differ, decimals off by more than RELATIVE_TOLERANCE. Empty if it matches."""
    printed, quoted = (" ".join(text.split()) for text in (printed, quoted))
    if NUMBER.sub("#", printed) != NUMBER.sub("#", quoted):
        return [f"printed {printed!r}, quoted {quoted!r}"]
    differences = []
    for got, want in zip(NUMBER.findall(printed), NUMBER.findall(quoted), strict=True):
        if any(mark in want for mark in ".e"):
            close = abs(float(got) - float(want)) <= RELATIVE_TOLERANCE * abs(float(want))
        else:
            close = got == want
        if not close:
            differences.append(f"printed {got}, quoted {want}")
    return differences


def where(number):
    """Block ``number`` as a reader finds it: its line in README.md and its section."""
    text = README.read_text(encoding="utf-8")
    start = [m.start() for m in re.finditer(r"```python\n", text)][number]
    heading = re.findall(r"^## (.*)$", text[:start], re.M)
    line = text.count("\n", 0, start) + 2  # the block's first line of code
    return f"README.md line {line}" + (f", {heading[-1]}" if heading else "")


def mnist_is_here():
    """Whether MNIST can be read where the loader looks, without a download."""
    from skae.datasets import DatasetUnavailableError, load_mnist

    try:
        load_mnist(subset="test", download=False)
        load_mnist(subset="train", download=False)
    except DatasetUnavailableError:
        return False
    return True


@pytest.fixture
def announce(request):
    """Start a line on the terminal now, past pytest's capture; the test's result ends it."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def write(message):
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.write(f"\n{message} ", flush=True)

    return write


def test_the_readme_has_the_blocks_this_test_runs():
    blocks = python_blocks()
    assert len(blocks) >= 6
    assert any(SCRIPT.match(block) for block in blocks)


def test_quoted_outputs_are_compared_as_documented():
    assert output_differences("test accuracy: 0.953\n", "test accuracy: 0.960") == []
    assert output_differences("test accuracy: 0.900", "test accuracy: 0.960")
    assert output_differences("flagged 19 rows, 5 of them", "flagged 19 rows, 6 of them")
    assert output_differences("[0.0247 0.0154 0.002 ]", "[0.0247 0.0152  0.002 ]") == []
    assert output_differences("AUROC 0.95", "AUROC: 0.95")  # the words too
    # Every block that prints has its quote.
    quotes = quoted_outputs()
    for block, quote in zip(python_blocks(), quotes, strict=True):
        assert ("print(" in block) == (quote is not None), block


def test_logged_warnings_are_recognised():
    nanny = "2026-12-07 01:40:44,884 - distributed.nanny - WARNING - Worker process still alive"
    assert LOGGED_WARNING.match(nanny) and LOGGED_WARNING.match("WARNING:root:something")
    info = "2026-12-07 01:40:44,884 - distributed.scheduler - INFO - Receive client connection"
    assert not LOGGED_WARNING.match(info)
    assert not LOGGED_WARNING.match("fit: 100%|##########| 5/5 [00:01<00:00, loss=0.02]")


@pytest.mark.parametrize("number", range(len(python_blocks())))
def test_each_python_block_runs_alone(tmp_path, number, announce):
    blocks = python_blocks()
    block = blocks[number]
    if "dask" in block:
        pytest.importorskip("distributed")  # the Dask recipe needs the dask extra
    if "skae.onnx" in block:
        pytest.importorskip("onnxruntime")  # the deployment recipe needs the onnx extra
    if "load_mnist" in block and not mnist_is_here():
        pytest.skip("MNIST is not in $SKAE_DATA/mnist/ or ~/scikit_learn_data/mnist/, and the "
                    "block would download it (11 MB)")  # fmt: skip
    script = SCRIPT.match(block)
    name = script.group(1) if script else f"block_{number + 1}.py"
    (tmp_path / name).write_text(block, encoding="utf-8")
    env = {**os.environ, "PYTHONWARNINGS": ",".join(WARNINGS)}
    if "SKAE_DATA" in env:  # the block runs in a folder of its own
        env["SKAE_DATA"] = os.path.abspath(env["SKAE_DATA"])
    if script:
        arguments = script.group(2).split()[1:]  # torchrun's own arguments, then the script
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", *arguments]
        env["OMP_NUM_THREADS"] = "1"
    else:
        command = [sys.executable, name]
    announce(f"  README block {number + 1} of {len(blocks)} ({where(number)}), run alone:")
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert done.returncode == 0, (
        f"README python block {number + 1} failed when run alone:\n{block}\n"
        f"--- stderr ---\n{done.stderr[-3000:]}"
    )
    logged = [line for line in done.stderr.splitlines() if LOGGED_WARNING.match(line)]
    assert not logged, (
        f"README python block {number + 1} ran, but logged warnings on stderr:\n"
        + "\n".join(logged)
    )
    quote = quoted_outputs()[number]
    if quote is not None:
        differences = output_differences(done.stdout, quote)
        assert not differences, (
            f"README python block {number + 1} ({where(number)}) no longer prints what the "
            f"README quotes: {'; '.join(differences)}. Measure again and update the quote."
        )
