"""chute's core, shared by the watcher, transformer, loader and api (each a package of its
own beside this one), in packages that follow the pipeline:

- `reading`: a CSV file's bytes in, checked and typed rows out as binary COPY batches;
- `datasets`: the declarations (TOML), and `datasets.types`, one module per column type;
- `postgres`: PostgreSQL (the only package that imports psycopg2): connections, the files
  ledger, loading, tables, `schema.sql`;
- `rabbitmq`: RabbitMQ (the only package that imports pika) and the messages it carries;
- `runtime`: what every service shares: configuration, start-up and reconnecting, logs,
  metrics, health reports, the data folder and the moves out of `work/`;
- `commands`: the `chute` command and `make up`'s stack runner, apart from what the
  workers import;
- `errors`: the one hierarchy of chute's exceptions.
"""
