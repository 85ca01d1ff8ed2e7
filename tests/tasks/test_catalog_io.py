"""Unit tests of the robust catalogue reader on the real styles.csv and crafted inputs."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from headwater.errors import InputError
from tasks.catalog_io import LINE_COLUMN, read_catalogue_bytes, read_catalogue_file

STYLES = "/work/shared/data/images/fashion/styles.csv"


def test_real_styles_csv_reports_malformed_lines() -> None:
    cat = read_catalogue_file(STYLES)
    assert len(cat.frame) == 312
    assert [b.line for b in cat.bad_rows] == [37, 41, 46, 51, 57, 65]
    assert [b.id for b in cat.bad_rows] == ["44065", "3413", "23101", "23108", "4854", "23109"]
    assert all("expected 10 fields, saw 11" in b.reason for b in cat.bad_rows)
    assert pd.api.types.is_integer_dtype(cat.frame["year"].dtype)
    assert pd.api.types.is_integer_dtype(cat.frame["id"].dtype)
    # NA is missing, apostrophes are data
    assert cat.frame["usage"].isna().sum() == 5
    assert (
        cat.frame.loc[cat.frame["id"] == 7306, "productDisplayName"].item()
        == "UCB Women's Sleeveless Off White Dress"
    )
    # rows keep their file line numbers
    assert cat.frame.loc[cat.frame["id"] == 11724, LINE_COLUMN].item() == 2


def test_bare_quote_does_not_swallow_following_rows() -> None:
    text = (
        'id,name,year\n1,"open quote,2011\n2,Men 5" shorts,2012\n3,"quoted, comma",2013\n4,a,b,c\n'
    )
    cat = read_catalogue_bytes(text.encode(), "c.csv")
    assert cat.frame["id"].tolist() == [1, 2, 3]
    assert cat.frame["name"].tolist() == ['"open quote', 'Men 5" shorts', "quoted, comma"]
    assert cat.frame["year"].tolist() == [2011, 2012, 2013]
    assert [(b.line, b.id) for b in cat.bad_rows] == [(5, "4")]


def test_parquet_and_crlf() -> None:
    buf = io.BytesIO()
    pd.DataFrame({"id": [1, 2], "gender": ["Men", None]}).to_parquet(buf)
    cat = read_catalogue_bytes(buf.getvalue(), "x.parquet")
    assert cat.frame["id"].tolist() == [1, 2] and cat.bad_rows == []
    crlf = read_catalogue_bytes(b"id,g\r\n1,NA\r\n2,Men\r\n", "y.csv")
    assert crlf.frame["g"].isna().tolist() == [True, False]


@pytest.mark.parametrize(
    ("data", "name", "match"),
    [
        (b"", "e.csv", "no header"),
        (b"x", "a.xlsx", "unsupported"),
        (b"nope", "b.parquet", "Parquet"),
    ],
)
def test_bad_catalogues(data: bytes, name: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        read_catalogue_bytes(data, name)


def test_leading_zero_codes_stay_text() -> None:
    cat = read_catalogue_bytes(b"id,folder,score\n1,00012,0.5\n2,00013,0\n", "z.csv")
    assert cat.frame["folder"].tolist() == ["00012", "00013"]
    assert cat.frame["score"].tolist() == [0.5, 0.0]
