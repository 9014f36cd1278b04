"""The sandbox: local emulators of the vendors' HTTP contracts, for dry runs and tests.

`syncctl sandbox up` serves them (server.py), `registry.py` lists them, `seed.py` fills them
from one deterministic `World`. Nothing here imports the connectors (DESIGN.md §8).
"""
