"""The Extend Music contract in kie.models, every rule at its boundary.

Sources: /work/shared/kie-api/extend-music.openapi.md (the published spec) and
/work/shared/kie-api/README.md (the facts the product follows where they differ).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from documented import EXTEND_EXAMPLE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kie.models import (
    CUSTOM_REQUIRED,
    MODEL_LIMITS,
    MODEL_NAMES,
    STATUS_STAGE,
    CallbackPayload,
    ExtendRequest,
    TaskInfo,
    Track,
    cross_field_problems,
    field_errors,
)

# --- documented data -----------------------------------------------------------


# The README's per-model table, copied by hand: a wrong MODEL_LIMITS fails against it.
EXPECTED_LIMITS: dict[str, tuple[int, int, int]] = {
    "V3_5": (3000, 200, 80),
    "V4": (3000, 200, 80),
    "V4_5": (5000, 1000, 100),
    "V4_5PLUS": (5000, 1000, 100),
    "V5": (5000, 1000, 100),
    "V4_5ALL": (5000, 1000, 80),
}
TEXT_FIELDS = ("prompt", "style", "title")

# Always-required fields only (defaultParamFlag false: inherit the source's parameters).
MINIMAL: dict[str, Any] = {
    "defaultParamFlag": False,
    "audioId": "e231-8cadc7dc",
    "model": "V5",
    "callBackUrl": "https://api.example.com/callback",
}
# Custom parameters, with everything they require.
CUSTOM: dict[str, Any] = {
    **MINIMAL,
    "defaultParamFlag": True,
    "prompt": "A gentle bridge",
    "style": "Classical",
    "title": "Peaceful",
    "continueAt": 60,
}

PYDANTIC_JARGON = (
    "Input should",
    "input_value",
    "type=",
    "validation error",
    "pydantic",
    "Value error",
    "Field required",
)


def wire_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True)


def assert_valid(values: dict[str, Any], **facts: Any) -> ExtendRequest:
    assert field_errors(values, **facts) == {}
    return ExtendRequest.model_validate(values, context=facts or None)


def assert_invalid(values: dict[str, Any], field: str, **facts: Any) -> str:
    """values fail model_validate and field_errors names `field`; returns its message."""
    with pytest.raises(ValidationError):
        ExtendRequest.model_validate(values, context=facts or None)
    problems = field_errors(values, **facts)
    assert field in problems, problems
    assert_plain(problems[field])
    return problems[field]


def assert_plain(message: str) -> None:
    assert isinstance(message, str)
    assert message.strip(), "empty message"
    assert message.endswith("."), message
    for jargon in PYDANTIC_JARGON:
        assert jargon.lower() not in message.lower(), message


# --- the documented example -------------------------------------------------------


def test_documented_example_validates_and_round_trips() -> None:
    request = ExtendRequest.model_validate(EXTEND_EXAMPLE)
    wire = request.to_wire()
    # json-wise equal: 60 and 60.0 compare equal, key order does not matter.
    assert json.loads(json.dumps(wire)) == EXTEND_EXAMPLE
    assert set(wire) == set(EXTEND_EXAMPLE)
    assert None not in wire.values()
    assert field_errors(EXTEND_EXAMPLE) == {}


def test_documented_example_from_json_text() -> None:
    request = ExtendRequest.model_validate_json(json.dumps(EXTEND_EXAMPLE))
    assert request.to_wire() == ExtendRequest.model_validate(EXTEND_EXAMPLE).to_wire()


def test_to_wire_has_no_nulls_and_only_wire_names() -> None:
    wire = ExtendRequest.model_validate(MINIMAL).to_wire()
    assert wire == MINIMAL
    assert None not in wire.values()
    assert wire["defaultParamFlag"] is False  # False is a value, not a null


def test_python_names_also_accepted_and_sent_as_wire_names() -> None:
    request = ExtendRequest(
        default_param_flag=False,
        audio_id="a1",
        model="V4",
        call_back_url="https://example.com/cb",
        negative_tags="metal",
    )
    assert request.to_wire() == {
        "defaultParamFlag": False,
        "audioId": "a1",
        "model": "V4",
        "callBackUrl": "https://example.com/cb",
        "negativeTags": "metal",
    }


@pytest.mark.parametrize("key", ["foo", "customMode", "instrumental", "taskId", "AudioId"])
def test_unknown_keys_are_rejected(key: str) -> None:
    values = {**CUSTOM, key: "x"}
    message = assert_invalid(values, key)
    assert message == "Not a field of this request."


# --- always-required fields -------------------------------------------------------


@pytest.mark.parametrize("field", ["defaultParamFlag", "audioId", "model", "callBackUrl"])
def test_always_required_fields(field: str) -> None:
    values = {k: v for k, v in MINIMAL.items() if k != field}
    assert_invalid(values, field)


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_audio_id_is_missing(blank: str) -> None:
    assert_invalid({**MINIMAL, "audioId": blank}, "audioId")


# --- per-model length limits --------------------------------------------------------


def test_model_limits_table_matches_documented_table() -> None:
    assert set(MODEL_LIMITS) == set(EXPECTED_LIMITS)
    for model, (prompt, style, title) in EXPECTED_LIMITS.items():
        limits = MODEL_LIMITS[model]
        assert (limits.prompt, limits.style, limits.title) == (prompt, style, title), model


def test_model_names_are_the_documented_enum_plus_v4_5all() -> None:
    assert set(MODEL_NAMES) == {"V3_5", "V4", "V4_5", "V4_5PLUS", "V5", "V4_5ALL"}
    assert set(MODEL_NAMES) == set(MODEL_LIMITS)


LIMIT_CASES = [
    pytest.param(model, field, id=f"{model}-{field}")
    for model in MODEL_LIMITS
    for field in TEXT_FIELDS
]


@pytest.mark.parametrize(("model", "field"), LIMIT_CASES)
def test_length_limit_boundaries(model: str, field: str) -> None:
    limit = EXPECTED_LIMITS[model][TEXT_FIELDS.index(field)]
    assert getattr(MODEL_LIMITS[model], field) == limit
    base = {**CUSTOM, "model": model}

    for length in (limit - 1, limit):
        request = assert_valid({**base, field: "x" * length})
        assert len(request.to_wire()[field]) == length

    message = assert_invalid({**base, field: "x" * (limit + 1)}, field)
    assert str(limit) in message
    assert model in message


@pytest.mark.parametrize(("model", "field"), LIMIT_CASES)
def test_length_limits_apply_without_custom_parameters(model: str, field: str) -> None:
    limit = EXPECTED_LIMITS[model][TEXT_FIELDS.index(field)]
    base = {**MINIMAL, "model": model}
    assert_valid({**base, field: "y" * limit})
    assert_invalid({**base, field: "y" * (limit + 1)}, field)


def test_length_counts_characters_not_bytes() -> None:
    assert_valid({**CUSTOM, "model": "V4", "title": "é" * 80})
    assert_invalid({**CUSTOM, "model": "V4", "title": "é" * 81}, "title")


def test_same_text_valid_for_one_model_too_long_for_another() -> None:
    title = "t" * 100
    assert_valid({**CUSTOM, "model": "V5", "title": title})
    assert_invalid({**CUSTOM, "model": "V4_5ALL", "title": title}, "title")
    assert_invalid({**CUSTOM, "model": "V3_5", "title": title}, "title")


# --- weights --------------------------------------------------------------------------

WEIGHT_FIELDS = ("styleWeight", "weirdnessConstraint", "audioWeight")


@pytest.mark.parametrize("field", WEIGHT_FIELDS)
@pytest.mark.parametrize("value", [0, 1, 0.0, 1.0, 0.01, 0.99, 0.65, 0.29, 0.57, 0.5])
def test_weights_valid(field: str, value: float) -> None:
    request = assert_valid({**CUSTOM, field: value})
    assert request.to_wire()[field] == pytest.approx(value)


@pytest.mark.parametrize("field", WEIGHT_FIELDS)
@pytest.mark.parametrize(
    "value", [0.005, 1.01, -0.01, 0.999, 0.001, 2, -1, math.inf, -math.inf, math.nan]
)
def test_weights_invalid(field: str, value: float) -> None:
    assert_invalid({**CUSTOM, field: value}, field)


@pytest.mark.parametrize("field", WEIGHT_FIELDS)
@pytest.mark.parametrize("value", ["abc", True, False, [0.5]])
def test_weights_wrong_type(field: str, value: Any) -> None:
    assert_invalid({**CUSTOM, field: value}, field)


# --- vocalGender -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["m", "f"])
def test_vocal_gender_valid(value: str) -> None:
    assert assert_valid({**CUSTOM, "vocalGender": value}).to_wire()["vocalGender"] == value


@pytest.mark.parametrize("value", ["x", "M", "male", " m", 1])
def test_vocal_gender_invalid(value: Any) -> None:
    message = assert_invalid({**CUSTOM, "vocalGender": value}, "vocalGender")
    assert "m" in message and "f" in message


def test_vocal_gender_empty_means_not_given() -> None:
    request = assert_valid({**CUSTOM, "vocalGender": ""})
    assert "vocalGender" not in request.to_wire()


# --- model -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(EXPECTED_LIMITS))
def test_every_documented_model_is_accepted(model: str) -> None:
    assert assert_valid({**CUSTOM, "model": model}).to_wire()["model"] == model


@pytest.mark.parametrize("model", ["V6", "v5", "V4.5", "", "chirp-v4", 5])
def test_invalid_model(model: Any) -> None:
    message = assert_invalid({**CUSTOM, "model": model}, "model")
    assert "V4_5ALL" in message  # the message lists the choices


# --- callBackUrl ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/cb",
        "https://api.example.com/callback",
        "https://example.com:8443/hook?x=1#frag",
        "http://127.0.0.1:8000/cb",
        "HTTPS://EXAMPLE.COM/CB",
    ],
)
def test_callback_url_valid(url: str) -> None:
    assert assert_valid({**MINIMAL, "callBackUrl": url}).to_wire()["callBackUrl"] == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/cb",
        "http://",
        "https://",
        "https:///path-only",
        "http://exa mple.com/cb",
        "https://example.com/a b",
        " https://example.com/cb",
        "https://example.com/cb\n",
        "javascript:alert(1)",
        "mailto:a@example.com",
        "example.com/cb",
        "/relative/path",
        "",
        "   ",
        "http://example.com:99999/cb",
        "http://[::1/cb",
        "https://example.com/" + "a" * 3000,
    ],
)
def test_callback_url_invalid(url: str) -> None:
    assert_invalid({**MINIMAL, "callBackUrl": url}, "callBackUrl")


# --- continueAt --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.1, 1, 60, 59.99, 1e-6])
def test_continue_at_valid(value: float) -> None:
    assert assert_valid({**CUSTOM, "continueAt": value}).to_wire()["continueAt"] == value


@pytest.mark.parametrize("value", [0, 0.0, -0.0, -0.1, -60, math.inf, math.nan, "soon", True])
def test_continue_at_invalid(value: Any) -> None:
    assert_invalid({**CUSTOM, "continueAt": value}, "continueAt")


@pytest.mark.parametrize(
    ("continue_at", "ok"),
    [(119.9, True), (119.99, True), (120, False), (120.0, False), (120.01, False), (500, False)],
)
def test_continue_at_must_be_less_than_source_duration(continue_at: float, ok: bool) -> None:
    values = {**CUSTOM, "continueAt": continue_at}
    context = {"source_duration": 120.0}
    if ok:
        assert field_errors(values, source_duration=120.0) == {}
        ExtendRequest.model_validate(values, context=context)
    else:
        problems = field_errors(values, source_duration=120.0)
        assert set(problems) == {"continueAt"}
        assert_plain(problems["continueAt"])
        assert "120" in problems["continueAt"]
        with pytest.raises(ValidationError):
            ExtendRequest.model_validate(values, context=context)
    # Without a known duration, only "more than 0" applies.
    assert field_errors(values) == {}
    ExtendRequest.model_validate(values)


def test_continue_at_given_as_text_is_read_as_number_everywhere() -> None:
    values = {**CUSTOM, "continueAt": "500"}
    assert ExtendRequest.model_validate(values).to_wire()["continueAt"] == 500
    assert "continueAt" in field_errors(values, source_duration=100)
    with pytest.raises(ValidationError):
        ExtendRequest.model_validate(values, context={"source_duration": 100})


def test_source_model_must_match() -> None:
    values = {**CUSTOM, "model": "V5"}
    assert field_errors(values, source_model="V5") == {}
    ExtendRequest.model_validate(values, context={"source_model": "V5"})

    problems = field_errors(values, source_model="V4")
    assert set(problems) == {"model"}
    assert_plain(problems["model"])
    assert "V4" in problems["model"]
    with pytest.raises(ValidationError):
        ExtendRequest.model_validate(values, context={"source_model": "V4"})


def test_source_facts_reported_together() -> None:
    values = {**CUSTOM, "model": "V5", "continueAt": 200}
    problems = field_errors(values, source_duration=100, source_model="V4_5")
    assert set(problems) == {"model", "continueAt"}


# --- defaultParamFlag ----------------------------------------------------------------------


@pytest.mark.parametrize("field", CUSTOM_REQUIRED)
def test_custom_parameters_require_each_field(field: str) -> None:
    assert set(CUSTOM_REQUIRED) == {"prompt", "style", "title", "continueAt"}
    values = {k: v for k, v in CUSTOM.items() if k != field}
    problems = field_errors(values)
    assert set(problems) == {field}
    assert_plain(problems[field])
    with pytest.raises(ValidationError):
        ExtendRequest.model_validate(values)
    # None counts as missing too.
    assert set(field_errors({**CUSTOM, field: None})) == {field}


@pytest.mark.parametrize("field", ["prompt", "style", "title"])
@pytest.mark.parametrize("blank", ["", " ", "   ", "\t", "\n \t"])
def test_blank_text_counts_as_missing(field: str, blank: str) -> None:
    assert set(field_errors({**CUSTOM, field: blank})) == {field}
    with pytest.raises(ValidationError):
        ExtendRequest.model_validate({**CUSTOM, field: blank})
    # Without custom parameters a blank text is simply not sent.
    request = assert_valid({**MINIMAL, field: blank})
    assert field not in request.to_wire()


def test_custom_parameters_all_missing_reported_at_once() -> None:
    problems = field_errors({**MINIMAL, "defaultParamFlag": True})
    assert set(problems) == set(CUSTOM_REQUIRED)
    for message in problems.values():
        assert_plain(message)


def test_default_params_need_only_audio_model_callback() -> None:
    assert ExtendRequest.model_validate(MINIMAL).to_wire() == MINIMAL


def test_default_params_keep_a_given_prompt() -> None:
    values = {**MINIMAL, "prompt": "Keep it calm", "style": "Jazz", "title": "T"}
    wire = assert_valid(values).to_wire()
    assert wire["prompt"] == "Keep it calm"
    assert wire["style"] == "Jazz"
    assert wire["title"] == "T"


def test_default_params_with_continue_at_kept() -> None:
    assert assert_valid({**MINIMAL, "continueAt": 30}).to_wire()["continueAt"] == 30


@pytest.mark.parametrize("flag", ["true", 1])
def test_flag_read_as_the_model_reads_it(flag: Any) -> None:
    # Whatever model_validate takes for True, field_errors applies the custom rules to.
    values = {**MINIMAL, "defaultParamFlag": flag}
    with pytest.raises(ValidationError):
        ExtendRequest.model_validate(values)
    assert set(field_errors(values)) == set(CUSTOM_REQUIRED)


def test_cross_field_rules_still_apply_when_another_field_fails() -> None:
    # A failing weight must not hide what the custom parameters still need, even when
    # the flag and continueAt arrive in forms the model coerces.
    values = {**MINIMAL, "defaultParamFlag": "true", "styleWeight": 5, "continueAt": "500"}
    problems = field_errors(values, source_duration=100)
    assert set(problems) == {"styleWeight", "prompt", "style", "title", "continueAt"}
    assert "100" in problems["continueAt"]


def test_python_field_names_get_the_same_cross_field_checks() -> None:
    values = {
        "default_param_flag": True,
        "audio_id": "a1",
        "model": "V4",
        "call_back_url": "https://example.com/cb",
        "prompt": "p",
        "style": "s",
        "title": "t" * 81,
        "continue_at": 30,
        "style_weight": 7,
    }
    assert set(field_errors(values)) == {"title", "styleWeight"}


def test_unknown_key_reported_under_its_own_name() -> None:
    # A Python name given next to its wire name is an extra key, not the wire field.
    problems = field_errors({**MINIMAL, "audio_id": "other"})
    assert problems == {"audio_id": "Not a field of this request."}


@pytest.mark.parametrize("flag", [None, "maybe", 2, [True]])
def test_flag_invalid(flag: Any) -> None:
    assert_invalid({**CUSTOM, "defaultParamFlag": flag}, "defaultParamFlag")


# --- personaId -----------------------------------------------------------------------------


def test_persona_with_custom_parameters_ok() -> None:
    assert assert_valid({**CUSTOM, "personaId": "persona_123"}).to_wire()["personaId"] == (
        "persona_123"
    )


def test_persona_without_custom_parameters_is_an_error() -> None:
    problems = field_errors({**MINIMAL, "personaId": "persona_123"})
    assert set(problems) == {"personaId"}
    assert_plain(problems["personaId"])
    with pytest.raises(ValidationError):
        ExtendRequest.model_validate({**MINIMAL, "personaId": "persona_123"})


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_persona_without_custom_parameters_is_fine(blank: str) -> None:
    assert "personaId" not in assert_valid({**MINIMAL, "personaId": blank}).to_wire()


# --- field_errors as a whole ------------------------------------------------------------------


def test_field_errors_reports_several_fields_at_once() -> None:
    values = {
        "defaultParamFlag": True,
        "audioId": " ",
        "model": "V9",
        "callBackUrl": "ftp://example.com",
        "prompt": "",
        "style": "s",
        "title": "t",
        "continueAt": 0,
        "vocalGender": "x",
        "styleWeight": 0.005,
        "weirdnessConstraint": 1.01,
        "audioWeight": -0.01,
        "bogus": 1,
    }
    problems = field_errors(values)
    assert set(problems) >= {
        "audioId",
        "model",
        "callBackUrl",
        "prompt",
        "continueAt",
        "vocalGender",
        "styleWeight",
        "weirdnessConstraint",
        "audioWeight",
        "bogus",
    }
    for message in problems.values():
        assert_plain(message)


def test_field_errors_single_and_cross_field_together() -> None:
    values = {**CUSTOM, "title": None, "styleWeight": 3, "model": "V4", "prompt": "p" * 3001}
    problems = field_errors(values)
    assert set(problems) == {"title", "styleWeight", "prompt"}


BAD_INPUTS: list[dict[str, Any]] = [
    {},
    {"defaultParamFlag": "maybe"},
    {**CUSTOM, "audioId": None},
    {**CUSTOM, "audioId": 123},
    {**CUSTOM, "audioId": b"\xff\xfe"},
    {**CUSTOM, "prompt": 5},
    {**CUSTOM, "prompt": ["a"]},
    {**CUSTOM, "continueAt": "1e999"},
    {**CUSTOM, "continueAt": {"a": 1}},
    {**CUSTOM, "styleWeight": "high"},
    {**CUSTOM, "model": None},
    {**CUSTOM, "vocalGender": None, "negativeTags": 7},
    {**CUSTOM, "callBackUrl": 42},
    {**MINIMAL, "personaId": "p", "prompt": "x" * 6000},
]


@pytest.mark.parametrize("values", BAD_INPUTS)
def test_messages_are_plain_words(values: dict[str, Any]) -> None:
    problems = field_errors(values)
    assert problems
    for field, message in problems.items():
        assert isinstance(field, str) and field
        assert_plain(message)


def test_cross_field_problems_tolerates_half_typed_values() -> None:
    values = {"defaultParamFlag": True, "model": 7, "prompt": 3, "continueAt": "abc"}
    problems = cross_field_problems(values, source_duration=10, source_model="V4")
    assert set(problems) == {"style", "title"}


# --- property: round trip and agreement ---------------------------------------------------


def _text_of_length(lengths: list[int]) -> st.SearchStrategy[str]:
    return st.sampled_from(lengths).map(lambda n: "w" * n)


_BOUNDARY_LENGTHS = sorted(
    {n + d for limits in EXPECTED_LIMITS.values() for n in limits for d in (-1, 0, 1)}
)
TEXT = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["", " ", "\t ", "Jazz", " padded "]),
    _text_of_length(_BOUNDARY_LENGTHS),
)
WEIGHT = st.one_of(
    st.none(),
    st.integers(min_value=-2, max_value=102).map(lambda i: i / 100),
    st.sampled_from([0, 1, 0.005, 1.01, -0.01, 0.65, True, "0.5", "x"]),
    st.floats(allow_nan=True, allow_infinity=True),
)
CONTINUE_AT = st.one_of(
    st.none(),
    st.floats(min_value=-5, max_value=400, allow_nan=False),
    st.integers(min_value=-2, max_value=400),
    st.sampled_from([0, 0.1, 119.99, 120, "60", "x", math.nan, math.inf]),
)
URL = st.sampled_from(
    [
        "https://api.example.com/callback",
        "http://localhost:8000/cb",
        "ftp://example.com",
        "http://",
        "javascript:alert(1)",
        "https://exa mple.com",
        "",
    ]
)
FIELD_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "defaultParamFlag": st.sampled_from([True, False, True, False, "true", 0, 1, None, "x"]),
    "audioId": st.one_of(st.text(max_size=10), st.just("e231-8cadc7dc")),
    "model": st.sampled_from([*EXPECTED_LIMITS, "V6", ""]),
    "callBackUrl": URL,
    "prompt": TEXT,
    "style": TEXT,
    "title": TEXT,
    "continueAt": CONTINUE_AT,
    "negativeTags": TEXT,
    "vocalGender": st.sampled_from(["m", "f", "", "x", None]),
    "styleWeight": WEIGHT,
    "weirdnessConstraint": WEIGHT,
    "audioWeight": WEIGHT,
    "personaId": st.one_of(st.none(), st.sampled_from(["", "persona_123", "  "])),
    "unknownKey": st.just("x"),
}
ALWAYS = ("defaultParamFlag", "audioId", "model", "callBackUrl")


@st.composite
def request_values(draw: st.DrawFn) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field, strategy in FIELD_STRATEGIES.items():
        # Mostly present for the always-required, mostly absent for the unknown key.
        chance = 0.95 if field in ALWAYS else (0.03 if field == "unknownKey" else 0.7)
        if draw(st.floats(0, 1)) < chance:
            values[field] = draw(strategy)
    return values


SOURCE_DURATION = st.one_of(st.none(), st.sampled_from([60.0, 120, 200.5]))
SOURCE_MODEL = st.one_of(st.none(), st.sampled_from(["V5", "V4", "V4_5ALL"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=request_values(), duration=SOURCE_DURATION, source_model=SOURCE_MODEL)
def test_property_round_trip_and_field_errors_agree(
    values: dict[str, Any], duration: float | None, source_model: str | None
) -> None:
    facts = {"source_duration": duration, "source_model": source_model}
    try:
        request = ExtendRequest.model_validate(values, context=facts)
    except ValidationError:
        request = None
    problems = field_errors(values, **facts)
    # field_errors finds a problem exactly when model_validate fails.
    assert (request is None) == bool(problems), (values, problems)
    for message in problems.values():
        assert_plain(message)
    if request is None:
        return
    wire = request.to_wire()
    assert None not in wire.values()
    text = json.dumps(wire, sort_keys=True, allow_nan=False)
    again = ExtendRequest.model_validate(json.loads(text), context=facts)
    assert wire_json(again.to_wire()) == text
    assert ExtendRequest.model_validate(wire, context=facts) == request


# --- record-info (TaskInfo) -----------------------------------------------------------------

RECORD_INFO_DATA: dict[str, Any] = {
    "taskId": "5c79****be8e",
    "parentMusicId": "",
    "param": json.dumps(
        {
            "prompt": "A calm piano track",
            "style": "Classical",
            "title": "Peaceful Piano",
            "customMode": True,
            "instrumental": True,
            "model": "V3_5",
        }
    ),
    "response": {
        "taskId": "5c79****be8e",
        "sunoData": [
            {
                "id": "e231****-****-****-****-****8cadc7dc",
                "audioUrl": "https://example.cn/****.mp3",
                "streamAudioUrl": "https://example.cn/****",
                "imageUrl": "https://example.cn/****.jpeg",
                "prompt": "[Verse] Night city lights",
                "modelName": "chirp-v3-5",
                "title": "Iron Man",
                "tags": "electrifying, rock",
                "createTime": "2025-01-01 00:00:00",
                "duration": 198.44,
            },
            {
                "id": "bd15****1873",
                "audioUrl": "",
                "streamAudioUrl": "https://example.cn/stream2",
                "imageUrl": "https://example.cn/2.jpeg",
                "prompt": "[Verse] Night city lights",
                "modelName": "chirp-v3-5",
                "title": "Iron Man",
                "tags": "electrifying, rock",
                "createTime": 1735689600000,
                "duration": 228.28,
            },
        ],
    },
    "status": "SUCCESS",
    "type": "GENERATE",
    "errorCode": None,
    "errorMessage": None,
}


def test_task_info_from_documented_record_info() -> None:
    info = TaskInfo.model_validate(RECORD_INFO_DATA)
    assert info.task_id == "5c79****be8e"
    assert info.parent_music_id == ""
    assert info.param == json.loads(RECORD_INFO_DATA["param"])
    assert info.param["model"] == "V3_5"
    assert info.status == "SUCCESS"
    assert info.stage == "complete"
    assert info.type == "GENERATE"
    assert info.error_code is None and info.error_message is None
    assert len(info.tracks) == 2
    first, second = info.tracks
    assert isinstance(first, Track)
    assert first.id == "e231****-****-****-****-****8cadc7dc"
    assert first.audio_url == "https://example.cn/****.mp3"
    assert first.stream_audio_url == "https://example.cn/****"
    assert first.image_url == "https://example.cn/****.jpeg"
    assert first.model_name == "chirp-v3-5"
    assert first.title == "Iron Man"
    assert first.tags == "electrifying, rock"
    assert first.create_time == "2025-01-01 00:00:00"
    assert first.duration == pytest.approx(198.44)
    assert first.playable_url == "https://example.cn/****.mp3"
    # Audio not ready yet: the stream plays.
    assert second.playable_url == "https://example.cn/stream2"


EXPECTED_STAGES = {
    "PENDING": "submitted",
    "TEXT_SUCCESS": "text",
    "FIRST_SUCCESS": "first",
    "SUCCESS": "complete",
    "CREATE_TASK_FAILED": "error",
    "GENERATE_AUDIO_FAILED": "error",
    "CALLBACK_EXCEPTION": "error",
    "SENSITIVE_WORD_ERROR": "error",
}


@pytest.mark.parametrize(("status", "stage"), sorted(EXPECTED_STAGES.items()))
def test_task_status_to_stage(status: str, stage: str) -> None:
    assert STATUS_STAGE[status] == stage
    info = TaskInfo.model_validate({**RECORD_INFO_DATA, "status": status})
    assert info.status == status
    assert info.stage == stage


def test_status_table_is_complete() -> None:
    assert STATUS_STAGE == EXPECTED_STAGES


def test_unknown_status_kept_and_counts_as_submitted() -> None:
    info = TaskInfo.model_validate({**RECORD_INFO_DATA, "status": "QUEUED_SOMEWHERE"})
    assert info.status == "QUEUED_SOMEWHERE"
    assert info.stage == "submitted"


def test_task_info_failed_and_pending_shapes() -> None:
    failed = TaskInfo.model_validate(
        {
            "taskId": "t1",
            "param": "",
            "response": None,
            "status": "GENERATE_AUDIO_FAILED",
            "errorCode": 501,
            "errorMessage": "Audio generation failed",
        }
    )
    assert failed.tracks == []
    assert failed.param == {}
    assert failed.stage == "error"
    assert failed.error_code == 501
    assert failed.error_message == "Audio generation failed"

    pending = TaskInfo.model_validate(
        {"taskId": "t2", "param": None, "response": {"taskId": "t2", "sunoData": None}}
    )
    assert pending.tracks == []
    assert pending.stage == "submitted"


@pytest.mark.parametrize("param", ["{not json", "[1, 2]", '"text"'])
def test_task_info_param_not_an_object_is_kept_raw(param: str) -> None:
    info = TaskInfo.model_validate({**RECORD_INFO_DATA, "param": param})
    assert info.param == {"raw": param}


def test_task_info_param_already_an_object() -> None:
    info = TaskInfo.model_validate({**RECORD_INFO_DATA, "param": {"model": "V5"}})
    assert info.param == {"model": "V5"}


# --- callbacks (CallbackPayload) --------------------------------------------------------------

SNAKE_TRACK: dict[str, Any] = {
    "id": "8551****662c",
    "audio_url": "https://example.cn/****.mp3",
    "source_audio_url": "https://example.cn/src.mp3",
    "stream_audio_url": "https://example.cn/****",
    "source_stream_audio_url": "https://example.cn/src-stream",
    "image_url": "https://example.cn/****.jpeg",
    "source_image_url": "https://example.cn/src.jpeg",
    "prompt": "[Verse] Night city lights",
    "model_name": "chirp-v3-5",
    "title": "Iron Man",
    "tags": "electrifying, rock",
    "createTime": "2025-01-01 00:00:00",
    "duration": 198.44,
}
COMPLETE_CALLBACK: dict[str, Any] = {
    "code": 200,
    "msg": "All generated successfully.",
    "data": {
        "callbackType": "complete",
        "task_id": "2fac****9f72",
        "data": [
            {**SNAKE_TRACK, "lyric_sections": [1, 2], "brandNewField": {"x": 1}},
            {**SNAKE_TRACK, "id": "bd15****1873", "audio_url": "", "duration": 228.28},
        ],
        "extraStageInfo": "ignored",
    },
    "requestId": "unknown-top-level-field",
}


def test_complete_callback_with_snake_case_tracks_and_extra_fields() -> None:
    payload = CallbackPayload.model_validate(COMPLETE_CALLBACK)
    assert payload.code == 200
    assert payload.msg == "All generated successfully."
    assert payload.data.callback_type == "complete"
    assert payload.data.task_id == "2fac****9f72"
    assert len(payload.data.tracks) == 2
    track = payload.data.tracks[0]
    assert track.id == "8551****662c"
    assert track.audio_url == "https://example.cn/****.mp3"
    assert track.source_audio_url == "https://example.cn/src.mp3"
    assert track.stream_audio_url == "https://example.cn/****"
    assert track.source_stream_audio_url == "https://example.cn/src-stream"
    assert track.image_url == "https://example.cn/****.jpeg"
    assert track.source_image_url == "https://example.cn/src.jpeg"
    assert track.model_name == "chirp-v3-5"
    assert track.create_time == "2025-01-01 00:00:00"
    assert track.duration == pytest.approx(198.44)
    assert payload.data.tracks[1].playable_url == "https://example.cn/****"


def test_complete_callback_from_json_text() -> None:
    payload = CallbackPayload.model_validate_json(json.dumps(COMPLETE_CALLBACK))
    assert payload == CallbackPayload.model_validate(COMPLETE_CALLBACK)


def test_text_callback_with_empty_data() -> None:
    payload = CallbackPayload.model_validate(
        {
            "code": 200,
            "msg": "Text generation completed successfully.",
            "data": {"callbackType": "text", "task_id": "2fac****9f72", "data": []},
        }
    )
    assert payload.data.callback_type == "text"
    assert payload.data.tracks == []


def test_first_callback_streaming_track() -> None:
    track = {**SNAKE_TRACK, "audio_url": ""}
    payload = CallbackPayload.model_validate(
        {
            "code": 200,
            "msg": "First track done.",
            "data": {"callbackType": "first", "task_id": "t", "data": [track]},
        }
    )
    assert payload.data.callback_type == "first"
    assert payload.data.tracks[0].playable_url == SNAKE_TRACK["stream_audio_url"]


@pytest.mark.parametrize("code", [400, 408, 413, 500, 501, 531])
def test_error_callback_with_null_data(code: int) -> None:
    payload = CallbackPayload.model_validate(
        {
            "code": code,
            "msg": "Audio generation failed",
            "data": {"callbackType": "error", "task_id": "2fac****9f72", "data": None},
        }
    )
    assert payload.code == code
    assert payload.data.callback_type == "error"
    assert payload.data.tracks == []


def test_error_callback_without_data_list() -> None:
    payload = CallbackPayload.model_validate(
        {"code": 501, "msg": "failed", "data": {"callbackType": "error", "task_id": "t"}}
    )
    assert payload.data.tracks == []


def test_unknown_callback_type_kept_as_is() -> None:
    payload = CallbackPayload.model_validate(
        {"code": 200, "msg": "", "data": {"callbackType": "remaster", "task_id": "t", "data": []}}
    )
    assert payload.data.callback_type == "remaster"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"code": 200},
        {"code": 200, "data": None},
        {"code": 200, "data": {"task_id": "t", "data": []}},
        {"code": 200, "data": {"callbackType": "complete", "data": []}},
        {"code": "ok", "data": {"callbackType": "complete", "task_id": "t"}},
        {"code": 200, "data": {"callbackType": "complete", "task_id": "t", "data": "x"}},
        {"code": 200, "data": {"callbackType": "complete", "task_id": "t", "data": [{}]}},
    ],
)
def test_callback_wrong_shape_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CallbackPayload.model_validate(body)


def test_track_numeric_id_becomes_text() -> None:
    assert Track.model_validate({"id": 12345}).id == "12345"
