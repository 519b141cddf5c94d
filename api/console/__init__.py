"""The console: server-rendered pages for people, on the API's port (docs/console.md)."""
