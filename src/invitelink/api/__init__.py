"""HTTP adapters: one module (or package) per API family."""
