"""Billing's tables: price book, ledger, budgets and monthly reports (built in the money issue).

Costs are computed at call time by `routing.engine.costing` and stored on each request
record; billing imports neither routing nor dashboard (apps depend downward).
"""
