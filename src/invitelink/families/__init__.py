"""One package per machine-facing API family: its routes, its use cases (named functions over the session the write
seam opens), its wire format. ``registry`` lists them."""
