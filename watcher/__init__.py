"""The watcher: notices finished CSV files in inbox/ and publishes FileArrived events."""
