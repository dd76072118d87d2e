"""``python -m tests.flows.crash_runner ARGS``: the ``lifecycle`` CLI with fake SQL stores.

For subprocess tests (crash and rerun): the fake connector keeps its data in files, so
a killed process and its rerun see the same stores.
"""

from __future__ import annotations

from cli.main import main
from connectors import registry
from tests.flows.fakes import FakeConnector

registry.CONNECTORS["sql"] = FakeConnector.factory
registry.CONNECTORS.pop("s3", None)

if __name__ == "__main__":
    main()
