"""Every python block of README.md runs on its own, as a reader saving it to a file would.

Each ```python block is written to a fresh folder as a script and run in a new process, alone:
it must bring its own imports and data (a block that leans on a name from another one fails
here). Warnings are errors, except deprecation notices from other libraries. A block whose
first line names a script (``# train_ddp.py: run with torchrun ...``) is saved under that name
and run the way its comment says.
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


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_the_blocks_this_test_runs():
    blocks = python_blocks()
    assert len(blocks) >= 6
    assert any(SCRIPT.match(block) for block in blocks)


@pytest.mark.parametrize("number", range(len(python_blocks())))
def test_each_python_block_runs_alone(tmp_path, number):
    block = python_blocks()[number]
    if "dask" in block:
        pytest.importorskip("distributed")  # the Dask recipe needs the dask extra
    if "skae.onnx" in block:
        pytest.importorskip("onnxruntime")  # the deployment recipe needs the onnx extra
    script = SCRIPT.match(block)
    name = script.group(1) if script else f"block_{number + 1}.py"
    (tmp_path / name).write_text(block, encoding="utf-8")
    env = {**os.environ, "PYTHONWARNINGS": ",".join(WARNINGS)}
    if script:
        arguments = script.group(2).split()[1:]  # torchrun's own arguments, then the script
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", *arguments]
        env["OMP_NUM_THREADS"] = "1"
    else:
        command = [sys.executable, name]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert done.returncode == 0, (
        f"README python block {number + 1} failed when run alone:\n{block}\n"
        f"--- stderr ---\n{done.stderr[-3000:]}"
    )
