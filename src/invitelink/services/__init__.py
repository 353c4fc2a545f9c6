"""What the service does: plain functions over a session, unaware of HTTP and of the calling API family."""
