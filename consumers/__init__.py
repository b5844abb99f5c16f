"""The client side: producer, consumers, the ZooKeeper-coordinated group consumer, the
shipping agent and online feeds.  Built on ``broker.protocol``."""
