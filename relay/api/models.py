"""Request bodies of the API, validated with pydantic (camelCase on the wire)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from yarl import URL

from relay.config.parsing import check_secret
from relay.core import jsonfast
from relay.core.graph_paths import item_url_problem
from relay.core.hosts import host_name_problem
from relay.outbound.actions import Action, has_control_character

__all__ = [
    "MAX_METADATA",
    "MAX_PROGRESS_INTERVAL",
    "MIN_PROGRESS_INTERVAL",
    "JobCreate",
    "JobPatch",
    "Redeliver",
    "ValidationError",
    "validation_errors",
]

MAX_METADATA = 16 * 1024
#: progressInterval bounds (seconds): below one second a monitor would be polled faster than Graph's own guidance
MIN_PROGRESS_INTERVAL = 1.0
MAX_PROGRESS_INTERVAL = 3600.0
_ProgressInterval = Annotated[
    float | None,
    Field(
        alias="progressInterval",
        strict=True,  # a number, not "5" or true
        ge=MIN_PROGRESS_INTERVAL,
        le=MAX_PROGRESS_INTERVAL,
        allow_inf_nan=False,
        description="While in progress, poll at least this often (seconds): progress events at that cadence",
    ),
]
_URL: dict[str, Any] = {"format": "uri", "pattern": "^https?://[^/?#@]+"}


def _http_url(value: str, field: str) -> URL:
    try:
        url = URL(value)
        host = url.host  # decoded lazily: an xn-- label that is not IDNA raises here
    except ValueError:
        raise PydanticCustomError("url", "{field} is not a valid URL", {"field": field}) from None
    if url.scheme not in ("http", "https") or not host:
        raise PydanticCustomError("url", "{field} must be an absolute http(s) URL", {"field": field})
    problem = host_name_problem(host)  # else every request to it would fail with a UnicodeError
    if problem is not None:
        raise PydanticCustomError("url", "{field}: {problem}", {"field": field, "problem": problem})
    return url


def _header_value(value: str | None, field: str) -> str | None:
    """A value relay sends as an HTTP header: one line, no control character (CR, LF, NUL... a header cannot
    carry them, and a request with one fails every time)."""
    if value is not None and has_control_character(value):
        raise PydanticCustomError(
            "header", "{field} holds a control character (U+0000-U+001F or U+007F)", {"field": field}
        )
    return value


class _CheckedJson(dict[str, Any]):
    """A metadata object with the JSON text its size was checked on, so a registration serialises it once."""

    __slots__ = ("text",)

    def __init__(self, value: dict[str, Any], text: str) -> None:
        super().__init__(value)
        self.text = text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, str_strip_whitespace=True, frozen=True)


class JobCreate(_Strict):
    monitor_url: str | None = Field(
        default=None,
        alias="monitorUrl",
        min_length=1,
        max_length=8192,
        description="The Location of the 202 (or give action instead)",
        json_schema_extra=_URL,
    )
    action: Action | None = Field(
        default=None, description="The Graph request that starts the action: relay sends it and tracks its monitor"
    )
    callback_url: str = Field(alias="callbackUrl", min_length=1, max_length=2048, json_schema_extra=_URL)
    drive_item_url: str | None = Field(
        default=None,
        alias="driveItemUrl",
        max_length=2048,
        description="A DriveItem's URL with {resourceId} for its id: {drive}/items/{resourceId}",
        json_schema_extra={**_URL, "pattern": r"^https?://[^/?#]+/.*/items/\{resourceId\}(\?.*)?$"},
    )
    authorization: str | None = Field(
        default=None, max_length=16384, description="Header value sent only with the DriveItem request (and action)"
    )
    credential: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Name of a credential relay holds (RELAY_CREDENTIALS) to use instead of authorization",
    )
    metadata: dict[str, Any] | None = Field(default=None, description="Echoed in every event")
    progress_interval: _ProgressInterval = None
    secret: str | None = Field(
        default=None,
        max_length=256,
        description="Per-job whsec_ signing secret: this job's events are signed with it instead of the tenant's",
        json_schema_extra={"pattern": "^whsec_[A-Za-z0-9+/=]+$"},
    )

    @field_validator("monitor_url")
    @classmethod
    def _monitor(cls, value: str | None) -> str | None:
        if value is not None:
            _http_url(value, "monitorUrl")
        return value

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, value: str) -> str:
        _http_url(value, "callbackUrl")
        return value

    @field_validator("authorization")
    @classmethod
    def _authorization(cls, value: str | None) -> str | None:
        return _header_value(value, "authorization")

    @field_validator("drive_item_url")
    @classmethod
    def _drive_item(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "{resourceId}" not in value:
            raise PydanticCustomError("template", "driveItemUrl must contain {resourceId}")
        _http_url(value.replace("{resourceId}", "x"), "driveItemUrl")
        problem = item_url_problem(value)  # the token goes only to a DriveItem
        if problem is not None:
            raise PydanticCustomError("template", "{rule}", {"rule": problem})
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        text = jsonfast.dumps(value).decode()
        if len(text) > MAX_METADATA:
            raise PydanticCustomError("too_large", "metadata is larger than {limit} bytes", {"limit": MAX_METADATA})
        return _CheckedJson(value, text)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_secret(value)
            except ValueError as exc:
                raise PydanticCustomError("secret", f"secret: {exc}") from None
        return value

    def metadata_json(self) -> str | None:
        """The metadata as compact JSON, reusing the text the size check made."""
        if self.metadata is None:
            return None
        if isinstance(self.metadata, _CheckedJson):
            return self.metadata.text
        return jsonfast.dumps(self.metadata).decode()

    @model_validator(mode="after")
    def _consistent(self) -> JobCreate:
        if (self.monitor_url is None) == (self.action is None):
            raise PydanticCustomError("monitor", "give either monitorUrl or action")
        if self.authorization and self.credential:
            raise PydanticCustomError("credential", "give authorization or credential, not both")
        if self.action is not None and not (self.authorization or self.credential):
            raise PydanticCustomError("authorization", "an action needs the authorization (or credential) Graph takes")
        if (self.authorization or self.credential) and not self.drive_item_url and self.action is None:
            raise PydanticCustomError("authorization", "authorization and credential serve driveItemUrl; give it too")
        return self


class JobPatch(_Strict):
    callback_url: str | None = Field(default=None, alias="callbackUrl", max_length=2048, json_schema_extra=_URL)
    authorization: str | None = Field(default=None, max_length=16384)
    progress_interval: _ProgressInterval = None

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        if value is not None:
            _http_url(value, "callbackUrl")
        return value

    @field_validator("authorization")
    @classmethod
    def _authorization(cls, value: str | None) -> str | None:
        return _header_value(value, "authorization")

    @model_validator(mode="after")
    def _not_empty(self) -> JobPatch:
        if self.callback_url is None and self.authorization is None and self.progress_interval is None:
            raise PydanticCustomError("empty", "give callbackUrl, authorization and/or progressInterval")
        return self


class Redeliver(_Strict):
    """Which of the job's events to send again (any, delivered or not); without a body: its final event."""

    event_id: str = Field(alias="eventId", min_length=1, max_length=128, description="an eventId of this job")


#: the field a whole-model check is about, by its error type
_MODEL_ERROR_FIELDS = {"monitor": "monitorUrl"}


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"]) or _MODEL_ERROR_FIELDS.get(err["type"], "body")
        out.append({"field": field, "message": err["msg"]})
    return out
