"""What every service shares at run time: configuration (config), start-up, signals and
reconnecting (service), JSON logs (logs), metrics (metrics), what a worker reports about
itself (health), the data folder (folders) and the moves out of work/ (placement)."""
