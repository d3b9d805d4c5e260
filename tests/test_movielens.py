"""Tests of the MovieLens-1M reader (pipeline/data/movielens.py)."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import pytest

import watchnext
from watchnext.models import features
from watchnext.pipeline.data import movielens
from watchnext.pipeline.data.movielens import (
    convert_movielens,
    convert_movielens_dir,
    find_movielens_files,
    rejects_path_for,
)

USERS_LINES = [
    b"1::F::1::10::48067",
    b"2::M::56::16::70072",
    b"3::M::25::15::55117",
    b"4::M::x::7::02460",  # rejected: Age; so user 4's ratings have an unknown user
    b"2::F::18::3::11111",  # rejected: duplicate of user 2
]
MOVIES_LINES = [
    "1::Toy Story (1995)::Animation|Children's|Comedy".encode("latin-1"),
    "73::Misérables, Les (1995)::Drama|Musical".encode("latin-1"),
    "1320::Alien³ (1992)::Action|Horror|Sci-Fi|Thriller".encode("latin-1"),
    b"50::No Year Movie::Drama",
    b"60::Blank (2000)::",
    b"70::Only Title (1990)",  # rejected: field count
]
# Timestamps differ in the last digits only, so the expected order is easy to read.
RATINGS_LINES = [
    b"1::73::5::978300760",
    b"2::1::3::978300100",
    b"1::1::4::978300760",
    b"1::1320::2",
    b"x::1::3::978300000",
    b"1::abc::3::978300000",
    b"2::1::3::soon",
    b"3::73::6::978300001",
    b"3::1::4::97830\xff0200",
    b"3::9999::1::978300300",
    b"4::1320::4::978300050",
    b"2::50::1::978300900\r",  # a CRLF line end
    b"3::73::4::978300200",
    b"2::60::3.5::978300100",
    b"",
    b"1::73::3::978300760",  # same (ts, user, item) as line 1: stays after it
]
RATINGS_FORMAT = "UserID::MovieID::Rating::Timestamp"
EXPECTED_RATING_REJECTS = [
    (4, f"wrong field count: expected 4 ({RATINGS_FORMAT}), got 3", "1::1320::2"),
    (5, "UserID: not a non-negative integer: 'x'", "x::1::3::978300000"),
    (6, "MovieID: not a non-negative integer: 'abc'", "1::abc::3::978300000"),
    (7, "Timestamp: not a non-negative integer: 'soon'", "2::1::3::soon"),
    (8, "Rating: 6 outside 1..5", "3::73::6::978300001"),
    (9, "undecodable: byte 0xff at offset 14 is not ascii", "3::1::4::97830\\xff0200"),
    (15, f"wrong field count: expected 4 ({RATINGS_FORMAT}), got 1", ""),
]

# Columns that vary, then the expected rows in output order.
VARYING_COLUMNS = (
    features.USER_ID,
    features.ITEM_ID,
    features.TIMESTAMP,
    features.USER_FIRST_SEEN_TS,
    features.ITEM_UPLOAD_TS,
    features.USER_GENDER,
    features.USER_AGE,
    features.USER_OCCUPATION,
    features.ITEM_GENRES,
    features.ITEM_YEAR,
    features.LIKE,
    features.RATING,
)
ANIMATION = "Animation|Children's|Comedy"
ACTION = "Action|Horror|Sci-Fi|Thriller"
MUSICAL = "Drama|Musical"


def ts(seconds_after: int) -> str:
    return str(978_300_000 + seconds_after)


EXPECTED_ROWS = [
    ("4", "1320", ts(50), ts(50), ts(50), "", "", "", ACTION, "1992", "1", "4.0"),
    ("2", "1", ts(100), ts(100), ts(100), "M", "56", "16", ANIMATION, "1995", "0", "3.0"),
    ("2", "60", ts(100), ts(100), ts(100), "M", "56", "16", "", "2000", "0", "3.5"),
    ("3", "73", ts(200), ts(200), ts(200), "M", "25", "15", MUSICAL, "1995", "1", "4.0"),
    ("3", "9999", ts(300), ts(200), ts(300), "M", "25", "15", "", "", "0", "1.0"),
    ("1", "1", ts(760), ts(760), ts(100), "F", "1", "10", ANIMATION, "1995", "1", "4.0"),
    ("1", "73", ts(760), ts(760), ts(200), "F", "1", "10", MUSICAL, "1995", "1", "5.0"),
    ("1", "73", ts(760), ts(760), ts(200), "F", "1", "10", MUSICAL, "1995", "0", "3.0"),
    ("2", "50", ts(900), ts(100), ts(900), "M", "56", "16", "Drama", "", "0", "1.0"),
]
CONSTANT_COLUMNS = {
    features.DEVICE: "web",
    features.SURFACE: "catalog",
    features.CLICK: "1",
}
MISSING_COLUMNS = (
    features.REQUEST_ID,
    features.POSITION,
    features.POSITION_RANDOMIZED,
    features.ITEM_DURATION_S,
    features.WATCH_TIME_S,
)


def write_dat(path: Path, lines: Sequence[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def read_csv(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def key_of(row: dict[str, str]) -> tuple[str, str]:
    return row[features.USER_ID], row[features.ITEM_ID]


def expected_row(values: tuple[str, ...]) -> dict[str, str]:
    row = dict(zip(VARYING_COLUMNS, values, strict=True))
    row.update(CONSTANT_COLUMNS)
    row.update({name: "" for name in MISSING_COLUMNS})
    return {name: row[name] for name in features.RAW_LOG_COLUMNS}


@pytest.fixture
def movielens_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ml"
    folder.mkdir()
    write_dat(folder / "users.dat", USERS_LINES)
    write_dat(folder / "movies.dat", MOVIES_LINES)
    write_dat(folder / "ratings.dat", RATINGS_LINES)
    return folder


def convert(folder: Path, ratings_name: str = "ratings.dat", out_name: str = "out.csv"):
    out_csv = folder.parent / "out" / out_name
    report = convert_movielens(folder / ratings_name, folder / "users.dat", folder / "movies.dat", out_csv)
    return report, out_csv


def test_constants_are_in_the_schema_domains():
    assert movielens.MOVIELENS_DEVICE in features.DEVICES
    assert movielens.MOVIELENS_SURFACE in features.SURFACES


@pytest.mark.parametrize("chunk_rows", [2, 65_536])
def test_rows_are_mapped_exactly(movielens_dir: Path, chunk_rows: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(movielens, "_WRITE_CHUNK_ROWS", chunk_rows)
    _, out_csv = convert(movielens_dir)
    header, rows = read_csv(out_csv)
    assert header == list(features.RAW_LOG_COLUMNS)
    assert rows == [expected_row(values) for values in EXPECTED_ROWS]


def test_report_counts(movielens_dir: Path):
    report, out_csv = convert(movielens_dir)
    assert report.out_csv == str(out_csv)
    assert report.rejects_path == str(out_csv.parent / "out.rejects.csv")
    assert report.rows_read == len(RATINGS_LINES)
    assert report.rows_written == len(EXPECTED_ROWS)
    assert report.rows_rejected == len(EXPECTED_RATING_REJECTS)
    assert report.rows_read == report.rows_written + report.rows_rejected
    assert report.ratings_unknown_user == 1
    assert report.ratings_unknown_movie == 1
    assert (report.users_read, report.users_rejected) == (5, 2)
    assert (report.movies_read, report.movies_rejected) == (6, 1)
    assert report.rejects_total == 10
    assert (report.distinct_users, report.distinct_items) == (4, 6)


def test_rejects_file_names_file_line_and_field(movielens_dir: Path):
    report, _ = convert(movielens_dir)
    header, rows = read_csv(report.rejects_path)
    assert header == list(movielens.REJECTS_COLUMNS)
    got = [(r["file"], int(r["line_number"]), r["reason"], r["raw_line"]) for r in rows]
    users, movies, ratings = (str(movielens_dir / name) for name in ("users", "movies", "ratings"))
    assert got == [
        (f"{users}.dat", 4, "Age: not a non-negative integer: 'x'", "4::M::x::7::02460"),
        (f"{users}.dat", 5, "UserID: duplicate id 2 (the first one is kept)", "2::F::18::3::11111"),
        (
            f"{movies}.dat",
            6,
            "wrong field count: expected 3 (MovieID::Title::Genres), got 2",
            "70::Only Title (1990)",
        ),
    ] + [(f"{ratings}.dat", *reject) for reject in EXPECTED_RATING_REJECTS]


def test_rejects_file_has_only_a_header_without_rejects(tmp_path: Path):
    folder = tmp_path / "ml"
    folder.mkdir()
    write_dat(folder / "users.dat", USERS_LINES[:3])
    write_dat(folder / "movies.dat", MOVIES_LINES[:3])
    write_dat(folder / "ratings.dat", [b"1::1::5::1", b"2::73::1::2"])
    report, _ = convert(folder)
    assert report.rejects_total == 0
    header_only = "file,line_number,reason,raw_line\n"
    assert Path(report.rejects_path).read_text(encoding="utf-8") == header_only


def test_output_does_not_depend_on_input_order(movielens_dir: Path):
    _, first_csv = convert(movielens_dir, out_name="first.csv")
    _, again_csv = convert(movielens_dir, out_name="again.csv")
    # Reversed, but the two lines with equal sort keys keep their order.
    tied = [RATINGS_LINES[0], RATINGS_LINES[-1]]
    reordered = [line for line in RATINGS_LINES[::-1] if line not in tied] + tied
    write_dat(movielens_dir / "ratings_reordered.dat", reordered)
    _, reordered_csv = convert(movielens_dir, "ratings_reordered.dat", "reordered.csv")
    assert first_csv.read_bytes() == again_csv.read_bytes() == reordered_csv.read_bytes()


def test_equal_keys_keep_their_input_order(movielens_dir: Path):
    swapped = list(RATINGS_LINES)
    swapped[0], swapped[-1] = swapped[-1], swapped[0]
    write_dat(movielens_dir / "ratings.dat", swapped)
    _, out_csv = convert(movielens_dir)
    _, rows = read_csv(out_csv)
    tied = [row[features.RATING] for row in rows if key_of(row) == ("1", "73")]
    assert tied == ["3.0", "5.0"]


def assert_first_times_are_minima(rows: list[dict[str, str]]) -> None:
    first_seen: dict[str, int] = {}
    upload: dict[str, int] = {}
    for row in rows:
        timestamp = int(row[features.TIMESTAMP])
        user, item = row[features.USER_ID], row[features.ITEM_ID]
        first_seen[user] = min(first_seen.get(user, timestamp), timestamp)
        upload[item] = min(upload.get(item, timestamp), timestamp)
    for row in rows:
        assert int(row[features.USER_FIRST_SEEN_TS]) == first_seen[row[features.USER_ID]]
        assert int(row[features.ITEM_UPLOAD_TS]) == upload[row[features.ITEM_ID]]


def test_first_seen_and_upload_are_per_user_and_item_minima(movielens_dir: Path):
    _, out_csv = convert(movielens_dir)
    _, rows = read_csv(out_csv)
    assert_first_times_are_minima(rows)
    # The rejected line 8 (user 3, movie 73, an earlier time) must not count.
    uploads_of_73 = {row[features.ITEM_UPLOAD_TS] for row in rows if row[features.ITEM_ID] == "73"}
    assert uploads_of_73 == {ts(200)}


def test_logs_a_one_line_summary(movielens_dir: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger=movielens.__name__):
        report, _ = convert(movielens_dir)
    messages = [r.getMessage() for r in caplog.records if r.name == movielens.__name__]
    assert messages == [report.summary()]
    assert "\n" not in messages[0] and "rejected 7" in messages[0]


def test_title_year_and_latin1_titles():
    assert movielens.parse_title_year("Misérables, Les (1995)") == 1995
    assert movielens.parse_title_year("City of Lost Children, The (1995) ") == 1995
    assert movielens.parse_title_year("Se7en (a.k.a. 1995)") is None
    movie_id, info = movielens.parse_movie_line("1320::Alien³ (1992)::Action|Horror")
    assert (movie_id, info) == (1320, movielens.MovieInfo(("Action", "Horror"), 1992))


def test_find_movielens_files(tmp_path: Path):
    for name in ("users.dat", "movies.dat", "ratings_PARTIAL_x.dat"):
        (tmp_path / name).write_bytes(b"")
    assert find_movielens_files(tmp_path).ratings == tmp_path / "ratings_PARTIAL_x.dat"
    (tmp_path / "ratings_other.dat").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="exactly one"):
        find_movielens_files(tmp_path)
    (tmp_path / "ratings.dat").write_bytes(b"")
    assert find_movielens_files(tmp_path).ratings == tmp_path / "ratings.dat"
    (tmp_path / "movies.dat").unlink()
    with pytest.raises(FileNotFoundError, match="movies.dat"):
        find_movielens_files(tmp_path)


def test_rejects_path_is_next_to_the_output():
    assert rejects_path_for("/a/b/log.csv") == Path("/a/b/log.rejects.csv")


# ------------------------------------------------------------ real shared data


def shared_ml1m_dir() -> Path:
    default = Path(watchnext.__file__).resolve().parent.parent / "shared" / "data"
    return Path(os.environ.get("WATCHNEXT_SHARED_DATA", default)) / "ml-1m"


REAL_LINES = 20_000


@pytest.mark.skipif(
    not shared_ml1m_dir().is_dir(),
    reason=f"MovieLens-1M shared data not found at {shared_ml1m_dir()} (set WATCHNEXT_SHARED_DATA)",
)
def test_real_movielens_first_lines(tmp_path: Path):
    source = find_movielens_files(shared_ml1m_dir())
    with open(source.ratings, "rb") as file:
        head = list(islice(file, REAL_LINES))
    ratings = tmp_path / "ratings.dat"
    ratings.write_bytes(b"".join(head))
    out_csv = tmp_path / "ml1m.csv"

    report = convert_movielens(ratings, source.users, source.movies, out_csv)

    input_users = {line.split(b"::")[0] for line in head}
    input_items = {line.split(b"::")[1] for line in head}
    assert report.rows_read == report.rows_written == REAL_LINES
    assert report.rejects_total == 0
    assert (report.ratings_unknown_user, report.ratings_unknown_movie) == (0, 0)
    assert (report.users_read, report.movies_read) == (6040, 3883)
    assert (report.distinct_users, report.distinct_items) == (len(input_users), len(input_items))

    _, rows = read_csv(out_csv)
    assert len(rows) == REAL_LINES
    keys = [(int(row[features.TIMESTAMP]), *map(int, key_of(row))) for row in rows]
    assert keys == sorted(keys)
    assert_first_times_are_minima(rows)
    for row in rows:
        assert {name: row[name] for name in CONSTANT_COLUMNS} == CONSTANT_COLUMNS
        assert all(row[name] == "" for name in MISSING_COLUMNS)
        rating = float(row[features.RATING])
        assert rating in (1.0, 2.0, 3.0, 4.0, 5.0)
        assert row[features.LIKE] == str(int(rating >= 4))
        assert row[features.USER_GENDER] in ("M", "F")
        assert 1919 <= int(row[features.ITEM_YEAR]) <= 2000
        assert row[features.ITEM_GENRES]
    # The file's first line: 1::1193::5::978300760 (One Flew Over the Cuckoo's Nest (1975), Drama).
    first = next(row for row in rows if key_of(row) == ("1", "1193"))
    assert first[features.TIMESTAMP] == "978300760"
    assert [first[name] for name in (features.USER_GENDER, features.USER_AGE)] == ["F", "1"]
    assert first[features.USER_OCCUPATION] == "10"
    assert [first[name] for name in (features.ITEM_GENRES, features.ITEM_YEAR)] == ["Drama", "1975"]
    assert [first[name] for name in (features.LIKE, features.RATING)] == ["1", "5.0"]


def test_convert_movielens_dir(movielens_dir: Path, tmp_path: Path):
    report = convert_movielens_dir(movielens_dir, tmp_path / "dir.csv")
    assert report.rows_written == len(EXPECTED_ROWS)
