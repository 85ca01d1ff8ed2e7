"""Unit tests of the safe catalogue filter, checked against independent pandas computations."""

from __future__ import annotations

import pandas as pd
import pytest

from headwater.errors import InputError
from tasks.catalog_filter import apply_filter, filter_mask, parse_filter
from tasks.catalog_io import read_catalogue_file

STYLES = "/work/shared/data/images/fashion/styles.csv"


@pytest.fixture(scope="module")
def catalogue():  # type: ignore[no-untyped-def]
    return read_catalogue_file(STYLES)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """The same file read independently by pandas (malformed lines skipped)."""
    return pd.read_csv(STYLES, on_bad_lines="skip")


CASES = [
    (
        'gender == "Women" and masterCategory == "Apparel" and year >= 2012',
        lambda r: (r.gender == "Women") & (r.masterCategory == "Apparel") & (r.year >= 2012),
    ),
    ('usage != "Casual"', lambda r: r.usage != "Casual"),
    (
        'baseColour in ["Black", "White"] or not (year < 2015)',
        lambda r: r.baseColour.isin(["Black", "White"]) | ~(r.year < 2015),
    ),
    ("2011 <= year < 2013", lambda r: (r.year >= 2011) & (r.year < 2013)),
    ("usage == None", lambda r: r.usage.isna()),
    ('usage not in ("Casual", "Sports")', lambda r: ~r.usage.isin(["Casual", "Sports"])),
    ('"Men" == gender and id > 30000', lambda r: (r.gender == "Men") & (r.id > 30000)),
    (
        'articleType == "Watches" or subCategory == "Watches"',
        lambda r: (r.articleType == "Watches") | (r.subCategory == "Watches"),
    ),
    ("year > -1 and year <= 2011.5", lambda r: (r.year > -1) & (r.year <= 2011.5)),
    ('season == "Nothing"', lambda r: r.season == "Nothing"),
]


@pytest.mark.parametrize(("expr", "expected"), CASES)
def test_selection_matches_pandas(catalogue, reference, expr, expected) -> None:  # type: ignore[no-untyped-def]
    got = apply_filter(catalogue.frame, expr, catalogue.columns)
    want = reference[expected(reference)]
    assert sorted(got["id"].tolist()) == sorted(want["id"].tolist())


def test_known_counts(catalogue) -> None:  # type: ignore[no-untyped-def]
    assert (
        len(
            apply_filter(
                catalogue.frame,
                'gender == "Women" and masterCategory == "Apparel" and year >= 2012',
            )
        )
        == 39
    )
    assert len(apply_filter(catalogue.frame, None)) == 312


@pytest.mark.parametrize(
    ("expr", "what"),
    [
        ('__import__("os").system("id")', "function calls"),
        ('gender.upper() == "WOMEN"', "function calls"),
        ("gender.__class__ == 1", "attribute access"),
        ('gender[0] == "W"', "subscripts"),
        ("(lambda: True)", "lambdas"),
        ("[x for x in gender]", "comprehensions"),
        ("year + 1 > 2012", "arithmetic"),
        ("(y := year) > 1", "assignments"),
        ("year if True else gender", "conditional"),
        ('f"{gender}" == "Men"', "f-strings"),
    ],
)
def test_unsafe_constructs_refused(catalogue, expr, what) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=what):
        filter_mask(catalogue.frame, expr, catalogue.columns)


def test_unknown_column_names_existing_columns(catalogue) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as err:
        parse_filter('colour == "Red"', catalogue.columns)
    assert "unknown column 'colour'" in str(err.value)
    assert "baseColour" in str(err.value) and "productDisplayName" in str(err.value)


@pytest.mark.parametrize("expr", ["year >=", "gender == 'Men' and", "))", "year === 1"])
def test_syntax_error_names_columns(catalogue, expr) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=r"syntax error.*columns: id, gender"):
        parse_filter(expr, catalogue.columns)


def test_type_mismatch_refused(catalogue) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="holds number values"):
        filter_mask(catalogue.frame, 'year == "2012"', catalogue.columns)
    with pytest.raises(InputError, match="not boolean"):
        filter_mask(catalogue.frame, "gender", catalogue.columns)


def test_plain_pandas_frame() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3, None], "b": ["x", "y", None, "x"]})
    assert filter_mask(frame, 'a >= 2 and b != "y"').tolist() == [False, False, True, False]
