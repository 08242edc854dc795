"""List the runs under a directory with their status: `python -m hopfield_attention.status [runs_dir=...]`.

One line per results.json: status (`running`, `finished`, `failed`, `interrupted`, or `lost` for a run that says
running while its process is gone: runs/heartbeat.py), step, experiment, the run directory and, for failed or
interrupted runs, the message. Unreadable records are listed too. Options: configs/status.yaml.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .cli.app import hydra_command
from .reports.collect import collect_local
from .runs.record_schema import STATUSES

SHOWN = STATUSES + ("lost",)


def status(cfg: DictConfig) -> list[dict]:
    runs_dir = Path(cfg.runs_dir)
    if not runs_dir.is_dir():
        raise ValueError(f"runs_dir {str(runs_dir)!r} is not a directory (no runs yet?)")
    wanted = None if cfg.status is None else set(OmegaConf.to_container(cfg.status) if OmegaConf.is_list(cfg.status)
                                                 else [cfg.status])  # fmt: skip
    if wanted is not None and not wanted <= set(SHOWN):
        raise ValueError(f"status={cfg.status!r}: each must be one of {list(SHOWN)} (null: all), "
                         f"got {sorted(map(str, wanted - set(SHOWN)))}")  # fmt: skip
    found = collect_local(runs_dir)
    rows = [record for record in found.records if wanted is None or record["status"] in wanted]
    rows.sort(key=lambda record: str(record.get("started_at") or ""))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Runs under {runs_dir}")
    for header in ("status", "step", "experiment", "run directory", "message"):
        table.add_column(header, overflow="fold")
    for record in rows:
        error = (record.get("error") or {}).get("message") or ""
        directory = Path(record["source"]).parent
        shown = directory.relative_to(runs_dir) if directory.is_relative_to(runs_dir) else directory
        table.add_row(record["status"], str(record.get("global_step") or ""), str(record.get("experiment")),
                      str(shown), error.splitlines()[0] if error else "")  # fmt: skip
    Console(width=160).print(table)
    for path, why in found.unreadable:  # whole lines (a table cell would fold the path): the file and the field
        print(f"unreadable {path}: {why}")
    return rows


main = hydra_command("status")(status)

if __name__ == "__main__":
    main()
