"""Files arriving: the inbox and its watcher, which reader (feeds/ or pulse/) takes a file, and where it is filed."""
