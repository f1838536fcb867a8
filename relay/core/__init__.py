"""Pure logic, no I/O: classifying monitor answers, planning polls, backoff, events, signing, sealing, host patterns.

Nothing here imports another layer of relay's, :mod:`relay.config` included: what it needs of the settings comes
as small records (:class:`relay.core.tracking.PollPolicy`). It is tested without Redis or sockets; ``make lint``
checks its imports (pyproject.toml, ``[tool.importlinter]``).
"""
