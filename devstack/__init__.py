"""The local stack of ``autoforge up``: the process supervisor and the embedded Redis server.

Developer tooling, not part of a deployed system: containers and process managers do this
job in production (see docs/production.md).
"""
