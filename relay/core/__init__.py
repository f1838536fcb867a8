"""Pure logic, no I/O: classifying monitor answers, planning polls, backoff, events, signing, sealing.

Nothing here imports :mod:`relay.store`, :mod:`relay.api` or :mod:`workers`; it is tested without Redis or sockets.
"""
