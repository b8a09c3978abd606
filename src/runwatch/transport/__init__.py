"""Fleet transport: node agents publish to NATS JetStream, detector workers consume from it."""
