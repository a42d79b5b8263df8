"""`python -m listener --config listener.yaml [--dry-run | --status | --retry UID]`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

from aspects.errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, InputError
from aspects.file_lock import hold_lock

from .config import ListenerConfig, check_runnable, load_config
from .spool import Spool

log = logging.getLogger("listener")


def _setup_logging(cfg: ListenerConfig) -> None:
    handlers: List[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if cfg.log_file:
        cfg.log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(cfg.log_file))
    fmt = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S%z")
    root = logging.getLogger()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(cfg.log_level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO is per PDU, too chatty


def print_status(spool: Spool, out=sys.stdout) -> None:
    rows = list(spool.iter_status())
    print(f"spool {spool.root}: {len(rows)} study/studies, {len(spool.rejected())} rejected instance(s)", file=out)
    if rows:
        print(f"{'state':<11} {'inst':>5} {'run':>3} {'sent':>7}  {'updated':<25} study / reason", file=out)
    for r in rows:
        sent = f"{r['sent']}/{r['results']}" if r["results"] else "-"
        print(f"{r['state']:<11} {r['instances']:>5} {r['run']:>3} {sent:>7}  {r['updated']:<25} {r['study_uid']}",
              file=out)
        if r["reason"]:
            print(f"{'':<58} {r['reason']}", file=out)


SPOOL_LOCK = ".listener.lock"


def lock_spool(spool_dir: Path) -> int:
    """One listener per spool: hold ``SPOOL/.listener.lock`` (flock) for the life of the process.

    A second listener on the same spool gets one line naming the first one's pid (exit 9) before
    it reads or changes anything in the spool.
    """
    spool_dir.mkdir(parents=True, exist_ok=True)
    return hold_lock(spool_dir / SPOOL_LOCK, f"the spool {spool_dir} is in use by another listener (pid {{pid}}); "
                                             "stop it first or give this one its own spool_dir")


def serve(cfg: ListenerConfig) -> int:
    from .jobs import Worker
    from .scp import StorageSCP

    spool = Spool(cfg.spool_dir)
    lock_spool(cfg.spool_dir)
    removed = spool.remove_temp_files()
    if removed:
        log.info("removed %d unacknowledged partial file(s) left by an earlier crash", removed)
    rows = list(spool.iter_status())
    open_jobs = [r for r in rows if r["state"] not in ("sent", "failed")]
    log.info("spool %s: %d study/studies, %d to process or send, %d failed", cfg.spool_dir, len(rows),
             len(open_jobs), sum(r["state"] == "failed" for r in rows))
    worker = Worker(cfg, spool)
    scp = StorageSCP(cfg, spool, worker.notify)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    try:
        scp.start()
    except OSError as exc:
        raise InputError(EXIT_USAGE, f"cannot listen on {cfg.host}:{cfg.port}: {exc}") from None
    log.info("destination %s@%s:%d; app %s; quiet time %.0f s", cfg.destination.ae_title, cfg.destination.host,
             cfg.destination.port, cfg.app.script, cfg.quiet_time_s)
    stop.wait()
    log.info("shutting down")
    scp.stop()
    worker.stop()
    log.info("stopped")
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m listener", description=__doc__)
    ap.add_argument("--config", required=True, type=Path, help="listener YAML (see listener.example.yaml)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--dry-run", action="store_true", help="validate the config and the paths, then exit")
    g.add_argument("--status", action="store_true", help="list the studies in the spool and exit")
    g.add_argument("--retry", metavar="STUDY_UID", help="ask the running service to process/send a failed study again")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
        spool = Spool(cfg.spool_dir)
        if args.status:
            print_status(spool)
            return EXIT_OK
        if args.retry:
            try:
                spool.request_retry(args.retry)
            except (FileNotFoundError, ValueError) as exc:
                raise InputError(EXIT_USAGE, str(exc)) from None
            print(f"retry requested for study {args.retry}")
            return EXIT_OK
        problems = check_runnable(cfg)
        if problems:
            raise InputError(EXIT_USAGE, "listener config: " + "; ".join(problems))
        if args.dry_run:
            print(f"config OK: AE {cfg.ae_title} on {cfg.host}:{cfg.port}, calling AEs "
                  f"{', '.join(cfg.allowed_calling_aets)}, destination {cfg.destination.ae_title}@"
                  f"{cfg.destination.host}:{cfg.destination.port}, spool {cfg.spool_dir}")
            print_status(spool)
            return EXIT_OK
        _setup_logging(cfg)
        return serve(cfg)
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    except Exception as exc:  # a bug: one line for the admin, the traceback in the log
        log.exception("internal error")
        print(f"error[{EXIT_INTERNAL}]: internal error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
