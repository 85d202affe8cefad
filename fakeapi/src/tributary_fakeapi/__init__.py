"""A fake third-party REST API for the importer: deterministic data, json-server conventions."""
