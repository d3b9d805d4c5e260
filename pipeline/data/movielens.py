"""MovieLens-1M reader: `ratings.dat`, `users.dat`, `movies.dat` to a raw-log CSV.

Input formats (GroupLens ml-1m README; fields separated by `::`, one record a line):

    ratings.dat  UserID::MovieID::Rating::Timestamp      (ASCII)
    users.dat    UserID::Gender::Age::Occupation::Zip-code   (latin-1)
    movies.dat   MovieID::Title (Year)::Genres            (latin-1, genres `|`-separated)

Any subset works, e.g. the first lines of `ratings.dat` only. The output is the
raw-log CSV of `raw_log_csv` (columns `features.RAW_LOG_COLUMNS`), one row per rating:

    raw-log column       MovieLens value
    -------------------  ------------------------------------------------------------
    user_id              UserID (decimal, leading zeros dropped)
    item_id              MovieID (decimal, leading zeros dropped)
    request_id           missing (MovieLens has no feed requests)
    timestamp            Timestamp (Unix seconds)
    position             missing (no ranked list was shown)
    device               "web" (MovieLens is a web site)
    surface              "catalog" (movies were rated from the catalogue)
    position_randomized  missing (= 0)
    user_first_seen_ts   the user's earliest rating Timestamp in the ratings read
    item_upload_ts       the movie's earliest rating Timestamp in the ratings read:
                         the analog of the time the movie entered the catalogue
                         (ml-1m has no catalogue-entry dates)
    user_gender          Gender from users.dat ("M"/"F")
    user_age             Age code from users.dat (1, 18, 25, 35, 45, 50, 56)
    user_occupation      Occupation code from users.dat (0-20)
    item_genres          Genres from movies.dat, as a list
    item_duration_s      missing
    item_year            the year in the title's trailing "(YYYY)"; missing without one
    click                1 (a rating means the movie was watched)
    watch_time_s         missing
    like                 1 if Rating >= 4 else 0
    rating               Rating, as a float (the satisfaction label)

Choices:
- Rows are sorted by (timestamp, user_id, item_id), ids compared as numbers; the sort
  is stable, so equal keys keep their order in ratings.dat. The output is deterministic.
- first-seen and upload times come from the ratings actually read, so they depend on
  the subset: on a partial file they are the earliest rating in that part.
- A rating whose user is not in users.dat (or movie not in movies.dat), including one
  whose line there was rejected, is kept with those side features empty, and counted
  in the report.
- A malformed line in any of the three files (wrong field count, a non-integer id or
  timestamp, a rating outside 1..5, bytes that do not decode, a duplicate user or
  movie id) is neither fatal nor silently dropped: it is written to the rejects file
  `<out_csv stem>.rejects.csv` (columns file, line_number, reason, raw_line; the
  reason names the field) and counted. The rejects file is always written, with
  just its header when nothing was rejected.
- Ratings may be any number in 1..5 (ml-1m has whole stars only; later MovieLens
  releases have halves).
- Memory: ratings are held as compact numeric arrays (int64/float64, about 100 bytes a
  rating with the sort order and first-time columns), not as per-row objects; the rows
  are built one at a time while writing.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np

from watchnext.models import features
from watchnext.pipeline.data.raw_log_csv import RawLogCsvWriter

logger = logging.getLogger(__name__)

MOVIELENS_DEVICE = "web"
MOVIELENS_SURFACE = "catalog"
LIKE_MIN_RATING = 4.0
MIN_RATING = 1.0
MAX_RATING = 5.0

RATINGS_ENCODING = "ascii"
USERS_ENCODING = "latin-1"
MOVIES_ENCODING = "latin-1"

FIELD_SEPARATOR = "::"
GENRE_SEPARATOR = "|"
RATINGS_FIELDS = ("UserID", "MovieID", "Rating", "Timestamp")
USERS_FIELDS = ("UserID", "Gender", "Age", "Occupation", "Zip-code")
MOVIES_FIELDS = ("MovieID", "Title", "Genres")
REJECTS_COLUMNS = ("file", "line_number", "reason", "raw_line")
_WRITE_CHUNK_ROWS = 65_536

# At most 18 digits, so every accepted integer fits an int64 array.
_INTEGER = re.compile(r"[0-9]{1,18}")
_DECIMAL = re.compile(r"[0-9]{1,3}(\.[0-9]{1,6})?")
_TITLE_YEAR = re.compile(r"\(([0-9]{4})\)\s*$")

T = TypeVar("T")


class MalformedLineError(ValueError):
    """A line that does not follow its file's format; the message names the field."""


class UserInfo(NamedTuple):
    gender: str
    age: int
    occupation: int


class MovieInfo(NamedTuple):
    genres: tuple[str, ...]
    year: int | None


class Rating(NamedTuple):
    user_id: int
    movie_id: int
    rating: float
    timestamp: int


class MovieLensFiles(NamedTuple):
    ratings: Path
    users: Path
    movies: Path


@dataclass(frozen=True)
class ConversionReport:
    """Counts of one conversion. rows_* count lines of the ratings file."""

    out_csv: str
    rejects_path: str
    rows_read: int
    rows_written: int
    rows_rejected: int
    ratings_unknown_user: int
    ratings_unknown_movie: int
    users_read: int
    users_rejected: int
    movies_read: int
    movies_rejected: int
    distinct_users: int
    distinct_items: int

    @property
    def rejects_total(self) -> int:
        return self.rows_rejected + self.users_rejected + self.movies_rejected

    def summary(self) -> str:
        return (
            f"MovieLens -> {self.out_csv}: ratings read {self.rows_read}, "
            f"written {self.rows_written}, rejected {self.rows_rejected}, "
            f"unknown user {self.ratings_unknown_user}, "
            f"unknown movie {self.ratings_unknown_movie}; "
            f"{self.distinct_users} users, {self.distinct_items} items; "
            f"users.dat {self.users_read} read / {self.users_rejected} rejected, "
            f"movies.dat {self.movies_read} read / {self.movies_rejected} rejected; "
            f"rejects in {self.rejects_path}"
        )


# ---------------------------------------------------------------- line parsers


def _split_fields(text: str, names: tuple[str, ...]) -> list[str]:
    fields = text.split(FIELD_SEPARATOR)
    if len(fields) != len(names):
        raise MalformedLineError(
            f"wrong field count: expected {len(names)} ({FIELD_SEPARATOR.join(names)}), got {len(fields)}"
        )
    return [field.strip() for field in fields]


def _parse_integer(value: str, name: str) -> int:
    if not _INTEGER.fullmatch(value):
        raise MalformedLineError(f"{name}: not a non-negative integer: {value!r}")
    return int(value)


def _parse_rating_value(value: str) -> float:
    if not _DECIMAL.fullmatch(value):
        raise MalformedLineError(f"Rating: not a non-negative number: {value!r}")
    rating = float(value)
    if not MIN_RATING <= rating <= MAX_RATING:
        raise MalformedLineError(f"Rating: {value} outside {MIN_RATING:g}..{MAX_RATING:g}")
    return rating


def parse_rating_line(text: str) -> Rating:
    user, movie, rating, timestamp = _split_fields(text, RATINGS_FIELDS)
    return Rating(
        user_id=_parse_integer(user, "UserID"),
        movie_id=_parse_integer(movie, "MovieID"),
        rating=_parse_rating_value(rating),
        timestamp=_parse_integer(timestamp, "Timestamp"),
    )


def parse_user_line(text: str) -> tuple[int, UserInfo]:
    user, gender, age, occupation, _zip_code = _split_fields(text, USERS_FIELDS)
    user_id = _parse_integer(user, "UserID")
    if not gender:
        raise MalformedLineError("Gender: empty")
    info = UserInfo(
        gender=gender,
        age=_parse_integer(age, "Age"),
        occupation=_parse_integer(occupation, "Occupation"),
    )
    return user_id, info


def parse_title_year(title: str) -> int | None:
    match = _TITLE_YEAR.search(title)
    return int(match.group(1)) if match else None


def parse_movie_line(text: str) -> tuple[int, MovieInfo]:
    movie, title, genres = _split_fields(text, MOVIES_FIELDS)
    movie_id = _parse_integer(movie, "MovieID")
    genre_list = tuple(genre for genre in genres.split(GENRE_SEPARATOR) if genre)
    return movie_id, MovieInfo(genres=genre_list, year=parse_title_year(title))


# ------------------------------------------------------------- reading files


class _RejectsWriter:
    """Writes rejected lines to a CSV file."""

    def __init__(self, path: Path):
        self.path = path
        self._file = None
        self._writer = None

    def __enter__(self) -> _RejectsWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(REJECTS_COLUMNS)
        return self

    def reject(self, file: str, line_number: int, reason: str, raw_line: str) -> None:
        self._writer.writerow((file, line_number, reason, raw_line))

    def __exit__(self, *exc_info) -> None:
        self._file.close()


@dataclass
class _LineCounts:
    read: int = 0
    rejected: int = 0


def _decode(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        bad_byte = raw[error.start]
        raise MalformedLineError(
            f"undecodable: byte 0x{bad_byte:02x} at offset {error.start} is not {encoding}"
        ) from None


def _parse_lines(
    path: Path,
    encoding: str,
    parse: Callable[[str], T],
    rejects: _RejectsWriter,
    counts: _LineCounts,
) -> Iterator[T]:
    """Yields each well-formed line's parse; sends the others to `rejects`."""
    with open(path, "rb") as file:
        for line_number, raw in enumerate(file, start=1):
            counts.read += 1
            raw = raw.rstrip(b"\r\n")
            try:
                parsed = parse(_decode(raw, encoding))
            except MalformedLineError as error:
                counts.rejected += 1
                raw_text = raw.decode(encoding, errors="backslashreplace")
                rejects.reject(str(path), line_number, str(error), raw_text)
            else:
                yield parsed


def _read_side_table(
    path: str | os.PathLike,
    encoding: str,
    parse: Callable[[str], tuple[int, T]],
    id_name: str,
    rejects: _RejectsWriter,
) -> tuple[dict[int, T], _LineCounts]:
    """Reads users.dat or movies.dat into {id: info}."""
    table: dict[int, T] = {}
    counts = _LineCounts()

    def parse_unique(text: str) -> tuple[int, T]:
        key, info = parse(text)
        if key in table:
            raise MalformedLineError(f"{id_name}: duplicate id {key} (the first one is kept)")
        return key, info

    for key, info in _parse_lines(Path(path), encoding, parse_unique, rejects, counts):
        table[key] = info
    return table, counts


@dataclass
class _RatingArrays:
    users: np.ndarray
    movies: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    counts: _LineCounts


def _read_ratings(path: str | os.PathLike, rejects: _RejectsWriter) -> _RatingArrays:
    users, movies, timestamps = array("q"), array("q"), array("q")
    ratings = array("d")
    counts = _LineCounts()
    for rating in _parse_lines(Path(path), RATINGS_ENCODING, parse_rating_line, rejects, counts):
        users.append(rating.user_id)
        movies.append(rating.movie_id)
        ratings.append(rating.rating)
        timestamps.append(rating.timestamp)
    return _RatingArrays(
        users=np.frombuffer(users, dtype=np.int64),
        movies=np.frombuffer(movies, dtype=np.int64),
        ratings=np.frombuffer(ratings, dtype=np.float64),
        timestamps=np.frombuffer(timestamps, dtype=np.int64),
        counts=counts,
    )


# ------------------------------------------------------------------ converting


def _min_per_key(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each position i, the minimum of `values` over all positions with keys[i]."""
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    minima = np.full(unique_keys.shape, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(minima, inverse, values)
    return minima[inverse]


def rejects_path_for(out_csv: str | os.PathLike) -> Path:
    out = Path(out_csv)
    return out.with_name(out.stem + ".rejects.csv")


def _raw_log_row(
    user_id: int,
    movie_id: int,
    rating: float,
    timestamp: int,
    first_seen: int,
    upload: int,
    user: UserInfo | None,
    movie: MovieInfo | None,
) -> dict[str, object]:
    # Columns left out (request_id, position, ...) are written as missing.
    row: dict[str, object] = {
        features.USER_ID: str(user_id),
        features.ITEM_ID: str(movie_id),
        features.TIMESTAMP: timestamp,
        features.DEVICE: MOVIELENS_DEVICE,
        features.SURFACE: MOVIELENS_SURFACE,
        features.USER_FIRST_SEEN_TS: first_seen,
        features.ITEM_UPLOAD_TS: upload,
        features.CLICK: 1,
        features.LIKE: int(rating >= LIKE_MIN_RATING),
        features.RATING: rating,
    }
    if user is not None:
        row[features.USER_GENDER] = user.gender
        row[features.USER_AGE] = user.age
        row[features.USER_OCCUPATION] = user.occupation
    if movie is not None:
        row[features.ITEM_GENRES] = list(movie.genres) or None
        row[features.ITEM_YEAR] = movie.year
    return row


def _sorted_rating_tuples(
    ratings: _RatingArrays,
) -> Iterator[tuple[int, int, float, int, int, int]]:
    """(user, movie, rating, timestamp, first seen, upload) in output order."""
    order = np.lexsort((ratings.movies, ratings.users, ratings.timestamps))  # stable
    first_seen = _min_per_key(ratings.users, ratings.timestamps)
    upload = _min_per_key(ratings.movies, ratings.timestamps)
    # Python objects for one chunk at a time, not for all ratings at once.
    for start in range(0, len(order), _WRITE_CHUNK_ROWS):
        chunk = order[start : start + _WRITE_CHUNK_ROWS]
        yield from zip(
            ratings.users[chunk].tolist(),
            ratings.movies[chunk].tolist(),
            ratings.ratings[chunk].tolist(),
            ratings.timestamps[chunk].tolist(),
            first_seen[chunk].tolist(),
            upload[chunk].tolist(),
            strict=True,
        )


def _write_raw_log(
    out_csv: str | os.PathLike,
    ratings: _RatingArrays,
    users: dict[int, UserInfo],
    movies: dict[int, MovieInfo],
) -> tuple[int, int, int]:
    """Writes the sorted rows; returns (rows written, unknown-user and unknown-movie rows)."""
    unknown_user = unknown_movie = 0
    with RawLogCsvWriter(out_csv) as writer:
        for user_id, movie_id, rating, timestamp, seen, uploaded in _sorted_rating_tuples(ratings):
            user = users.get(user_id)
            movie = movies.get(movie_id)
            unknown_user += user is None
            unknown_movie += movie is None
            writer.write(_raw_log_row(user_id, movie_id, rating, timestamp, seen, uploaded, user, movie))
        return writer.rows_written, unknown_user, unknown_movie


def convert_movielens(
    ratings_path: str | os.PathLike,
    users_path: str | os.PathLike,
    movies_path: str | os.PathLike,
    out_csv: str | os.PathLike,
) -> ConversionReport:
    """Converts MovieLens-1M files to a raw-log CSV at `out_csv` (see the module doc)."""
    rejects_path = rejects_path_for(out_csv)
    with _RejectsWriter(rejects_path) as rejects:
        users, user_lines = _read_side_table(users_path, USERS_ENCODING, parse_user_line, "UserID", rejects)
        movies, movie_lines = _read_side_table(
            movies_path, MOVIES_ENCODING, parse_movie_line, "MovieID", rejects
        )
        ratings = _read_ratings(ratings_path, rejects)
        rows_written, unknown_user, unknown_movie = _write_raw_log(out_csv, ratings, users, movies)
    report = ConversionReport(
        out_csv=os.fspath(out_csv),
        rejects_path=str(rejects_path),
        rows_read=ratings.counts.read,
        rows_written=rows_written,
        rows_rejected=ratings.counts.rejected,
        ratings_unknown_user=unknown_user,
        ratings_unknown_movie=unknown_movie,
        users_read=user_lines.read,
        users_rejected=user_lines.rejected,
        movies_read=movie_lines.read,
        movies_rejected=movie_lines.rejected,
        distinct_users=len(np.unique(ratings.users)),
        distinct_items=len(np.unique(ratings.movies)),
    )
    logger.info(report.summary())
    return report


def find_movielens_files(data_dir: str | os.PathLike) -> MovieLensFiles:
    """Finds users.dat, movies.dat and ratings.dat (else the one `ratings*.dat`) in a folder."""
    folder = Path(data_dir)
    ratings = folder / "ratings.dat"
    if not ratings.is_file():
        candidates = sorted(folder.glob("ratings*.dat"))
        if len(candidates) != 1:
            found = ", ".join(c.name for c in candidates) or "none"
            raise FileNotFoundError(
                f"{folder}: need ratings.dat or exactly one ratings*.dat file; found {found}"
            )
        ratings = candidates[0]
    files = MovieLensFiles(ratings=ratings, users=folder / "users.dat", movies=folder / "movies.dat")
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: MovieLens file not found")
    return files


def convert_movielens_dir(data_dir: str | os.PathLike, out_csv: str | os.PathLike) -> ConversionReport:
    files = find_movielens_files(data_dir)
    return convert_movielens(files.ratings, files.users, files.movies, out_csv)
