"""Tooling, not product: the vendor sandbox (emulators with a ledger and faults), the benches,
the demo and the embedded-engine manager that starts PostgreSQL and Redis from PyPI when no
server URLs are set. The product never needs any of it to sync; `syncctl` exposes it as the
`sandbox`, `bench` and `demo` commands."""
