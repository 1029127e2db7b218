"""Read a CSV whatever program saved it: Excel's UTF-8 BOM or UTF-16, Windows-1252 text, CRLF
or CR line endings, and comma, semicolon, tab or pipe separators (sniffed, as spreadsheets in
many locales save with ';').
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path

SEPARATORS = ",;\t|"


class TableError(ValueError):
    """A CSV cannot be read at all; the message names the file."""


@dataclass(frozen=True)
class Table:
    """A CSV's header (stripped, in file order) and its non-blank rows as (line number in the
    file, {column: cell stripped}); the header is line 1 unless blank lines precede it."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]


def decode_text(data: bytes) -> str:
    """UTF-16/UTF-32 by BOM, else UTF-8 (BOM dropped), else Windows-1252 (Excel's default on
    Windows in western locales), else Latin-1, which decodes any bytes."""
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(encoding)
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    sample = "\n".join(text.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=SEPARATORS)
    except csv.Error:  # one column, or too little text to tell: the standard comma
        return csv.excel


def read_table(path: Path) -> Table:
    """The CSV at path; raises TableError naming it when it cannot be read."""
    try:
        text = decode_text(Path(path).read_bytes())
    except OSError as err:
        raise TableError(f"{path}: cannot read the CSV ({err.strerror or err})") from err
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        reader = csv.reader(io.StringIO(text), _dialect(text))
        lines = [row for row in reader]
    except csv.Error as err:
        raise TableError(f"{path}: not a readable CSV ({err}); save it again as CSV") from err
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if any(c.strip() for c in line)]
    if not numbered:
        return Table(Path(path), [], [])
    columns = [cell.strip() for cell in numbered[0][1]]
    rows = [(n, dict(zip(columns, (cell.strip() for cell in line), strict=False)))
            for n, line in numbered[1:]]
    return Table(Path(path), columns, rows)
