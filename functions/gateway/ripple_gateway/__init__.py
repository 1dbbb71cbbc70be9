"""The gateway function: authenticated CloudEvents over HTTP in, Kafka records (acks=all) out."""
