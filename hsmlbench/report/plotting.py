"""Drawing helpers shared by the regression and image figures."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from hsmlbench.atomic import write_bytes


def save_png(fig, path: Path, dpi: int = 130) -> Path:
    """``fig`` written atomically as a PNG (a reader never sees half a figure)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    write_bytes(path, buffer.getvalue())
    return path


def assignment_heatmap(fig, ax, matrix: np.ndarray, row_labels: list[str], title: str) -> None:
    """Mean soft assignment (rows: task families or datasets; columns: clusters), annotated."""
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            f"{value:.2f}",
            ha="center",
            va="center",
            color="white" if value < 0.6 else "black",
            fontsize=9,
        )
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xticks(range(matrix.shape[1]), [f"cluster {k + 1}" for k in range(matrix.shape[1])])
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)


def save_png_and_pdf(fig, path: Path, dpi: int = 130) -> list[Path]:
    """``fig`` as ``path`` (PNG, for the pages) and the same name with ``.pdf`` (vector, for a
    paper), both written atomically. The PDF carries no creation date, so re-rendering the same
    data writes the same bytes."""
    save_png(fig, path, dpi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    pdf = path.with_suffix(".pdf")
    write_bytes(pdf, buffer.getvalue())
    return [path, pdf]
