"""Kafka: the embedded broker, topic administration, clients and publishing."""
