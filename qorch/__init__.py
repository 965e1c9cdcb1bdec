"""qorchestra's command line and the runtime every service shares (settings, Kafka, logs)."""
