"""Reading an import file: the quick way of making plain rows decides as the JSON-body
way does, a file read in any chunks reads the same, and imported ids follow the file."""

from __future__ import annotations

import itertools
import uuid

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.api.targets_import import (
    ImportRejected,
    RecordSplitter,
    RowProblem,
    TargetReader,
    ordered_ids,
)
from dialerd.model import MAX_NAME, OutdialTarget

OUTDIAL = "0b6e7b2c-0000-4000-8000-000000000000"
NOW = "2026-03-02 09:15:30.123456"

numbers = st.one_of(
    st.just(""),
    st.just("  "),
    st.from_regex(r"\+1[2-9][0-9]{9}", fullmatch=True),  # NANP
    st.from_regex(r"\+44[1-9][0-9]{9}", fullmatch=True),
    st.from_regex(r"\+[0-9]{1,16}", fullmatch=True),  # anything, good or bad
    st.from_regex(r" ?\+39 ?0[0-9]{6,10}", fullmatch=True),  # IT: a leading 0
    st.just("555-CALL-NOW"),
    st.just('{"type": "sip", "target": "bob@example.com"}'),
)
texts = st.one_of(
    st.text(max_size=20),
    st.just("x" * (MAX_NAME + 1)),
    st.just('{"timezone": "Europe/Paris"}'),
    st.just('{"timezone": "Mars/Olympus"}'),
    st.just(' {"crm": 1}'),
)


def _cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _read(content: bytes, *, quick: bool) -> tuple[list[OutdialTarget], list[RowProblem]]:
    reader = TargetReader(OUTDIAL, NOW, csv_file=True, quick=quick)
    targets = reader.feed(content)
    try:
        targets += reader.finish()
    except ImportRejected as exc:
        return [], exc.problems
    return targets, []


def _without_ids(targets: list[OutdialTarget]) -> list[OutdialTarget]:
    return [msgspec.structs.replace(target, id="") for target in targets]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(texts, texts, numbers, numbers), min_size=1, max_size=8))
def test_plain_rows_are_made_as_a_json_body_would_make_them(
    rows: list[tuple[str, str, str, str]],
) -> None:
    lines = ["name,data,destination_0,destination_1"]
    lines += [",".join(_cell(cell) for cell in row) for row in rows]
    content = "\n".join(lines).encode()
    quick_targets, quick_problems = _read(content, quick=True)
    slow_targets, slow_problems = _read(content, quick=False)
    assert quick_problems == slow_problems
    assert _without_ids(quick_targets) == _without_ids(slow_targets)


plain_cells = st.one_of(
    numbers.filter(lambda cell: "," not in cell and '"' not in cell),
    # No surrogates: a CSV body is UTF-8, which cannot carry them.
    st.text(
        alphabet=st.characters(blacklist_characters=',"\r\n\x00', blacklist_categories=("Cs",)),
        max_size=12,
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(plain_cells, plain_cells, plain_cells), min_size=1, max_size=8))
def test_a_row_reads_the_same_with_its_cells_quoted_or_not(
    rows: list[tuple[str, str, str]],
) -> None:
    header = "name,destination_0,destination_1"
    bare = "\n".join([header, *(",".join(row) for row in rows)]).encode()
    quoted = "\n".join([header, *(",".join(_cell(cell) for cell in row) for row in rows)])
    bare_targets, bare_problems = _read(bare, quick=True)
    quoted_targets, quoted_problems = _read(quoted.encode(), quick=True)
    assert bare_problems == quoted_problems
    assert _without_ids(bare_targets) == _without_ids(quoted_targets)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet='ab,"\r\n', max_size=12), min_size=1, max_size=6),
    st.lists(st.integers(min_value=0, max_value=80), max_size=6),
)
def test_a_file_in_any_chunks_splits_into_the_same_records(
    records: list[str], cuts: list[int]
) -> None:
    content = ("\ufeff" + "\n".join(records)).encode()
    whole = RecordSplitter(quoted=True)
    expected = whole.feed(content) + whole.finish()
    pieces = RecordSplitter(quoted=True)
    found: list[tuple[int, bytes]] = []
    start = 0
    for cut in sorted(min(cut, len(content)) for cut in cuts):
        found += pieces.feed(content[start:cut])
        start = cut
    found += pieces.feed(content[start:]) + pieces.finish()
    assert found == expected
    assert not any(record.startswith("\ufeff".encode()) for _, record in found)


def test_imported_ids_grow_across_a_wrap_of_their_last_group() -> None:
    start = (5 << 62) | ((1 << 62) - 3)  # the counter's low 62 bits about to wrap
    made = list(itertools.islice(ordered_ids(start), 6))
    values = [uuid.UUID(made_id).int for made_id in made]
    assert values == sorted(values)
    assert len(set(values)) == 6
    for made_id in made:
        assert uuid.UUID(made_id).version == 7
        assert uuid.UUID(made_id).variant == uuid.RFC_4122
    counters = [((value >> 64) & 0xFFF) << 62 | (value & ((1 << 62) - 1)) for value in values]
    assert counters == [start + n for n in range(6)]


def test_imported_ids_are_uuids_that_grow_in_file_order() -> None:
    ids = ordered_ids()
    made = [next(ids) for _ in range(1000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    for text in made[:3]:
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_a_bad_row_after_good_ones_names_its_line_and_field() -> None:
    content = b"name,destination_0\n" + b"".join(
        f"lead {n},+1555{n:07d}\n".encode() for n in range(2000)
    )
    content += b"bad,+1555\n"
    with pytest.raises(ImportRejected) as caught:
        _read_strict(content)
    assert caught.value.bad_rows == 1
    [problem] = caught.value.problems
    assert problem.line == 2002
    assert "destination_0" in problem.problem
    assert "'+1555' is not an E.164 number" in problem.problem


def _read_strict(content: bytes) -> list[OutdialTarget]:
    reader = TargetReader(OUTDIAL, NOW, csv_file=True)
    return reader.feed(content) + reader.finish()
