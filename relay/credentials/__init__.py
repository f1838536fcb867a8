"""Tokens from azure-identity for the credentials relay holds (``RELAY_CREDENTIALS``, read by
:mod:`relay.config.credentials`)."""
