"""Runs filed into the paper's table cells, beside the numbers the paper reports.

A table has rows (dataset, row) and columns; each cell holds the values of the runs filed there and the paper's
number. Layouts and reported numbers come from results/paper_numbers.yaml (the paper's tables) and
results/own_tables.yaml (tables of our own: the quickstart, the laptop-scale claims); a table id found in
neither is built from its runs alone.

A run labels its cell in `paper:`; it is filed there only when its recorded definition equals its experiment
file's (record["cell"], runs/definition.py), it is no debugging run, and it is finished with the table's
metric. Every other run labelled for the table is listed apart with the reason (the keys that differ, its
status), never averaged. Finished runs of one cell with the same seed count once: the newest. Statistics: mean
and sample standard deviation (ddof = 1) over the seeds. A run's qualifiers (e.g. a quick budget) give it a
table of its own, "<id> (budget quick)"; so does a reading other than today's default (config/readings.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config.locations import OWN_TABLES, PAPER_NUMBERS
from ..config.readings import default_reading, reading_of
from ..runs.definition import describe
from .collect import metric_value

# The tasks log accuracies in percent, as the paper reports them; the tables show them as logged.
PERCENT_METRICS = frozenset({"top1", "top5"})
LOWER_IS_BETTER = frozenset({"loss", "ppl"})
NOT_AVERAGED = ("failed", "interrupted", "running", "lost")
TABLE_FILES = (PAPER_NUMBERS, OWN_TABLES)


@dataclass(frozen=True)
class PaperCell:
    value: float | None
    confidence: str | None = None
    text: str | None = None  # a direction instead of a number ("lower than softmax")


@dataclass
class CellRuns:
    """The runs filed in one table cell: one value per seed (the newest finished run), counts of the rest."""

    by_seed: dict = field(default_factory=dict)  # seed -> (ended_at, value, split, source)
    counts: dict[str, int] = field(default_factory=dict)  # failed / interrupted / running / lost / no metric
    duplicates: int = 0  # finished runs of a seed already counted (older ones)

    def add_finished(self, seed, ended_at: str, value: float, split: str, source: str) -> None:
        if seed in self.by_seed:
            self.duplicates += 1
            if ended_at <= self.by_seed[seed][0]:
                return
        self.by_seed[seed] = (ended_at, value, split, source)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    @property
    def values(self) -> list[float]:
        return [value for _, value, _, _ in self.by_seed.values()]

    @property
    def splits(self) -> set[str]:
        return {split for _, _, split, _ in self.by_seed.values()}

    @property
    def seeds(self) -> list:
        return sorted(self.by_seed, key=str)

    @property
    def n(self) -> int:
        return len(self.by_seed)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.by_seed else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof = 1); None for fewer than two seeds."""
        return statistics.stdev(self.values) if self.n >= 2 else None


@dataclass(frozen=True)
class Apart:
    """A run labelled for a table and not filed in it, with why."""

    source: str
    status: str
    cell: tuple[str, str, str]
    reason: str


@dataclass
class Table:
    id: str
    title: str
    metric: str
    higher_is_better: bool
    rows: list[tuple[str, str]]  # (dataset, row) in display order
    columns: list[str]
    paper: dict[tuple[str, str, str], PaperCell]  # (dataset, row, column) -> reported number
    runs: dict[tuple[str, str, str], CellRuns]
    note: str | None = None
    in_paper: bool = True
    paper_label: str = "paper"
    apart: list[Apart] = field(default_factory=list)

    def cell_runs(self, dataset: str, row: str, column: str) -> CellRuns:
        return self.runs.get((dataset, row, column), CellRuns())

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(dataset for dataset, _ in self.rows))


def load_table_specs(paths: Iterable[str | Path] = TABLE_FILES) -> dict[str, dict]:
    """The `tables` mappings of the given YAML files, merged, checked for the keys the tables need."""
    specs: dict[str, dict] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        tables = data.get("tables") if isinstance(data, dict) else None
        if not isinstance(tables, dict):
            raise ValueError(f"{path}: expected a top-level `tables:` mapping of table id -> table")
        for table_id, spec in tables.items():
            missing = {"title", "metric", "higher_is_better", "columns", "cells"} - set(spec)
            if missing:
                raise ValueError(f"{path}: table {table_id!r} lacks {sorted(missing)}")
            specs[str(table_id)] = {**spec, "in_paper": bool(spec.get("in_paper", True))}
    return specs


def load_paper_numbers(path: str | Path | None = None) -> dict[str, dict]:
    """The paper's tables of `path` (None: the package's copy) with our own tables (results/own_tables.yaml)."""
    return load_table_specs([path or TABLE_FILES[0], *TABLE_FILES[1:]])


def known_tables() -> set[str]:
    return set(load_table_specs())


def table_key(record: Mapping) -> str | None:
    """The table a record belongs to: its paper.table, qualified by the cell's qualifiers if any. The reading is
    read from what the run computed, against today's default: a run recorded under an earlier default (so without
    a reading qualifier) is filed under its own reading, never mixed with today's default."""
    table = (record.get("paper") or {}).get("table")
    if table is None:
        return None
    cell = record.get("cell") or {}
    qualifiers = {group: choice for group, choice in (cell.get("qualifiers") or {}).items() if group != "reading"}
    reading = reading_of(cell.get("definition") or {})
    if reading is not None and reading != default_reading():
        qualifiers["reading"] = reading
    suffix = ", ".join(f"{group} {choice}" for group, choice in sorted(qualifiers.items()))
    return f"{table} ({suffix})" if suffix else str(table)


def build_tables(records: Iterable[Mapping], specs: Mapping[str, Mapping]) -> list[Table]:
    """Every table with a spec (runs or not), then every other table the records name, in that order."""
    by_table: dict[str, list[Mapping]] = {}
    for record in records:
        key = table_key(record)
        if key is not None:
            by_table.setdefault(key, []).append(record)
    ids = list(specs) + [key for key in by_table if key not in specs]
    return [build_table(key, by_table.get(key, []), specs.get(key) or specs.get(key.split(" (")[0])) for key in ids]


def build_table(table_id: str, records: list[Mapping], spec: Mapping | None) -> Table:
    if spec is None:
        metric = _metric_from_runs(records)
        table = Table(table_id, f"{table_id} (no table spec)", metric, metric not in LOWER_IS_BETTER,
                      rows=[], columns=[], paper={}, runs={}, in_paper=False)  # fmt: skip
    else:
        table = Table(table_id, spec["title"], spec["metric"], bool(spec["higher_is_better"]), rows=[],
                      columns=[str(c) for c in spec["columns"]], paper={}, runs={}, note=spec.get("note"),
                      in_paper=bool(spec.get("in_paper", True)), paper_label=spec.get("paper_label", "paper"))  # fmt: skip
        for cell in spec["cells"]:
            key = (str(cell["dataset"]), str(cell["row"]), str(cell["column"]))
            table.paper[key] = PaperCell(cell.get("value"), cell.get("confidence"), cell.get("paper"))
            _add_layout(table, key)
    for record in records:
        key = tuple(str((record.get("paper") or {}).get(k)) for k in ("dataset", "row", "column"))
        reason = not_filed_because(record)
        if reason is not None:
            table.apart.append(Apart(record.get("source", "?"), record.get("status", "?"), key, reason))
            continue
        _add_layout(table, key)
        _add_run(table.runs.setdefault(key, CellRuns()), record, table.metric)
    if spec is None:  # no layout: the baseline column first, then by name
        table.columns.sort(key=lambda column: (column != "softmax", column))
    return table


def not_filed_because(record: Mapping) -> str | None:
    """Why a run labelled for a cell is not that cell's run (None: it is)."""
    cell = record.get("cell")
    if int(record.get("schema") or 1) < 2 or not isinstance(cell, Mapping):
        return "recorded before runs carried their cell definition (schema 1)"
    if cell.get("debug"):
        return f"a debugging run ({', '.join(cell['debug'])})"
    if cell.get("deviations") is None:
        return f"no experiment file defines it (experiment={record.get('experiment')!r})"
    if cell["deviations"]:
        return f"differs from {cell.get('defined_by')}: {describe(cell['deviations'], limit=None)}"
    return None


def _add_layout(table: Table, key: tuple[str, str, str]) -> None:
    dataset, row, column = key
    if (dataset, row) not in table.rows:
        table.rows.append((dataset, row))
    if column not in table.columns:
        table.columns.append(column)


def _add_run(cell: CellRuns, record: Mapping, metric: str) -> None:
    status = record["status"]
    if status in NOT_AVERAGED:
        cell.count(status)
        return
    value, split = metric_value(record, metric)
    if value is None:
        cell.count(f"without {metric}")
        return
    cell.add_finished(record.get("seed"), str(record.get("ended_at") or ""), value, split, record.get("source", "?"))


def _metric_from_runs(records: list[Mapping]) -> str:
    """For tables without a spec: perplexity if the runs have it, else top-1, else loss."""
    for metric in ("ppl", "top1", "loss"):
        if any(metric_value(record, metric)[0] is not None for record in records):
            return metric
    return "loss"
