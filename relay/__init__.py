"""relay: Microsoft Graph long-running actions to signed webhooks."""

import sys as _sys

__version__ = "0.1.0"


def _structlog_without_rich() -> None:
    """Import structlog with ``rich`` hidden from it, unless something imported rich already.

    structlog's ``dev`` module (imported by ``structlog`` itself) imports rich whenever it is installed, for
    tracebacks in its console renderer: ~5 MiB resident in every ``relay serve`` and ``relay worker``, which
    write JSON lines and never use it. relay's console format renders tracebacks with rich itself
    (:func:`relay.logs.configure`), imported then; the CLI commands that print tables import rich when they run.
    """
    if "structlog" in _sys.modules or "rich" in _sys.modules:
        return
    _sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError meanwhile
    try:
        import structlog  # noqa: F401
    finally:
        del _sys.modules["rich"]


_structlog_without_rich()
