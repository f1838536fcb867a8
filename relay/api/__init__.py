"""The HTTP API (aiohttp): one module per resource, the app factory, middlewares, problems, the OpenAPI document.

Handlers validate with the request models, call the store, and render with the response models; they never
build Redis hashes or run Redis commands themselves.
"""
