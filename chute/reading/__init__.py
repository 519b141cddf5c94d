"""Reading and cleaning a file: CSV bytes in (csvstream), each value checked and typed as
its dataset declares, row by row (cleaning) or a column at a time (columnar), row ids
(rowids), and binary COPY batches out (transform, copyrows)."""
