"""dead-letters: the dead-letter sink of every KafkaSource; stores, shows and replays failures."""
