"""Outputs: files written atomically, markdown tables, and a Report rewritten after every row."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .machine import describe_load


def atomic_save(path: Path, save) -> None:
    """Call save(tmp_path), then move the file into place, so readers never see a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target so os.replace is a rename, atomic on POSIX.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save(tmp_name)
        # mkstemp creates the file private (0600); give it the permissions open() would.
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp_name, 0o666 & ~mask)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_save(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, payload: dict) -> None:
    write_text(path, json.dumps(_json_safe(payload), indent=2, default=str) + "\n")


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_save(path, lambda tmp: frame.to_csv(tmp, index=False))


def _json_safe(value):
    # JSON has no NaN; a missing measurement (e.g. PCA's epochs) becomes null.
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def markdown_table(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """A GitHub markdown table; tabulate (which pandas' to_markdown needs) is not a dependency.

    formats maps a column to a format spec such as ".3f"; other floats use ".4g".
    """
    formats = formats or {}

    def cell(column, value):
        if pd.isna(value):
            return ""
        if column in formats:
            return format(value, formats[column])
        if isinstance(value, float | np.floating):
            return format(value, ".4g")
        return str(value)

    header = [str(c) for c in frame.columns]
    body = [
        [cell(c, v) for c, v in zip(frame.columns, row, strict=True)]
        for row in frame.itertuples(index=False)
    ]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]

    def line(cells):
        padded = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    return "\n".join([line(header), "| " + " | ".join(rule) + " |", *map(line, body)])


def tidy_frame(rows: list[dict], first=()) -> pd.DataFrame:
    """Rows as a frame: the ``first`` columns first; whole numbers with gaps (PCA has no epochs)
    as nullable integers, all-missing columns as floats; list-valued columns left out (they
    stay in the JSON)."""
    frame = pd.DataFrame(rows)
    frame = frame[[*(c for c in first if c in frame), *(c for c in frame if c not in first)]]
    for column in list(frame):
        values = [row[column] for row in rows if row.get(column) is not None]
        if not values:
            frame[column] = frame[column].astype(float)
        elif any(isinstance(v, list) for v in values):
            frame = frame.drop(columns=column)
        elif all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
            frame[column] = frame[column].astype("Int64")
    return frame


class Report:
    """A benchmark's results, written whole after every row, so a killed run keeps every row
    it finished: ``{stem}.csv``, ``{stem}.json`` and ``{stem}.md`` in ``folder``, each replaced
    atomically.

    title       the markdown's heading
    meta        put in the JSON before the rows (command, machine, settings, ...); a
                ``meta["machine"]`` from machine_info gets its load brought up to date at
                every write, and the markdown says how busy the machine was
    notes       paragraphs after the table: a list, or a function returning one (it is called
                at every write, so it can say what has run so far)
    columns     the columns to put first
    table       frame -> the frame shown in the markdown (default: all of it)
    formats     format specs of the markdown's columns (see markdown_table)
    summarise   frame -> summary frame (e.g. means over seeds): when given, ``{stem}.csv`` and
                the markdown hold the summary, ``{stem}_runs.csv`` the rows
    expected    how many rows a complete run has: until finish(), the markdown and the JSON
                say how many of them are done
    rows_key, summary_key   the JSON's keys for the rows and the summary
    """

    def __init__(
        self, folder, stem, *, title, meta=None, notes=(), columns=(), table=None, formats=None,
        summarise=None, expected=None, rows_key="results", summary_key="summary",
    ):  # fmt: skip
        self.folder, self.stem, self.title = Path(folder), stem, title
        self.meta, self.notes, self.columns = dict(meta or {}), notes, columns
        self.table, self.formats, self.summarise = table, formats or {}, summarise
        self.expected, self.rows_key, self.summary_key = expected, rows_key, summary_key
        self.rows, self.complete = [], False

    @property
    def paths(self) -> list[Path]:
        extra = [f"{self.stem}_runs.csv"] if self.summarise else []
        names = [f"{self.stem}.{ext}" for ext in ("csv", "json", "md")] + extra
        return [self.folder / name for name in names]

    @property
    def frame(self) -> pd.DataFrame:
        return tidy_frame(self.rows, self.columns)

    def summary(self) -> pd.DataFrame:
        return self.summarise(self.frame) if self.summarise else self.frame

    def add(self, row: dict) -> None:
        """Record a finished run and rewrite every output."""
        self.rows.append(row)
        self.write()

    def markdown(self) -> str:
        shown = self.summary()
        shown = self.table(shown) if self.table else shown
        status = []
        if not self.complete:
            of = f" of {self.expected}" if self.expected else ""
            status = [
                f"**Incomplete run: {len(self.rows)}{of} runs finished.** The files are "
                "rewritten after each run; this one was stopped or is still going."
            ]
        machine = self.meta.get("machine")
        if isinstance(machine, dict) and "load" in machine:
            load = describe_load(machine)  # also brings the JSON's reading up to date
            status.append(f"**{load}.**" if machine["load"]["busy"] else f"{load}.")
        notes = self.notes() if callable(self.notes) else self.notes
        return "\n\n".join(
            [f"## {self.title}", *status, markdown_table(shown, self.formats), *notes]
        )

    def write(self) -> str:
        text = self.markdown()
        csv_path, json_path, md_path, *runs_path = self.paths
        payload = {**self.meta, "complete": self.complete, "rows_done": len(self.rows)}
        if self.expected:
            payload["rows_expected"] = self.expected
        if self.summarise:
            summary = self.summary()
            write_csv(csv_path, summary)
            write_csv(runs_path[0], self.frame)
            payload[self.summary_key] = summary.to_dict(orient="records")
        else:
            write_csv(csv_path, self.frame)
        payload[self.rows_key] = self.rows
        write_json(json_path, payload)
        write_text(md_path, text + "\n")
        return text

    def finish(self) -> str:
        """Mark the run complete, write the outputs and print the markdown."""
        self.complete = True
        text = self.write()
        print(text)
        return text

    @contextlib.contextmanager
    def stopping_on_interrupt(self):
        """On Ctrl-C, say what was kept and exit with status 130 (as the shell does)."""
        try:
            yield
        except KeyboardInterrupt:
            kept = ", ".join(str(p) for p in self.paths) if self.rows else "nothing yet"
            print(
                f"\nInterrupted after {len(self.rows)} finished runs; kept: {kept}",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(130) from None
