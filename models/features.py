"""Feature and label names: the one place code refers to them.

The raw interaction-log schema itself (types, enums, presence, docs) is
`schemas/raw_log/schema.pbtxt`; `tests/test_schema.py` checks that the names
here and there agree.
"""

# Identifiers and time.
USER_ID = "user_id"
ITEM_ID = "item_id"
REQUEST_ID = "request_id"
TIMESTAMP = "timestamp"

# Context (bias features for the shallow tower, scenario for multi-scenario).
POSITION = "position"
DEVICE = "device"
SURFACE = "surface"
POSITION_RANDOMIZED = "position_randomized"

# Cold-start inputs.
USER_FIRST_SEEN_TS = "user_first_seen_ts"
ITEM_UPLOAD_TS = "item_upload_ts"

# Side features (optional; MovieLens demographics and genres, synthetic item length).
USER_GENDER = "user_gender"
USER_AGE = "user_age"
USER_OCCUPATION = "user_occupation"
ITEM_GENRES = "item_genres"
ITEM_DURATION_S = "item_duration_s"
ITEM_YEAR = "item_year"

# Labels: engagement (click, watch time) and satisfaction (like, rating).
CLICK = "click"
WATCH_TIME_S = "watch_time_s"
LIKE = "like"
RATING = "rating"

LABELS = (CLICK, WATCH_TIME_S, LIKE, RATING)

# Column order of raw-log CSV files written by our generators.
RAW_LOG_COLUMNS = (
    USER_ID,
    ITEM_ID,
    REQUEST_ID,
    TIMESTAMP,
    POSITION,
    DEVICE,
    SURFACE,
    POSITION_RANDOMIZED,
    USER_FIRST_SEEN_TS,
    ITEM_UPLOAD_TS,
    USER_GENDER,
    USER_AGE,
    USER_OCCUPATION,
    ITEM_GENRES,
    ITEM_DURATION_S,
    ITEM_YEAR,
    CLICK,
    WATCH_TIME_S,
    LIKE,
    RATING,
)

# Enumerations (also the string domains of the schema).
DEVICES = ("android", "ios", "web", "tv")
SURFACES = ("feed", "search", "related", "catalog")

# Separator of multi-valued fields (item_genres) in raw-log CSV files.
MULTI_VALUE_SEPARATOR = "|"
