"""The control plane's front door: REST (FastAPI) and gRPC (JobService)."""
