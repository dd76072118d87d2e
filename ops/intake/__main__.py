"""Run the intake service on 127.0.0.1: ``python -m ops.intake --port N --credentials FILE``.

``lifecycle server start`` runs it with the worker's environment (the product's settings,
and ``PREFECT_API_URL`` with its credentials, so flow runs go to the local server).
Access lines name the method, path and status; bodies are never logged.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from config.settings import get_settings
    from ops.intake.app import IntakeConfig, create_app
    from ops.serve_env import HOST

    parser = argparse.ArgumentParser(prog="python -m ops.intake", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="default: LIFECYCLE_INTAKE_PORT")
    parser.add_argument(
        "--credentials", type=Path, default=None, help="user:password file of the intake page"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(IntakeConfig.from_settings(args.credentials))
    port = args.port if args.port is not None else get_settings().intake_port
    uvicorn.run(app, host=HOST, port=port, log_level="info", server_header=False)


if __name__ == "__main__":
    main()
