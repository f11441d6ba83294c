"""Hypothesis fuzzes every field of the new-search form and of POST /api/searches.

Every answer is 201 (a 303 redirect for the form), a 400 naming a field, or 413/429 at a
cap, never a 500; a rejected request writes nothing; an accepted one stores exactly the
checked values. parse_spec is the oracle for *which* messages; the invariants on stored
rows and the fields a strategy broke on purpose are checked independently of it.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from urllib.parse import parse_qsl, quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from markupsafe import escape
from sqlalchemy import delete, func, select

from lrsearch.datasets import catalog
from lrsearch.extensions import db
from lrsearch.models import QUEUED, RUNNING, Epoch, Search, Trial
from lrsearch.settings import (
    LR_CEILING,
    LR_FLOOR,
    MAX_SEED,
    PUBLIC_SETTINGS,
    SearchSpec,
    SpecError,
    parse_spec,
)
from lrsearch.training import dataset_shape
from lrsearch.web.forms import as_text

FIELDS = tuple(
    "name dataset hidden layers lr_min lr_max trials epochs batch_size beta1 beta2 workers seed"
    " sampler scheduler reduction_factor grace_period brackets metric kind iterations".split()
)
MAX_BODY = 64 * 1024
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAN, INF = float("nan"), float("inf")


@pytest.fixture
def app_config(app_config) -> dict:
    """No cap on active searches: nothing runs here, so every accepted search stays queued."""
    return {**app_config, "MAX_ACTIVE_SEARCHES": 10**9}


def test_every_setting_is_fuzzed():
    assert set(FIELDS) == {s.name for s in PUBLIC_SETTINGS}


# ---- strategies -----------------------------------------------------------------------

# Odd but storable: RTL marks and override, zero-width joiner, BOM, emoji, a combining
# accent, case-folding traps, a line separator (stripped at the ends), private use.
ODD = (
    "\u200f \u202e \u200d \ufeff 😀 👩\u200d🔬 e\u0301 \u0301 ß İ \u2028 \U0010fffd 中文 ﷺ"
    " \u0661\u0662".split(" ")  # not split(): U+2028 is whitespace
)
CONTROL = ["\x00", "\x07", "\x1b", "\n", "\r", "\t", "\x7f", "\x85"]
STORABLE_CHAR = st.characters(exclude_categories=("Cc", "Cs"))
odd_text = st.lists(st.one_of(STORABLE_CHAR, st.sampled_from(ODD)), max_size=25).map("".join)
any_text = st.lists(
    st.one_of(st.characters(), st.sampled_from(ODD + CONTROL), st.characters(categories=["Cs"])),
    max_size=25,
).map("".join)
form_text = any_text.filter(lambda s: not any(unicodedata.category(c) == "Cs" for c in s))
HUGE = [10**30, -(10**30), 1e308, -1e308, 2**63, 2**64 + 1, 5e-324]
JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.sampled_from(HUGE), any_text
)
JUNK = st.recursive(  # few leaves: a body stays far below the 64 KiB cap
    JSON_LEAF,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(any_text, kids, max_size=3),
    max_leaves=12,
)
WRONG_TYPE = st.one_of(
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.booleans(),
)
BLANK = st.sampled_from(["", " \t "])  # None is "missing" too, for every field but name
NOT_FINITE = st.sampled_from([NAN, INF, -INF, "nan", "NaN", "inf", "-Infinity", "1e999"])
NOT_WHOLE = st.one_of(
    st.sampled_from(["abc", "1.5", "1e3", "²", "0x10", "1,000", "--1", "+-1", "½", "Ⅻ", "2 3"]),
    st.from_regex(r"[a-zA-Z]+[0-9]*", fullmatch=True),
)
NOT_NUMBER = st.sampled_from(["abc", "0x10", "1,5", "--1", "1e", "e5", "½", "1.2.3", "0.1 0.2"])
NOT_A_NAME = "x-"  # no dataset or sampler starts with it


def floats_below(x: float) -> st.SearchStrategy[float]:
    return st.floats(max_value=math.nextafter(x, -INF), allow_nan=False)


def floats_above(x: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=math.nextafter(x, INF), allow_nan=False)


def bad_whole(low: int, high: int) -> tuple[st.SearchStrategy, st.SearchStrategy]:
    """(text, any JSON) values no whole-number field in [low, high] may accept."""
    outside = st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1))
    as_text = st.one_of(
        BLANK,
        NOT_FINITE.filter(lambda v: isinstance(v, str)),
        NOT_WHOLE,
        outside.map(str),
        st.just("9" * 25),
    )
    fractions = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x % 1 != 0)
    return as_text, st.one_of(
        as_text,
        WRONG_TYPE,
        NOT_FINITE,
        outside,
        fractions,
        st.sampled_from([x for x in HUGE if not low <= x <= high]),
    )


def bad_number(below: float, above: float) -> tuple[st.SearchStrategy, st.SearchStrategy]:
    """(text, any JSON) values below `below` or above `above`, or not numbers at all."""
    outside = st.one_of(floats_below(below), floats_above(above))
    as_text = st.one_of(
        BLANK, NOT_FINITE.filter(lambda v: isinstance(v, str)), NOT_NUMBER, outside.map(repr)
    )
    return as_text, st.one_of(as_text, WRONG_TYPE, NOT_FINITE, outside)


def with_char(chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """'digits'-like text with one of `chars` inside (not at an end, where strip removes it)."""
    return st.tuples(st.sampled_from(["digits", "a", "run 1"]), chars).map(
        lambda p: p[0][:1] + p[1] + p[0][1:] + "."
    )


TOO_LONG_NAME = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs", "Z")), min_size=201, max_size=260
).filter(lambda s: len(s.strip()) > 200)
UNKNOWN_DATASETS = st.sampled_from(
    "imagenet synthetic: synthetic:1x2 synthetic:0x1x2 synthetic:1x1x1 synthetic:10x0x3"
    " synthetic:10x10x1001 synthetic:2000001x1x2 synthetic:200000x1001x2 ../digits /etc/passwd"
    " digits;".split()
    + ["synthetic:" + "0" * 95 + "300x5x3"]  # valid but for its length: 112 characters
)
BAD_LAYER_TEXT = st.sampled_from(
    ["64,,10", "64;10", "64,-5,10", "abc", "64,1.5,10", "64,²,10", ",", "64,10,", "1," * 201 + "1"]
)
bad_layer_lists = st.tuples(
    st.lists(st.integers(1, 100), max_size=3),
    st.sampled_from([True, "x", 1.5, NAN, INF, None, [], {}, "6 4"]),
).map(lambda p: [*p[0], p[1]])


def text_and_any(as_text: st.SearchStrategy, others: st.SearchStrategy) -> tuple:
    return as_text, st.one_of(as_text, others)


_numbers = st.one_of(st.integers(), st.floats())
# Per field: (bad text, as a form sends; bad anything, as JSON may carry).
BAD = {
    "name": text_and_any(
        st.one_of(TOO_LONG_NAME, with_char(st.sampled_from(CONTROL))),
        st.one_of(_numbers, WRONG_TYPE, with_char(st.characters(categories=["Cs"]))),
    ),
    "dataset": text_and_any(
        st.one_of(
            BLANK,
            UNKNOWN_DATASETS,
            odd_text.map(NOT_A_NAME.__add__),
            with_char(st.sampled_from(CONTROL)),
        ),
        st.one_of(_numbers, WRONG_TYPE, with_char(st.characters(categories=["Cs"]))),
    ),
    # Blank layers are "none given" (the hidden sizes make them), blank hidden sizes "none".
    "hidden": text_and_any(
        BAD_LAYER_TEXT,
        st.one_of(
            _numbers,
            st.booleans(),
            st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
            bad_layer_lists,
            st.lists(st.sampled_from([0, 4097, 10**12]), min_size=1, max_size=2),
        ),
    ),
    "layers": text_and_any(
        BAD_LAYER_TEXT,
        st.one_of(
            st.just([]),
            _numbers,
            st.booleans(),
            st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
            bad_layer_lists,
        ),
    ),
    "lr_min": bad_number(LR_FLOOR, LR_CEILING),
    "lr_max": bad_number(LR_FLOOR, LR_CEILING),
    "trials": bad_whole(1, 1000),
    "epochs": bad_whole(1, 1000),
    "batch_size": bad_whole(1, 65536),
    "beta1": bad_number(0.0, math.nextafter(1.0, 0.0)),
    "beta2": bad_number(0.0, math.nextafter(1.0, 0.0)),
    "workers": bad_whole(1, 64),
    "seed": bad_whole(0, MAX_SEED),
    "sampler": text_and_any(
        st.one_of(
            BLANK,
            st.sampled_from(["sobol", "RANDOM", "Grid", "tpe"]),
            odd_text.map(NOT_A_NAME.__add__),
            with_char(st.sampled_from(CONTROL)),
        ),
        st.one_of(_numbers, WRONG_TYPE),
    ),
    "scheduler": text_and_any(
        st.one_of(
            BLANK,
            st.sampled_from(["hyperband", "ASHA", "None", "median"]),
            odd_text.map(NOT_A_NAME.__add__),
            with_char(st.sampled_from(CONTROL)),
        ),
        st.one_of(_numbers, WRONG_TYPE),
    ),
    "kind": text_and_any(
        st.one_of(
            BLANK,
            st.sampled_from(["Range_Test", "lr_find", "range test", "SEARCH"]),
            odd_text.map(NOT_A_NAME.__add__),
            with_char(st.sampled_from(CONTROL)),
        ),
        st.one_of(_numbers, WRONG_TYPE),
    ),
    "iterations": bad_whole(20, 10000),
    "reduction_factor": bad_whole(2, 100),
    "grace_period": bad_whole(1, 1000),
    "brackets": bad_whole(1, 10),
    "metric": text_and_any(
        st.one_of(
            BLANK,
            st.sampled_from(["acc_val", "loss", "VAL_ACC", "val acc"]),
            odd_text.map(NOT_A_NAME.__add__),
        ),
        st.one_of(_numbers, WRONG_TYPE),
    ),
}
DATASETS = [
    ("digits", (64, 10)),
    (" Digits ", (64, 10)),
    ("synthetic", (64, 10)),
    ("SYNTHETIC:300x5x3", (5, 3)),
    ("synthetic:1x1x2", (1, 2)),
    ("synthetic:2000000x100x1000", (100, 1000)),
    ("synthetic:" + "0" * 83 + "300x5x3", (5, 3)),  # 100 characters, as many as the column holds
]


@st.composite
def datasets(draw) -> tuple[str, tuple[int, int]]:
    """A dataset spec that exists, and its (features, classes)."""
    if draw(st.booleans()):
        return draw(st.sampled_from(DATASETS))
    d, k = draw(st.integers(1, 100_000)), draw(st.integers(2, 1000))
    n = draw(st.integers(1, min(2_000_000, 200_000_000 // d)))
    return f"synthetic:{n}x{d}x{k}", (d, k)


LR = st.one_of(
    st.sampled_from([LR_FLOOR, LR_CEILING, 1e-4, 1e-2]),
    st.floats(-8, 1).map(lambda e: min(max(10.0**e, LR_FLOOR), LR_CEILING)),
)
BETA = st.one_of(
    st.sampled_from([0.0, math.nextafter(1.0, 0.0)]), st.floats(0, 1, exclude_max=True)
)


def whole(low: int, high: int) -> st.SearchStrategy[int]:
    """Integers in [low, high], the bounds themselves often (plain draws favour small ones)."""
    return st.one_of(st.sampled_from([low, high]), st.integers(low, high))


@st.composite
def valid_settings(draw) -> dict:
    """Every setting, valid on its own and together, as plain Python values."""
    dataset, (features, classes) = draw(datasets())
    hidden = draw(st.lists(st.integers(1, 4096), max_size=8))
    lr_min, lr_max = sorted(draw(st.tuples(LR, LR).filter(lambda p: p[0] != p[1])))
    trials = draw(st.integers(1, 20).map(lambda n: 1000 if n == 20 else n % 6 + 1))
    epochs = draw(st.integers(1, 200 if trials == 1000 else 1000))
    name = draw(st.one_of(odd_text, st.just(" " + "n" * 200 + " ")))
    return {
        "name": name,
        "dataset": dataset,
        "hidden": hidden,
        "layers": [features, *hidden, classes],
        "lr_min": lr_min,
        "lr_max": lr_max,
        "trials": trials,
        "epochs": epochs,
        "batch_size": draw(whole(1, 65536)),
        "beta1": draw(BETA),
        "beta2": draw(BETA),
        "workers": draw(whole(1, 64)),
        "seed": draw(whole(0, MAX_SEED)),
        "sampler": draw(st.sampled_from(["random", "grid", " grid "])),
        # asha's first rung must come before the last epoch
        "scheduler": draw(st.sampled_from(["none", "asha", " asha "] if epochs > 1 else ["none"])),
        "reduction_factor": draw(whole(2, 100)),
        "grace_period": draw(whole(1, max(epochs - 1, 1))),
        "brackets": draw(whole(1, 10)),
        "metric": draw(st.sampled_from(["val_acc", "val_loss"])),
        "kind": draw(st.sampled_from(["search", " search ", "range_test", " range_test"])),
        "iterations": draw(whole(20, 10000)),
    }


def droppable(values: dict) -> list[str]:
    """Settings whose default keeps these values valid, so a body may leave them out."""
    keep = set()
    range_test = values["kind"].strip() == "range_test"  # lr bounds 1e-7 and 10 by default
    if values["lr_max"] <= (1e-7 if range_test else 1e-4):
        keep.add("lr_min")
    if values["lr_min"] >= (10 if range_test else 1e-2):
        keep.add("lr_max")
    if (values["layers"][0], values["layers"][-1]) != (64, 10):
        keep.add("dataset")
    return [f for f in FIELDS if f not in keep]


def encodings(value: object, json_types: bool) -> list:
    """Ways a client may write `value`: as JSON types, or as text as a form sends it."""
    if isinstance(value, list):
        forms = [",".join(map(str, value)), ", ".join(map(str, value))]
        return [value, [float(v) for v in value], *forms] if json_types else forms
    if isinstance(value, int):
        forms = [str(value), f" {value} ", f"+{value}"]
        return [value, float(value), *forms] if json_types else forms
    if isinstance(value, float):
        forms = [repr(value), f" {value!r}\t"]
        as_int = [int(value)] if json_types and value.is_integer() else []
        return [value, *as_int, *forms] if json_types else forms
    return [value]


@st.composite
def api_bodies(draw) -> tuple[dict, set[str]]:
    """(body, fields broken on purpose): valid settings, some left out or broken, extra keys."""
    values = draw(valid_settings())
    body = {f: draw(st.sampled_from(encodings(v, json_types=True))) for f, v in values.items()}
    for f in draw(st.sets(st.sampled_from(droppable(values)))):
        del body[f]
    broken = draw(st.sets(st.sampled_from(FIELDS), max_size=3))
    for f in broken:
        body[f] = draw(BAD[f][1])
    unknown = draw(
        st.dictionaries(any_text.filter(lambda k: k not in FIELDS), JUNK, max_size=2)
        if draw(st.integers(0, 4)) == 0
        else st.just({})
    )
    return {**body, **unknown}, broken


@st.composite
def form_bodies(draw) -> tuple[dict, set[str]]:
    """(form data, fields broken on purpose): every field as text, some left out or broken."""
    values = draw(valid_settings())
    data = {f: draw(st.sampled_from(encodings(v, json_types=False))) for f, v in values.items()}
    if draw(st.booleans()):
        del data["name"]  # the only setting the form may leave out
    broken = draw(st.sets(st.sampled_from(FIELDS), max_size=3))
    for f in broken:
        if f not in ("name", "hidden", "layers") and draw(st.integers(0, 5)) == 0:
            data.pop(f)  # a missing field is "required" (but for those that may be empty)
        else:
            data[f] = draw(BAD[f][0])
    extra = draw(
        st.dictionaries(form_text.filter(lambda k: k not in FIELDS), form_text, max_size=2)
    )
    return {**extra, **data}, broken


# ---- what every answer must be ---------------------------------------------------------


def row_counts() -> tuple[int, ...]:
    """Searches, trials and epochs now (the rollback ends the test session's old snapshot)."""
    db.session.rollback()
    count = select(func.count())
    return tuple(
        db.session.execute(count.select_from(m)).scalar_one() for m in (Search, Trial, Epoch)
    )


def strict_json(response) -> dict:
    """The body parsed as strict JSON (no bare NaN or Infinity)."""
    assert response.mimetype == "application/json"

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON")

    return json.loads(response.get_data(as_text=True), parse_constant=refuse)


def expected_spec(raw: dict, app: Flask) -> SearchSpec | SpecError:
    try:
        return parse_spec(raw, app.config, catalog.shape_of(db.session))
    except SpecError as exc:
        return exc


def assert_stored(app: Flask, search_id: int, spec: SearchSpec, before: tuple) -> None:
    """One search and its trials, holding exactly the checked values; then delete it."""
    assert row_counts() == (before[0] + 1, before[1] + spec.trials, before[2])
    search = db.session.get(Search, search_id)
    derived = {"trials": search.n_trials, "hidden": search.layers[1:-1]}
    stored = {f: getattr(search, f) for f in FIELDS if f not in derived} | derived
    assert stored == spec.as_dict()
    # Independent of parse_spec: what a runner may rely on.
    limits = app.config
    assert LR_FLOOR <= search.lr_min < search.lr_max <= LR_CEILING
    assert (
        1 <= search.n_trials <= limits["MAX_TRIALS"] and 1 <= search.epochs <= limits["MAX_EPOCHS"]
    )
    assert search.n_trials * search.epochs <= limits["MAX_TRIAL_EPOCHS"]
    layers = search.layers
    assert 2 <= len(layers) <= limits["MAX_LAYERS"] and all(type(n) is int for n in layers)
    assert (layers[0], layers[-1]) == dataset_shape(search.dataset)
    assert all(1 <= n <= limits["MAX_WIDTH"] for n in layers[1:-1])
    assert 1 <= search.batch_size <= 65536 and 1 <= search.workers <= limits["MAX_WORKERS"]
    assert 0 <= search.beta1 < 1 and 0 <= search.beta2 < 1 and 0 <= search.seed <= 2**31 - 1
    assert search.sampler in ("random", "grid") and search.status == QUEUED
    assert search.scheduler in ("none", "asha") and search.metric in ("val_acc", "val_loss")
    assert 2 <= search.reduction_factor <= 100 and 1 <= search.brackets <= 10
    assert 1 <= search.grace_period <= limits["MAX_EPOCHS"]
    for value, longest in ((search.name, 200), (search.dataset, 100)):
        assert len(value) <= longest and value == value.strip()
        assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in value)
    trials = sorted(search.trials, key=lambda t: t.index)
    assert [t.index for t in trials] == list(range(search.n_trials))
    assert all(search.lr_min <= t.lr <= search.lr_max and t.status == QUEUED for t in trials)
    assert all(0 <= t.seed <= 2**31 - 1 and t.attempt == 0 for t in trials)
    db.session.execute(delete(Trial).where(Trial.search_id == search.id))
    db.session.execute(delete(Search).where(Search.id == search.id))
    db.session.commit()


def assert_api_answer(app, response, body: dict, broken=frozenset(), unknown=()) -> None:
    """201 with the checked values stored, or 400 naming fields; never anything else."""
    expected = expected_spec(body, app)
    if isinstance(expected, SearchSpec):
        assert not broken and not unknown
        assert response.status_code == 201, response.get_data(as_text=True)
        return
    assert response.status_code == 400, response.get_data(as_text=True)
    answer = strict_json(response)
    assert isinstance(answer["reason"], str) and answer["reason"]
    errors = answer["errors"]
    assert errors and all(isinstance(m, str) and m for m in errors.values())
    assert set(errors) <= set(FIELDS) | {str(k)[:50] for k in body}
    assert set(broken) <= set(errors) and {str(k)[:50] for k in unknown} <= set(errors)
    assert errors == expected.errors


def post_api(client: FlaskClient, body: object) -> object:
    """POST `body` as JSON written by Python (NaN and Infinity left bare, as some clients do)."""
    return client.post("/api/searches", data=json.dumps(body), content_type="application/json")


def as_received(body: dict) -> dict:
    """The body as the server decodes it (two escaped surrogate halves become one character)."""
    return json.loads(json.dumps(body))


def check_api(app: Flask, client: FlaskClient, body: dict, broken=frozenset()) -> None:
    before = row_counts()
    response = post_api(client, body)
    body = as_received(body)
    event(f"status {response.status_code}")
    assert_api_answer(app, response, body, broken, unknown=set(body) - set(FIELDS))
    if response.status_code == 201:
        assert_stored(app, response.get_json()["id"], expected_spec(body, app), before)
    else:
        assert row_counts() == before


# ---- the JSON API ----------------------------------------------------------------------


@pytest.mark.slow
@settings(FUZZ, max_examples=200)
@given(case=api_bodies())
def test_api_answers_any_settings_with_201_or_400(app, client, case):
    body, broken = case
    check_api(app, client, body, broken)


@pytest.mark.parametrize("field", FIELDS)
@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_api_fuzzes_each_field_alone(app, client, field, data):
    values = data.draw(valid_settings())
    body = {f: data.draw(st.sampled_from(encodings(v, json_types=True))) for f, v in values.items()}
    kind = data.draw(st.sampled_from(["bad", "junk", "missing"]))
    if kind == "missing":
        del body[field]
    else:
        body[field] = data.draw(BAD[field][1] if kind == "bad" else JUNK)
    check_api(app, client, body, broken={field} if kind == "bad" else set())


def raw_bodies() -> st.SearchStrategy[bytes]:
    valid = api_bodies().map(lambda case: json.dumps(case[0]).encode())
    return st.one_of(
        JUNK.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
        st.tuples(valid, st.integers(1, 400)).map(lambda p: p[0][: p[1]]),  # cut short
        st.tuples(valid, st.binary(min_size=1, max_size=4), st.integers(0, 400)).map(
            lambda p: p[0][: p[2]] + p[1] + p[0][p[2] :]
        ),
        st.binary(max_size=300),
        st.sampled_from(
            [
                b"",
                b"NaN",
                b"{",
                b"}",
                b"{}}",
                b'{"a"}',
                b"{'trials': 2}",
                b'{"name": "\xff\xfe"}',
                b"\xef\xbb\xbf{}",
                "{}".encode("utf-16"),
                b'{"trials": 1' + b"0" * 5000 + b"}",
                b'{"lr_min": NaN}',
                b'{"lr_max": -Infinity}',
                b"[]",
                b"null",
                b"0",
                b'"{}"',
            ]
        ),
        st.integers(500, 30_000).map(lambda n: b"[" * n),  # deeper than the parser's stack
        st.integers(500, 12_000).map(lambda n: b'{"layers": ' + b"[" * n + b"]" * n + b"}"),
    ).filter(lambda raw: len(raw) < MAX_BODY)


def decoded(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


@settings(FUZZ, max_examples=150)
@given(raw=raw_bodies())
def test_api_answers_any_bytes_with_201_or_400(app, client, raw):
    before = row_counts()
    response = client.post("/api/searches", data=raw, content_type="application/json")
    body = decoded(raw)
    event(f"status {response.status_code}")
    if isinstance(body, dict):
        assert_api_answer(app, response, body)
    else:
        assert response.status_code == 400, response.get_data(as_text=True)
        assert "JSON object" in strict_json(response)["reason"]
    if response.status_code == 201:
        assert_stored(app, response.get_json()["id"], expected_spec(body, app), before)
    else:
        assert row_counts() == before


# ---- the new-search form ---------------------------------------------------------------


def assert_form_rejection(response, errors: dict[str, str], broken: set[str]) -> None:
    """The form page again, each message next to its field."""
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<form class="panel search-form"' in page
    assert set(broken) <= set(errors)
    for field, message in errors.items():
        assert f'id="{field}-error"' in page and str(escape(message)) in page


@pytest.mark.slow
@settings(FUZZ, max_examples=150)
@given(case=form_bodies())
def test_form_answers_any_settings_with_a_redirect_or_400(app, client, case):
    data, broken = case
    before = row_counts()
    response = client.post("/searches/new", data=data)
    event(f"status {response.status_code}")
    expected = expected_spec({f: data.get(f) for f in FIELDS}, app)
    if isinstance(expected, SearchSpec):
        assert not broken
        assert response.status_code == 303, response.get_data(as_text=True)
        search_id = int(re.fullmatch(r"/searches/(\d+)", response.location)[1])
        assert_stored(app, search_id, expected, before)
    else:
        assert response.status_code == 400, response.get_data(as_text=True)
        assert_form_rejection(response, expected.errors, broken)
        assert row_counts() == before


GOOD_FORM = {f: as_text(v) for f, v in SearchSpec(layers=[64, 10], trials=2).as_dict().items()}


@settings(FUZZ, max_examples=60)
@given(field=st.sampled_from(FIELDS), junk=st.binary(max_size=40), junk_only=st.booleans())
def test_form_survives_bytes_that_are_not_utf8(app, client, field, junk, junk_only):
    """Escaped bytes that are not UTF-8 stay escaped (werkzeug's way); a body of junk is 400."""
    before = row_counts()
    quoted = "".join(f"%{b:02X}" for b in junk)
    others = "&".join(f"{f}={quote(v)}" for f, v in GOOD_FORM.items() if f != field)
    body = quoted if junk_only else f"{others}&{field}={quoted}"
    response = client.post(
        "/searches/new", data=body, content_type="application/x-www-form-urlencoded"
    )
    received: dict[str, str] = {}  # as the server reads it: the first value of each key
    for key, value in parse_qsl(body, keep_blank_values=True, errors="werkzeug.url_quote"):
        received.setdefault(key, value)
    expected = expected_spec({f: received.get(f) for f in FIELDS}, app)
    if isinstance(expected, SearchSpec):
        assert response.status_code == 303
        assert_stored(app, int(response.location.rsplit("/", 1)[1]), expected, before)
    else:
        assert response.status_code == 400
        assert_form_rejection(response, expected.errors, set())
        assert row_counts() == before


# ---- caps -----------------------------------------------------------------------------


@pytest.mark.slow
@settings(FUZZ, max_examples=15)
@given(
    field=st.sampled_from(FIELDS),
    size=st.integers(MAX_BODY + 1, 3 * MAX_BODY),
    use_form=st.booleans(),
)
def test_bodies_above_the_size_cap_are_413_and_write_nothing(app, client, field, size, use_form):
    before = row_counts()
    if use_form:
        response = client.post("/searches/new", data={"trials": "2", field: "9" * size})
        assert response.mimetype == "text/html"
    else:
        response = post_api(client, {"trials": 2, field: "9" * size})
        assert strict_json(response)["reason"]
    assert response.status_code == 413
    assert row_counts() == before


@settings(FUZZ, max_examples=50)
@given(use_form=st.booleans(), data=st.data())
def test_the_active_search_cap_holds_under_fuzzed_requests(app, client, use_form, data):
    """Bad settings are 400 before the cap is looked at; good ones are 429 once it is full."""
    app.config["MAX_ACTIVE_SEARCHES"] = 3
    body = data.draw(form_bodies() if use_form else api_bodies())[0]
    before = row_counts()
    active = db.session.execute(
        select(func.count()).select_from(Search).where(Search.status.in_((QUEUED, RUNNING)))
    ).scalar_one()
    if use_form:
        response = client.post("/searches/new", data=body)
        expected = expected_spec({f: body.get(f) for f in FIELDS}, app)
    else:
        response = post_api(client, body)
        expected = expected_spec(as_received(body), app)
    if isinstance(expected, SpecError):
        assert response.status_code == 400
        assert row_counts() == before
    elif active >= 3:
        assert response.status_code == 429
        reason = response.get_data(as_text=True) if use_form else strict_json(response)["reason"]
        assert "the cap is 3" in reason
        assert row_counts() == before
    else:
        assert response.status_code == (303 if use_form else 201)
        assert row_counts() == (before[0] + 1, before[1] + expected.trials, before[2])


# ---- regressions: what the fuzzers found -----------------------------------------------


@pytest.mark.parametrize("raw", [b'{"name": "\\ud800"}', b'{"name": "run \\udfff 1"}'])
def test_a_lone_surrogate_in_the_name_is_400_not_500(client, raw):
    """JSON may escape half a surrogate pair; SQLite cannot store it as UTF-8 (was a 500)."""
    response = client.post("/api/searches", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert set(strict_json(response)["errors"]) == {"name"}
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize("value", ["run\x00one", "run\none", "run\x1b[31mone"])
def test_control_characters_in_the_name_are_400(client, value):
    """PostgreSQL text refuses NUL (a 500 there); a name is one line of text."""
    response = post_api(client, {"name": value})
    assert response.status_code == 400
    assert set(strict_json(response)["errors"]) == {"name"}
    assert row_counts() == (0, 0, 0)


def test_the_seed_fits_a_32_bit_integer_column(client):
    """PostgreSQL INTEGER ends at 2**31 - 1; 2**32 - 1 was accepted (a 500 there)."""
    refused = post_api(client, {"seed": 2**31})
    assert refused.status_code == 400
    assert strict_json(refused)["errors"] == {"seed": "must be between 0 and 2147483647"}
    assert post_api(client, {"seed": 2**31 - 1}).status_code == 201


def test_the_dataset_fits_its_column(client):
    """The column holds 100 characters; a padded synthetic spec was longer (a 500 there)."""
    fits = "synthetic:" + "0" * (100 - len("synthetic:300x5x3")) + "300x5x3"
    assert len(fits) == 100
    assert post_api(client, {"dataset": fits, "layers": [5, 3]}).status_code == 201
    refused = post_api(client, {"dataset": "synthetic:0" + fits[10:], "layers": [5, 3]})
    assert strict_json(refused)["errors"] == {"dataset": "must be at most 100 characters"}


def test_digits_int_cannot_read_give_a_plain_message(client):
    """str.isdigit passes "²", which int() refuses: the reason was Python's own error."""
    errors = strict_json(post_api(client, {"trials": "²", "layers": "64,²,10"}))["errors"]
    assert errors["trials"] == "must be a whole number"
    assert errors["layers"].startswith("must be whole numbers separated by commas")
    assert post_api(client, {"trials": "\u0663"}).status_code == 201  # Arabic-Indic 3


@pytest.mark.parametrize("raw", [b"[" * 30_000, b'{"layers": ' + b"[" * 20_000 + b"}"])
def test_json_nested_deeper_than_the_parser_is_400_not_500(client, raw):
    """json.loads raises RecursionError, which get_json(silent=True) lets through."""
    response = client.post("/api/searches", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert strict_json(response)["reason"] == "the body must be a JSON object"


# ---- the same on PostgreSQL, where column types bite ------------------------------------


@pytest.fixture
def postgres_app(on_postgresql, app) -> Flask:
    """The app on a fresh PostgreSQL database, dropped afterwards."""
    return app


@pytest.mark.postgres
@pytest.mark.slow
@settings(FUZZ, max_examples=60)
@given(case=api_bodies())
def test_postgresql_stores_whatever_the_api_accepts(postgres_app, case):
    """NUL, a seed above 2**31 - 1 and a 101-character dataset were 500s here alone."""
    body, broken = case
    check_api(postgres_app, postgres_app.test_client(), body, broken)
