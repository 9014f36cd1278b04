"""The declarative REST connector: any REST API described in YAML (`vendor: rest`).

config/declarative.py holds the description's schema and values; `connector` runs it and
`auth` holds its authenticators. docs/connectors.md is the author's guide.
"""
