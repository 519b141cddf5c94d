"""The loader: RowBatch and FileDone messages -> PostgreSQL, with the batch ledger."""
