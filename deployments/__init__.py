"""Deploying tunelib's flows to Prefect work pools (see README.md here)."""
