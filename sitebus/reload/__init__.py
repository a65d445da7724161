"""Reload on code changes: the autoreloader, its watchers, what it watches.

``autoreload`` (the Autoreloader plugin: restart, or roll the workers, when a file changes),
``watchers`` (the file-system watcher backends, by name: inotify through watchdog, polling)
and ``watchlist`` (which files: those of the imported modules, and the config files).

May import: the core and the standard library (watchdog inside the function that uses it).
See docs/architecture.md.
"""
