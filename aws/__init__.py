"""chute on AWS Lambda: thin handlers over the same core as the workers and the API.

S3 -> `ingest` (chute.reading.transform + chute.postgres.db in one process, no broker)
-> RDS; HTTP API -> `api` (the aiohttp application from api.app, in-process).
serverless.yml deploys them.
"""
