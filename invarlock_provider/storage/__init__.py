"""Evidence in object storage: bundles, the S3 and local-folder backends, retention.

boto3 is imported inside the S3 backend only; the local-folder backend needs nothing extra.
"""
