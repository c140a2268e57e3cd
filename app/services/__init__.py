"""Plain service functions: they take a session and plain arguments, never `request`."""
