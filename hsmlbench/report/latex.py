"""LaTeX for tables a paper can paste: text escaped to plain ASCII that pdflatex sets with
booktabs alone, booktabs tabulars, and wide tables split into column groups that each fit a
two-column paper's ``table*`` (ICML's text width, 6.75 in). Nothing here computes a statistic.
"""

from __future__ import annotations

import re
import unicodedata

# ICML's \textwidth: 6.75 in = 487.8 pt, the narrowest of the usual two-column papers (CVPR
# 496.9 pt, IEEE 516 pt). Every table* here is made to fit it; tests/test_latex.py compiles
# each generated file at this width and fails on an overfull box wider than its tolerance.
TEXT_WIDTH_PT = 487.8
# What the generated files need in a paper's preamble, named in each file's first lines.
PACKAGES = ("booktabs",)
HEADER = (
    "% Needs \\usepackage{booktabs} only; plain ASCII (no inputenc or fonts needed).\n"
    "% Each table* fits a two-column paper's text width (ICML: 6.75in = 487.8pt)."
)

_SPECIAL = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
    "<": "$<$",
    ">": "$>$",
    "|": "$|$",
}
# Unicode the tables and captions use, as commands of LaTeX's default fonts (no textcomp
# glyph: without cm-super those come out as bitmap fonts).
_UNICODE = {
    "±": "$\\pm$",
    "−": "$-$",
    "×": "$\\times$",
    "·": "$\\cdot$",
    "√": "$\\surd$",
    "≤": "$\\leq$",
    "≥": "$\\geq$",
    "≈": "$\\approx$",
    "→": "$\\rightarrow$",
    "↑": "$\\uparrow$",
    "↓": "$\\downarrow$",
    "†": "$^{\\dagger}$",
    "‡": "$^{\\ddagger}$",
    "½": "$\\frac{1}{2}$",
    "—": "---",
    "–": "--",
    "’": "'",
    "‘": "`",
    "“": "``",
    "”": "''",
    "…": "\\dots{}",
    "§": "\\S{}",
    "ρ": "$\\rho$",
    "σ": "$\\sigma$",
    "α": "$\\alpha$",
    "β": "$\\beta$",
    "γ": "$\\gamma$",
    "ξ": "$\\xi$",
    "θ": "$\\theta$",
    "μ": "$\\mu$",
    "\u00a0": "~",
}
# a minus sign before a number (not a hyphen inside a word such as 5-shot or 1e-300)
_MINUS = re.compile(r"(?<![\w.])-(?=\d)")


def escape(text: str) -> str:
    """``text`` as LaTeX in plain ASCII: specials escaped, known Unicode as LaTeX commands, a
    leading minus of a number as math minus, anything else reduced to ASCII (accents dropped)
    or '?'. Never nests math mode."""
    out = []
    for char in _MINUS.sub("\u2212", str(text)):
        if char in _SPECIAL:
            out.append(_SPECIAL[char])
        elif char in _UNICODE:
            out.append(_UNICODE[char])
        elif ord(char) < 128:
            out.append(char)
        else:
            plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
            out.append(escape(plain) if plain else "?")
    return _JOINED_MATH.sub("", "".join(out))


# "$\\cdot$$\\surd$" → "$\\cdot\\surd$": one math group instead of two touching ones
_JOINED_MATH = re.compile(r"(?<!\\)\$\$")


def stacked(text: str, width: int = 14) -> str:
    """``text`` escaped, in lines of about ``width`` characters stacked in one cell (a nested
    tabular: no package needed), for a column heading longer than its numbers."""
    lines: list[str] = []
    for word in str(text).split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) <= 1:
        return escape(text)
    return "\\begin{tabular}[b]{@{}c@{}}" + "\\\\".join(map(escape, lines)) + "\\end{tabular}"


def ragged(text: str) -> str:
    """``text`` escaped for a p{} column, set ragged-right (grouped, with its own \\par, so that
    the row's \\\\ keeps its tabular meaning)."""
    return "{\\raggedright " + escape(text) + "\\par}"


def tabular(
    headers: list[str] | None,
    rows: list[list[str]],
    align: str,
    *,
    header_rows: list[str] | None = None,
    rules_after: set[int] | None = None,
) -> str:
    """A booktabs tabular of already-escaped cells. ``header_rows``: raw LaTeX lines above
    ``headers`` (e.g. grouped headings with \\cmidrule); ``rules_after``: row indices followed
    by a \\midrule."""
    lines = [f"\\begin{{tabular}}{{{align}}}", "\\toprule"]
    lines += header_rows or []
    if headers:
        lines += [" & ".join(headers) + " \\\\", "\\midrule"]
    for i, row in enumerate(rows):
        # a cell that starts with '[' right after \\ would be read as \\[length]
        cells = ["{}" + c if c.startswith("[") else c for c in row]
        lines.append(" & ".join(cells) + " \\\\")
        if rules_after and i in rules_after and i != len(rows) - 1:
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines)


# Estimated widths at \footnotesize (8 pt Computer Modern), generous so that an estimate that
# fits really fits; the compile test measures the truth.
_NARROW = set(" .,;:!|'()[]ijlft1-")
_WIDE = set("MWmw@%")


def text_width_pt(text: str, size_pt: float = 8.0) -> float:
    """Rough width of plain ``text`` set at ``size_pt``."""
    units = 0.0
    for char in str(text):
        if char in _NARROW:
            units += 0.33
        elif char in _WIDE or char.isupper():
            units += 0.78
        else:
            units += 0.55
    return units * size_pt


def split_columns(
    headers: list[str],
    rows: list[list[str]],
    keep: int,
    width_pt: float = TEXT_WIDTH_PT,
    colsep_pt: float = 8.0,
    size_pt: float = 8.0,
    fixed_pt: dict[int, float] | None = None,
) -> list[list[int]]:
    """Groups of column indices, each starting with the first ``keep`` columns (what names a
    row), in the table's column order: as few groups as fit ``width_pt`` by estimate, as even
    in width as that allows. ``fixed_pt``: the width of columns set in a p{} column."""
    widths = [
        colsep_pt
        + (fixed_pt or {}).get(j, max(text_width_pt(t[j], size_pt) for t in [headers, *rows]))
        for j in range(len(headers))
    ]
    base = sum(widths[:keep])

    def pack(limit: float) -> list[list[int]]:
        groups, current, used = [], [], base
        for j in range(keep, len(headers)):
            if current and used + widths[j] > limit:
                groups.append(current)
                current, used = [], base
            current.append(j)
            used += widths[j]
        return groups + [current]

    fewest = len(pack(width_pt))
    low, high = base + max(widths[keep:], default=0.0), width_pt
    while high - low > 1.0:  # the narrowest limit that needs no more groups than width_pt
        middle = (low + high) / 2
        low, high = (low, middle) if len(pack(middle)) <= fewest else (middle, high)
    return [list(range(keep)) + group for group in pack(high)]


def table_float(caption: str, body: str, label: str | None = None, size: str = "small") -> str:
    """A ``table*`` (both columns of a two-column paper) around ``body``; ``caption`` escaped
    already."""
    lines = [
        "\\begin{table*}[t]",
        "\\centering",
        f"\\{size}",
        f"\\caption{{{caption}}}",
    ]
    if label:
        lines.append(f"\\label{{{label}}}")
    lines += [body, "\\end{table*}"]
    return "\n".join(lines)
