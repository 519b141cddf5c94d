"""The datasets: their declarations read from TOML (declarations), the column types
(types, one module per type), and guessing a declaration from a file (infer)."""
