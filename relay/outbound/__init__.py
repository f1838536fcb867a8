"""Requests relay makes: the guarded HTTP client, the SSRF guard, and starting an action on Graph."""
