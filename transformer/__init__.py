"""The transformer: FileArrived -> cleaned RowBatch messages and a FileDone."""
