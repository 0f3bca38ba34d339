"""The README's code runs as written, in order, and raises no warning.

Every ```python block of README.md runs in one namespace, top to bottom, as a reader pasting
them would, in a fresh folder. A block whose first line names a script (``# train_ddp.py: run
with torchrun ...``) is saved under that name and run the way its comment says.
"""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SCRIPT = re.compile(r"# (\w+\.py): run with +(torchrun [^\n]*)")


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_the_blocks_this_test_runs():
    blocks = python_blocks()
    assert len(blocks) >= 4
    assert any(SCRIPT.match(block) for block in blocks)


def test_every_python_block_runs_without_warnings(tmp_path, monkeypatch):
    pytest.importorskip("distributed")  # the Dask recipes need the dask extra
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    for number, block in enumerate(python_blocks(), start=1):
        script = SCRIPT.match(block)
        if script:
            run_script(tmp_path, script.group(1), script.group(2), block)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # Third-party notices that are not the README's doing.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="(?!skae)")
            warnings.filterwarnings("ignore", message=".*Port 8787 is already in use")
            try:
                exec(compile(block, f"README.md python block {number}", "exec"), namespace)
            except Exception as error:
                raise AssertionError(f"README python block {number} failed:\n{block}") from error


def run_script(folder, name, command, block):
    (folder / name).write_text(block, encoding="utf-8")
    arguments = command.split()[1:]  # torchrun's own arguments, then the script
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "error::UserWarning"}
    done = subprocess.run(launch, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert done.returncode == 0, f"{command} failed:\n{done.stderr[-3000:]}"
