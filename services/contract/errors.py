"""The root of Pacesetter's domain errors."""


class PacesetterError(Exception):
    """A domain error: bad input or bad configuration, with a message a user can act on."""
