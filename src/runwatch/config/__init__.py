"""Located configuration shared by rule and policy files.

One YAML reader that keeps positions (:mod:`runwatch.config.yamlsrc`) and the typed,
located diagnostics both loaders report (:mod:`runwatch.config.errors`)::

    Location(path, line, column)            # str(): "path:line:col"
    ConfigError(file, line, message)        # str(): "file:line: message" (RuleError, PolicyError)
    ConfigWarning(location, message)        # str(): "path:line:col: warning: message"
    ConfigLoadError(errors)                 # raised with every error of one load

This package imports nothing else of runwatch.
"""

from runwatch.config.errors import ConfigError, ConfigLoadError, ConfigWarning, Location
from runwatch.config.yamlsrc import LocDict, LocList, load_yaml_documents, scalar_source

__all__ = [
    "ConfigError",
    "ConfigLoadError",
    "ConfigWarning",
    "LocDict",
    "LocList",
    "Location",
    "load_yaml_documents",
    "scalar_source",
]
