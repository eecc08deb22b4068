"""The paper's published numbers of section 5 (Tables 4-5: Caltech-101 and Caltech-256), shown
beside ours and labelled as the paper's, and :func:`summary_rows`, which lays both out as one
long table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .results import TransferResult

__all__ = ["PAPER_TABLES", "APPROACHES", "summary_rows"]


#: Tables 4 and 5 of the paper: accuracy (%) as (mean, std or None) per training images per class.
PAPER_TABLES: dict[str, dict] = {
    "caltech101": {
        "table": "Table 4",
        "title": "Caltech-101",
        "ns": (15, 30),
        "scratch": ((22.8, 1.5), (46.5, 1.7)),
        "pretrained": ((83.8, 0.5), (86.5, 0.5)),
    },
    "caltech256": {
        "table": "Table 5",
        "title": "Caltech-256",
        "ns": (15, 30, 45, 60),
        "scratch": ((9.0, None), (22.5, None), (31.2, None), (38.8, None)),
        "pretrained": ((65.7, None), (70.6, None), (72.7, None), (74.2, None)),
    },
}

APPROACHES = {
    "scratch": "non-pretrained (from scratch)",
    "pretrained": "pretrained, layers 1-7 frozen + new softmax",
    "fine_tuned": "pretrained, fine-tuned",
}


def summary_rows(results: Sequence["TransferResult"], paper: dict | None = None) -> list[dict]:
    """Tables 4-5 as long rows ``{source, dataset, approach, n, accuracy_pct, std_pct}``: ours
    (mean and standard deviation over draws, in %) and, when ``paper`` is given (e.g.
    :data:`PAPER_TABLES`), the paper's rows labelled ``source="paper"``."""
    rows = []
    for r in results:
        for a in ("scratch", "pretrained", "fine_tuned"):
            if not r.has(a):
                continue
            draws = getattr(r, a).shape[0]
            for n, m, sd in zip(r.ns, r.mean(a).tolist(), r.std(a).tolist()):
                rows.append(
                    {
                        "source": "ours",
                        "dataset": r.dataset,
                        "n": n,
                        "approach": f"{APPROACHES[a]}, {draws} draw{'s' if draws > 1 else ''}",
                        "accuracy_pct": 100 * m,
                        "std_pct": 100 * sd if draws > 1 else None,
                    }
                )
    for name, t in (paper or {}).items():
        for a in ("scratch", "pretrained"):
            for n, (m, sd) in zip(t["ns"], t[a]):
                rows.append(
                    {
                        "source": "paper",
                        "dataset": f"{t['title']} ({t['table']})",
                        "approach": APPROACHES[a].replace("pretrained,", "ImageNet-pretrained,"),
                        "n": n,
                        "accuracy_pct": m,
                        "std_pct": sd,
                    }
                )
    return rows
