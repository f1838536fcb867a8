"""Credentials relay holds itself (RELAY_CREDENTIALS): their configuration, and tokens from azure-identity."""
