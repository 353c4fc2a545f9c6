"""The delivery worker: claims due deliveries with a lease, renders and sends them, records the outcome."""
