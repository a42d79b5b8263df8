"""Listener configuration: a YAML file read into typed dataclasses, validated up front.

Relative paths in the file are resolved against the folder of the config file, so a service
started from any working directory finds the same spool, app and models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from aspects.errors import EXIT_USAGE, InputError

# DICOM AE titles: 1..16 characters of the default character repertoire, no backslash.
_AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Destination:
    """The PACS (or any Storage SCP) that receives the SEG, SR and key images."""

    ae_title: str
    host: str
    port: int
    retries: int = 5  # attempts after the first one
    backoff_s: float = 2.0  # first wait; doubles after each failed attempt
    max_backoff_s: float = 120.0
    timeout_s: float = 30.0  # network / DIMSE timeout per association


@dataclass(frozen=True)
class AppSettings:
    """How the worker runs the application on a study (same code path as `python app.py`)."""

    script: Path
    models: Path
    timeout_s: float = 900.0
    extra_args: List[str] = field(default_factory=list)
    # One long-lived app process for all studies (python -m aspects.serve --stdio, in the script's
    # folder): atlas and models stay loaded; extra_args do not apply to it.
    warm: bool = False


@dataclass(frozen=True)
class ListenerConfig:
    ae_title: str
    host: str
    port: int
    allowed_calling_aets: List[str]
    spool_dir: Path
    app: AppSettings
    destination: Destination
    quiet_time_s: float = 30.0
    max_associations: int = 10
    network_timeout_s: float = 60.0
    poll_s: float = 0.5
    log_file: Optional[Path] = None
    log_level: str = "INFO"


def _bad(msg: str) -> InputError:
    return InputError(EXIT_USAGE, f"listener config: {msg}")


def _get(d: Dict[str, Any], key: str, typ: type, where: str, default: Any = ...) -> Any:
    if key not in d or d[key] is None:
        if default is ...:
            raise _bad(f"missing '{where}{key}'")
        return default
    val = d[key]
    if typ is float and isinstance(val, int) and not isinstance(val, bool):
        val = float(val)
    if not isinstance(val, typ) or isinstance(val, bool) and typ is not bool:
        raise _bad(f"'{where}{key}' must be {typ.__name__}, got {val!r}")
    return val


def _aet(value: str, where: str) -> str:
    if not _AET_RE.match(value) or not value.strip():
        raise _bad(f"'{where}' is not a valid AE title (1-16 characters, no backslash): {value!r}")
    return value.strip()


def _port(value: int, where: str) -> int:
    if not 0 < value < 65536:
        raise _bad(f"'{where}' must be a TCP port 1..65535, got {value}")
    return value


def _positive(value: float, where: str) -> float:
    if value <= 0:
        raise _bad(f"'{where}' must be > 0, got {value}")
    return value


def _path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def parse_config(data: Any, base_dir: Path) -> ListenerConfig:
    """Validate the parsed YAML mapping; every problem is one InputError line."""
    if not isinstance(data, dict):
        raise _bad("the file must be a YAML mapping")
    known = {"listener", "spool_dir", "quiet_time_s", "app", "destination", "log_file", "log_level", "poll_s"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _bad(f"unknown keys {unknown} (known: {sorted(known)})")

    lst = _get(data, "listener", dict, "")
    ae_title = _aet(_get(lst, "ae_title", str, "listener."), "listener.ae_title")
    allowed = _get(lst, "allowed_calling_aets", list, "listener.")
    if not allowed:
        raise _bad("'listener.allowed_calling_aets' is empty: no scanner or PACS could send")
    allowed = [_aet(str(a), "listener.allowed_calling_aets") for a in allowed]

    app = _get(data, "app", dict, "")
    script = _path(base_dir, _get(app, "script", str, "app.", str(_REPO / "app.py")))
    models = _path(base_dir, _get(app, "models", str, "app.", str(_REPO / "models")))
    extra = [str(a) for a in _get(app, "extra_args", list, "app.", [])]
    app_settings = AppSettings(
        script=script,
        models=models,
        timeout_s=_positive(_get(app, "timeout_s", float, "app.", 900.0), "app.timeout_s"),
        extra_args=extra,
        warm=_get(app, "warm", bool, "app.", False),
    )

    dst = _get(data, "destination", dict, "")
    destination = Destination(
        ae_title=_aet(_get(dst, "ae_title", str, "destination."), "destination.ae_title"),
        host=_get(dst, "host", str, "destination."),
        port=_port(_get(dst, "port", int, "destination."), "destination.port"),
        retries=max(0, _get(dst, "retries", int, "destination.", 5)),
        backoff_s=_positive(_get(dst, "backoff_s", float, "destination.", 2.0), "destination.backoff_s"),
        max_backoff_s=_positive(_get(dst, "max_backoff_s", float, "destination.", 120.0), "destination.max_backoff_s"),
        timeout_s=_positive(_get(dst, "timeout_s", float, "destination.", 30.0), "destination.timeout_s"),
    )

    log_file = _get(data, "log_file", str, "", None)
    level = _get(data, "log_level", str, "", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise _bad(f"'log_level' must be DEBUG, INFO, WARNING or ERROR, got {level!r}")

    return ListenerConfig(
        ae_title=ae_title,
        host=_get(lst, "host", str, "listener.", "0.0.0.0"),
        port=_port(_get(lst, "port", int, "listener."), "listener.port"),
        allowed_calling_aets=allowed,
        spool_dir=_path(base_dir, _get(data, "spool_dir", str, "")),
        app=app_settings,
        destination=destination,
        quiet_time_s=_positive(_get(data, "quiet_time_s", float, "", 30.0), "quiet_time_s"),
        max_associations=int(_positive(_get(lst, "max_associations", int, "listener.", 10), "listener.max_associations")),
        network_timeout_s=_positive(_get(lst, "network_timeout_s", float, "listener.", 60.0), "listener.network_timeout_s"),
        poll_s=_positive(_get(data, "poll_s", float, "", 0.5), "poll_s"),
        log_file=_path(base_dir, log_file) if log_file else None,
        log_level=level,
    )


def load_config(path: Path) -> ListenerConfig:
    """Read and validate a listener YAML file."""
    path = Path(path)
    if not path.is_file():
        raise _bad(f"file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise _bad(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_config(data, path.resolve().parent)


def check_runnable(cfg: ListenerConfig) -> List[str]:
    """Problems that would stop the service from doing its job (for --dry-run and start-up)."""
    problems = []
    if not cfg.app.script.is_file():
        problems.append(f"app script not found: {cfg.app.script}")
    # A missing models folder is not a problem: the app then uses its atlas / asymmetry fallbacks.
    spool = cfg.spool_dir
    probe = spool if spool.exists() else spool.parent
    if spool.exists() and not spool.is_dir():
        problems.append(f"spool_dir is not a folder: {spool}")
    elif not probe.exists():
        problems.append(f"spool_dir's parent does not exist: {probe}")
    else:
        import os

        if not os.access(probe, os.W_OK):
            problems.append(f"spool_dir is not writable: {probe}")
    return problems
