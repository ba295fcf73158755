"""Prices: the price book (which prices are in force when) and its writes."""
