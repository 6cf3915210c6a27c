"""kafka-python's producer for tests and scripts, with its metadata race
taken care of.

kafka-python 2.0's `send()` waits until the topic is in its metadata, then
asks the metadata again for the topic's partitions; a metadata refresh
landing in between can leave that second answer empty, and `send()` raises
`TypeError: 'NoneType' object is not iterable` (dpkp/kafka-python#2106).
Seen once in a fresh clone's run. `Producer.send` waits for the topic's
metadata again and retries, at most 20 times: the record is queued once.
"""

from kafka import KafkaProducer

ATTEMPTS = 20


class Producer(KafkaProducer):
    def send(self, topic, *args, **kwargs):
        for attempt in range(ATTEMPTS):
            try:
                return super().send(topic, *args, **kwargs)
            except TypeError:
                if attempt == ATTEMPTS - 1:
                    raise
                # Blocks up to max_block_ms until the topic's metadata is back.
                self.partitions_for(topic)
