"""The alerts' exceptions."""


class DeliveryFailed(Exception):
    """A notification could not be delivered this time; the message says why."""
