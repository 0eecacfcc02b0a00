"""The config a command runs with: the YAML file, then secret files, then the environment.

Read with pydantic-settings (https://docs.pydantic.dev/latest/concepts/pydantic_settings/),
validated by the same `Config` model as the file alone:

- environment variables `GRIDWATCH_{SECTION}__{FIELD}`, any depth, case-insensitive:
  `GRIDWATCH_REDIS__URL`, `GRIDWATCH_SERVER__PORT`, `GRIDWATCH_REDIS__SENTINEL__MASTER`;
  lists and mappings as JSON (`GRIDWATCH_SERVER__ORIGINS='["https://wall.city"]'`),
  `null` for None;
- secret files in `GRIDWATCH_SECRETS_DIR` (default `/run/secrets`, where Docker and
  Kubernetes mount them, when it exists), one value per file, named as the variable
  without its prefix: `server__secret` holds `server.secret`, `redis__url` `redis.url`
  (pydantic-settings' nested secrets, surrounding whitespace stripped).

Precedence, lowest first: the YAML file < secret files < environment (pydantic-settings'
own order of env over secrets; the environment overrides the file, as 12-factor
operators expect). Mappings merge key by key; a list replaces the one below it whole.
Every error names its field and, when it came from there, the variable or the secret
file, never the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError
from pydantic_settings.sources import NestedSecretsSettingsSource

from gridwatch.contracts.config import format_errors
from gridwatch.signaling.config import Config, ConfigError, read_config_file

PREFIX = "GRIDWATCH_"
DELIMITER = "__"
SECRETS_DIR_VAR = "GRIDWATCH_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/run/secrets")
RESERVED = {SECRETS_DIR_VAR}  # GRIDWATCH_ variables that are not config fields

Tree = Mapping[str, object]
Path_ = tuple[str, ...]


class _Sources(BaseSettings, Config):
    """Config's fields as pydantic-settings reads them from its sources (never
    instantiated: Config itself validates what they give)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_nested_delimiter=DELIMITER,
                                      env_parse_none_str="null", case_sensitive=False)  # fmt: skip


def load_settings(path: Path | None) -> Config:
    """The config from `path` (None: no file), secret files and the environment.
    ConfigError: one line per problem, each naming its field and where it came from."""
    data = read_config_file(path) if path is not None else {}
    errors = _stray_variables()
    try:
        env = EnvSettingsSource(_Sources)()
        secrets_dir = _secrets_dir()
        secrets = _secret_files(secrets_dir) if secrets_dir else {}
    except SettingsError as e:  # a list or mapping that is not JSON
        raise ConfigError([*errors, f"{e}: lists and mappings are given as JSON"]) from None
    try:
        config = Config.model_validate(_merge(_merge(data, secrets), env))
    except ValidationError as e:
        details = e.errors(include_url=False, include_input=False)
        errors += [line + _origin(d["loc"], env, secrets, secrets_dir)
                   for line, d in zip(format_errors(e), details, strict=True)]  # fmt: skip
    if errors:
        raise ConfigError(errors)
    return config


def _stray_variables() -> list[str]:
    # pydantic-settings skips a variable whose section is no field: a misspelt one would
    # be ignored, as a misspelt key in the file is not.
    # Only names with the delimiter: Kubernetes gives every pod GRIDWATCH_PORT,
    # GRIDWATCH_SERVICE_HOST, ... for a Service called gridwatch, and those are no typo.
    sections = set(Config.model_fields)
    return [f"{name}: no such setting (variables are {PREFIX}SECTION{DELIMITER}FIELD, "
            f"e.g. {PREFIX}SERVER{DELIMITER}PORT)"
            for name in sorted(os.environ)
            if name.upper().startswith(PREFIX) and name.upper() not in RESERVED and DELIMITER in name
            and name[len(PREFIX):].lower().split(DELIMITER)[0] not in sections]  # fmt: skip


def _secrets_dir() -> Path | None:
    given = os.environ.get(SECRETS_DIR_VAR)
    if given is None:
        return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None
    if not Path(given).is_dir():
        raise ConfigError([f"{SECRETS_DIR_VAR}: no directory {given}"])
    return Path(given)


def _secret_files(directory: Path) -> dict[str, object]:
    return NestedSecretsSettingsSource(_Sources, secrets_dir=directory, secrets_prefix="",
                                       secrets_nested_delimiter=DELIMITER)()  # fmt: skip


def _merge(low: Tree, high: Tree) -> dict[str, object]:
    """`high` over `low`, mappings merged key by key, anything else replaced."""
    out = dict(low)
    for key, value in high.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = _merge(below, value)
        else:
            out[key] = value
    return out


def _given(tree: Tree, loc: tuple[int | str, ...]) -> list[Path_]:
    """The paths `tree` gives at or under `loc`: the value on the way to it (a JSON list
    given whole), else every value under it; none when `tree` says nothing there."""
    node: object = tree
    path: Path_ = ()
    for part in loc:
        if not isinstance(node, Mapping):
            return [path]
        if part not in node:
            return []
        node, path = node[part], (*path, str(part))
    return _leaves(node, path) if isinstance(node, Mapping) else [path]


def _leaves(node: Tree, path: Path_) -> list[Path_]:
    out: list[Path_] = []
    for key, value in node.items():
        out += _leaves(value, (*path, key)) if isinstance(value, Mapping) else [(*path, key)]
    return out


def _origin(loc: tuple[int | str, ...], env: Tree, secrets: Tree, secrets_dir: Path | None) -> str:
    """' (from environment variable X)', ' (from secret file F)', or '' for the file."""
    if not loc:
        return ""
    from_env = _given(env, loc)
    from_files = [p for p in _given(secrets, loc) if p not in from_env]
    names = [f"environment variable {PREFIX}{DELIMITER.join(p).upper()}" for p in from_env]
    names += [f"secret file {secrets_dir / DELIMITER.join(p)}" for p in from_files]
    return f" (from {', '.join(names)})" if names else ""
