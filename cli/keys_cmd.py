"""``lifecycle keys``: show the master key's fingerprint, rotate the key.

The fingerprint (16 hex digits) names a key without revealing anything about it: the
audit database records it per key epoch, and every command refuses a missing or
different key by naming the fingerprint it expects. ``rotate`` replaces the key (see
``audit.rotation``): open requests are re-sealed, the ledger continues under the new
key, pseudonyms stay as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli.output import JsonOption, console, emit, handled_errors, print_json

app = typer.Typer(no_args_is_help=True)

EPOCH_COLUMNS = ["epoch", "fingerprint", "since_event", "recorded", "in_force"]
NewKeyFileOption = typer.Option(
    None,
    "--new-key-file",
    dir_okay=False,
    help="Take the new key from this file (base64), or create it there with a fresh key "
    "when it does not exist. Required when the key comes from LIFECYCLE_MASTER_KEY.",
)


def _say(text: str) -> None:
    console.print(text, highlight=False, markup=False)


@app.command("show")
def show(as_json: bool = JsonOption) -> None:
    """Print the fingerprint of the key in force and the key epochs the database records."""
    from audit.database import audit_engine
    from audit.keystore import keyring_from_settings, read_epochs
    from config.settings import get_settings
    from core.keys import KeySource

    with handled_errors():
        ring = keyring_from_settings()
        source = KeySource.from_settings(get_settings()).describe()
        with audit_engine().connect() as conn:
            epochs = read_epochs(conn)
    rows: list[dict[str, Any]] = [
        {
            "epoch": e.epoch,
            "fingerprint": e.fingerprint,
            "since_event": e.since_seq,
            "recorded": e.created_at if as_json else f"{e.created_at:%Y-%m-%d %H:%M} UTC",
            "in_force": e.epoch == ring.epoch,
        }
        for e in epochs
    ]
    if as_json:
        print_json(
            {"fingerprint": ring.fingerprint, "epoch": ring.epoch, "source": source}
            | {"epochs": rows}
        )
        return
    _say(f"key fp {ring.fingerprint} (key epoch {ring.epoch}), from {source}")
    if len(rows) > 1:
        emit(rows, EPOCH_COLUMNS, as_json=False, title="Key epochs")


@app.command("rotate")
def rotate(new_key_file: Path | None = NewKeyFileOption, as_json: bool = JsonOption) -> None:
    """Replace the master key: re-seal open requests, continue the ledger under the new key.

    Pseudonyms (and legal holds naming them) are unchanged; the whole ledger still
    verifies with the new key alone. Stop workers first: a process still holding the old
    key is refused at its next ledger write. Exit 2 when the current key is missing or
    wrong; nothing is changed then.
    """
    from audit.rotation import rotate as rotate_key

    with handled_errors():
        done = rotate_key(new_key_file)
    if as_json:
        print_json(
            {
                "old_fingerprint": done.old_fingerprint,
                "new_fingerprint": done.new_fingerprint,
                "epoch": done.epoch,
                "event_seq": done.event_seq,
                "resealed": done.resealed,
                "key_file": None if done.key_file is None else str(done.key_file),
            }
        )
        return
    counts = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in done.resealed.items())
    _say(
        f"rotated: key fp {done.old_fingerprint} -> {done.new_fingerprint} (key epoch "
        f"{done.epoch}); re-sealed {counts}; the ledger continues at event {done.event_seq} "
        "(keys.rotated)"
    )
    if done.key_file is not None:
        _say(f"back up {done.key_file} now: the old key no longer opens this database")
    else:
        _say(
            f"set LIFECYCLE_MASTER_KEY to the contents of {done.new_key_file} now (then back "
            "it up and delete the file): commands refuse the old key from here on"
        )
