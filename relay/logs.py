"""structlog configured once at the entry point: one JSON (or console) line per event, on one stream.

relay's own loggers take structlog's fast path: a level-filtering bound logger (a disabled level is a
method that returns at once) whose processors render the line and write it straight to the stream,
without stdlib logging's records and handlers. Stdlib logs (aiohttp, arq) still go through a root
handler that renders them with the same processors, so both come out as the same lines.

Secrets never reach a line: :func:`redact` drops values under sensitive keys, whatever logs them; a
traceback never shows its frames' local variables (in the console format, rich would render them: a job's
decrypted token, the signing secrets, a request's body); and the secrets of the configuration
(:func:`keep_out`) are replaced in every rendered line, exception text included.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
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

_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


#: keys seen not to be sensitive, so most lines skip the lower-casing; bounded, keys come from code
_PLAIN_KEYS: set[str] = set()


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in _PLAIN_KEYS:
            continue
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = "[redacted]"
        elif len(_PLAIN_KEYS) < 1024:
            _PLAIN_KEYS.add(key)
    return event_dict


class _Sink:
    """The one stream every line goes to; :func:`configure` can point it elsewhere at any time."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        with self.lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream: the line is lost, the caller is not
                pass


_sink = _Sink()

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


class _LineLogger:
    """What structlog wraps: it writes the rendered line. ``name`` is the logger name in the line."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, line: str) -> None:
        _sink.write(_scrubbed(line) if _KEPT_OUT else line)

    debug = info = warning = warn = error = critical = fatal = exception = msg


def _logger_factory(*args: Any) -> _LineLogger:
    return _LineLogger(str(args[0]) if args else "relay")


def _nop(self: Any, event: str, *args: Any, **kw: Any) -> None:
    return None


def _level_method(name: str) -> Any:
    def method(self: _BoundLogger, event: str, *args: Any, **kw: Any) -> Any:
        return self._proxy_to_logger(name, event % args if args else event, **kw)

    method.__name__ = name
    return method


_ACTIVE = {level: _level_method(name) for level, name in _LEVEL_NAMES.items()}


class _BoundLogger(structlog.BoundLoggerBase):
    """structlog's filtering bound logger, but with a level :func:`configure` can change later.

    ``structlog.make_filtering_bound_logger`` bakes the level into a class chosen when a logger is
    first used (and then cached); here the disabled methods are swapped on this one class instead,
    so loggers cached before a reconfiguration follow it. A disabled level costs one no-op call.
    """

    min_level = logging.INFO

    def log(self, level: int, event: str, *args: Any, **kw: Any) -> Any:
        if level < self.min_level:
            return None
        return self._proxy_to_logger(_LEVEL_NAMES[level], event % args if args else event, **kw)

    def exception(self, event: str, *args: Any, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self.error(event, *args, **kw)

    # replaced by _set_level; declared for readers and type checkers
    debug = info = warning = warn = msg = error = critical = fatal = _nop


def _set_level(level: int) -> None:
    _BoundLogger.min_level = level
    for lvl, name in _LEVEL_NAMES.items():
        setattr(_BoundLogger, name, _nop if lvl < level else _ACTIVE[lvl])
    _BoundLogger.warn = _BoundLogger.warning
    _BoundLogger.msg = _BoundLogger.info
    _BoundLogger.fatal = _BoundLogger.critical


_set_level(logging.INFO)


class _Clock:
    """ISO-8601 UTC timestamps with microseconds and a Z; the seconds part is formatted once a second."""

    def __init__(self) -> None:
        self.cached = (-1, "")  # (second, its formatted prefix), replaced as one

    def now(self) -> str:
        t = time.time()
        second = int(t)
        cached = self.cached
        if cached[0] != second:
            cached = self.cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{cached[1]}.{int((t - second) * 1_000_000):06d}Z"


_clock = _Clock()


def _stamp(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Level, logger name and timestamp of a line from relay's own loggers."""
    event_dict["level"] = method_name
    event_dict["logger"] = logger.name
    event_dict["timestamp"] = _clock.now()
    return event_dict


def _stamp_foreign(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict["timestamp"] = _clock.now()
    return event_dict


def _json_default(obj: Any) -> Any:
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


def _render_json(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> str:
    try:
        return orjson.dumps(event_dict, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError, e.g. an int over 64 bits: the stdlib encoder takes anything
        return json.dumps(event_dict, default=_json_default)


def _format_exc_info(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog's format_exc_info, called only for the lines that carry an exception."""
    if "exc_info" not in event_dict:
        return event_dict
    return structlog.processors.format_exc_info(logger, name, event_dict)


def _identity(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return event_dict


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


#: relay's own loggers hold this list (structlog caches loggers on first use): configure() changes it in place
_PROCESSORS: list[Any] = []


class _ForeignHandler(logging.Handler):
    """Stdlib records (aiohttp, arq), rendered by the formatter, written to the same sink."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        _sink.write(_scrubbed(line) if _KEPT_OUT else line)


def configure(fmt: str = "json", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Lines in ``fmt`` ("json" or "console") of ``level`` and above, on ``stream`` (stderr by default)."""
    _sink.stream = stream or sys.stderr
    _set_level(level)
    # a traceback without its frames' locals (rich's default shows them: tokens, secrets, request bodies)
    renderer: Any = (
        _render_json if fmt == "json" else structlog.dev.ConsoleRenderer(exception_formatter=_console_traceback)
    )
    exc_info: Any = _format_exc_info if fmt == "json" else _identity
    _PROCESSORS[:] = [
        structlog.contextvars.merge_contextvars,
        _stamp,
        redact,
        exc_info,
        renderer,
    ]
    structlog.configure(
        processors=_PROCESSORS,
        logger_factory=_logger_factory,
        wrapper_class=_BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            _stamp_foreign,
            redact,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, exc_info, renderer],
    )
    handler = _ForeignHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def enabled(level: int) -> bool:
    """Whether lines of ``level`` are written now: a hot path skips building a line no one will read."""
    return level >= _BoundLogger.min_level


#: what aiohttp wants as ``access_log`` (None turns the access log off); :class:`AccessLogger` writes its lines itself
ACCESS_LOG = logging.getLogger("relay.access")


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access log as one structured line per request, through the fast path.

    Pass it as ``access_log_class`` (with ``access_log=ACCESS_LOG``). The path is logged without its
    query string; the request id is the one the request-id middleware answered with.
    """

    _logger = _LineLogger("relay.access")

    @property
    def enabled(self) -> bool:
        return enabled(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if not enabled(logging.INFO):
            return
        # what structlog's bound logger would build for log.info("request", ...), without its layers
        event_dict: Any = {
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "duration_ms": round(time * 1000, 2),
            "request_id": response.headers.get("X-Request-Id"),
            "event": "request",
        }
        try:
            for processor in _PROCESSORS:
                event_dict = processor(self._logger, "info", event_dict)
        except structlog.DropEvent:
            return
        self._logger.msg(event_dict)
