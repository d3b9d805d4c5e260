"""The raw-log schema and models/features.py name the same fields, each documented."""

from tensorflow_metadata.proto.v0 import schema_pb2

from watchnext.components.log_example_gen.raw_log import load_raw_log_schema
from watchnext.models import features


def test_schema_and_feature_names_agree():
    schema = load_raw_log_schema()
    assert [f.name for f in schema.feature] == list(features.RAW_LOG_COLUMNS)


def test_every_field_is_documented():
    for feature in load_raw_log_schema().feature:
        comments = " ".join(feature.annotation.comment)
        assert len(comments) > 20, f"{feature.name} has no documentation"


def test_enum_domains_match_features_module():
    domains = {d.name: tuple(d.value) for d in load_raw_log_schema().string_domain}
    assert domains == {features.DEVICE: features.DEVICES, features.SURFACE: features.SURFACES}


def test_required_and_optional_fields():
    schema = load_raw_log_schema()
    required = {f.name for f in schema.feature if f.presence.min_fraction == 1}
    assert required == {
        features.USER_ID,
        features.ITEM_ID,
        features.TIMESTAMP,
        features.DEVICE,
        features.SURFACE,
        features.USER_FIRST_SEEN_TS,
        features.ITEM_UPLOAD_TS,
        features.CLICK,
    }
    by_name = {f.name: f for f in schema.feature}
    assert by_name[features.POSITION].int_domain.min == 1
    assert by_name[features.RATING].type == schema_pb2.FLOAT
