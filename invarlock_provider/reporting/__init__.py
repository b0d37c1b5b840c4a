"""Paired evaluation reports: pairing checks, statistics, tier policy, rendering and verification.

Pure Python + numpy: an auditor can verify evidence without torch or Airflow installed.
"""
