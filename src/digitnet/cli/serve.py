"""`digitnet serve`: the web app and its API, on one worker process or several."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import DigitnetError
from .common import UsageError


def cmd_serve(args: argparse.Namespace) -> int:
    from ..runs import load_run
    # says so if the 'web' extra is missing
    from ..web.app import HOSTS_FOR_WORKERS, RUN_FOR_WORKERS, create_app
    from ..web.server import default_allowed_hosts, uvicorn_options

    import uvicorn

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    hosts = args.allowed_hosts or default_allowed_hosts(args.host)
    if hosts is None:
        raise UsageError(f"--host {args.host} listens on every interface: name the host "
                         "names or addresses clients will use with --allowed-hosts")
    run = load_run(args.run_dir)  # the model is loaded here first, so a bad one fails at once
    print(f"serving {args.run_dir} on http://{args.host}:{args.port}/ with {args.workers} "
          f"worker{'s' if args.workers > 1 else ''} (Ctrl-C stops)", file=sys.stderr)
    options = {"host": args.host, "port": args.port, "log_level": "warning",
               **uvicorn_options()}
    try:
        if args.workers == 1:
            uvicorn.run(create_app(run.predictor, run, allowed_hosts=hosts), **options)
        else:  # each worker process imports the app factory and loads the run itself
            os.environ[RUN_FOR_WORKERS] = str(Path(args.run_dir).resolve())
            os.environ[HOSTS_FOR_WORKERS] = ",".join(hosts)
            uvicorn.run("digitnet.web.app:app_for_worker", factory=True, workers=args.workers,
                        **options)
    except OSError as exc:
        raise DigitnetError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0
