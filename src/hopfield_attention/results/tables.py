"""Runs grouped into the paper's table cells, beside the numbers the paper reports.

A table has rows (dataset, row) and columns; each cell holds the reproduced runs' values and the paper's
number. The layout and the paper's numbers come from results/paper_numbers.yaml; runs of cells the paper
lacks add rows or columns, and table ids the paper lacks (e.g. "quickstart") are built from runs alone.
Statistics: mean and sample standard deviation (ddof = 1) over the finished runs' values; failed,
interrupted and running runs, and finished runs without the metric, are counted but never averaged.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from .collect import metric_value

# The tasks log accuracies in percent, as the paper reports them; the tables show them as logged.
PERCENT_METRICS = frozenset({"top1", "top5"})
LOWER_IS_BETTER = frozenset({"loss", "ppl"})
NOT_AVERAGED = ("failed", "interrupted", "running")


@dataclass(frozen=True)
class PaperCell:
    value: float | None
    confidence: str | None = None


@dataclass
class CellRuns:
    """The runs of one table cell: values of finished runs, and counts of the rest."""

    values: list[float] = field(default_factory=list)
    splits: set[str] = field(default_factory=set)  # "test" and/or "val": where the values came from
    counts: dict[str, int] = field(default_factory=dict)  # failed / interrupted / running / no metric

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof = 1); None for fewer than two runs."""
        return statistics.stdev(self.values) if len(self.values) >= 2 else None


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

    def cell_runs(self, dataset: str, row: str, column: str) -> CellRuns:
        return self.runs.get((dataset, row, column), CellRuns())

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(dataset for dataset, _ in self.rows))


def load_paper_numbers(path: str | Path) -> dict[str, dict]:
    """The `tables` mapping of paper_numbers.yaml, checked for the keys the tables need."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    tables = data.get("tables") if isinstance(data, dict) else None
    if not isinstance(tables, dict):
        raise ValueError(f"{path}: expected a top-level `tables:` mapping of table id -> table")
    for table_id, spec in tables.items():
        missing = {"title", "metric", "higher_is_better", "columns", "cells"} - set(spec)
        if missing:
            raise ValueError(f"{path}: table {table_id!r} lacks {sorted(missing)}")
    return {str(table_id): spec for table_id, spec in tables.items()}


def build_tables(records: Iterable[Mapping], paper_numbers: Mapping[str, Mapping]) -> list[Table]:
    """Every paper table (runs or not), then every other table id the records name, in that order."""
    records = list(records)
    by_table: dict[str, list[Mapping]] = {}
    for record in records:
        table_id = (record.get("paper") or {}).get("table")
        if table_id is not None:
            by_table.setdefault(str(table_id), []).append(record)
    ids = list(paper_numbers) + [t for t in by_table if t not in paper_numbers]
    return [build_table(t, by_table.get(t, []), paper_numbers.get(t)) for t in ids]


def build_table(table_id: str, records: list[Mapping], spec: Mapping | None) -> Table:
    if spec is None:
        metric = _metric_from_runs(records)
        table = Table(table_id, f"{table_id} (not a paper table)", metric, metric not in LOWER_IS_BETTER,
                      rows=[], columns=[], paper={}, runs={}, in_paper=False)  # fmt: skip
    else:
        table = Table(table_id, spec["title"], spec["metric"], bool(spec["higher_is_better"]), rows=[],
                      columns=[str(c) for c in spec["columns"]], paper={}, runs={}, note=spec.get("note"))  # fmt: skip
        for cell in spec["cells"]:
            key = (str(cell["dataset"]), str(cell["row"]), str(cell["column"]))
            table.paper[key] = PaperCell(cell.get("value"), cell.get("confidence"))
            _add_layout(table, key)
    for record in records:
        paper = record["paper"]
        key = tuple(str(paper.get(k)) for k in ("dataset", "row", "column"))
        _add_layout(table, key)
        _add_run(table.runs.setdefault(key, CellRuns()), record, table.metric)
    if spec is None:  # no paper layout: the baseline column first, then by name
        table.columns.sort(key=lambda column: (column != "softmax", column))
    return table


def _add_layout(table: Table, key: tuple[str, str, str]) -> None:
    dataset, row, column = key
    if (dataset, row) not in table.rows:
        table.rows.append((dataset, row))
    if column not in table.columns:
        table.columns.append(column)


def _add_run(cell: CellRuns, record: Mapping, metric: str) -> None:
    status = record["status"]
    if status in NOT_AVERAGED:
        cell.counts[status] = cell.counts.get(status, 0) + 1
        return
    value, split = metric_value(record, metric)
    if value is None:
        key = f"without {metric}"
        cell.counts[key] = cell.counts.get(key, 0) + 1
        return
    cell.values.append(value)
    cell.splits.add(split)


def _metric_from_runs(records: list[Mapping]) -> str:
    """For tables outside the paper: perplexity if the runs have it, else top-1, else loss."""
    for metric in ("ppl", "top1", "loss"):
        if any(metric_value(record, metric)[0] is not None for record in records):
            return metric
    return "loss"
