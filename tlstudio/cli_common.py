"""What every ``tlstudio`` command shares: exit codes and where messages go."""
from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _print_final(final: dict) -> None:
    from rich.table import Table

    con = _console()
    t = Table(title=f"Test results — {final.get('run_id')}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k in ("test_accuracy", "test_balanced_accuracy", "test_auc", "test_f1_macro", "test_map_50", "test_map",
              "test_bleu_1", "test_bleu_4", "test_cider", "test_loss"):
        if final.get(k) is not None:
            t.add_row(k[5:], f"{final[k]:.4f}")
    t.add_row("train seconds", f"{final.get('train_seconds', 0):.1f}")
    con.print(t)
    con.print(f"Run folder: {final.get('run_dir')}")
