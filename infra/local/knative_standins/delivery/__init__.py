"""What the KafkaSource and Broker stand-ins share, as upstream's dispatchers share it.

spec: Destination and DeliverySpec (eventing duck/v1) and the strict manifest reader;
policy: which answers are retried and how long to wait; errors: the knativeerror* extensions of a
dead letter; addresses: where a Destination is (what the stack runner tells the stand-ins);
metrics: the four outcome counters (delivered, retried, dead-lettered, dead letter failed);
http1: the pooled keep-alive HTTP/1.1 client the activator (serving) forwards to its instances
with; sender: the binary-mode CloudEvent POST on it that both dispatchers send with; loop: the
event loop all three run on (uvloop when installed).
"""
