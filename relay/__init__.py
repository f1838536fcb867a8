"""relay: Microsoft Graph long-running actions to signed webhooks."""

import sys as _sys

__version__ = "0.1.0"


def _structlog_without_rich() -> None:
    """Import structlog with ``rich`` and ``greenlet`` hidden from it, unless something imported them already.

    structlog's ``dev`` module (imported by ``structlog`` itself) imports rich whenever it is installed, for
    tracebacks in its console renderer: ~5 MiB resident in every ``relay serve`` and ``relay worker``, which
    write JSON lines and never use it. relay's console format renders tracebacks with rich itself
    (:func:`relay.logs.configure`), imported then; the CLI commands that print tables import rich when they run.
    Its deprecated ``threadlocal`` module (imported by ``structlog`` too, never used by relay, which binds context
    with contextvars) imports greenlet whenever it is installed (playwright, a test dependency, brings it): ~0.2 MiB
    of a ``relay serve`` (the C++ runtime its extension links is loaded by others anyway).
    """
    if "structlog" in _sys.modules:
        return
    hidden = [name for name in _HIDDEN if name not in _sys.modules]  # one imported already is left to structlog
    for name in hidden:
        _sys.modules[name] = None  # type: ignore[assignment]  # `import rich` raises ImportError meanwhile
    try:
        import structlog  # noqa: F401
    finally:
        for name in hidden:
            del _sys.modules[name]


#: optional imports of structlog's that relay's processes never use
_HIDDEN = ("rich", "greenlet")

_structlog_without_rich()
