"""RabbitMQ, the only package that knows pika: the topology, publishing with confirms,
consuming and acknowledging (broker), and the messages it carries (messages)."""
