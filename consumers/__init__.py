"""Readers of Kafka topics (the ingest consumer). The core in skyra_stream never imports Kafka."""
