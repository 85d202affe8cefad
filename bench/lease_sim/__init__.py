"""The lease simulation behind bench/leases.py (see its docstring for what it models)."""
