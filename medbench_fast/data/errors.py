"""The error every reader and check raises for a volume that cannot be used."""


class VolumeError(ValueError):
    """A volume cannot be read or is not valid for its use; the message names the file."""
