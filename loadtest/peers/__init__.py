"""`make bench-peers`: ripple beside the Strimzi Kafka Bridge and Knative's Kafka data plane."""
