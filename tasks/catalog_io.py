"""Robust reading of image catalogues (CSV or Parquet): malformed rows are reported, not fatal."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from headwater.errors import InputError

#: Cells read as missing (the Kaggle styles.csv writes `NA`); nothing else is guessed.
NA_VALUES = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL"})
#: Column holding the catalogue's own line number (1-based, the header is line 1).
LINE_COLUMN = "_line"
BATCH_ROWS = 100_000


@dataclass
class BadRow:
    """A catalogue line that could not be read as a row."""

    line: int
    id: str
    reason: str


@dataclass
class Catalogue:
    """A catalogue read into pandas (Arrow-backed columns) and the rows that were rejected."""

    frame: pd.DataFrame
    bad_rows: list[BadRow] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Catalogue columns (without the line-number column)."""
        return [c for c in self.frame.columns if c != LINE_COLUMN]


def _typed(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Cast a string column to int64 or float64 when every present value parses as one."""
    if values.null_count == len(values):
        return values
    if pc.any(pc.match_substring_regex(values, r"^\s*[-+]?0[0-9]")).as_py():
        return values  # leading zeros (codes, folders): keep as text
    for target in (pa.int64(), pa.float64()):
        try:
            return pc.cast(values, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return values


def _split_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(lines, start=1):
        yield number, line.rstrip("\r\n")


def parse_csv_lines(
    lines: Iterable[str], source: str = "catalogue", delimiter: str = ","
) -> Catalogue:
    """Parse CSV text line by line; rows with the wrong field count are reported with their line.

    Each physical line is one record: a quote only groups a field when it opens and closes it on
    the same line, so a bare `"` inside a field cannot swallow the rest of the file.

    Args:
        lines: The file's lines (header first).
        source: Name used in error messages.
        delimiter: Field separator.

    Returns:
        The typed catalogue and the malformed rows.
    """
    numbered = _split_lines(lines)
    header: list[str] | None = None
    for _number, text in numbered:
        if text.strip():
            header = [
                h.strip().lstrip("\ufeff") for h in next(csv.reader([text], delimiter=delimiter))
            ]
            break
    if not header:
        raise InputError(f"catalogue {source}: no header line")
    if len(set(header)) != len(header) or any(not h for h in header):
        raise InputError(
            f"catalogue {source}: header has empty or duplicate column names: {header}"
        )
    width = len(header)
    columns: list[list[str | None]] = [[] for _ in header]
    line_numbers: list[int] = []
    batches: list[pa.Table] = []
    bad: list[BadRow] = []

    def flush() -> None:
        if not line_numbers:
            return
        arrays = [pa.array(col, type=pa.string()) for col in columns]
        arrays.append(pa.array(line_numbers, type=pa.int64()))
        batches.append(pa.Table.from_arrays(arrays, names=[*header, LINE_COLUMN]))
        for col in columns:
            col.clear()
        line_numbers.clear()

    for number, text in numbered:
        if not text.strip():
            continue
        try:
            fields = next(csv.reader([text], delimiter=delimiter, strict=True))
        except csv.Error:
            # an unbalanced quote: read the line literally (quotes are data)
            fields = text.split(delimiter)
        if len(fields) != width:
            bad.append(
                BadRow(
                    number,
                    fields[0].strip() if fields else "",
                    f"line {number}: expected {width} fields, saw {len(fields)}",
                )
            )
            continue
        for col, value in zip(columns, fields, strict=True):
            value = value.strip()
            col.append(None if value in NA_VALUES else value)
        line_numbers.append(number)
        if len(line_numbers) >= BATCH_ROWS:
            flush()
    flush()
    if batches:
        table = pa.concat_tables(batches)
    else:
        table = pa.table(
            {
                **{h: pa.array([], pa.string()) for h in header},
                LINE_COLUMN: pa.array([], pa.int64()),
            }
        )
    table = pa.table(
        {
            name: _typed(table[name]) if name != LINE_COLUMN else table[name]
            for name in table.column_names
        }
    )
    return Catalogue(table.to_pandas(types_mapper=pd.ArrowDtype), bad)


def read_catalogue_bytes(data: bytes, name: str) -> Catalogue:
    """Read a CSV or Parquet catalogue from bytes; `name` decides the format by its suffix."""
    suffix = Path(name.split("?")[0]).suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"catalogue {name}: not a readable Parquet file ({exc})") from None
        return _from_arrow(table)
    if suffix not in (".csv", ".txt", ".tsv", ""):
        raise InputError(f"catalogue {name}: unsupported format {suffix!r}; use .csv or .parquet")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_csv_lines(
        io.StringIO(text, newline=None), source=name, delimiter="\t" if suffix == ".tsv" else ","
    )


def read_catalogue_file(path: str | Path) -> Catalogue:
    """Read a local CSV or Parquet catalogue (streaming CSV lines, so memory stays columnar)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"catalogue {path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return _from_arrow(pq.read_table(path))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"catalogue {path}: not a readable Parquet file ({exc})") from None
    if suffix not in (".csv", ".txt", ".tsv"):
        raise InputError(f"catalogue {path}: unsupported format {suffix!r}; use .csv or .parquet")
    try:
        with path.open(encoding="utf-8-sig", newline=None) as fh:
            return parse_csv_lines(
                fh, source=str(path), delimiter="\t" if suffix == ".tsv" else ","
            )
    except UnicodeDecodeError:
        with path.open(encoding="latin-1", newline=None) as fh:
            return parse_csv_lines(
                fh, source=str(path), delimiter="\t" if suffix == ".tsv" else ","
            )


def _from_arrow(table: pa.Table) -> Catalogue:
    """A Parquet table as a catalogue; its rows are numbered like CSV lines (header = line 1)."""
    if LINE_COLUMN not in table.column_names:
        table = table.append_column(LINE_COLUMN, pa.array(range(2, table.num_rows + 2), pa.int64()))
    return Catalogue(table.to_pandas(types_mapper=pd.ArrowDtype), [])
