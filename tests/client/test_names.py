"""The remembered subdomains: per server and local address, whole-file writes."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from client.names import MAX_ENTRIES, RememberedNames

SERVER = "wss://tunnel.example.com/tunnel"


def test_a_name_is_remembered_per_server_and_local_address(tmp_path: Path) -> None:
    names = RememberedNames(tmp_path / "t" / "names.json")
    names.put(SERVER, "http://localhost:3000", "my-app")
    names.put(SERVER, "http://localhost:8000", "other")
    again = RememberedNames(tmp_path / "t" / "names.json")
    assert again.get(SERVER, "http://localhost:3000") == "my-app"
    assert again.get(SERVER, "http://localhost:8000") == "other"
    assert again.get("ws://localhost:8000/tunnel", "http://localhost:3000") is None
    assert (tmp_path / "t").stat().st_mode & 0o777 == 0o700
    # No temporary file left; the lock file stays (removing it would race).
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [".names.lock", "names.json"]


def test_a_broken_or_foreign_file_costs_only_the_name(tmp_path: Path) -> None:
    path = tmp_path / "names.json"
    path.write_text("{not json")
    names = RememberedNames(path)
    assert names.get(SERVER, "http://localhost:3000") is None
    names.put(SERVER, "http://localhost:3000", "my-app")  # replaces the broken file
    assert json.loads(path.read_text()) == {f"{SERVER} http://localhost:3000": "my-app"}
    path.write_text(json.dumps({f"{SERVER} http://localhost:3000": "../../etc"}))
    assert names.get(SERVER, "http://localhost:3000") is None  # never sent on


def test_an_unwritable_directory_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions
        locked = tmp_path / "file-not-dir"
        locked.write_text("")
    names = RememberedNames(locked / "names.json")
    names.put(SERVER, "http://localhost:3000", "my-app")
    assert names.get(SERVER, "http://localhost:3000") is None


def test_only_the_most_recent_entries_are_kept(tmp_path: Path) -> None:
    names = RememberedNames(tmp_path / "names.json")
    for port in range(MAX_ENTRIES + 5):
        names.put(SERVER, f"http://localhost:{port}", f"name-{port}")
    assert names.get(SERVER, "http://localhost:0") is None
    assert names.get(SERVER, f"http://localhost:{MAX_ENTRIES + 4}") == f"name-{MAX_ENTRIES + 4}"
    assert len(json.loads((tmp_path / "names.json").read_text())) == MAX_ENTRIES


def test_tunnels_writing_at_once_keep_each_others_names(tmp_path: Path) -> None:
    """Several tunnels of one client (threads) remember their names in one file:
    each change reads and writes under the lock, so none undoes another's."""
    path = tmp_path / "names.json"
    ready = threading.Barrier(4)

    def remember(tunnel: int) -> None:
        names = RememberedNames(path)
        ready.wait(timeout=10)
        for port in range(25):
            names.put(SERVER, f"http://localhost:{tunnel * 1000 + port}", f"t{tunnel}-{port}")

    threads = [threading.Thread(target=remember, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(json.loads(path.read_text())) == 100
