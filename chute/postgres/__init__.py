"""PostgreSQL, the only package that knows psycopg2: connections and the files ledger,
loading batches (db), each dataset's table made from its declaration (tables), and chute's
own bookkeeping (schema.sql)."""
