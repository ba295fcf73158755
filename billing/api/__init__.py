"""Billing's management API: budgets and price-book entries (DRF, under /api/billing/)."""
