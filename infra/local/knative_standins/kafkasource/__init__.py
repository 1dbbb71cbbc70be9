"""A local stand-in for Knative's KafkaSource data plane, driven by knative/*/kafkasource.yaml.

`python -m knative_standins.kafkasource <manifest>` consumes the manifest's topics and POSTs every
record as a CloudEvent (HTTP binary mode) to the manifest's sink, with Knative's retry, backoff,
dead-letter and offset-commit semantics (README.md beside this file: upstream and deviations).
"""
