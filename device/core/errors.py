"""Errors the command line turns into one clear line."""


class ConfigError(Exception):
    """Bad configuration or routine: the message names the key, the value and what is allowed."""

    exit_code = 78  # EX_CONFIG: systemd is told not to restart on it


class UsageError(ConfigError):
    """A command-line option with a value that cannot be used."""

    exit_code = 2
