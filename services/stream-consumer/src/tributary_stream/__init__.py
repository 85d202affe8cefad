"""Tributary stream consumer: KCL-style shard workers landing Kinesis in S3 raw, exactly once."""
