"""A cleaning project's progress as a figure: labels changed and samples settled against the
expert answers spent (``alcbench clean status DIR --plot FILE``)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from benchmark.clean.project import Project
from benchmark.results.plots import save_figure


def plot_progress(project: Project, path: Path) -> Path:
    """Writes the figure as ``path`` (PNG, with SVG and PDF beside it); returns ``path``."""
    history = project.history()
    status = project.status()
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.add_subplot()
    x = [0, *history["spent"].tolist()]
    ax.step(x, [0, *history["settled"].tolist()], where="post", label="samples settled", color="#4c72b0")
    ax.step(x, [0, *history["changed"].tolist()], where="post", label="labels changed", color="#dd8452")
    if status.budget is not None:
        ax.axvline(status.budget, color="0.4", linestyle="--", linewidth=1, label=f"budget ({status.budget})")
    ax.set_xlabel("expert answers")
    ax.set_ylabel("samples")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", frameon=False)
    ax.set_title(
        f"{project.folder.name}: {status.strategy}, {status.samples} samples; "
        f"about {status.estimated_mislabelled_left} mislabelled left",
        fontsize=9,
    )
    return save_figure(fig, Path(path))
