"""The Kie Extend Music contract as pydantic models.

The wire format is the model: field aliases are the documented camelCase (or, in
callbacks, snake_case) names. Every rule about a request lives here once, so the form's
live checks, the client and the sandbox all agree.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

ModelName = Literal["V3_5", "V4", "V4_5", "V4_5PLUS", "V5", "V4_5ALL"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
VocalGender = Literal["m", "f"]


@dataclass(frozen=True)
class TextLimits:
    """Maximum lengths, in characters, of the free-text fields for one model."""

    prompt: int
    style: int
    title: int


# The one table of per-model limits (Kie's current public docs). Everything reads it.
MODEL_LIMITS: dict[str, TextLimits] = {
    "V3_5": TextLimits(prompt=3000, style=200, title=80),
    "V4": TextLimits(prompt=3000, style=200, title=80),
    "V4_5": TextLimits(prompt=5000, style=1000, title=100),
    "V4_5PLUS": TextLimits(prompt=5000, style=1000, title=100),
    "V5": TextLimits(prompt=5000, style=1000, title=100),
    "V4_5ALL": TextLimits(prompt=5000, style=1000, title=80),
}

# Plain-word names of the request fields, by wire name: what a form puts next to them.
FIELD_LABELS: dict[str, str] = {
    "defaultParamFlag": "Custom parameters",
    "audioId": "Audio ID",
    "prompt": "Prompt",
    "style": "Style",
    "title": "Title",
    "continueAt": "Continue at (seconds)",
    "model": "Model",
    "callBackUrl": "Callback URL",
    "negativeTags": "Negative tags",
    "vocalGender": "Vocal gender",
    "styleWeight": "Style weight",
    "weirdnessConstraint": "Weirdness",
    "audioWeight": "Audio weight",
    "personaId": "Persona ID",
}

CUSTOM_REQUIRED: tuple[str, ...] = ("prompt", "style", "title", "continueAt")
WEIGHT_FIELDS: tuple[str, ...] = ("styleWeight", "weirdnessConstraint", "audioWeight")
MAX_URL_LENGTH = 2048


# Context key (an object, so no caller can pass it by accident) that makes
# ExtendRequest skip its cross-field rules: field_errors checks those itself.
_SKIP_CROSS_FIELD: Any = object()


def _problem(message: str) -> PydanticCustomError:
    return PydanticCustomError("extend_rule", message)


class ExtendRequest(BaseModel):
    """The body of POST /api/v1/generate/extend."""

    model_config = ConfigDict(
        populate_by_name=True, extra="forbid", str_strip_whitespace=False, frozen=True
    )

    default_param_flag: bool = Field(alias="defaultParamFlag")
    """True: use the custom parameters given here; False: inherit the source track's."""
    audio_id: str = Field(alias="audioId")
    """ID of the track to extend."""
    model: ModelName
    """Model version; must match the source track's model."""
    call_back_url: str = Field(alias="callBackUrl")
    """http(s) URL that receives the task's callbacks."""
    prompt: str | None = None
    """How the music should continue; required with custom parameters."""
    style: str | None = None
    """Music style; required with custom parameters."""
    title: str | None = None
    """Title of the extended track; required with custom parameters."""
    continue_at: float | None = Field(default=None, alias="continueAt")
    """Second of the source track where the extension starts; required with custom parameters."""
    negative_tags: str | None = Field(default=None, alias="negativeTags")
    """Styles or traits to keep out."""
    vocal_gender: VocalGender | None = Field(default=None, alias="vocalGender")
    """Preferred voice, m or f (raises the odds, not a guarantee)."""
    style_weight: float | None = Field(default=None, alias="styleWeight")
    """How closely to follow the style, 0 to 1 in steps of 0.01."""
    weirdness_constraint: float | None = Field(default=None, alias="weirdnessConstraint")
    """How far to wander creatively, 0 to 1 in steps of 0.01."""
    audio_weight: float | None = Field(default=None, alias="audioWeight")
    """Weight of the source audio's features, 0 to 1 in steps of 0.01."""
    persona_id: str | None = Field(default=None, alias="personaId")
    """Persona to apply; only with custom parameters."""

    @field_validator("prompt", "style", "title", "negative_tags", "persona_id", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: Any) -> Any:
        # A form sends "" for an empty box: that means "not given", not "an empty text".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("vocal_gender", mode="before")
    @classmethod
    def _blank_choice_is_absent(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("audio_id")
    @classmethod
    def _audio_id_present(cls, value: str) -> str:
        if not value.strip():
            raise _problem("Audio ID is required.")
        return value

    @field_validator("call_back_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        problem = url_problem(value)
        if problem:
            raise _problem(problem)
        return value

    @field_validator(
        "continue_at", "style_weight", "weirdness_constraint", "audio_weight", mode="before"
    )
    @classmethod
    def _number_not_bool(cls, value: Any) -> Any:
        # Pydantic's lax mode reads true/false as 1.0/0.0; for a number field that is a
        # wrong type, not a number.
        if isinstance(value, bool):
            raise _problem("Enter a number.")
        return value

    @field_validator("continue_at")
    @classmethod
    def _positive_seconds(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise _problem("Continue at must be more than 0 seconds.")
        return value

    @field_validator("style_weight", "weirdness_constraint", "audio_weight")
    @classmethod
    def _weight(cls, value: float | None) -> float | None:
        if value is None:
            return value
        if not math.isfinite(value) or not 0 <= value <= 1:
            raise _problem("Must be between 0 and 1.")
        if abs(value * 100 - round(value * 100)) > 1e-6:
            raise _problem("Use at most 2 decimals (steps of 0.01).")
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> ExtendRequest:
        context = info.context if isinstance(info.context, Mapping) else {}
        if context.get(_SKIP_CROSS_FIELD):
            return self
        problems = cross_field_problems(self.to_wire(), **_source_facts(context))
        if problems:
            raise _problem(
                " ".join(f"{FIELD_LABELS[field]}: {msg}" for field, msg in problems.items())
            )
        return self

    def to_wire(self) -> dict[str, Any]:
        """The exact JSON object to send: camelCase names, no nulls."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _source_facts(context: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "source_duration": context.get("source_duration"),
        "source_model": context.get("source_model"),
    }


def url_problem(value: str) -> str | None:
    """Why `value` is not a usable http(s) callback URL, or None when it is."""
    if not value.strip():
        return "Callback URL is required."
    if len(value) > MAX_URL_LENGTH:
        return f"Callback URL is too long (at most {MAX_URL_LENGTH} characters)."
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        return "Callback URL cannot contain spaces or control characters."
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "Callback URL is not a valid web address."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Callback URL must be a web address starting with http:// or https://."
    return None


def cross_field_problems(
    values: Mapping[str, Any],
    *,
    source_duration: float | None = None,
    source_model: str | None = None,
) -> dict[str, str]:
    """Rules that depend on more than one field, by wire field name.

    Works on wire-named values that may be partly invalid (a form mid-typing), so each
    rule only looks at values of the right type.
    """
    problems: dict[str, str] = {}
    custom = values.get("defaultParamFlag") is True

    def text(field: str) -> str | None:
        value = values.get(field)
        return value if isinstance(value, str) and value.strip() else None

    if custom:
        for field in CUSTOM_REQUIRED:
            value = values.get(field)
            if value is None or (isinstance(value, str) and not value.strip()):
                problems[field] = "Required with custom parameters."
    elif text("personaId") is not None:
        problems["personaId"] = "A persona only applies with custom parameters."

    model = values.get("model")
    limits = MODEL_LIMITS.get(model) if isinstance(model, str) else None
    if limits is not None:
        for field in ("prompt", "style", "title"):
            value = text(field)
            limit = getattr(limits, field)
            if value is not None and len(value) > limit:
                problems[field] = (
                    f"Too long for {model}: {len(value)} characters, at most {limit}."
                )
    if source_model and isinstance(model, str) and model in MODEL_LIMITS and model != source_model:
        problems["model"] = f"Must match the source track's model ({source_model})."

    continue_at = values.get("continueAt")
    if (
        source_duration is not None
        and isinstance(continue_at, (int, float))
        and not isinstance(continue_at, bool)
        and continue_at >= source_duration
    ):
        problems["continueAt"] = (
            f"Must be less than the source track's length ({source_duration:g} seconds)."
        )
    return problems


_PLAIN_BY_TYPE: dict[str, str] = {
    "missing": "Required.",
    "bool_type": "Choose yes or no.",
    "bool_parsing": "Choose yes or no.",
    "float_type": "Enter a number.",
    "float_parsing": "Enter a number.",
    "finite_number": "Enter a number.",
    "string_type": "Enter text.",
    "extra_forbidden": "Not a field of this request.",
}
_FALLBACK_MESSAGE = "Not a valid value."


_CHOICES: dict[str, tuple[str, ...]] = {
    "model": MODEL_NAMES,
    "vocalGender": get_args(VocalGender),
}


def _plain_message(field: str, error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extend_rule":
        return str(error["msg"])
    if kind == "literal_error" and field in _CHOICES:
        return "Choose one of: " + ", ".join(_CHOICES[field]) + "."
    # Never show pydantic's own wording ("Input should be ...") to a person.
    return _PLAIN_BY_TYPE.get(kind, _FALLBACK_MESSAGE)


_WIRE_NAME = {
    name: (info.alias or name) for name, info in ExtendRequest.model_fields.items()
}


def field_errors(
    values: Mapping[str, Any],
    *,
    source_duration: float | None = None,
    source_model: str | None = None,
) -> dict[str, str]:
    """Every problem in a request's values, by wire field name, worded for a person.

    What a form shows next to each field, live: single-field and cross-field rules are
    all reported together, not one at a time.
    """
    problems: dict[str, str] = {}
    try:
        model = ExtendRequest.model_validate(values, context={_SKIP_CROSS_FIELD: True})
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            if not loc:
                continue
            key = str(loc[0])
            kind = error["type"]
            # An unknown key is reported under its own name, not a field it resembles.
            field = key if kind == "extra_forbidden" else _WIRE_NAME.get(key, key)
            problems.setdefault(field, _plain_message(field, error))
        normalized = _lenient_wire_values(values, set(problems))
    else:
        normalized = model.to_wire()
    # Cross-field rules see the values as the model reads them ("true" is True, "60" is
    # 60.0), so field_errors finds a problem exactly when model_validate would.
    for field, message in cross_field_problems(
        normalized, source_duration=source_duration, source_model=source_model
    ).items():
        problems.setdefault(field, message)
    return problems


def _lenient_wire_values(values: Mapping[str, Any], failed: set[str]) -> dict[str, Any]:
    """`values` by wire name, each field that passed its own checks read as the model does."""
    wire: dict[str, Any] = {}
    for key, value in values.items():
        name = _WIRE_NAME.get(key, key) if isinstance(key, str) else key
        if name in wire and name != key:
            continue  # the wire name wins over the Python name, as in the model
        wire[name] = value
    for name in ExtendRequest.model_fields:
        field = _WIRE_NAME[name]
        if field in failed or field not in wire:
            continue
        with contextlib.suppress(ValidationError):
            wire[field] = _FIELD_ADAPTERS[name].validate_python(wire[field])
    return wire


_FIELD_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(Any if info.annotation is None else info.annotation)
    for name, info in ExtendRequest.model_fields.items()
}


# --- responses ---------------------------------------------------------------------


class Envelope(BaseModel):
    """Every Kie response body: {code, msg, data}."""

    code: int
    """The documented result code; 200 is success whatever the HTTP status."""
    msg: str = ""
    """Kie's message, mostly for failures."""
    data: Any = None
    """The call's result."""


def _alias(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class Track(BaseModel):
    """One generated track, from record-info (camelCase) or a callback (snake_case)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    """The track's audio ID (what a later extend takes as audioId)."""
    audio_url: str | None = _alias("audio_url", "audioUrl")
    """Downloadable audio; may be empty while the track is only streaming."""
    source_audio_url: str | None = _alias("source_audio_url", "sourceAudioUrl")
    """Kie's original audio URL."""
    stream_audio_url: str | None = _alias("stream_audio_url", "streamAudioUrl")
    """Audio that plays while generation finishes."""
    source_stream_audio_url: str | None = _alias(
        "source_stream_audio_url", "sourceStreamAudioUrl"
    )
    """Kie's original stream URL."""
    image_url: str | None = _alias("image_url", "imageUrl")
    """Cover image."""
    source_image_url: str | None = _alias("source_image_url", "sourceImageUrl")
    """Kie's original cover image URL."""
    prompt: str | None = None
    """The prompt or lyrics used."""
    model_name: str | None = _alias("model_name", "modelName")
    """Model that made it, e.g. chirp-v4."""
    title: str | None = None
    """Track title."""
    tags: str | None = None
    """Style tags."""
    create_time: str | int | float | None = _alias("createTime", "create_time")
    """When Kie made it (as Kie sends it)."""
    duration: float | None = None
    """Length in seconds."""

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @property
    def playable_url(self) -> str | None:
        """The best URL to play now: the final audio, else the stream."""
        return self.audio_url or self.stream_audio_url or None


# Record-info statuses, and the callback stage each corresponds to.
TaskStatus = Literal[
    "PENDING",
    "TEXT_SUCCESS",
    "FIRST_SUCCESS",
    "SUCCESS",
    "CREATE_TASK_FAILED",
    "GENERATE_AUDIO_FAILED",
    "CALLBACK_EXCEPTION",
    "SENSITIVE_WORD_ERROR",
]
STATUS_STAGE: dict[str, str] = {
    "PENDING": "submitted",
    "TEXT_SUCCESS": "text",
    "FIRST_SUCCESS": "first",
    "SUCCESS": "complete",
    "CREATE_TASK_FAILED": "error",
    "GENERATE_AUDIO_FAILED": "error",
    "CALLBACK_EXCEPTION": "error",
    "SENSITIVE_WORD_ERROR": "error",
}
# A task's life in order; "error" ends it like "complete" does.
STAGES: tuple[str, ...] = ("submitted", "text", "first", "complete", "error")
FINAL_STAGES = frozenset({"complete", "error"})


class TaskInfo(BaseModel):
    """data of GET /api/v1/generate/record-info."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    task_id: str = Field(validation_alias=AliasChoices("taskId", "task_id"))
    """The task."""
    parent_music_id: str | None = _alias("parentMusicId", "parent_music_id")
    """The source track that was extended."""
    param: dict[str, Any] = Field(default_factory=dict)
    """The original request (Kie sends it as a JSON string)."""
    status: str = "PENDING"
    """One of TaskStatus (unknown values are kept as sent)."""
    type: str | None = None
    """Kie's task type."""
    error_code: int | str | None = _alias("errorCode", "error_code")
    """Kie's error code when the task failed."""
    error_message: str | None = _alias("errorMessage", "error_message")
    """Kie's error text when the task failed."""
    tracks: list[Track] = Field(default_factory=list)
    """The generated tracks so far (response.sunoData)."""

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        param = data.get("param")
        if isinstance(param, str):
            try:
                parsed = json.loads(param) if param.strip() else {}
            except ValueError:
                parsed = {"raw": param}
            data["param"] = parsed if isinstance(parsed, dict) else {"raw": param}
        elif param is None:
            data["param"] = {}
        response = data.get("response")
        if isinstance(response, Mapping) and "tracks" not in data:
            data["tracks"] = response.get("sunoData") or []
        return data

    @property
    def stage(self) -> str:
        """The stage this status stands for (unknown statuses count as submitted)."""
        return STATUS_STAGE.get(self.status, "submitted")


CallbackType = Literal["text", "first", "complete", "error"]


class CallbackData(BaseModel):
    """data of a callback body."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    callback_type: str = Field(alias="callbackType")
    """text, first, complete or error (unknown stages are kept as sent)."""
    task_id: str
    """The task (snake_case here, unlike elsewhere)."""
    tracks: list[Track] = Field(default_factory=list, alias="data")
    """Tracks done so far; empty for text and for failures."""

    @field_validator("tracks", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class CallbackPayload(BaseModel):
    """The JSON Kie POSTs to callBackUrl."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    code: int
    """200 success; 400, 408, 413, 500, 501, 531 failures (see CALLBACK_CODES)."""
    msg: str = ""
    """Kie's words about this stage."""
    data: CallbackData
    """Stage, task and tracks."""


CALLBACK_CODES: dict[int, str] = {
    200: "Success.",
    400: "Rejected, for example because the lyrics are copyrighted.",
    408: "Timed out.",
    413: "The uploaded audio matches an existing work.",
    500: "Kie had a server error.",
    501: "Generation failed.",
    531: "Generation failed; your credits were refunded.",
}
