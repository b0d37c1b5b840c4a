"""The evaluation engine: data, model, edits, scoring and one run's report.

torch, transformers and datasets are imported inside the functions that need them, so importing
this package (for example from a DAG file) stays cheap.
"""
