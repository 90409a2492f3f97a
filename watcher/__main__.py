from watcher.cli import entry

raise SystemExit(entry())
