"""One look for every benchmark figure: honest axes, a fixed colour per method, the run's
settings in small print, files written atomically.

The plotting functions take a results frame with a "method" column and draw each method in
``colors[method]`` (a dict whose order is the order drawn), so a method keeps its colour in
every figure whichever methods a run includes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from .report import atomic_save


def method_colors(methods) -> dict:
    return {method: f"C{i}" for i, method in enumerate(methods)}


def new_figure(n_panels: int = 1, *, panel_width: float = 4.6, height: float = 3.9, sharey=True):
    """A row of n_panels axes, laid out by matplotlib (room for titles, caption, legend)."""
    import matplotlib

    matplotlib.use("Agg")  # the figures go to files; no display is needed or wanted
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, n_panels, figsize=(panel_width * n_panels + 1.6, height), squeeze=False,
        sharey=sharey, layout="constrained",
    )  # fmt: skip
    return fig, list(axes[0])


def _whiskers(rows, y, low, high):
    if low is None:
        return None
    values = rows[y].to_numpy(float)
    # The mean of equal values (seeds that all kept the same PCA start) can round past their
    # min or max by an ulp; matplotlib refuses a negative whisker. (NaN stays NaN: no whisker.)
    below = np.maximum(values - rows[low].to_numpy(float), 0.0)
    above = np.maximum(rows[high].to_numpy(float) - values, 0.0)
    return [below, above]


def grouped_bars(ax, frame, x, y, colors, *, low=None, high=None, fmt=None, x_label=None):
    """Bars of ``y`` per method, grouped by the values of column ``x``; whiskers from the
    ``low`` and ``high`` columns where given; each bar labelled fmt(value) when fmt is given.

    With a single group the methods' names are the tick labels.
    """
    methods = [m for m in colors if m in set(frame["method"])]
    groups = list(dict.fromkeys(frame[x]))
    if not methods:
        return
    width = 0.8 / len(methods) if len(groups) > 1 else 0.6
    for m, method in enumerate(methods):
        rows = frame[frame["method"] == method].set_index(x).reindex(groups)
        if len(groups) > 1:
            positions = np.arange(len(groups)) + (m - (len(methods) - 1) / 2) * width
        else:
            positions = np.array([m])
        values = rows[y].to_numpy(float)
        ax.bar(
            positions, values, width, color=colors[method], label=method,
            yerr=_whiskers(rows, y, low, high), capsize=3, ecolor="0.2",
            error_kw={"linewidth": 1},
        )  # fmt: skip
        if fmt is not None:
            # Beyond the whisker's end, below a bar that goes down, where nothing covers it.
            ends = values
            if high is not None:
                ends = np.where(
                    values < 0,
                    np.fmin(values, rows[low].to_numpy(float)),
                    np.fmax(values, rows[high].to_numpy(float)),
                )
            for xi, value, end in zip(positions, values, ends, strict=True):
                if np.isfinite(value):
                    ax.annotate(
                        fmt(value), (xi, end), xytext=(0, 3 if value >= 0 else -3),
                        textcoords="offset points", ha="center", fontsize=8,
                        va="bottom" if value >= 0 else "top",
                    )  # fmt: skip
    if len(groups) > 1:
        ax.set_xticks(np.arange(len(groups)), [str(g) for g in groups])
        ax.set_xlabel(x_label or x)
    else:
        # Slanted when long names such as "contractive" would overlap.
        slant = {"rotation": 30, "ha": "right", "rotation_mode": "anchor"}
        ax.set_xticks(np.arange(len(methods)), methods, **(slant if len(methods) > 4 else {}))
        ax.set_xlabel(f"method ({x_label or x}={groups[0]})")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def lines_by_size(ax, frame, y, colors, *, x="n_components", low=None, high=None):
    """One line per method against ``x`` on a log2 axis, whiskers from ``low``/``high``. The
    methods are dodged sideways a little, so that equal values do not hide one another."""
    from matplotlib.ticker import NullLocator

    sizes = sorted(frame[x].unique())
    methods = [m for m in colors if m in set(frame["method"])]
    for m, method in enumerate(methods):
        rows = frame[frame["method"] == method].sort_values(x)
        dodge = 2 ** (0.05 * (m - (len(methods) - 1) / 2))
        ax.errorbar(
            rows[x] * dodge, rows[y], yerr=_whiskers(rows, y, low, high), marker="o",
            capsize=3, color=colors[method], label=method, markersize=5,
        )  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(k) for k in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(f"{x} (code size)")
    ax.grid(alpha=0.3)


def plot_by_size(ax, frame, y, colors, *, fmt=None, low=None, high=None) -> str:
    """Bars per method when the frame has one n_components, else one line per method.

    A line through a single point says nothing, and a line between methods would suggest an
    order that does not exist; lines are kept for trends over several code sizes. Returns
    "bars" or "lines".
    """
    if frame["n_components"].nunique() == 1:
        grouped_bars(ax, frame, "n_components", y, colors, low=low, high=high, fmt=fmt)
        return "bars"
    lines_by_size(ax, frame, y, colors, low=low, high=high)
    return "lines"


def difference_from(frame, y, reference, *, by="n_components", scale=1.0):
    """``frame`` without the reference method's rows, ``y`` replaced by its difference from the
    reference's at the same ``by`` (times ``scale``); and the reference's values by ``by``."""
    ref = frame[frame["method"] == reference].set_index(by)[y]
    others = frame[frame["method"] != reference].copy()
    others[y] = (others[y] - others[by].map(ref)) * scale
    return others, ref.to_dict()


def start_at_zero(ax, top: float | None = None, *, headroom: float = 0.0) -> None:
    """Start the y axis at 0, so that heights compare as ratios; headroom fits bar labels."""
    top = ax.get_ylim()[1] if top is None else top
    ax.set_ylim(0, top * (1 + headroom))


def around_zero(ax, values, *, headroom: float = 0.15) -> None:
    """y limits that hold 0 (the reference) and every value, with room for bar labels."""
    values = np.asarray([v for v in values if np.isfinite(v)] + [0.0])
    low, high = values.min(), values.max()
    pad = headroom * (high - low) if high > low else 1.0
    ax.set_ylim(low - pad * (low < 0), high + pad)


def mark_level(ax, y: float, label: str) -> None:
    """A dotted reference line (e.g. chance), labelled outside the axes, where nothing hides it."""
    ax.axhline(y, color="0.3", linestyle=":", linewidth=1.2)
    ax.text(
        1.01, y, label, transform=ax.get_yaxis_transform(), ha="left", va="center",
        fontsize=8, color="0.25", clip_on=False,
    )  # fmt: skip


def title_and_caption(fig, title: str, caption: str) -> None:
    """The title on top; the settings (data size, epochs, machine) in small print below."""
    fig.suptitle(title, fontsize=12)
    lines = [textwrap.fill(line, 120) for line in caption.splitlines()]
    fig.supxlabel("\n".join(lines), fontsize=8.5, color="0.3")


def legend_outside(fig, ax) -> None:
    """The legend beside the panels, where it cannot hide a line."""
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=9)


def seconds(value: float) -> str:
    """A duration label with as many digits as it needs: 0.48 s, 4.8 s, 48 s."""
    if value < 0.01:
        return "<0.01 s"
    return f"{value:.2f} s" if value < 1 else f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    # The temporary name has no .png suffix, so the format is given explicitly.
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


# -- whole figures -----------------------------------------------------------------------------


def per_method(frame, column: str) -> str:
    """A whole-number column per method, e.g. epochs "ae 24, vae 20-24"; empty for none."""
    parts = []
    for method, values in frame.dropna(subset=[column]).groupby("method", sort=False)[column]:
        low, high = int(values.min()), int(values.max())
        parts.append(f"{method} {low}" if low == high else f"{method} {low}-{high}")
    return ", ".join(parts)


def caption(frame, data: str, machine: dict) -> str:
    """The small print under a figure: the data (e.g. "1,347 training / 450 test images"), the
    epochs and torch threads each method's fits used, the CPU or GPU, the date, and how busy the
    machine was over the run."""
    from .machine import machine_caption

    epochs = per_method(frame, "epochs") if "epochs" in frame else ""
    epochs = f"; epochs (n_iter_): {epochs}" if epochs else ""
    # The threads the fits say they used; a fit that does not say is not guessed at.
    threads = per_method(frame, "fit_threads") if "fit_threads" in frame else ""
    threads = f"; torch threads per fit: {threads or 'unknown'}" if "fit_threads" in frame else ""
    return f"{data}{epochs}{threads}\n{machine_caption(machine)}"


def by_size_figure(frame, y, colors, *, title, caption, ylabel, fmt=None, low=None, high=None):
    """One panel of ``y`` by method and n_components (see plot_by_size), from 0."""
    fig, (ax,) = new_figure()
    kind = plot_by_size(ax, frame, y, colors, fmt=fmt, low=low, high=high)
    start_at_zero(ax, frame[high or y].max(), headroom=0.12)
    ax.set_ylabel(ylabel)
    if kind == "lines":
        legend_outside(fig, ax)
    title_and_caption(fig, title, caption)
    return fig


def fit_time_figure(frame, colors, *, title, caption, repeats=None):
    """Fit times (the columns of fitting.Fit.columns()) with the machine's noise as whiskers;
    ``repeats``: how many fits the estimators without epochs had."""
    one = frame["n_components"].nunique() == 1
    what = "Bars" if one else "Points"
    without = f" (PCA: the fastest and slowest of {repeats} fits, the {what.lower()} their median)"
    note = (
        f"{what}: the fit's wall time. Whiskers: the machine's noise, as the time the fit would "
        "have taken at the pace of its 10th and 90th percentile epochs"
        f"{without if repeats else ''}."
    )
    return by_size_figure(
        frame, "fit_time_s", colors, title=title, caption=f"{note}\n{caption}",
        ylabel="fit time (s, wall clock)", fmt=seconds, low="fit_time_low_s",
        high="fit_time_high_s",
    )  # fmt: skip


def versus_reference_figure(
    frame, panels, reference, colors, *, measure, unit, title, caption, scale=1.0,
    higher_is_better=True, reference_format="{:.3g}".format, label_format="{:+.2f}".format,
    noise=None, noise_note="",
):  # fmt: skip
    """One panel per column in ``panels`` (column -> panel title): each method's ``measure``
    minus the reference method's at the same n_components, times ``scale`` (e.g. 100: accuracy
    in percentage points). The reference is the dotted 0 line, its own values (formatted by
    ``reference_format``) in the panel title (one code size) or under each tick (several).
    Differences of a point, invisible on a whole 0-100% axis, read at a glance; bars start at
    the reference, so their lengths stay honest.

    ``noise(reference_value)``, when given, is the half-width (in plotted units) of a grey band
    around 0 whose meaning ``noise_note`` tells: differences inside it are noise, and the axis
    always holds it, so that a difference of a few test rows never fills a panel.
    """
    fig, axes = new_figure(len(panels), sharey=False, height=4.6)
    for ax, (column, name) in zip(axes, panels.items(), strict=True):
        diff, ref = difference_from(frame, column, reference, scale=scale)
        sizes = sorted(ref)
        kind = plot_by_size(ax, diff, column, colors, fmt=label_format)
        widths = [noise(ref[k]) for k in sizes] if noise else [0.0]
        if noise and kind == "lines":
            ax.fill_between(sizes, [-w for w in widths], widths, color="0.88", zorder=0, lw=0)
        elif noise:
            ax.axhspan(-widths[0], widths[0], color="0.88", zorder=0, lw=0)
        around_zero(ax, [*diff[column], *widths, *(-w for w in widths)])
        mark_level(ax, 0, reference)
        if kind == "lines":
            ticks = [f"{k}\n{reference} {reference_format(ref[k])}" for k in sizes]
            ax.set_xticks(sizes, ticks)
            ax.set_title(name, fontsize=10)
        else:
            ax.set_title(f"{name}\n{reference}: {reference_format(ref[sizes[0]])}", fontsize=10)
    better = "above" if higher_is_better else "below"
    axes[0].set_ylabel(f"{measure} minus {reference}'s\n({unit}; {better} 0: better)")
    if kind == "lines":
        legend_outside(fig, axes[0])
    where = "tick labels" if kind == "lines" else "panel title"
    note = f"Dotted line: {reference} at the same code size (its own value in the {where})."
    title_and_caption(fig, title, f"{note} {noise_note}".strip() + f"\n{caption}")
    return fig
