"""Where a registry keeps its blobs when not on its own disk: S3 (`s3`: signed
requests, the bucket check) and SeaweedFS storage hosts (`seaweedfs`: what runs where)."""
