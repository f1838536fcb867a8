"""Redis: key names, the Lua scripts and their typed wrappers, scheduling, batching, and every query.

The only package that talks to Redis. It may use :mod:`relay.core` (the changes it applies are described there)
and :mod:`relay.config` (:func:`relay.store.open.open_store` opens it from the settings).
"""
