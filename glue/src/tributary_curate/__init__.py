"""Tributary curate job: raw envelopes → curated Parquet, bookmark, quarantine, catalog."""
