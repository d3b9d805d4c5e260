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

# Point-in-time features written by FeatureGen (components/feature_gen): each is
# computed only from events strictly before the impression's timestamp.
USER_VIEW_COUNT = "user_view_count"  # prior plays (clicks) of the user
USER_VIEW_COUNT_BUCKET = "user_view_count_bucket"  # bucketized: POSO's personalization code
USER_HOURS_SINCE_FIRST_SEEN = "user_hours_since_first_seen"
USER_IS_NEW = "user_is_new"  # 1 if first seen within T_du hours
USER_COHORT = "user_cohort"  # one of USER_COHORTS
USER_RECENT_CLICK_RATE = "user_recent_click_rate"  # clicks / impressions over the last N
ITEM_AGE_DAYS = "item_age_days"
ITEM_EXPOSURE_COUNT = "item_exposure_count"  # prior impressions of the item
ITEM_IS_NEW = "item_is_new"  # 1 if age < T_dv days and exposures < T_s
HOUR_OF_DAY = "hour_of_day"  # UTC hour of the impression, 0-23

USER_COHORTS = ("new", "light", "regular")

# Sequence examples written by SequenceGen (components/sequence_gen). Lists hold
# a user's most recent events before the target, oldest first.
HISTORY_ITEM_IDS = "history_item_ids"
HISTORY_TIMESTAMPS = "history_timestamps"
HISTORY_ACTIONS = "history_actions"  # action code per event: click + 2 * like
HISTORY_CLICKS = "history_clicks"
HISTORY_LIKES = "history_likes"
HISTORY_WATCH_TIMES_S = "history_watch_times_s"
HISTORY_RATINGS = "history_ratings"  # 0 = no rating
HISTORY_LENGTH = "history_length"
TARGET_ITEM_ID = "target_item_id"
TARGET_TIMESTAMP = "target_timestamp"
TARGET_CLICK = "target_click"
TARGET_LIKE = "target_like"
TARGET_WATCH_TIME_S = "target_watch_time_s"
TARGET_RATING = "target_rating"  # 0 = no rating

# Transformed features written by the ranker's Transform step
# (models/ranker/preprocessing.py). Raw features it keeps keep their names
# (an id becomes its vocabulary index, a count its log1p z-score, ...).
ITEM_AGE_BUCKET = "item_age_bucket"
ITEM_GENRE_IDS = "item_genre_ids"  # up to MAX_GENRES vocabulary indices + 1, 0 = padding
WATCH_TIME_LOG1P = "watch_time_log1p"  # label: log1p(watch_time_s), 0 when missing
