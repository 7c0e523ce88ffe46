"""The durable ingestion queue and the workers that validate and accept deliveries."""
