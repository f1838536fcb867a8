"""Configuration, the ground floor: settings and how an environment is read into them, Redis URL forms, the
credentials relay holds, tenants. Imports nothing of relay's other layers (``make lint`` checks it).
"""
