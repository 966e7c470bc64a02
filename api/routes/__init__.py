"""Routes of one concept each, added to the app's authenticated router by one line in api.app."""
