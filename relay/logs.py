"""structlog configured once at the entry point: one JSON (or console) line per event, on one stream.

structlog's own fast setup (https://www.structlog.org/en/stable/performance.html): a level-filtering bound
logger (``make_filtering_bound_logger``: a disabled level is a method that returns at once), its processors
(contextvars, level, logger name, timestamp) and a JSON renderer on orjson, writing each line to the stream
(``WriteLogger``) without stdlib logging's records and handlers. Stdlib logs (aiohttp, arq) go through a root
handler that renders them with the same processors (``ProcessorFormatter``), so both come out as the same lines.

Loggers are not cached on first use, so :func:`configure` (a level, a stream) applies to loggers already used
(the tests reconfigure many times in one process). ``python -m tests.bench.log_lines`` times a line: ~9-14 µs
for a worker's JSON line against ~6 µs for the hand-made logger this replaced (Intel Xeon, 2 cores shared, load
2.5-5.6). A worker writes a line only when something went wrong; the one line per request, the access line,
runs the processors itself (:class:`AccessLogger`).

Secrets never reach a line: :func:`redact` drops values under sensitive keys, whatever logs them; a
traceback never shows its frames' local variables (in the console format, rich would render them: a job's
decrypted token, the signing secrets, a request's body); and the secrets of the configuration
(:func:`keep_out`) are replaced in every rendered line, exception text included.
"""

from __future__ import annotations

import json
import logging
import sys
import time as _time
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, TextIO

import orjson
import structlog
from aiohttp.abc import AbstractAccessLogger

if TYPE_CHECKING:  # aiohttp's server modules are the API's: a worker never imports them
    from aiohttp.web import BaseRequest, StreamResponse

__all__ = [
    "ACCESS_LOG",
    "SENSITIVE_KEYS",
    "AccessLogger",
    "configure",
    "enabled",
    "get_logger",
    "keep_out",
    "redact",
]

SENSITIVE_KEYS = frozenset(
    {"authorization", "monitor_url", "monitorurl", "secret", "secrets", "token", "signing_secrets", "url", "password"}
)


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in event_dict:
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


#: values no line may hold (the configuration's secrets), as rendered in a line: set by :func:`keep_out`
_KEPT_OUT: tuple[str, ...] = ()
#: shorter values are not looked for: a two-letter password would blank every word it is part of
MIN_KEPT_OUT = 5
_REDACTED = "[redacted]"


def keep_out(values: Iterable[str]) -> None:
    """Replace each of ``values`` (tokens, signing secrets, keys, passwords) wherever it would appear in a line,
    in its JSON spelling too: the last line of defence for text that can echo one (an exception's message)."""
    global _KEPT_OUT
    spellings: set[str] = set(_KEPT_OUT)
    for value in values:
        if len(value) >= MIN_KEPT_OUT:
            spellings.add(value)
            spellings.add(json.dumps(value)[1:-1])  # as a JSON line writes it
            spellings.add(repr(value)[1:-1])  # as a console line (or a traceback's repr) writes it
    _KEPT_OUT = tuple(sorted(spellings, key=len, reverse=True))  # the longest first: one may hold another


def _scrubbed(line: str) -> str:
    for value in _KEPT_OUT:
        if value in line:
            line = line.replace(value, _REDACTED)
    return line


def _scrubbing(renderer: Any) -> Any:
    """``renderer``, its line rid of the values :func:`keep_out` names (own lines and stdlib ones alike)."""

    def render(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
        line: str = renderer(logger, name, event_dict)
        return _scrubbed(line) if _KEPT_OUT else line

    return render


class _Line(structlog.WriteLogger):
    """structlog's ``WriteLogger`` with its logger's name (``structlog.stdlib.add_logger_name`` reads it), which
    loses a line rather than raise when its stream is closed or broken: a log call never fails its caller."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name

    def msg(self, message: str) -> None:
        try:  # noqa: SIM105 (contextlib.suppress is a context manager a line; a try costs nothing until it catches)
            super().msg(message)
        except (OSError, ValueError):
            pass

    log = debug = info = warn = warning = fatal = failure = err = error = critical = exception = msg


class _Lines:
    """The logger factory: ``structlog.stdlib.get_logger("relay.x")`` writes lines named ``relay.x``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.made: dict[str, _Line] = {}  # one per name: loggers are not cached, their lines are

    def __call__(self, *args: Any) -> _Line:
        name = str(args[0]) if args else "relay"
        line = self.made.get(name)
        if line is None:
            line = self.made[name] = _Line(self.stream, name)
        return line


def _json(obj: Any, **_: Any) -> str:
    try:
        return orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError, e.g. an int over 64 bits: the stdlib encoder takes anything
        return json.dumps(obj, default=_json_default)


def _json_default(obj: Any) -> Any:
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


def _console_traceback(sio: TextIO, exc_info: Any) -> None:
    """The console format's tracebacks, by rich as structlog's RichTracebackFormatter would, without the frames'
    locals; rich is imported here, on the first one (relay imports structlog with rich hidden, see :mod:`relay`,
    so structlog's own formatter has no rich to call); plain ones where rich is not installed."""
    try:
        from rich.console import Console
        from rich.traceback import Traceback
    except ImportError:
        structlog.dev.plain_traceback(sio, exc_info)
        return
    sio.write("\n")
    Console(file=sio, color_system="truecolor").print(Traceback.from_exception(*exc_info, show_locals=False))


_level = logging.INFO
_lines = _Lines(sys.stderr)
_processors: list[Any] = []  # what configure() gave structlog (the access log runs them itself)


def _render_json(_: Any, event_dict: MutableMapping[str, Any]) -> str:
    """What the json format's renderer (``JSONRenderer(serializer=_json)``, scrubbed) makes of ``event_dict``,
    without structlog's call in between: the access line's renderer."""
    line = _json(event_dict)
    return _scrubbed(line) if _KEPT_OUT else line


_render_access: Any = _render_json  # the access line's renderer: set by configure()


def configure(fmt: str = "json", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Lines in ``fmt`` ("json" or "console") of ``level`` and above, on ``stream`` (stderr by default)."""
    global _level, _lines, _processors, _render_access
    _level = level
    _lines = _Lines(stream or sys.stderr)
    stamp: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    # a traceback without its frames' locals (rich's default shows them: tokens, secrets, request bodies)
    render: list[Any] = (
        [structlog.processors.format_exc_info, _scrubbing(structlog.processors.JSONRenderer(serializer=_json))]
        if fmt == "json"
        else [_scrubbing(structlog.dev.ConsoleRenderer(exception_formatter=_console_traceback))]
    )
    _processors = [*stamp, *render]
    if fmt == "json":
        _render_access = _render_json
    else:
        console = render[-1]
        _render_access = lambda logger, event_dict: console(logger, "info", event_dict)  # noqa: E731
    structlog.configure(
        processors=_processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_lines,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_lines.stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=stamp, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def enabled(level: int) -> bool:
    """Whether lines of ``level`` are written now: a hot path skips building a line no one will read."""
    return level >= _level


#: what aiohttp wants as ``access_log`` (None turns the access log off); :class:`AccessLogger` writes its lines itself
ACCESS_LOG = logging.getLogger("relay.access")


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access log as one structured line per request, rendered as relay's other lines are.

    Pass it as ``access_log_class`` (with ``access_log=ACCESS_LOG``). The path is logged without its
    query string; the request id is the one the request-id middleware answered with.

    The one line a request, so it takes a short way: it stamps the line itself (level, name, a timestamp whose
    seconds are formatted once a second) and runs only the context, the redaction and the renderer. Measured on an
    Intel Xeon, 2 cores shared, load 3-6, back to back: a line costs 6.2-6.7 µs this way, 11.0-11.4 µs through all
    the configured processors, 4.4-6.0 µs with the hand-made logger before (``python -m tests.bench.log_lines``);
    ``make bench`` row 3, API CPU per registration: 217/196 µs this way against main's 205/202, and 241/236/217
    against 193/197/191 through all the processors.
    """

    @property
    def enabled(self) -> bool:
        return enabled(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if _level > logging.INFO or not _processors:  # (not configured: no line)
            return
        line = _lines("relay.access")
        event_dict: Any = {
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "duration_ms": round(time * 1000, 2),
            "request_id": response.headers.get("X-Request-Id"),
            "event": "request",
            "level": "info",
            "logger": "relay.access",
            "timestamp": _clock.now(),
        }
        own = len(event_dict)
        structlog.contextvars.merge_contextvars(line, "info", event_dict)
        if len(event_dict) > own:  # the context added keys: redacted like any line's (the line's own never are)
            redact(line, "info", event_dict)
        line.msg(_render_access(line, event_dict))


class _Clock:
    """ISO-8601 UTC timestamps with microseconds and a Z, as ``TimeStamper(fmt="iso", utc=True)`` writes them; the
    seconds part is formatted once a second (0.45 µs against structlog's 1.5 µs: the access line's share)."""

    def __init__(self) -> None:
        self.cached = (-1, "")  # (second, its formatted prefix), replaced as one

    def now(self) -> str:
        t = _time.time()
        second = int(t)
        cached = self.cached
        if cached[0] != second:
            cached = self.cached = (second, _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(second)))
        return f"{cached[1]}.{int((t - second) * 1_000_000):06d}Z"


_clock = _Clock()
