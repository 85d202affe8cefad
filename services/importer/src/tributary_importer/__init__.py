"""Tributary importer: scheduled pollers of third-party REST APIs into S3 raw."""
