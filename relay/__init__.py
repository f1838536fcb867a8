"""relay: Microsoft Graph long-running actions to signed webhooks."""

__version__ = "0.1.0"
